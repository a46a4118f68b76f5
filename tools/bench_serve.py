"""Load test of ``mgfrec serve`` on 127.0.0.1: requests/s and p50/p95 latency at several client concurrencies.

Starts the real command (``mgfrec serve RUN``) as a subprocess on a free port of 127.0.0.1, waits for
``/healthz``, sends a fixed number of ``POST /v1/recommend`` requests from N client threads for each
concurrency level, and reports throughput, latency percentiles, status codes and how the server batched them
(``/healthz`` counters). Bounded: ``--requests`` per level, a per-request timeout, and the server is stopped
at the end. Only 127.0.0.1 is ever contacted.

Without RUN it builds two throwaway runs on the synthetic data set (about a minute): a ``last-title`` baseline
run and an agent run with the tiny *untrained* preset policy on the real ``hf`` engine (its turns are noise
that ends in a format error or at the token cap, which is still the engine's real cost per turn).

    python tools/bench_serve.py                                   # both throwaway runs
    python tools/bench_serve.py runs/mgfrec-cds --requests 100 --concurrency 1,8 --feedback simulated
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_runs(root: Path) -> list[Path]:
    """A last-title baseline run and a tiny-policy agent run on the synthetic data set."""
    from mgfrec.config.load import load_config, write_resolved
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.models.policy import build_preset, save_policy
    from mgfrec.retrievers.fit import fit_baseline
    from mgfrec.runs import RunInfo, write_run_info

    ds = prepare(DataConfig(source="synthetic", options={"n_users": 200, "n_items": 300}), root / "data")
    cfg = load_config(
        None,
        [
            f"embedding.cache_dir={root / 'emb'}",
            "retriever.model=last-title",
            "retriever.recall_size=10",
            "agent.max_new_tokens_per_turn=64",
            "agent.max_new_tokens_total=256",
        ],
    )
    fit_baseline(ds, cfg, root / "agent" / "recall")
    model, tokenizer = build_preset("tiny", ds.titles)
    save_policy(model, tokenizer, root / "agent" / "policy", preset="tiny")
    write_resolved(cfg, root / "agent")
    extra = {"policy": "policy", "recall_run": str(root / "agent" / "recall")}
    write_run_info(root / "agent", RunInfo("agent", "mgfrec-sft", str(ds.root), ds.checksum, extra=extra))
    return [root / "agent" / "recall", root / "agent"]


def start(run: Path, port: int, max_batch: int) -> subprocess.Popen:
    script = Path(sys.executable).with_name("mgfrec")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "mgfrec.cli.main"]
    cmd += [
        "serve",
        str(run),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
        "--queue-size",
        "1024",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mgfrec serve {run} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"mgfrec serve {run} did not start within 600 s")


def level(url: str, bodies: list[dict], concurrency: int, timeout: float) -> dict:
    """Send every body once from ``concurrency`` threads; latency of each, wall time of all."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    todo = iter(bodies)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            while True:
                with lock:
                    body = next(todo, None)
                if body is None:
                    return
                t0 = time.perf_counter()
                try:
                    code = client.post("/v1/recommend", json=body).status_code
                except httpx.HTTPError:
                    code = 0
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    codes[code] = codes.get(code, 0) + 1

    before = httpx.get(url + "/healthz").json()["queue"]
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = httpx.get(url + "/healthz").json()["queue"]
    lat = sorted(latencies)
    batches = after["batches"] - before["batches"]
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(bodies) / wall, 2),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p95_ms": round(1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1),
        "status": {str(k): v for k, v in sorted(codes.items())},
        "batches": batches,
        "mean_batch": round((after["requests"] - before["requests"]) / batches, 2) if batches else None,
        "largest_batch": after["largest_batch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run folders (default: two throwaway runs)")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level (at most 2000)")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--feedback", default="simulated", choices=["simulated", "none"])
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not 1 <= args.requests <= 2000:
        raise SystemExit("--requests: between 1 and 2000 (a bounded load test)")
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        runs = args.runs or build_runs(Path(tmp))
        results = []
        for run in runs:
            port = free_port()
            proc = start(run, port, args.max_batch)
            url = f"http://127.0.0.1:{port}"
            try:
                users = httpx.get(url + "/v1/users", params={"split": "test", "limit": 1000}).json()["users"]
                bodies = [
                    {"user_id": users[n % len(users)], "split": "test", "k": args.k, "feedback": args.feedback}
                    for n in range(args.requests)
                ]
                kind = httpx.get(url + "/healthz").json()["kind"]
                level(url, bodies[: min(4, len(bodies))], 1, args.timeout)  # warm-up
                for c in levels:
                    row = {"run": str(run), "kind": kind, **level(url, bodies, c, args.timeout)}
                    results.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "max_batch": args.max_batch,
        "feedback": args.feedback,
    }
    print(json.dumps(meta))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Benchmark the grounders: build time, latency per batch of queries (top-10) and recall@10 against exact.

Catalogues:

* ``5k``: the real shared Amazon 2023 CDs catalogue (4,634 titles) with real MiniLM vectors (through the
  embedding cache); queries are titles an agent might write: lower-cased halves of catalogue titles,
  "albums like <title>", and MovieLens movie titles (other titles, from ../shared/data/ml-100k).
* ``60k`` and ``1m``: clustered synthetic unit vectors, 384-d like MiniLM; queries are fresh points drawn
  around the same centres.

Every backend's answer goes through the same exact re-ranking (mgfrec.grounding.ties), so recall measures
only what the index misses. Latency is the best of ``--repeats`` timed searches of the whole query batch.

    python tools/bench_grounding.py                       # every size, prints markdown tables
    python tools/bench_grounding.py --sizes 5k,60k        # skip 1M
    python tools/bench_grounding.py --skip hnswlib@1m     # leave out a build that takes too long
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from shared_data import REPO, SHARED, need_shared  # noqa: E402 (tools/ is on sys.path)

from mgfrec.config.schema import EmbeddingConfig
from mgfrec.embed.base import load_embedder
from mgfrec.embed.cache import cached_item_embeddings
from mgfrec.grounding.exact import ExactGrounder
from mgfrec.grounding.faiss_index import FaissGrounder
from mgfrec.grounding.hnsw_index import HnswGrounder
from mgfrec.grounding.quality import recall_at_k

K = 10

# name -> (class, options); IVF lists follow the faiss default rule unless a size overrides them below.
BACKENDS = {
    "exact": (ExactGrounder, {}),
    "faiss-flat": (FaissGrounder, {"index": "flat"}),
    "faiss-ivf": (FaissGrounder, {"index": "ivf", "nprobe": 16}),
    "faiss-hnsw": (FaissGrounder, {"index": "hnsw", "M": 32, "ef_construction": 64, "ef_search": 64}),
    "hnswlib": (HnswGrounder, {"M": 16, "ef_construction": 200, "ef": 50}),
}
# At 1M items the default 4*sqrt(N) = 4,000 lists would make k-means training take many minutes on 2 cores.
NLIST_OVERRIDE = {"1m": 1024}


class Catalogue:
    """What the embedding cache needs: titles and a folder."""

    def __init__(self, root: Path, titles: list[str]):
        self.root, self.titles = root, titles


def missing_shared(sizes: list[str]) -> list[Path]:
    """The shared data files that ``sizes`` need and that are not there (only ``5k`` reads any)."""
    needed = [SHARED / "amazon2023-cds" / "items.csv", SHARED / "ml-100k" / "items.csv"] if "5k" in sizes else []
    return [path for path in needed if not path.is_file()]


def cds_catalogue(num_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    items_csv = SHARED / "amazon2023-cds" / "items.csv"
    titles = pd.read_csv(items_csv, dtype=str, keep_default_na=False)["title"].tolist()
    embedder = load_embedder(EmbeddingConfig())
    cache = EmbeddingConfig(cache_dir=str(REPO / ".mgfrec-cache" / "embeddings"))
    items = cached_item_embeddings(Catalogue(items_csv.parent, titles), cache, embedder).vectors
    rng = np.random.default_rng(0)
    picked = [titles[i] for i in rng.choice(len(titles), num_queries, replace=False)]
    third = num_queries // 3
    movies = pd.read_csv(SHARED / "ml-100k" / "items.csv", dtype=str, keep_default_na=False)["title"].tolist()
    texts = (
        [t.lower()[: max(4, len(t) // 2)] for t in picked[:third]]
        + [f"albums like {t}" for t in picked[third : 2 * third]]
        + [movies[i] for i in rng.choice(len(movies), num_queries - 2 * third, replace=False)]
    )
    queries = embedder.encode(texts, query=True)
    return items, queries, f"CDs catalogue, {len(titles):,} items, real MiniLM vectors"


def clustered(n: int, dim: int, clusters: int, seed: int, centres_seed: int = 0) -> np.ndarray:
    """Unit vectors around shared random centres, built in blocks to bound memory at 1M items."""
    centres = np.random.default_rng(centres_seed).normal(size=(clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + 0.35 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def best_of(fn, repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` runs in seconds (the least disturbed by other processes) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_size(size: str, items: np.ndarray, queries: np.ndarray, repeats: int, skip: set[str]) -> list[dict]:
    """One row per backend; recall@10 is always against the exact grounder's answer, computed (untimed) where
    ``exact`` itself is skipped."""
    rows: list[dict] = []
    truth = None  # the exact top-K: from the timed exact run, or else computed before the first backend needs it
    for name, (cls, options) in BACKENDS.items():
        if f"{name}@{size}" in skip or name in skip:
            rows.append({"backend": name, "skipped": True})
            continue
        options = dict(options)
        if name == "faiss-ivf" and size in NLIST_OVERRIDE:
            options["nlist"] = NLIST_OVERRIDE[size]
        start = time.perf_counter()
        grounder = cls(items, cls.Options(**options))
        build = time.perf_counter() - start
        grounder.search(queries[:8], K)  # warm-up: first-call allocations, thread pools
        seconds, (indices, _) = best_of(lambda g=grounder: g.search(queries, K), repeats)
        if name == "exact":
            truth = indices
        elif truth is None:  # exact was skipped (or comes later): measure against it all the same
            truth = ExactGrounder(items).search(queries, K)[0]
        recall = recall_at_k(indices, truth)
        rows.append({"backend": name, "options": options, "build_s": build, "search_s": seconds, "recall@10": recall})
        print(f"  {name:<11} build {build:8.2f} s  search {seconds:7.3f} s  recall@10 {recall:.4f}", flush=True)
        del grounder
        gc.collect()
    return rows


def markdown(size: str, label: str, n_items: int, n_queries: int, rows: list[dict]) -> str:
    lines = [
        f"### {label}",
        "",
        f"{n_queries:,} queries per batch, top-{K}.",
        "",
        "| backend | options | build (s) | search, one batch (s) | queries/s | recall@10 vs exact |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.get("skipped"):
            lines.append(f"| {row['backend']} | | skipped | | | |")
            continue
        opts = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-"
        lines.append(
            f"| {row['backend']} | {opts} | {row['build_s']:.2f} | {row['search_s']:.3f} | "
            f"{n_queries / row['search_s']:,.0f} | {row['recall@10']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5k,60k,1m", help="comma-separated: 5k, 60k, 1m")
    parser.add_argument("--queries", type=int, default=1000, help="queries per batch (5K and 60K)")
    parser.add_argument("--queries-1m", type=int, default=200, help="queries per batch at 1M items")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated backend or backend@size to leave out")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--threads", type=int, help="torch and faiss threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        from mgfrec.grounding.faiss_index import import_faiss

        import_faiss().omp_set_num_threads(args.threads)
    skip = {s for s in args.skip.split(",") if s}
    missing = missing_shared(args.sizes.split(","))
    if missing:
        need_shared(missing[0], "amazon2023-cds/ and ml-100k/", ", or leave out --sizes 5k")
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results, sections = {}, []
    for size in args.sizes.split(","):
        if size == "5k":
            items, queries, label = cds_catalogue(args.queries)
        elif size == "60k":
            items, queries = clustered(60_000, 384, 600, seed=1), clustered(args.queries, 384, 600, seed=2)
            label = "60,000 synthetic clustered unit vectors, 384-d"
        elif size == "1m":
            items, queries = clustered(1_000_000, 384, 5000, seed=1), clustered(args.queries_1m, 384, 5000, seed=2)
            label = "1,000,000 synthetic clustered unit vectors, 384-d"
        else:
            raise SystemExit(f"--sizes: unknown size '{size}'; use 5k, 60k, 1m")
        print(f"## {size}: {label}", flush=True)
        rows = bench_size(size, items, queries, args.repeats, skip)
        results[size] = {"label": label, "items": len(items), "queries": len(queries), "rows": rows}
        sections.append(markdown(size, label, len(items), len(queries), rows))
        del items, queries
        gc.collect()
    print(f"# load average after: {os.getloadavg()[0]:.1f}\n")
    print("\n\n".join(sections))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

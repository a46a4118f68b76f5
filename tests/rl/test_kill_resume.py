"""A fit killed with SIGKILL and resumed ends exactly where the same fit run without interruption ends.

The existing kill test (tests/cli/test_fit_cli.py) counts rows; here the policy starts from a short SFT
run, so its rollouts earn different rewards and the comparison means something: every logged metric of
every step (rewards, loss, KL, lengths; times aside) and the final policy weights must equal those of an
uninterrupted run of the same seed.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

SHORT_SYSTEM = (
    "You recommend music. Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>."
)
STEPS = 6


def cli(*args, check: bool = True, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MGFREC_TEST_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("killresume")
    options = {"n_users": 60, "n_items": 120, "n_artists": 15, "max_length": 8}
    prepare(DataConfig(source="synthetic", options=options), root / "data")
    (root / "system.txt").write_text(SHORT_SYSTEM, encoding="utf-8")
    common = [
        "--set",
        f"agent.template={root / 'system.txt'}",
        "--set",
        "retriever.recall_size=5",
        "--set",
        "grounding.top_k=3",
        "--set",
        "agent.max_groundings=1",
        "--no-progress",
    ]
    # a policy that has learnt the format, so GRPO's rewards vary between rollouts
    cli(
        "sft",
        "--data",
        root / "data",
        "--out",
        root / "sft",
        "--recall-model",
        "pop",
        "--epochs",
        30,
        "--max-train-samples",
        8,
        "--batch-size",
        1,
        "--valid-samples",
        0,
        "--set",
        "user_agent.backend=none",
        *common,
    )
    fit = [
        "fit",
        "--data",
        root / "data",
        "--init",
        root / "sft",
        "--max-steps",
        STEPS,
        "--group-size",
        4,
        "--valid-samples",
        2,
        "--no-feedback",
        "--kl-beta",
        0.04,
        "--lr",
        1e-3,
        "--set",
        "trainer.global_batch_size=2",
        "--set",
        "trainer.val_check_interval=100",
        "--set",
        "agent.max_new_tokens_per_turn=48",
        "--set",
        "agent.max_new_tokens_total=128",
        *common,
    ]
    return {"root": root, "fit": fit}


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def comparable(run: Path) -> list[dict[str, str]]:
    # wall times, latencies and memory peaks differ between any two runs; everything else must not
    varying = ("time/", "memory/")
    return [{k: v for k, v in r.items() if not k.startswith(varying) and "latency" not in k} for r in rows(run)]


def weights(run: Path) -> dict:
    files = sorted((run / "policy").glob("*.safetensors"))
    assert files, f"no weights in {run / 'policy'}"
    out: dict = {}
    for f in files:
        out.update(load_file(f))
    return out


def test_a_killed_and_resumed_fit_equals_the_uninterrupted_one(setup):
    root, fit = setup["root"], setup["fit"]
    cli(*fit, "--out", root / "straight")
    straight = comparable(root / "straight")
    rewards = {r["reward/mean"] for r in straight[1:]}
    assert len(rewards) > 1, f"every step earned the same reward {rewards}: the comparison would prove little"

    out = root / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MGFREC_TEST_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgfrec.cli.main", *map(str, fit), "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        done = [float(r["step"]) for r in rows(out)] if (out / "metrics.csv").is_file() else []
        if max(done, default=0) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # the kill lands mid-run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()
    cli(*fit, "--out", out, "--resume")

    resumed = comparable(out)
    assert [r["step"] for r in resumed] == [r["step"] for r in straight]
    for mine, theirs in zip(resumed, straight, strict=False):
        assert mine == theirs, f"step {mine['step']} differs from the uninterrupted run"
    a, b = weights(root / "straight"), weights(out)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "the resumed policy's weights differ from the uninterrupted run's"

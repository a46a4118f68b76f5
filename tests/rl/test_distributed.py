"""Data-parallel GRPO: several processes on the CPU (gloo) train exactly like one process on the same
global batch.

The processes are launched by Lightning (``--strategy ddp`` / ``deepspeed_stage_3_cpu`` with
``trainer.devices=2``), each rolling out its shard. To compare with one process, rollouts must not depend on
which process samples them, so the runs use a plugin engine installed for the test through entry points
(as a third-party package would be): a replayed "policy" whose turns depend on the prompt and the sample
index only, with a reward on response length that differs within groups. The loss, KL, entropy and grad norm
of every step, and the final weights, then match the one-process run within float tolerance: that checks the
sharding, the global normalisation and the gradient averaging together.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.rl.distributed import all_gather_rows, all_max, all_sum, replica_drift, shard, world

SHORT_SYSTEM = (
    "You recommend music. Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>."
)
COMPARED = (
    "trajectories",
    "reward/mean",
    "reward/std",
    "degenerate_groups",
    "format_valid",
    "loss",
    "policy_loss",
    "kl",
    "entropy",
    "grad_norm",
    "valid/format_valid",
    "valid/ndcg_full",
    "valid/ndcg@10",
)

PLUGIN = '''
import hashlib

from mgfrec.rollout.scripted_engine import ScriptedEngine

WORDS = ["jazz", "rock", "folk", "blues", "soul", "pop", "punk", "disco"]


def script(context, j):
    """A turn chosen by the prompt's text and the sample index: the same whichever process samples it. Half
    answer (a short valid turn, grounded to some item), the others break off (a format error)."""
    h = int(hashlib.sha256(f"{context}|{j}".encode()).hexdigest(), 16)
    if h % 2 == 0:
        return f"<think> {WORDS[(h >> 8) % 8]} </think><answer> {WORDS[(h >> 40) % 8]} </answer>"
    return "<think> " + " ".join(WORDS[(h >> (3 * k)) % 8] for k in range(2 + h % 7))


class ReplayEngine(ScriptedEngine):
    def __init__(self, model, tokenizer, options=None):
        super().__init__(tokenizer, script)


class LengthReward:
    gating = False

    def __call__(self, inp):
        return inp.extras["response_length"] / 10


class FailingReward:
    """Fails in the second process only (LOCAL_RANK 1, which Lightning's launcher sets there): when it is built
    (MGFREC_TEST_FAIL=start, a user error, exit 2) or at its 3rd call (MGFREC_TEST_FAIL=step, a bug)."""

    gating = False

    def __init__(self):
        import os

        self.calls, self.second = 0, os.environ.get("LOCAL_RANK") == "1"
        if self.second and os.environ["MGFREC_TEST_FAIL"] == "start":
            raise ValueError("failing reward: refused in the second process")

    def __call__(self, inp):
        self.calls += 1
        if self.second and self.calls >= 3:
            raise TypeError("failing reward: a bad sample in the second process")
        return 0.0
'''


def test_one_process_is_the_identity():
    assert world() == (0, 1)
    assert shard(list(range(10)), 1, 3) == [1, 4, 7] and shard([1, 2], 0, 1) == [1, 2]
    assert all_sum([1.5, 2]) == [1.5, 2.0] and all_max([3.0]) == [3.0]
    rows = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(all_gather_rows(rows), rows)
    assert replica_drift([torch.ones(3)]) == 0.0


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    site = root / "site"
    dist = site / "mgfrec_replay_test-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mgfrec-replay-test\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mgfrec.rollout_engine]\nreplay = mgfrec_replay_test:ReplayEngine\n\n"
        "[mgfrec.reward]\nlength = mgfrec_replay_test:LengthReward\nfailing = mgfrec_replay_test:FailingReward\n"
    )
    (site / "mgfrec_replay_test.py").write_text(textwrap.dedent(PLUGIN))
    prepare(
        DataConfig(source="synthetic", options={"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}),
        root / "data",
    )
    (root / "system.txt").write_text(SHORT_SYSTEM, encoding="utf-8")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    return root, env


def fit_args(
    root, out, strategy: str, devices: int, steps: int, *extra: str, valid: int = 5, reward: str = "length"
) -> list[str]:
    """The command of a small fit on the replay engine."""
    return [
        sys.executable,
        "-m",
        "mgfrec.cli.main",
        "fit",
        "--data",
        str(root / "data"),
        "--out",
        str(out),
        "--strategy",
        strategy,
        "--max-steps",
        str(steps),
        "--group-size",
        "3",
        "--valid-samples",
        str(valid),
        "--rollout-engine",
        "replay",
        "--reward",
        reward,
        "--kl-beta",
        "0.04",
        "--lr",
        "0.001",
        "--no-progress",
        "--json",
        "--user-agent",
        "none",
        "--set",
        f"agent.template={root / 'system.txt'}",
        "--set",
        "agent.max_new_tokens_per_turn=16",
        "--set",
        "agent.max_new_tokens_total=32",
        "--set",
        "trainer.global_batch_size=4",
        "--set",
        "agent.decoding=free",  # the replay plugin scripts free-text turns, format errors included
        "--set",
        "trainer.micro_batch_size=4",
        "--set",
        "retriever.recall_size=5",
        "--set",
        "trainer.accelerator=cpu",
        "--set",
        f"trainer.devices={devices}",
        "--set",
        "trainer.val_check_interval=3",
        "--set",
        "grpo.updates_per_batch=2",
        *extra,
    ]


def fit(
    root, env, name: str, strategy: str, devices: int, steps: int = 3, *extra: str
) -> tuple[list[dict[str, str]], dict]:
    out = root / name
    args = fit_args(root, out, strategy, devices, steps, *extra)
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # one JSON object: the other processes print nothing
    said = " ".join(proc.stderr.split())  # rank 0 alone speaks on stderr too
    assert said.count(f"-> {out}") == 1 and said.count("recall: ") == 1, proc.stderr[-3000:]
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f)), summary


@pytest.fixture(scope="module")
def single(plugin_env):
    return fit(*plugin_env, "single", "auto", 1)


def assert_same(rows, want, steps) -> None:
    by_step = {r["step"]: r for r in want}
    for got in rows:
        if float(got["step"]) not in steps:
            continue
        ref = by_step[got["step"]]
        for key in COMPARED:
            if ref.get(key, "") == "":  # a column the row does not have (valid/* off validation steps)
                assert got.get(key, "") == "", (got["step"], key)
                continue
            assert math.isclose(float(got[key]), float(ref[key]), rel_tol=1e-4, abs_tol=1e-6), (got["step"], key)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "deepspeed_stage_3_cpu"])
def test_two_processes_train_like_one(plugin_env, single, strategy):
    if strategy.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="deepspeed is in the dev extra")
    root, env = plugin_env
    rows, summary = fit(root, env, f"two-{strategy}", strategy, 2)
    want, want_summary = single
    assert summary["processes"] == 2 and want_summary["processes"] == 1
    if strategy == "ddp":  # replicated weights; under DeepSpeed the check compares gathered copies
        assert summary["replica_drift"] == 0.0
    assert [r["step"] for r in rows] == [r["step"] for r in want] == ["0", "1", "2", "3"]
    # the comparison is between runs that learn and validate on something
    assert any(float(r["grad_norm"]) > 0 for r in want[1:]) and any(float(r["reward/std"]) > 0 for r in want[1:])
    assert 0 < float(want[0]["valid/format_valid"]) < 1 and float(want[0]["valid/ndcg_full"]) > 0
    assert all(float(r["trajectories"]) == 12.0 for r in rows[1:])  # 4 prompts x G = 3, over both processes
    assert_same(rows, want, {0.0, 1.0, 2.0, 3.0})
    from transformers import AutoModelForCausalLM

    mine = AutoModelForCausalLM.from_pretrained(root / f"two-{strategy}" / "policy").state_dict()
    theirs = AutoModelForCausalLM.from_pretrained(root / "single" / "policy").state_dict()
    for name, value in mine.items():
        assert torch.allclose(value, theirs[name], atol=1e-4), name


@pytest.mark.slow
def test_two_processes_resume_like_one(plugin_env, single):
    """Checkpoint and resume across processes (Lightning's barriers, rank 0's folder replace): 2 steps, then
    --resume to 3; the restored rows are kept and step 3 is the one-process run's step 3."""
    root, env = plugin_env
    first, _ = fit(root, env, "two-resumed", "ddp", 2, 2)
    rows, summary = fit(root, env, "two-resumed", "ddp", 2, 3, "--resume")
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"] and summary["steps"] == 3
    assert rows[1]["time/step"] == first[1]["time/step"]  # restored, not rerun
    assert_same(rows, single[0], {3.0})


def long_fit(root, out, reward: str) -> list[str]:
    """A 2-process ddp fit of many quick steps, to be stopped or to fail."""
    return fit_args(root, out, "ddp", 2, 300, valid=0, reward=reward)


@pytest.mark.slow
@pytest.mark.reliability
def test_sigterm_to_the_first_process_stops_both_at_a_step(plugin_env):
    """SIGTERM to a 2-process fit (what kill, timeout or a scheduler sends to the launch's process): Lightning's
    handler ran a broadcast inside the signal handler, and when it landed while the other process waited in the
    checkpoint's barrier, both waited forever (3 runs in 7). Now both stop at the next step's start, exit 143,
    with the checkpoint of the last step; nothing is left running."""
    import signal
    import time

    root, env = plugin_env
    out = root / "terminated"
    args = long_fit(root, out, "length")
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics, deadline = out / "metrics.csv", time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if metrics.is_file() and len(metrics.read_text(encoding="utf-8").splitlines()) >= 4:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=180)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"still running 180 s after SIGTERM: {proc.communicate()[1][-3000:]}") from None
    assert proc.returncode == 143, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr[-3000:]
    with metrics.open(encoding="utf-8") as f:
        logged = [float(r["step"]) for r in csv.DictReader(f)]
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["mgfrec"]["batches_done"]
    assert saved == max(logged) and saved < 300


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.parametrize(("where", "code"), [("step", 1), ("start", 2)])
def test_a_failure_in_the_second_process_ends_the_fit_in_one_line_each(plugin_env, where, code):
    """One process's error: the other printed a ~125-line gloo traceback ("Connection closed by peer") as if
    mgfrec had a bug, and when the error came before the processes first met (building a component), the first
    process waited in Lightning's rendezvous for good. Now the failing process prints its error, the first one
    line naming it, and the fit exits with the failing process's code."""
    import signal

    root, env = plugin_env
    out = root / f"fails-at-{where}"
    args = fit_args(root, out, "ddp", 2, 5, valid=0, reward="failing")
    proc = subprocess.Popen(
        args, env={**env, "MGFREC_TEST_FAIL": where}, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stderr = proc.communicate(timeout=300)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"still running after 300 s: {proc.communicate()[1][-3000:]}") from None
    assert proc.returncode == code, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "failing reward" in errors[0], stderr[-3000:]
    assert errors[1] == (
        f"error: process 0: process 1 of this fit failed with exit code {code} (its error is above); this one stops too"
    ), stderr[-3000:]
    assert "Traceback" not in stderr and "Connection closed" not in stderr, stderr[-3000:]


@pytest.mark.slow
def test_a_global_batch_that_does_not_split_is_refused(plugin_env):
    root, env = plugin_env
    args = [
        sys.executable,
        "-m",
        "mgfrec.cli.main",
        "fit",
        "--data",
        str(root / "data"),
        "--out",
        str(root / "odd"),
        "--strategy",
        "ddp",
        "--max-steps",
        "1",
        "--group-size",
        "2",
        "--valid-samples",
        "2",
        "--no-progress",
        "--rollout-engine",
        "replay",
        "--set",
        f"agent.template={root / 'system.txt'}",
        "--set",
        "trainer.global_batch_size=3",
        "--set",
        "retriever.recall_size=5",
        "--set",
        "trainer.accelerator=cpu",
        "--set",
        "trainer.devices=2",
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "3 prompts per step do not split evenly over 2 processes" in proc.stderr

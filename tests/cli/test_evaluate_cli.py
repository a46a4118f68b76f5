"""``mgfrec evaluate RUN``: JSON and table output, files written, flags, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from csvkit import cyclic_dataset
from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.data.prepared import PreparedDataset
from mgfrec.registry import registry
from mgfrec.runs import RunInfo, write_run_info

KEYS = (
    "hit@5",
    "ndcg@5",
    "hit@10",
    "ndcg@10",
    "hit@20",
    "ndcg@20",
    "ndcg_full",
    "mean_rank",
    "samples",
    "split",
    "method",
)


class ScoresFile:
    """A retriever whose run folder holds one score vector (scores.npy) used for every history."""

    name = "cli-eval-test-scores"

    def __init__(self, vector: np.ndarray):
        self.vector = torch.as_tensor(vector, dtype=torch.float32)

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> ScoresFile:
        return cls(np.load(run_dir / "scores.npy"))

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        return self.vector.expand(len(histories), -1).clone()


registry().add("retriever", ScoresFile.name, ScoresFile)


def tiny_dataset(root: Path, n_users: int = 20) -> PreparedDataset:
    """10 items; user u consumes u, u+1, ..., u+4 (mod 10) at times t*100 + u."""
    return cyclic_dataset(root, n_users=n_users)


def make_run(run_dir: Path, ds: PreparedDataset, scores: np.ndarray, kind: str = "baseline") -> Path:
    write_run_info(run_dir, RunInfo(kind=kind, model=ScoresFile.name, data=str(ds.root), data_checksum=ds.checksum))
    np.save(run_dir / "scores.npy", scores)
    return run_dir


@pytest.fixture
def ds(tmp_path) -> PreparedDataset:
    return tiny_dataset(tmp_path / "tiny")


def invoke(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


def test_json_is_one_object_with_metrics_and_intervals(ds, tmp_path):
    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    res = invoke(str(run), "--json", "--bootstrap", "100")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert all(k in payload for k in KEYS)
    assert payload["split"] == "test" and payload["method"] == ScoresFile.name
    assert payload["samples"] == len(ds.split("test"))
    assert set(payload["ci"]) >= {"hit@5", "ndcg_full", "mean_rank"} and payload["bootstrap_samples"] == 100
    lo, hi = payload["ci"]["ndcg@10"]
    assert lo <= payload["ndcg@10"] <= hi
    stored = json.loads((run / "eval_test.json").read_text())
    assert stored["ndcg_full"] == payload["ndcg_full"]
    assert (run / "ranks_test.csv").is_file() and (run / "eval_test.csv").is_file()


def test_table_output_and_split_flag(ds, tmp_path):
    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    res = invoke(str(run), "--split", "valid", "--bootstrap", "50")
    assert res.exit_code == 0, res.output
    assert "N_full" in res.stdout and "valid" in res.stdout
    assert (run / "eval_valid.json").is_file() and not (run / "eval_test.json").exists()


def test_set_overrides_evaluate_does_not_read_are_named_in_a_note(ds, tmp_path):
    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    plain = invoke(str(run), "--json", "--bootstrap", "0")
    res = invoke(str(run), "--json", "--set", "eval.bootstrap_samples=0", "--set", "agent.decoding=free")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ndcg_full"] == json.loads(plain.stdout)["ndcg_full"]  # the run's own config
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: --set agent.decoding=free: mgfrec evaluate reads only eval.* fields; each run's own config.yaml "
        "decides the rest (to evaluate a run under other settings: mgfrec derive RUN OUT --set ...)"
    ]
    assert "note:" not in invoke(str(run), "--json", "--set", "eval.bootstrap_samples=0").stderr


def test_a_config_file_evaluate_does_not_read_is_named_in_a_note(ds, tmp_path):
    """`evaluate --config f.yaml` whose file set agent.* exited 0 without a word; only its eval.* is read."""
    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    config = tmp_path / "mine.yaml"
    config.write_text("eval:\n  bootstrap_samples: 0\nagent:\n  max_groundings: 2\nuser_agent:\n  backend: none\n")
    res = invoke(str(run), "--json", "--config", str(config))
    assert res.exit_code == 0, res.output
    notes = [" ".join(line.split()) for line in res.stderr.split("note:")[1:]]
    assert len(notes) == 1 and "sets agent.*, user_agent.*: mgfrec evaluate reads only eval.* from it" in notes[0]
    config.write_text("eval:\n  bootstrap_samples: 0\n")
    assert "note:" not in invoke(str(run), "--json", "--config", str(config)).stderr
    parent = tmp_path / "parent.yaml"  # a base: chain (configs/paper/*.yaml): the parent's sections are not noted
    parent.write_text("agent:\n  max_groundings: 2\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {parent.name}\neval:\n  bootstrap_samples: 0\n")
    assert "note:" not in invoke(str(run), "--json", "--config", str(child)).stderr


def test_limit_on_a_baseline_says_it_scores_the_whole_split(ds, tmp_path):
    """--limit is for agent runs; a baseline silently scored every sample, which looked like a subsample."""
    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    res = invoke(str(run), "--json", "--bootstrap", "0", "--limit", "1")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["samples"] == len(ds.split("test"))
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--limit applies to agent runs" in notes[0], res.stderr
    assert "note:" not in invoke(str(run), "--json", "--bootstrap", "0").stderr


def test_no_exclude_history_ranks_history_items_too(ds, tmp_path):
    run = make_run(tmp_path / "run", ds, np.zeros(10))
    excluded = json.loads(invoke(str(run), "--json", "--bootstrap", "0").stdout)
    kept = json.loads(
        invoke(str(run), "--json", "--bootstrap", "0", "--no-exclude-history", "--batch-size", "3").stdout
    )
    # All scores tie: the target ranks below every remaining item, i.e. 10 - 4 history items, or 10.
    assert excluded["mean_rank"] == 6.0 and excluded["exclude_history"] is True
    assert kept["mean_rank"] == 10.0 and kept["exclude_history"] is False
    assert excluded["ci"]["mean_rank"] == [None, None]


def test_agent_runs_without_a_policy_exit_2_with_a_clear_message(ds, tmp_path):
    run = make_run(tmp_path / "agent", ds, np.zeros(10), kind="agent")
    res = invoke(str(run), "--json")
    assert res.exit_code == 2
    assert "no policy in this agent run" in " ".join(res.stderr.split())
    assert res.stdout == ""


def test_bad_inputs_exit_2_naming_what_is_wrong(ds, tmp_path):
    res = invoke(str(tmp_path / "missing"))
    assert res.exit_code == 2 and "not a run folder" in res.stderr
    run = make_run(tmp_path / "run", ds, np.zeros(10))
    res = invoke(str(run), "--split", "dev")
    assert res.exit_code == 2 and "--split dev: unknown split" in res.stderr
    other = tiny_dataset(tmp_path / "other", n_users=12)
    res = invoke(str(run), "--data", str(other.root))
    assert res.exit_code == 2 and "--data" in res.stderr and "not the one the run was trained on" in res.stderr


def test_data_flag_points_at_a_moved_copy(ds, tmp_path):
    import shutil

    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    n_test = len(ds.split("test"))
    moved = shutil.copytree(ds.root, tmp_path / "moved")
    shutil.rmtree(ds.root)
    gone = invoke(str(run), "--bootstrap", "0")  # it was "DATA: not a prepared data set ...; create one"
    assert gone.exit_code == 2 and "(run.json field 'data') is not a prepared data set any more" in " ".join(
        gone.output.split()
    ), gone.output
    res = invoke(str(run), "--json", "--bootstrap", "0", "--data", str(moved))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["samples"] == n_test


def test_a_subsample_replacing_a_larger_stored_evaluation_says_so(tmp_path):
    """`evaluate --limit 3` replaced an agent run's 100-sample results without a word."""
    from agentkit import tiny_agent_run

    run, _, _ = tiny_agent_run(tmp_path)
    (run / "ranks_test.csv").write_text("sample_id,target,rank\n" + "".join(f"{i},1,5\n" for i in range(5)))
    result = CliRunner().invoke(app, ["evaluate", str(run), "--split", "test", "--limit", "2", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    said = f"note: {run}'s stored test evaluation of 5 samples will be replaced by this one of 2 once it is done"
    assert said in text, text
    assert len((run / "ranks_test.csv").read_text().splitlines()) == 3


def test_a_run_whose_data_set_is_mid_replace_says_to_run_the_prepare_again(ds, tmp_path):
    """A run whose data set a killed `data prepare` left in .prepare-previous was called "moved or deleted; put it
    back" (review s42): it is named as `baseline fit --data` names it, with the prepare that puts it back."""
    from mgfrec.data.dataset_folder import PREVIOUS

    run = make_run(tmp_path / "run", ds, np.arange(10, dtype=float))
    (ds.root / PREVIOUS).mkdir()
    (ds.root / "manifest.json").rename(ds.root / PREVIOUS / "manifest.json")
    res = invoke(str(run), "--bootstrap", "0")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "a 'mgfrec data prepare' into it was killed while moving its files" in said, said
    assert "moved or deleted" not in said

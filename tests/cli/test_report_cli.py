"""``mgfrec report RUN...``: one table of runs, JSON on stdout, files with --out, --baseline."""

from __future__ import annotations

import json
import os
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


class NextItem:
    """Scores (last item + offset) mod N highest: offset 1 is always right on the data below."""

    name = "cli-report-test-next"

    def __init__(self, num_items: int, offset: int):
        self.num_items, self.offset = num_items, offset

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> NextItem:
        return cls(ds.num_items, int((run_dir / "offset.txt").read_text()))

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        out = torch.zeros(len(histories), self.num_items)
        for row, hist in enumerate(histories):
            out[row, (int(hist[-1]) + self.offset) % self.num_items] = 1.0
        return out


registry().add("retriever", NextItem.name, NextItem)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A project folder with runs/sasrec-cds (a weak model) and runs/mgfrec-cds (an exact one)."""
    ds = cyclic_dataset(tmp_path, n_users=60)
    for name, offset in (("sasrec-cds", 3), ("mgfrec-cds", 1)):
        run = tmp_path / "runs" / name
        write_run_info(run, RunInfo(kind="baseline", model=NextItem.name, data=str(ds.root), data_checksum=ds.checksum))
        (run / "offset.txt").write_text(str(offset))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, ["report", *args])


def test_report_json_compares_with_the_first_run(workdir):
    res = invoke("runs/sasrec-cds", "runs/mgfrec-cds", "--json", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["reference"] == "sasrec-cds" and payload["split"] == "test"
    ref, other = payload["rows"]
    assert ref["run"] == "sasrec-cds" and ref["reference"] is True and ref["vs_reference"] is None
    assert other["hit@5"] == 1.0 and other["ci"]["hit@5"] == [1.0, 1.0]
    assert other["vs_reference"]["ndcg_full"]["significant"] is True
    assert other["vs_reference"]["ndcg_full"]["better"] == "a"
    # the keys docs/evaluation.md lists: a contract with users' scripts, added to and never renamed (review s37)
    top = {"split", "reference", "alpha", "confidence", "bootstrap_samples", "exclude_history", "metrics", "rows"}
    row = {"run", "path", "reference", "method", "split", "samples", "ci", "confidence", "bootstrap_samples"}
    row |= {"seed", "ks", "num_items", "exclude_history", "data_checksum", "vs_reference", "comparison_error"}
    comparison = {"metric", "samples", "mean_a", "mean_b", "diff", "ci", "p_bootstrap", "p_sign", "sign", "alpha"}
    comparison |= {"higher_is_better", "significant", "better"}
    assert set(payload) == top and row | {"stopped", *payload["metrics"]} == set(other) == set(ref)
    assert set(other["vs_reference"]["ndcg_full"]) == comparison
    assert set(other["vs_reference"]["ndcg_full"]["sign"]) == {"wins", "losses", "ties", "p_value"}
    # Runs lacking an evaluation were evaluated and stored on the way.
    assert (workdir / "runs" / "sasrec-cds" / "eval_test.json").is_file()


def test_report_table_out_folder_and_baseline(workdir):
    res = invoke(
        "runs/sasrec-cds", "runs/mgfrec-cds", "--baseline", "runs/mgfrec-cds", "--out", "tables", "--bootstrap", "100"
    )
    assert res.exit_code == 0, res.output
    assert "mgfrec-cds (ref)" in res.stdout and "N_full" in res.stdout and "▼" in res.stdout
    assert sorted(os.listdir(workdir / "tables")) == ["report_test.csv", "report_test.json", "report_test.md"]
    md = (workdir / "tables" / "report_test.md").read_text()
    sasrec_line = next(line for line in md.splitlines() if line.startswith("| sasrec-cds"))
    assert "▼" in sasrec_line and "▲" not in sasrec_line


def test_report_names_set_overrides_it_does_not_read(workdir):
    res = invoke("runs/sasrec-cds", "--json", "--bootstrap", "0", "--set", "retriever.model=pop")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["method"] == NextItem.name
    assert "note: --set retriever.model=pop: mgfrec report reads only eval.* fields" in res.stderr


def test_report_without_evaluating_fails_cleanly(workdir):
    res = invoke("runs/sasrec-cds", "--no-evaluate")
    assert res.exit_code == 2 and "mgfrec evaluate" in res.stderr
    res = invoke("runs/nothing-here", "--json")
    assert res.exit_code == 2 and "not a run folder" in res.stderr and res.stdout == ""


@pytest.mark.reliability
def test_a_damaged_agent_statistics_file_is_one_line_naming_it(workdir):
    # read after the table, outside the command's error handling: a traceback (and "Unknown format code 'g'")
    stats = workdir / "runs" / "mgfrec-cds" / "agent_test.json"
    stats.write_text("[1]")
    result = invoke("runs/sasrec-cds", "runs/mgfrec-cds")
    assert result.exit_code == 2 and "agent_test.json: expected a JSON object" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    stats.write_text(json.dumps({"greedy": False, "temperature": "hot"}))
    result = invoke("runs/sasrec-cds", "runs/mgfrec-cds")
    assert result.exit_code == 0 and "Agent rows: sampled (eval.greedy: false)." in " ".join(result.output.split())


@pytest.mark.reliability
def test_an_out_that_is_a_file_is_named_before_any_run_is_evaluated(workdir):
    """It was 'error: .../run.json: File exists', naming neither --out nor what was wanted, after the evaluation."""
    (workdir / "notes.txt").write_text("mine")
    for out in ("notes.txt", "notes.txt/tables"):
        res = invoke("runs/sasrec-cds", "--out", out, "--bootstrap", "0")
        text = " ".join(res.output.replace("\u2502", " ").split())  # CliRunner shows Click's boxed panel
        blocked = "notes.txt is a file" if out == "notes.txt" else f"{out}: notes.txt is a file"
        assert res.exit_code == 2 and f"Invalid value for '--out': {blocked}; --out names a folder" in text, text
    assert not list((workdir / "runs" / "sasrec-cds").glob("eval_*"))  # nothing was evaluated
    assert (workdir / "notes.txt").read_text() == "mine"


@pytest.mark.reliability
def test_a_run_whose_data_set_was_prepared_again_is_refused_as_evaluate_refuses_it(workdir):
    """`evaluate` refused such a run ("was the data set prepared again?"); `report` showed its stored numbers for
    a data set that no longer existed, with exit 0 and nothing on stderr."""
    first = invoke("runs/sasrec-cds", "runs/mgfrec-cds", "--json", "--bootstrap", "0")
    assert first.exit_code == 0, first.output
    run_json = workdir / "runs" / "sasrec-cds" / "run.json"
    info = json.loads(run_json.read_text(encoding="utf-8"))
    info["data_checksum"] = "0123456789abcdef"  # trained on another data set than the folder now holds
    run_json.write_text(json.dumps(info), encoding="utf-8")
    again = invoke("runs/sasrec-cds", "runs/mgfrec-cds", "--json", "--bootstrap", "0")
    assert again.exit_code == 2 and "was the data set prepared again?" in again.output, again.output
    assert "Traceback" not in again.output

"""Run folders: what a command may write into (``check_output_run``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mgfrec.runs import check_output_run

pytestmark = pytest.mark.reliability


def run_folder(path: Path, kind: str = "agent", model: str = "mgfrec", **extra) -> Path:
    path.mkdir(parents=True)
    info = {"kind": kind, "model": model, "data": "d", "data_checksum": "", "extra": extra}
    (path / "run.json").write_text(json.dumps(info))
    return path


@pytest.mark.parametrize(
    ("make", "producer", "message"),
    [
        (
            lambda p: run_folder(p, "baseline", "pop"),
            "mgfrec-sft",
            "holds a baseline run (mgfrec baseline fit); an SFT",
        ),
        (lambda p: run_folder(p, model="mgfrec-sft"), "mgfrec", "holds an SFT run (mgfrec sft); a GRPO run"),
        (lambda p: run_folder(p, model="mgfrec"), "mgfrec-sft", "holds a GRPO run (mgfrec fit); an SFT run"),
        (lambda p: run_folder(p, trained_run="x"), "mgfrec", "holds a derived run (mgfrec derive)"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("{}")), "mgfrec", "holds a prepared data set"),
        (lambda p: (p.mkdir(), (p / "sweep.json").write_text("{}")), "baseline", "holds a sweep (sweep.json)"),
        (
            lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")),
            "baseline",
            "not empty (notes.txt) and not a run",
        ),
        (lambda p: (p.mkdir(), (p / "fit_start.json").write_text("{}")), "baseline", "holds an unfinished agent run"),
    ],
    ids=["baseline-for-sft", "sft-for-fit", "fit-for-sft", "derived", "data-set", "sweep", "notes", "unfinished-fit"],
)
def test_a_folder_of_something_else_is_refused(tmp_path, make, producer, message):
    """Each was written into: `baseline fit` set a folder's files aside and deleted them, `sft` turned a baseline run
    into an agent run, `fit` deleted an SFT run's policy and replaced a data set's config.yaml."""
    out = tmp_path / "out"
    make(out)
    before = {p.name for p in out.iterdir()}
    with pytest.raises(ValueError, match=re.escape(message)):
        check_output_run(out, producer)
    assert {p.name for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("make", "producer"),
    [
        (lambda p: None, "mgfrec"),
        (lambda p: p.mkdir(), "baseline"),
        (lambda p: run_folder(p, "baseline", "sasrec"), "baseline"),
        (lambda p: run_folder(p, model="mgfrec"), "mgfrec"),
        (lambda p: (p.mkdir(), (p / "fit_start.json").write_text("{}")), "mgfrec"),  # an unfinished fit: resumable
        (lambda p: (p.mkdir(), (p / "config.yaml").write_text("retriever:\n  recall_size: 7\n")), "baseline"),
    ],
    ids=["new", "empty", "same-baseline", "same-fit", "unfinished-fit", "users-config"],
)
def test_a_new_empty_or_same_kind_folder_is_fine(tmp_path, make, producer):
    make(tmp_path / "out")
    check_output_run(tmp_path / "out", producer)


def test_the_data_set_itself_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match=r"is the data set given as --data; give the run a folder of its own"):
        check_output_run(tmp_path / "data" / ".." / "data", "baseline", data=tmp_path / "data")

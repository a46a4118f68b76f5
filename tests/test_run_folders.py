"""Run folders: what a command may write into (``check_output_run``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mgfrec.output_folders import check_output_run

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
        # a fit or an SFT stopped in its recall fit or while its policy loaded: its recall run alone
        (
            lambda p: (p.mkdir(), (p / "recall").mkdir(), (p / "recall" / "run.json").write_text("{}")),
            "baseline",
            "holds an unfinished agent run",
        ),
        # a GRPO fit stopped with Ctrl-C (its checkpoint resumes it) was taken over by sft, and a stopped SFT by fit
        # (review s30)
        (
            lambda p: (p.mkdir(), (p / "fit_start.json").write_text("{}"), (p / "checkpoints").mkdir()),
            "mgfrec-sft",
            "holds a GRPO fit that did not finish (mgfrec fit --resume goes on with it) (checkpoints, fit_start.json)",
        ),
        (
            lambda p: (run_folder(p / "recall", "baseline", "pop"), (p / "sft_metrics.csv").write_text("epoch\n0\n")),
            "mgfrec",
            "holds an SFT run that did not finish (sft_metrics.csv); a GRPO run",
        ),
    ],
    ids=[
        "baseline-for-sft",
        "sft-for-fit",
        "fit-for-sft",
        "derived",
        "data-set",
        "sweep",
        "notes",
        "unfinished-fit",
        "recall-only",
        "stopped-fit-for-sft",
        "stopped-sft-for-fit",
    ],
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


def resolved(path: Path, *names: str) -> Path:
    """A folder with a resolved config.yaml (what every command writes) and these empty files or folders."""
    from mgfrec.config.load import write_resolved
    from mgfrec.config.schema import MGFRecConfig

    path.mkdir(parents=True, exist_ok=True)
    write_resolved(MGFRecConfig(), path)
    for name in names:
        (path / name).mkdir() if "." not in name else (path / name).write_text("")
    return path


def test_a_demo_or_project_folder_is_not_one_run(tmp_path):
    """Its resolved config.yaml made it pass as a run: `baseline fit --out runs/demo` set the data set and every
    run aside and deleted them."""
    demo = resolved(tmp_path / "demo", "demo.json")
    run_folder(demo / "sasrec", "baseline", "sasrec")
    with pytest.raises(ValueError, match=re.escape("holds a demo's output folder (demo.json)")):
        check_output_run(demo, "baseline")
    (demo / "demo.json").unlink()
    with pytest.raises(ValueError, match=re.escape("holds other runs or data sets (sasrec)")):
        check_output_run(demo, "mgfrec")


def test_unfinished_runs_of_the_same_command_can_be_run_again(tmp_path):
    """A killed SASRec fit leaves checkpoints/ (it was taken for an agent run's); a failed first sft leaves recall/
    and sft_metrics.csv before its config.yaml (it was "not a run folder")."""
    check_output_run(resolved(tmp_path / "sasrec", "checkpoints", "metrics.csv"), "baseline")
    sft = tmp_path / "sft"
    run_folder(sft / "recall", "baseline", "sasrec")
    (sft / "sft_metrics.csv").write_text("epoch\n0\n")
    check_output_run(sft, "mgfrec-sft")
    hybrid = resolved(tmp_path / "hybrid", "hybrid.json")
    run_folder(hybrid / "collaborative", "baseline", "sasrec")
    check_output_run(hybrid, "baseline")


@pytest.mark.parametrize(
    "names",
    [("notes.md", "analysis"), ("metrics.csv", "plot.py")],
    ids=["resolved-config", "metrics"],
)
def test_run_marks_beside_a_users_own_files_still_make_a_run_folder(tmp_path, names):
    """A folder with a run's marks and a user's notes is a run folder for every command: each replaces only what
    runs write (is_run_output), so the notes stay (tests/retrievers/test_fit_keeps_user_files.py runs it)."""
    out = resolved(tmp_path / "myexp", *names)
    # metrics.csv is a fit's (GRPO's or a baseline's): sft refuses it as a fit that did not finish
    for producer in ("baseline", "mgfrec") if "metrics.csv" in names else ("baseline", "mgfrec-sft", "mgfrec"):
        check_output_run(out, producer)
    from mgfrec.output_folders import is_run_output

    assert [is_run_output(n) for n in ("notes.md", "analysis", "plot.py", "config.yaml", "eval_test.json")] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert is_run_output("itemknn.npz", ("*.npz",)) and not is_run_output("itemknn.npz")


def test_everything_a_killed_run_leaves_is_recognised(tmp_path):
    """What each command writes before its run.json (checked on real runs: a SASRec, a hybrid, an SFT, a GRPO fit
    with its evaluation and user agent cache) still passes as the same command's unfinished run."""
    written = ["model.pt", "checkpoints", "metrics.csv", "recall_valid.npz", "eval_test.json", "ranks_test.csv"]
    check_output_run(resolved(tmp_path / "sasrec", *written), "baseline")
    fit = ["fit_start.json", "policy", "best_policy", "checkpoints", "metrics.csv", "tensorboard"]
    fit += ["user_agent_cache.sqlite", "user_agent_cache.sqlite-wal", "agent_test.json", "agent_test_samples.csv"]
    check_output_run(resolved(tmp_path / "fit", *fit), "mgfrec")


def test_an_unfinished_fit_is_named_as_one_not_as_no_run(tmp_path):
    """evaluate, derive and fit --init said "not a run folder ...; train one" of a fit killed half-way, which a
    --resume finishes."""
    from mgfrec.runs import read_run_info

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "fit_start.json").write_text("{}")
    # an empty checkpoints/ (the fit failed before its first one, a full disk): --resume cannot finish it (review s28)
    with pytest.raises(FileNotFoundError, match=r"\(no run.json yet\) and no checkpoint yet; start it again with"):
        read_run_info(tmp_path)
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"an unfinished fit \(no run.json yet\) \(its checkpoint is there\); "):
        read_run_info(tmp_path)


@pytest.mark.reliability
def test_a_result_that_cannot_be_written_keeps_the_earlier_one_and_names_the_file(tmp_path, monkeypatch):
    """A full disk (ulimit -f) truncated a valid ranks_test.csv in place, and said only "[Errno 27] File too large"
    (review s28)."""
    import numpy as np
    import pandas as pd

    from mgfrec.ranking.results import EvalResult

    def result(ranks):
        return EvalResult.from_ranks(np.array(ranks), np.arange(len(ranks)), split="test", method="m", num_items=50)

    result([1, 2, 3]).save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = pd.DataFrame.to_csv

    def full(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        raise OSError(27, "File too large")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(OSError, match=r"File too large: '.*ranks_test.csv'"):
        result([4, 5, 6, 7]).save(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_metrics_csv_writes_its_step_as_a_whole_number(tmp_path):
    """A fit's metrics.csv wrote its step column as 0.0, 1.0, ...; read back (a resume) it stays the same row."""
    from mgfrec.runs import read_metrics, write_metrics

    path = tmp_path / "metrics.csv"
    write_metrics(path, [{"step": 0.0, "valid/ndcg_full": 0.1}, {"step": 1.0, "reward/mean": 0.25}])
    assert path.read_text(encoding="utf-8").splitlines()[1:] == ["0,0.1,", "1,,0.25"]
    assert read_metrics(path, before=1) == [{"step": 0.0, "valid/ndcg_full": 0.1}, {"step": 1.0, "reward/mean": 0.25}]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "runz", "not a run folder (no such file or folder)"),
        (lambda p: p / "run" / "run.json", "not a run folder (a file; give the run folder it is in ("),
        (lambda p: p / "data", "not a run folder (a prepared data set (manifest.json); give a run made on it)"),
        (lambda p: p / "empty", "not a run folder (no run.json; train one with"),
        # an SFT re-run stopped mid-training (its earlier run retired), or an agent run stopped after its recall fit
        (lambda p: p / "sft", "sft: an SFT that did not finish (no run.json: it stopped before its policy was saved"),
        (lambda p: p / "agent", "agent: an agent run that did not finish (no run.json: it stopped before its policy"),
        # "train one" of a folder of finished runs (review s29)
        (lambda p: p / "sweep", "(a sweep (sweep.json); give its cell folders, e.g. "),
        (lambda p: p / "demo", "not a run folder (a demo's output folder (demo.json); give the run folders in it"),
    ],
)
def test_what_is_not_a_run_is_named_for_what_it_is(tmp_path, make, words):
    # a typo, run.json itself and a data set were all "not a run folder (no run.json)"
    from mgfrec.runs import read_run_info

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "sft" / "policy").mkdir(parents=True)
    (tmp_path / "sft" / "sft_metrics.csv").write_text("epoch\n0\n")
    (tmp_path / "agent" / "recall").mkdir(parents=True)
    (tmp_path / "agent" / "recall" / "run.json").write_text("{}")
    (tmp_path / "sweep" / "agent.max_groundings=1").mkdir(parents=True)
    (tmp_path / "sweep" / "sweep.json").write_text("{}")
    (tmp_path / "sweep" / "agent.max_groundings=1" / "run.json").write_text("{}")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as err:
        read_run_info(make(tmp_path))
    assert words in str(err.value)


def test_a_runs_own_recall_run_or_collaborative_model_is_refused_as_out(tmp_path):
    """`baseline fit --out HYBRID/collaborative` replaced the model the hybrid's blend weight was tuned on, and report
    gave the hybrid's stored results as current (review s30); a run's recall run likewise."""
    from mgfrec.output_folders import check_not_own_subrun

    hybrid = run_folder(tmp_path / "hybrid", "baseline", "hybrid")
    with pytest.raises(ValueError, match=r"the collaborative model of the run in .*hybrid, which was fitted or tuned"):
        check_not_own_subrun(hybrid / "collaborative")
    stopped = tmp_path / "stopped"  # an unfinished fit's recall run too
    stopped.mkdir()
    (stopped / "fit_start.json").write_text("{}")
    with pytest.raises(ValueError, match=r"the recall run of the run in .*stopped"):
        check_not_own_subrun(stopped / "recall")
    check_not_own_subrun(tmp_path / "mine" / "recall")  # a folder named so in no run is anyone's
    check_not_own_subrun(hybrid / "other")
    # a recall run of one's own in a folder of runs: refitting it, or a collaborative model beside it, was refused
    # as "the recall run of the run in runs/" (the review of this change)
    runs = tmp_path / "runs"
    run_folder(runs / "recall", "baseline", "pop")
    check_not_own_subrun(runs / "recall")
    check_not_own_subrun(runs / "collaborative")
    # a killed baseline fit's marks are not called a GRPO fit's
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "metrics.csv").write_text("epoch\n")
    with pytest.raises(ValueError, match=r"holds a baseline fit that did not finish \(metrics.csv\)"):
        check_output_run(killed, "mgfrec-sft")


def test_a_baseline_fit_running_now_is_not_called_killed(tmp_path):
    """evaluate during a `baseline fit` into the run's folder said the fit "did not finish (killed)" and advised
    fitting into it again, which was refused as "another mgfrec baseline fit is running in it" (review s30)."""
    import subprocess
    import sys

    from mgfrec.runs import read_run_info

    run_folder(tmp_path / ".previous-fit", "baseline", "pop")
    with pytest.raises(FileNotFoundError, match=r"did not finish \(killed\)"):
        read_run_info(tmp_path)
    holder = subprocess.Popen(  # another process holding the fit's lock on the folder, as baseline fit does
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom mgfrec.locks import only_one_in\nwith only_one_in(sys.argv[1], 'mgfrec baseline "
            "fit'):\n    print('held', flush=True)\n    time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileNotFoundError, match=r"a baseline fit is running in it now .*; wait for it to end"):
            read_run_info(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(FileNotFoundError, match=r"did not finish \(killed\)"):
        read_run_info(tmp_path)


@pytest.mark.reliability
def test_a_command_refused_by_the_lock_leaves_the_holders_new_folder(tmp_path):
    """Two commands starting into one new folder both saw it missing; the one the other's lock refused removed the
    folder the other was about to write in, and both failed (review s42). A folder nobody holds is still removed."""
    import fcntl
    import os

    from mgfrec.output_folders import removed_if_left_empty

    folder = tmp_path / "new"
    with pytest.raises(ValueError, match="refused"):
        with removed_if_left_empty(folder):
            folder.mkdir()
            holder = os.open(folder, os.O_RDONLY)  # the other command's lock
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise ValueError("refused")
    assert folder.is_dir()
    os.close(holder)
    folder.rmdir()
    with pytest.raises(ValueError, match="refused"):
        with removed_if_left_empty(folder):
            folder.mkdir()
            raise ValueError("refused")
    assert not folder.exists()


@pytest.mark.reliability
def test_a_readers_probe_does_not_refuse_a_writer_starting(tmp_path):
    """A reader's probe (held_by_another) holds a shared lock for an instant: a writer starting then was refused as
    if another command were running (review s42). The writer tries again for a moment; a real holder still refuses."""
    import fcntl
    import os
    import threading

    from mgfrec.locks import PROBE_WAIT_S, only_one_in

    probe = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.2, lambda: fcntl.flock(probe, fcntl.LOCK_UN)).start()
    with only_one_in(tmp_path, "mgfrec baseline fit"):
        pass
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held throughout: refused after the wait
    assert PROBE_WAIT_S <= 2
    with pytest.raises(ValueError, match="another mgfrec baseline fit is running in it"):
        with only_one_in(tmp_path, "mgfrec baseline fit"):
            pass
    os.close(probe)

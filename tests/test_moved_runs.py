"""A run folder moved together with what it names (a whole demo folder) still finds them: ``run.json`` records each
path also relative to the run (``extra.relative_paths``), read when the recorded absolute path is gone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import PreparedDataset, prepare
from mgfrec.runs import RunInfo, read_run_info, recall_run_of, write_run_info

pytestmark = pytest.mark.reliability


def mgfrec(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def demo(tmp_path):
    root = tmp_path / "demo"
    opts = {"n_users": 30, "n_items": 40, "n_artists": 10, "max_length": 5}
    ds = prepare(DataConfig(source="synthetic", options=opts), root / "data")
    done = mgfrec("baseline", "fit", "--model", "pop", "--data", root / "data", "--out", root / "pop")
    assert done.returncode == 0, done.stderr
    agent = RunInfo("agent", "mgfrec", str(ds.root.resolve()), ds.checksum, extra={"recall_run": str(root / "pop")})
    write_run_info(root / "agent", agent)
    (root / "agent" / "policy").mkdir()
    derived = {"trained_run": str(root / "agent"), "policy": str(root / "agent" / "policy"), "recall_run": "x"}
    write_run_info(root / "derived", RunInfo("agent", "mgfrec", str(ds.root.resolve()), ds.checksum, extra=derived))
    return root


def test_a_moved_demo_folder_reads_its_own_data_and_recall_run(demo, tmp_path):
    moved = tmp_path / "elsewhere" / "demo"
    moved.parent.mkdir()
    shutil.move(demo, moved)
    info = read_run_info(moved / "agent")
    assert info.data == str((moved / "data").resolve())
    assert recall_run_of(moved / "agent", info) == str((moved / "pop").resolve())
    assert read_run_info(moved / "pop").data == str((moved / "data").resolve())
    extra = read_run_info(moved / "derived").extra
    assert extra["trained_run"] == str((moved / "agent").resolve()) and extra["recall_run"] == "x"  # kept as given
    assert extra["policy"] == str((moved / "agent" / "policy").resolve())
    title = PreparedDataset(moved / "data").titles[0]
    shown = mgfrec("recommend", moved / "pop", "--history", title, "--json")  # the baseline run, end to end
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["top"]


def test_a_recorded_path_that_still_exists_wins_and_an_old_run_file_without_them_is_as_before(demo, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    assert read_run_info(copy / "pop").data == str((demo / "data").resolve())  # the original is still there
    payload = json.loads((demo / "pop" / "run.json").read_text(encoding="utf-8"))
    assert payload["extra"]["relative_paths"] == {"data": "../data"}
    del payload["extra"]["relative_paths"]  # a run written before this
    (copy / "pop" / "run.json").write_text(json.dumps(payload), encoding="utf-8")
    shutil.rmtree(demo)
    assert read_run_info(copy / "pop").data == payload["data"]  # not found, as before: the message names the field
    shown = mgfrec("recommend", copy / "pop", "--history", "anything")
    assert shown.returncode != 0 and "field 'data'" in shown.stderr and "Traceback" not in shown.stderr


def test_a_copied_agent_run_reads_its_own_recall_run_not_the_originals(demo, tmp_path):
    """`cp -r` of an agent run read the original's recall run (run.json holds absolute paths): refitting the
    original's recall model refused the copy ("train the agent again") though its own recall/ was whole (review
    s33). A path that was inside the run is the run's own; one outside it (the data set) is read as recorded."""
    original = demo / "agent"
    shutil.copytree(demo / "pop", original / "recall")
    info = read_run_info(original)
    agent = RunInfo("agent", "mgfrec", info.data, info.data_checksum, extra={"recall_run": str(original / "recall")})
    write_run_info(original, agent)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    copied = read_run_info(copy)
    assert recall_run_of(copy, copied) == str((copy / "recall").resolve())
    assert copied.data == str((demo / "data").resolve())  # outside the run: the recorded path, still there
    assert recall_run_of(original, read_run_info(original)) == str(original / "recall")  # the original's own


def test_a_moved_init_run_is_compared_by_its_own_template_copy(tmp_path):
    """`fit --init MOVED` with the template the run was trained on noted "trained under other settings than this
    fit's (agent.template OLD/prompts/... -> ...)": config.yaml names the copy where the run was made, gone after the
    move (note s33). The run's own copy is compared now, and shown where it differs."""
    from mgfrec.config.load import load_config, write_resolved
    from mgfrec.rl.fit import init_differences
    from mgfrec.text.prompts import keep_run_prompts

    template = tmp_path / "system.txt"
    template.write_text("You recommend CDs. Think, ground, answer.\n", encoding="utf-8")
    cfg = load_config(None, [f"agent.template={template}"])
    made = tmp_path / "made" / "sft"
    made.mkdir(parents=True)
    write_resolved(keep_run_prompts(cfg, made), made)  # as a run writes them: the copy named, absolute
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "made", moved)
    assert init_differences(moved / "sft", cfg) == []  # the same text: no note
    template.write_text("Another prompt.\n", encoding="utf-8")
    ((field, old, new),) = init_differences(moved / "sft", cfg)
    assert field == "agent.template" and old == str((moved / "sft" / "prompts" / "recommendation_agent.txt").resolve())
    assert new == str(template)

"""``mgfrec demo --out``: a folder holding something other than a demo is refused in one line before anything is
written (the demo replaced a run's config.yaml, so the run recommended with another recall size, and mixed its
data set and runs into a baseline's folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgfrec.cli.main import app

pytestmark = pytest.mark.reliability


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"kind": "agent", "model": "mgfrec", "data": "d", "extra": {}}))
    (path / "config.yaml").write_text("agent:\n  recall_size: 5\n")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (run_folder, "holds a run (run.json); give the demo a folder of its own"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("{}")), "holds a prepared data set (manifest.json)"),
        (lambda p: (p.mkdir(), (p / "sweep.json").write_text("{}")), "holds a sweep (sweep.json)"),
        (
            lambda p: (p.mkdir(), (p / "data").mkdir(), (p / "notes.md").write_text("mine")),
            "not empty (data, notes.md) and not a demo's folder (no demo.json)",
        ),
    ],
    ids=["run", "data-set", "sweep", "project"],  # a file: every --out's check (test_cli_errors.py)
)
def test_an_out_of_another_kind_is_refused_before_anything_is_written(tmp_path, make, message):
    out = tmp_path / "out"
    make(out)
    before = snapshot(out) if out.is_dir() else out.read_bytes()
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and text.count("error:") == 1 and "Traceback" not in text, text
    assert f"--out {out}: {message}" in text, text
    assert (snapshot(out) if out.is_dir() else out.read_bytes()) == before


def test_the_library_check_refuses_a_file_too(tmp_path):
    from mgfrec.demo import check_demo_output

    (tmp_path / "out").write_text("a file")
    with pytest.raises(ValueError, match=r"a file; the demo writes a folder"):
        check_demo_output(tmp_path / "out")


def test_an_empty_folder_or_a_users_config_alone_is_a_new_demo(tmp_path):
    from mgfrec.demo import check_demo_output

    check_demo_output(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_demo_output(tmp_path / "empty")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text("retriever:\n  max_epochs: 2\n")
    check_demo_output(tmp_path / "cfg")
    (tmp_path / "cfg" / "demo.json").write_text("{}")  # an earlier (or interrupted) demo: its stages are reused
    (tmp_path / "cfg" / "sasrec").mkdir()
    check_demo_output(tmp_path / "cfg")


def test_a_data_folder_the_demo_cannot_read_is_named_with_what_it_can(tmp_path):
    """A prepared data set was "cannot tell its format ... pass --source NAME", a flag the demo does not have; an
    empty --data read the current folder."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    prepared = tmp_path / "prepared"
    prepare(DataConfig(source="synthetic", options={"n_users": 30, "n_items": 40, "n_artists": 10}), prepared)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "log.txt").write_text("x")
    cases = [
        (prepared, f"--data {prepared}: a prepared data set (mgfrec data prepare); give the raw folder"),
        ("", "--data is empty; give a data source ("),
        (tmp_path / "odd", "the demo reads csv and amazon2023 folders, or a data source's name (--data NAME)"),
    ]
    for data, message in cases:
        result = CliRunner().invoke(app, ["demo", "--data", str(data), "--out", str(tmp_path / "demo")])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and text.count("error:") == 1 and message in text, text
        assert "--source" not in text
    assert not (tmp_path / "demo").exists()


def test_a_second_demo_into_a_folder_in_use_is_refused(tmp_path):
    """Two demos into one folder trained into the same run folders at once, and both exited 0 reporting mixed
    results (review s26): the folder is locked for the whole demo, as a sweep's is."""
    from mgfrec.config.load import load_config
    from mgfrec.demo import DemoOptions, run_demo
    from mgfrec.locks import only_one_in

    out = tmp_path / "demo"
    out.mkdir()
    with only_one_in(out, "mgfrec demo"):  # another demo running in it
        with pytest.raises(ValueError, match=r"another mgfrec demo is running in it; wait for it to end"):
            run_demo(load_config(None, []), out, options=DemoOptions(agent=False), say=lambda _: None)
    assert list(out.iterdir()) == []  # nothing written: not even demo.json


@pytest.mark.parametrize(
    ("value", "message"),
    [("pop,pop", "--baselines names pop twice; name each retriever once"), (",", "--baselines ',' names no retriever")],
)
def test_baselines_named_twice_or_not_at_all_are_one_line(tmp_path, value, message):
    """``--baselines pop,pop`` fitted everything, then the report refused "a run folder is named twice" without
    naming the flag; ``,`` said "nothing named is not a retriever" (review s26)."""
    result = CliRunner().invoke(app, ["demo", "--baselines", value, "--out", str(tmp_path / "d"), "--no-agent"])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("policy.model=preset:tiny", "--set policy.model=preset:tiny: the demo sets policy.model with --policy"),
        ("agent.recall_prior=0", "the demo sets agent.recall_prior with --recall-prior (4.0); pass --recall-prior 0"),
        ("agent={recall_prior: 0}", "pass --recall-prior 0 to use it"),
    ],
)
def test_a_set_of_a_field_a_demo_flag_sets_is_refused_naming_the_flag(tmp_path, given, said):
    """`--set agent.recall_prior=0` (the schema's default) was taken as "not given" and the demo ran with its prior
    of 4 without a word; the same for `--set policy.model=preset:tiny` (review s28)."""
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--set", given])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and said in text and "Traceback" not in text, text
    assert not (tmp_path / "demo").exists()
    from mgfrec.cli.demo import _check_agent_sets

    flags = {"agent.recall_prior": ("--recall-prior", 4.0), "policy.model": ("--policy", "preset:tiny-items")}
    _check_agent_sets(["agent.recall_prior=4", "policy.model=preset:tiny-items", "agent.max_groundings=2"], flags)
    # without the agent stages the flags set nothing: policy.model is BIGRec's, given by --set (review s28)
    bigrec = CliRunner().invoke(
        app, ["demo", "--no-agent", "--out", str(tmp_path / "d3"), "--set", given, "--data", "/no/such"]
    )
    assert "the demo sets" not in bigrec.output and "/no/such" in bigrec.output, bigrec.output


def test_a_typed_retriever_epochs_beside_a_set_of_the_same_field_is_refused(tmp_path):
    """``--retriever-epochs 3 --set retriever.max_epochs=5``: the --set won without a word, while docs/cli.md says a
    flag and a --set giving one field two values are refused (review s28). Without the typed flag, --set applies."""
    given = ["demo", "--no-agent", "--out", str(tmp_path / "d"), "--set", "retriever.max_epochs=5"]
    result = CliRunner().invoke(app, [*given, "--retriever-epochs", "3"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert "--retriever-epochs 3 and --set retriever.max_epochs=5 set retriever.max_epochs to two values" in text
    assert not (tmp_path / "d").exists()
    same = CliRunner().invoke(app, [*given, "--retriever-epochs", "5", "--data", "/no/such"])
    untyped = CliRunner().invoke(app, [*given, "--data", "/no/such"])
    for other in (same, untyped):  # refused later, for the data folder: no clash
        assert "two values" not in other.output and "/no/such" in other.output, other.output


@pytest.mark.parametrize(
    ("policy", "said"),
    [
        ("preset:nope", "policy.model: unknown preset 'preset:nope'; presets are preset:tiny,"),
        ("nope:zzz", "policy.model (--policy): 'nope:zzz' is not a preset, an existing folder or a hub id"),
    ],
)
def test_a_policy_that_cannot_be_loaded_is_refused_before_any_stage(tmp_path, policy, said):
    """`demo --policy preset:nope` prepared the data, built the index and fitted every baseline (minutes on CDs)
    before the SFT stage found the typo, and the corrected rerun was then refused as "made with other settings
    (--policy)" (review s33). Without the agent stages the flag sets nothing and is not looked at."""
    result = CliRunner().invoke(app, ["demo", "--policy", policy, "--out", str(tmp_path / "demo")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and said in text, text
    assert "Traceback" not in text and not (tmp_path / "demo").exists()
    unused = CliRunner().invoke(
        app, ["demo", "--no-agent", "--policy", policy, "--out", str(tmp_path / "d"), "--data", "/no/such"]
    )
    assert "--policy" not in unused.output and "/no/such" in unused.output, unused.output


def test_a_stop_in_a_later_stage_says_the_finished_ones_are_kept(tmp_path, monkeypatch):
    """Ctrl-C during SFT or GRPO printed "stopped by the user (Ctrl-C)" alone, where a baseline's stop said to rerun
    the same command to go on (review s40); a baseline's stop, which says it itself, is not said twice."""
    import mgfrec.demo as demo_mod

    def stopped_in(said: bool):
        def run_demo(*args, **kwargs):
            stop = KeyboardInterrupt()
            if said:
                stop.demo_said = True
            raise stop

        return run_demo

    for said in (False, True):
        monkeypatch.setattr(demo_mod, "run_demo", stopped_in(said))
        result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--no-agent"])
        text = " ".join(result.output.split())
        assert result.exit_code == 130 and "stopped by the user (Ctrl-C)" in text, text
        assert ("rerun the same command to go on (the stopped stage runs again)" in text) is not said, text

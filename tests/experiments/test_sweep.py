"""Sweeps and ablations: grid parsing, the cartesian product, cell configs validated by path, failure
recording, resumption, the summary files, and the CLI with an injected cell runner."""

from __future__ import annotations

import csv
import json
import re

import pytest
import typer
from typer.testing import CliRunner

import mgfrec.experiments.sweep as sweep_mod
from mgfrec.cli.sweep import sweep as sweep_command
from mgfrec.config.load import ConfigError, load_config, write_resolved
from mgfrec.config.schema import MGFRecConfig
from mgfrec.experiments.ablations import ABLATIONS, apply_ablation, apply_overrides
from mgfrec.experiments.sweep import (
    build_grid,
    cell_config,
    cell_name,
    grid_cells,
    parse_grid_flag,
    read_sweep,
    run_sweep,
)

# ---- ablations ----------------------------------------------------------------------------------------


def test_ablation_presets_change_exactly_their_field():
    base = MGFRecConfig()
    assert base.agent.max_groundings != 1 and base.user_agent.backend != "none" and base.agent.use_recall
    assert apply_ablation(base, "no-multi-grounding").agent.max_groundings == 1
    assert apply_ablation(base, "no-feedback").user_agent.backend == "none"
    assert apply_ablation(base, "no-recall").agent.use_recall is False
    assert apply_ablation(base, "full") == base
    ablated = apply_ablation(base, "no-recall")
    assert ablated.model_copy(update={"agent": base.agent}) == base  # nothing else moved
    assert set(ABLATIONS) == {"full", "no-multi-grounding", "no-feedback", "no-recall"}


def test_unknown_ablation_and_bad_override_are_refused_by_name():
    with pytest.raises(ValueError, match="no-such.*full, no-multi-grounding"):
        apply_ablation(MGFRecConfig(), "no-such")
    with pytest.raises(ConfigError, match="agent.max_groundingz"):
        apply_overrides(MGFRecConfig(), ["agent.max_groundingz=2"])


# ---- grids --------------------------------------------------------------------------------------------


def test_grid_flag_values_are_yaml_scalars():
    assert parse_grid_flag("agent.max_groundings=1,3,6,9") == (
        "agent.max_groundings",
        [1, 3, 6, 9],
    )
    assert parse_grid_flag("grpo.kl_beta=0, 0.04") == ("grpo.kl_beta", [0, 0.04])
    # YAML reads 1e-3 (no dot) as text: a number all the same, so 1e-3 and 0.001 are one value, not two cells
    assert parse_grid_flag("trainer.lr=1e-3,0.001,2E+4,-5e-1,abc") == ("trainer.lr", [1e-3, 1e-3, 2e4, -0.5, "abc"])
    assert parse_grid_flag("agent.use_recall=true,false") == (
        "agent.use_recall",
        [True, False],
    )
    assert parse_grid_flag("user_agent.backend=none,simulated") == (
        "user_agent.backend",
        ["none", "simulated"],
    )
    with pytest.raises(ConfigError, match="section.field=value1"):
        parse_grid_flag("agent.max_groundings")
    # an empty value made a null cell (feedback never cut, an uncapped fit) without a word (review s29)
    for text in ("agent.max_feedback_tokens=64,", "trainer.max_steps=1,,3"):
        with pytest.raises(ConfigError, match=r"an empty value in .*; write null for a null value"):
            parse_grid_flag(text)
    assert parse_grid_flag("agent.max_feedback_tokens=64,null") == ("agent.max_feedback_tokens", [64, None])
    # read as --set reads a value: the text after a '#' was cut away (review s29)
    assert parse_grid_flag("data.path=/tmp/a #b,/tmp/c") == ("data.path", ["/tmp/a #b", "/tmp/c"])


@pytest.mark.reliability
def test_a_grid_file_field_without_a_value_is_refused_not_a_null_cell(tmp_path):
    """`agent.max_feedback_tokens:` with nothing after it trained a null cell (an uncapped fit) without a word, as
    an empty --grid value did before it was refused (review s33)."""
    path = tmp_path / "grid.yaml"
    path.write_text("agent.max_groundings: [1, 3]\nagent.max_feedback_tokens:\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        build_grid([], path)
    assert str(info.value) == (
        f"--grid-file {path}: field 'agent.max_feedback_tokens' has no value; write [null] for a null cell"
    )
    path.write_text("agent.max_feedback_tokens: [64, null]\n", encoding="utf-8")
    assert build_grid([], path) == {"agent.max_feedback_tokens": [64, None]}


def test_grid_file_and_flags_make_the_cartesian_product(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("agent.max_groundings: [1, 3]\ngrpo.kl_beta: 0.04\n", encoding="utf-8")
    grid = build_grid(["grounding.top_k=2,5"], path)
    assert grid == {
        "agent.max_groundings": [1, 3],
        "grpo.kl_beta": [0.04],
        "grounding.top_k": [2, 5],
    }
    cells = grid_cells(grid)
    assert len(cells) == 4
    # a flag replaces the file's values of its field, as documented; a note says so (it went without a word)
    said: list[str] = []
    assert build_grid(["agent.max_groundings=2"], path, say=said.append)["agent.max_groundings"] == [2]
    assert said == [f"note: --grid agent.max_groundings replaces the values --grid-file {path} gives it (1, 3)"]
    first = "agent.max_groundings=1,grpo.kl_beta=0.04,grounding.top_k=2"
    assert cells[0].name == first
    assert {(c.values["agent.max_groundings"], c.values["grounding.top_k"]) for c in cells} == {
        (1, 2),
        (1, 5),
        (3, 2),
        (3, 5),
    }
    with pytest.raises(ConfigError, match="no grid"):
        build_grid([], None)


def test_a_grid_flag_given_twice_for_one_field_is_refused():
    """`--grid trainer.devices=2 --grid trainer.devices=3` ran one cell: the first flag's values were lost."""
    with pytest.raises(ConfigError, match=r"--grid trainer.devices is given twice; give all its values in one flag"):
        build_grid(["trainer.devices=2", "agent.max_groundings=1", "trainer.devices=3"], None)


def test_a_rerun_with_another_grid_says_so_and_reports_only_its_cells(tmp_path):
    said: list[str] = []
    run_sweep(MGFRecConfig(), {"agent.max_groundings": [1, 3]}, tmp_path, FakeCells())
    rows = run_sweep(MGFRecConfig(), {"agent.max_groundings": [3, 6]}, tmp_path, FakeCells(), say=said.append)
    assert [r["cell"] for r in rows] == ["agent.max_groundings=3", "agent.max_groundings=6"]
    assert said[0] == (
        f"note: {tmp_path / 'sweep.json'} held another grid (agent.max_groundings=1,3); it now holds this one. "
        "Cells outside it stay on disk and are left out of the summary and the figures"
    )


def test_cell_names_are_safe_folder_names():
    assert cell_name({"policy.model": "preset:tiny"}) == "policy.model=preset_tiny"
    assert "/" not in cell_name({"agent.template": "a/b c.txt"})
    assert cell_name({"agent.use_recall": False}) == "agent.use_recall=false"


def test_cell_config_sets_values_and_refuses_a_bad_field_path():
    cfg = cell_config(MGFRecConfig(), grid_cells({"agent.max_groundings": [3]})[0])
    assert cfg.agent.max_groundings == 3
    with pytest.raises(ConfigError, match="agent.max_groundingz"):
        cell_config(MGFRecConfig(), grid_cells({"agent.max_groundingz": [3]})[0])
    with pytest.raises(ConfigError, match="agent.max_groundings"):  # a wrong value is refused by path too
        cell_config(MGFRecConfig(), grid_cells({"agent.max_groundings": [-1]})[0])


@pytest.mark.reliability
def test_a_grid_whose_values_are_not_a_list_is_refused_before_any_cell(tmp_path):
    """run_sweep(cfg, {"grpo.group_size": "48"}, ...) ran the cells 4 and 8 without a word, and an empty list ran
    none (review s35)."""
    for grid, said in (
        ({"grpo.group_size": "48"}, r"grid\['grpo.group_size'\]: give a list of values, not str '48'"),
        ({"grpo.kl_beta": 0.1}, r"grid\['grpo.kl_beta'\]: give a list of values, not float"),
        ({"grpo.kl_beta": []}, r"grid\['grpo.kl_beta'\]: no values"),
        ({}, "grid: give a mapping of at least one field"),
    ):
        with pytest.raises(ConfigError, match=said):
            run_sweep(MGFRecConfig(), grid, tmp_path / "sweep", FakeCells())
    assert not (tmp_path / "sweep").exists()


def test_values_whose_folders_would_collide_are_both_named():
    """`http://a/b` and `http://a_b` are distinct values with one folder name: "make the values distinct" named
    neither, nor why (review s40)."""
    with pytest.raises(ConfigError) as err:
        grid_cells({"user_agent.base_url": ["http://a/b", "http://a_b"]})
    said = str(err.value)
    assert "the cells user_agent.base_url=http://a/b and user_agent.base_url=http://a_b would share the folder" in said
    assert "any other character becoming '_'" in said


def test_one_template_named_two_ways_is_one_cell(tmp_path, monkeypatch):
    """`--grid agent.template=t.txt,./t.txt` (or a byte-identical copy) trained twice and drew one config as two
    points; only a rerun refused the pair (review s40). Two files of other text are two cells."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("Think, then <ground> or <answer>.", encoding="utf-8")
    (tmp_path / "copy.txt").write_text("Think, then <ground> or <answer>.", encoding="utf-8")
    (tmp_path / "other.txt").write_text("Think hard, then <ground> or <answer>.", encoding="utf-8")
    for values in (["t.txt", "./t.txt"], ["t.txt", "copy.txt"]):
        with pytest.raises(ConfigError, match="give the same config; drop one of the values"):
            run_sweep(MGFRecConfig(), {"agent.template": values}, tmp_path / "sweep", FakeCells())
    assert not (tmp_path / "sweep").exists()
    calls = FakeCells()
    run_sweep(MGFRecConfig(), {"agent.template": ["t.txt", "other.txt"]}, tmp_path / "sweep", calls)
    assert len(calls.calls) == 2


# ---- the orchestration, with a cheap cell runner that writes what a real cell writes --------------------


class FakeCells:
    """Writes config/run/eval/agent files like fit + evaluate; fails on the listed max_groundings values."""

    def __init__(self, fail_on=()):
        self.fail_on, self.calls = set(fail_on), []

    def __call__(self, cfg, out):
        g = cfg.agent.max_groundings
        self.calls.append(g)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(f"agent:\n  max_groundings: {g}\n", encoding="utf-8")
        if g in self.fail_on:
            raise RuntimeError(f"out of memory at max_groundings={g}")
        ndcg = 0.1 + 0.01 * g
        (out / "eval_valid.json").write_text(
            json.dumps(
                {
                    "ndcg_full": ndcg,
                    "ndcg@10": ndcg / 2,
                    "mean_rank": 50.0 - g,
                    "ci": {"ndcg_full": [ndcg - 0.01, ndcg + 0.01], "ndcg@10": [ndcg / 2 - 0.01, ndcg / 2 + 0.01]},
                }
            )
        )
        (out / "agent_valid.json").write_text(json.dumps({"format_valid": 0.9, "mean_groundings": g / 2}))
        (out / "ranks_valid.csv").write_text(f"sample_id,target,rank\n0,1,{40 - g}\n1,2,{60 - g}\n")
        (out / "run.json").write_text("{}")
        return sweep_mod.cell_summary(out, "valid")


def test_failed_cell_is_recorded_the_sweep_goes_on_and_a_rerun_retries_only_it(
    tmp_path,
):
    grid = {"agent.max_groundings": [1, 3, 6]}
    first = FakeCells(fail_on={3})
    rows = run_sweep(MGFRecConfig(), grid, tmp_path, first)
    assert first.calls == [1, 3, 6]  # the failure at 3 did not stop 6
    record = read_sweep(tmp_path)
    failed = record["cells"]["agent.max_groundings=3"]
    assert failed["status"] == "failed" and "out of memory at max_groundings=3" in failed["error"]
    assert record["cells"]["agent.max_groundings=6"]["status"] == "finished"
    assert [r["status"] for r in rows] == ["finished", "failed", "finished"]
    assert rows[2]["ndcg_full"] == pytest.approx(0.16) and rows[2]["ndcg_full_lo"] == pytest.approx(0.15)
    assert rows[2]["mean_groundings"] == 3.0 and rows[2]["format_valid"] == 0.9

    second = FakeCells()
    rows = run_sweep(MGFRecConfig(), grid, tmp_path, second)
    assert second.calls == [3]  # finished cells skipped, the failed one retried
    assert [r["status"] for r in rows] == ["finished"] * 3
    assert "error" not in read_sweep(tmp_path)["cells"]["agent.max_groundings=3"]
    # a rerun whose base config changed would skip cells made with the old one: refused before any cell runs
    changed = MGFRecConfig().model_copy(
        update={"agent": MGFRecConfig().agent.model_copy(update={"recall_prior": 9.0, "decoding": "constrained"})}
    )
    third = FakeCells()
    with pytest.raises(
        ValueError,
        match=r"cell agent.max_groundings=1 and 2 more was made with other settings \(the base --config or --set",
    ):
        run_sweep(changed, grid, tmp_path, third)
    assert third.calls == []


@pytest.mark.reliability
def test_a_rerun_under_other_runner_settings_is_refused(tmp_path):
    # a rerun with another --recall-model / --eval-limit / --eval-split skipped finished cells and reported their
    # old numbers as the new settings' (review: "finished earlier, skipped", the old 2-sample valid result)
    grid = {"agent.max_groundings": [1, 3]}
    first = FakeCells()
    run_sweep(MGFRecConfig(), grid, tmp_path, first, settings={"eval_limit": 2, "eval_splits": ["valid"]})
    again = FakeCells()
    run_sweep(MGFRecConfig(), grid, tmp_path, again, settings={"eval_splits": ["valid"], "eval_limit": 2})
    assert again.calls == []  # the same settings: every cell skipped
    other = FakeCells()
    with pytest.raises(  # the flag that changed, with its values (every runner flag was listed)
        ValueError,
        match=r"cell agent.max_groundings=1 and 1 more was made with other settings \(--eval-limit: 2 -> 5\)",
    ):
        run_sweep(MGFRecConfig(), grid, tmp_path, other, settings={"eval_limit": 5, "eval_splits": ["valid"]})
    assert other.calls == []
    # a cell of a sweep.json written before the values were recorded: every flag it could have been made with
    record = read_sweep(tmp_path)
    for entry in record["cells"].values():
        entry.pop("settings_shown")
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"other settings \(--data, --init, --recall-model, .*--eval-limit changed\)"):
        run_sweep(MGFRecConfig(), grid, tmp_path, other, settings={"eval_limit": 5, "eval_splits": ["valid"]})
    # an entry of an older sweep.json (no settings recorded) is not compared on them
    record = read_sweep(tmp_path)
    for entry in record["cells"].values():
        entry.pop("settings")
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    run_sweep(MGFRecConfig(), grid, tmp_path, other, settings={"eval_limit": 5})
    assert other.calls == []


@pytest.mark.reliability
def test_other_runner_settings_are_refused_when_the_cells_config_yaml_agrees(tmp_path):
    """With --init, retriever.* is the init's: a cell whose config digest differed only there (another
    --recall-model or retriever section) while its config.yaml agreed skipped the settings and inputs checks, and
    a rerun with --max-train-samples 4 reused cells trained on 8 beside new ones (review s29)."""
    grid = {"agent.max_groundings": [1, 3]}
    fit = {"init": "runs/sft", "max_train_samples": 8}
    first = load_config(None, ["retriever.model=gru4rec"])
    run_sweep(first, grid, tmp_path, FakeCells(), settings={"fit": fit, "inputs": {"data_checksum": "a"}})
    fewer, other_data = FakeCells(), FakeCells()
    with pytest.raises(ValueError, match=r"other settings \(--max-train-samples: 8 -> 4\)"):
        run_sweep(MGFRecConfig(), grid, tmp_path, fewer, settings={"fit": {**fit, "max_train_samples": 4}})
    with pytest.raises(ValueError, match=r"other settings \(--data was prepared again since\)"):
        run_sweep(MGFRecConfig(), grid, tmp_path, other_data, settings={"fit": fit, "inputs": {"data_checksum": "b"}})
    assert fewer.calls == other_data.calls == []


@pytest.mark.reliability
def test_a_killed_cell_is_not_continued_under_another_config(tmp_path):
    grid = {"agent.max_groundings": [1]}
    killed = FakeCells(fail_on={1})  # a cell that failed (or was killed) after writing into its folder
    run_sweep(MGFRecConfig(), grid, tmp_path, killed)
    assert (tmp_path / "agent.max_groundings=1").is_dir()
    changed = r"other settings \(the base --config or --set changed: trainer.lr: 0.0001 -> 0.5\)"
    with pytest.raises(ValueError, match=changed):
        run_sweep(load_config(None, ["trainer.lr=0.5"]), grid, tmp_path, FakeCells())
    retried = FakeCells()
    run_sweep(MGFRecConfig(), grid, tmp_path, retried)  # the same config retries it
    assert retried.calls == [1]


def test_summary_files_list_every_cell_with_intervals(tmp_path):
    run_sweep(
        MGFRecConfig(),
        {"agent.max_groundings": [1, 6]},
        tmp_path,
        FakeCells(fail_on={6}),
    )
    with (tmp_path / "summary.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["cell"] for r in rows] == [
        "agent.max_groundings=1",
        "agent.max_groundings=6",
    ]
    assert float(rows[0]["ndcg@10"]) == pytest.approx(0.055) and rows[1]["status"] == "failed"
    assert "out of memory" in rows[1]["error"]
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "0.1100 [0.1000, 0.1200]" in md and "failed (RuntimeError: out of memory" in md


def test_the_summary_names_the_split_its_numbers_are_of(tmp_path):
    """With `--eval-split test` first, summary.md held test numbers that nothing but sweep.json labelled; the
    table's heading said nothing either (review s38)."""
    run_sweep(MGFRecConfig(), {"agent.max_groundings": [1]}, tmp_path, FakeCells(), settings={"eval_splits": ["test"]})
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("Each cell evaluated on the test split (n: its samples).\n\n| cell |"), md


def test_bad_grid_field_fails_before_any_cell_runs(tmp_path):
    cells = FakeCells()
    with pytest.raises(ConfigError, match="agent.max_groundingz"):
        run_sweep(
            MGFRecConfig(),
            {"agent.max_groundings": [1], "agent.max_groundingz": [1]},
            tmp_path,
            cells,
        )
    assert cells.calls == []


@pytest.mark.reliability
def test_a_component_typo_in_the_grid_fails_before_any_cell_runs(tmp_path):
    # every cell used to start, fail at run time, and the sweep exit 1
    cells = FakeCells()
    with pytest.raises(ValueError, match=r"unknown grounder 'exakt'.*Did you mean 'exact'"):
        run_sweep(MGFRecConfig(), {"grounding.grounder": ["exact", "exakt"]}, tmp_path, cells)
    assert cells.calls == [] and not (tmp_path / "sweep.json").exists()


class FakeData:
    """A prepared data set as the cell runner reads it: its checksum and split sizes (one sample each)."""

    def __init__(self, root):
        self.root, self.checksum, self.counts = root, "c0", {"samples": {"train": 1, "valid": 1, "test": 1}}


def test_default_runner_resumes_from_a_checkpoint_and_skips_a_finished_fit(tmp_path, monkeypatch):
    """fit_and_evaluate: resume only when a checkpoint exists and run.json does not; evaluate missing splits."""
    import mgfrec.eval.runs as runs_mod
    import mgfrec.rl.fit as fit_mod

    fits, evals = [], []

    def fake_fit(data, out, cfg, options, **_):
        fits.append(options.resume)
        from mgfrec.runs import RunInfo, write_run_info

        write_resolved(cfg, out)  # as run_fit does
        write_run_info(out, RunInfo(kind="agent", model="mgfrec", data="data", data_checksum="c0"))

    def fake_eval(out, split, config, limit=None, secrets_from=None):
        evals.append(split)
        (out / f"eval_{split}.json").write_text(json.dumps({"ndcg_full": 0.2, "ci": {}, "samples": 1}))

    monkeypatch.setattr(fit_mod, "run_fit", fake_fit)
    monkeypatch.setattr(runs_mod, "evaluate_run", fake_eval)
    monkeypatch.setattr("mgfrec.data.prepared.PreparedDataset", FakeData)
    runner = sweep_mod.fit_and_evaluate("data", None, ("valid", "test"))
    cell = tmp_path / "cell"
    (cell / "checkpoints").mkdir(parents=True)
    (cell / "checkpoints" / "last.ckpt").write_text("x")
    assert runner(MGFRecConfig(), cell)["ndcg_full"] == 0.2
    assert fits == [True] and evals == ["valid", "test"]
    runner(MGFRecConfig(), cell)  # fit finished and both splits evaluated: nothing runs again
    assert fits == [True] and evals == ["valid", "test"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    runner(MGFRecConfig(), fresh)
    assert fits == [True, False]
    # a finished fit made with another config is not evaluated as this cell's (a killed sweep rerun with --set)
    (cell / "eval_test.json").unlink()
    other = load_config(None, ["trainer.lr=0.5"])
    with pytest.raises(ValueError, match=r"cell: holds a finished fit made with another config"):
        runner(other, cell)
    assert fits == [True, False] and evals == ["valid", "test", "valid", "test"]


def test_cli_sweep_with_the_documented_flags(tmp_path, monkeypatch):
    fake = FakeCells(fail_on={9})
    seen = {}

    def fake_factory(data, options, splits, limit, say):
        seen.update(data=data, init=options.init, splits=splits)
        return fake

    monkeypatch.setattr(sweep_mod, "fit_and_evaluate", fake_factory)
    monkeypatch.setattr("mgfrec.rl.fit.start_point", lambda options, ds: None)  # no data set or --init run here
    from types import SimpleNamespace

    monkeypatch.setattr("mgfrec.data.prepared.PreparedDataset", lambda root: SimpleNamespace(root=root, checksum="c0"))
    monkeypatch.setattr("mgfrec.runs.read_run_info", lambda run: SimpleNamespace(created="t0"))  # --init's
    app = typer.Typer()
    app.command()(sweep_command)
    out = tmp_path / "sweep-mg"
    args = [
        "--data",
        str(tmp_path / "data"),
        "--init",
        str(tmp_path / "sft"),
        "--grid",
        "agent.max_groundings=1,3,6,9",
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--set",
        "grpo.kl_beta=0",
    ]
    # --init trained on other prompts: fit --init says so, and a sweep's cells trained on them without a word (s40);
    # the grid's own field differs on purpose and is left out
    write_resolved(load_config(None, ["agent.prompt_history=10", "agent.max_groundings=2"]), tmp_path / "sft")
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.split())
    note = f"note: --init {tmp_path / 'sft'} was trained under other settings than the cells' (agent.prompt_history"
    assert note in said
    assert "agent.max_groundings" not in said.partition("note: --init")[2].partition("to keep them")[0], said
    assert result.exit_code == 1, result.output  # one cell failed: the exit code says so
    # "run again to retry" was said of errors a retry repeats (a bad value in a cell): what to do is fix it first
    closing = " ".join(result.output.split())
    assert "1 cell(s) failed: agent.max_groundings=9 (each one's error is above and in" in closing
    assert "fix what it names and run the same command again: finished cells are kept" in closing
    assert fake.calls == [1, 3, 6, 9]
    assert seen["init"] == str(tmp_path / "sft") and seen["splits"] == ("valid",)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"agent.max_groundings={g}" for g in (1, 3, 6, 9)]
    assert json.loads((out / "sweep.json").read_text())["cells"]["agent.max_groundings=9"]["status"] == "failed"
    bad = CliRunner().invoke(app, ["--data", "d", "--out", str(tmp_path / "x"), "--grid", "agent.nope=1"])
    assert bad.exit_code == 2 and "agent.nope" in bad.output
    split = CliRunner().invoke(app, [*args, "--eval-split", "tset"])  # trained a cell, then failed it
    assert split.exit_code == 2 and "--eval-split 'tset': choose one of train, valid, test" in split.output
    # the same sweep again with another runner setting: its finished cells are not skipped as if they matched
    # (another --recall-model beside --init is refused on its own: the cells read --init's recall run)
    again = CliRunner().invoke(app, [*args, "--eval-limit", "5"])
    assert again.exit_code == 2 and "made with other settings (--eval-limit: None -> 5)" in " ".join(
        again.output.split()
    )
    assert fake.calls == [1, 3, 6, 9]


def test_cli_sweep_refuses_a_wrong_data_or_init_once_before_any_cell(tmp_path):
    """Every cell used to run and be recorded as failed (exit 1, a sweep folder left behind)."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    prepare(DataConfig(source="synthetic", options={"n_users": 30}), tmp_path / "data")
    app = typer.Typer()
    app.command()(sweep_command)
    out = tmp_path / "sweep"
    grid = ["--grid", "agent.max_groundings=1,3", "--out", str(out), "--max-steps", "1"]
    for flags, words in [
        (["--data", str(tmp_path / "nosuch")], "not a prepared data set"),
        (["--data", str(tmp_path / "data"), "--init", str(tmp_path / "nosuch")], "not a run folder"),
    ]:
        result = CliRunner().invoke(app, [*flags, *grid])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and words in text and "Traceback" not in text, text
        assert not out.exists()


@pytest.mark.reliability
def test_cli_sweep_refuses_grid_fields_its_cells_never_read(tmp_path):
    # each cell was named for a value it never used: --init's recall run took the place of retriever.*, and
    # --eval-split the place of eval.split
    app = typer.Typer()
    app.command()(sweep_command)
    base = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "sweep")]
    for flags, words in [
        (
            ["--grid", "retriever.model=pop,bpr", "--init", str(tmp_path / "sft")],
            f"--grid retriever.model with --init {tmp_path / 'sft'}: every cell uses --init's recall run",
        ),
        (["--grid", "retriever.hidden_size=8,16", "--init", "x"], "--grid retriever.hidden_size with --init x"),
        (["--grid", "eval.split=valid,test"], "--grid eval.split: the cells are evaluated on --eval-split"),
        # the same fields given once with --set were taken without a word (the cells were evaluated on valid)
        (["--grid", "agent.max_groundings=1", "--set", "eval.split=test"], "--set eval.split: the cells are"),
        (["--grid", "agent.max_groundings=1", "--set", "policy.model=preset:small", "--init", "x"], "--set policy"),
        (["--grid", "agent.max_groundings=1", "--set", "retriever.lr=0.1", "--init", "x"], "--set retriever.lr with"),
        # as fit refuses it: the cells read --init's recall run, and sweep.json recorded the flag (review s29)
        (["--grid", "agent.max_groundings=1", "--recall-model", "gru4rec", "--init", "x"], "--recall-model gru4rec"),
        # a section given whole got past every check: both cells trained with embedding_dim 64 (review s40)
        (["--grid", "retriever={embedding_dim: 32},{embedding_dim: 64}", "--init", "x"], "--grid retriever.embedding"),
        (["--grid", "eval={split: test},{split: valid}"], "--grid eval.split: the cells are evaluated on"),
        (["--grid", "agent.max_groundings=1", "--set", "eval={split: test}"], "--set eval.split: the cells are"),
        (["--grid", "agent.max_groundings=1", "--set", "policy={model: foo}", "--init", "x"], "--set policy.model"),
        (["--grid", "data={history_length: 5},{history_length: 6}"], "--grid data.history_length: the cells' fit"),
        (["--grid", "trainer={max_steps: 2},{max_steps: 3}", "--max-steps", "1"], "--max-steps 1 and --grid trainer"),
    ]:
        result = CliRunner().invoke(app, [*base, *flags])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and words in text and "Traceback" not in text, text
        assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_real_fit_and_evaluate_cell_on_a_tiny_synthetic_set(tmp_path):
    """One real cell end to end: run_fit for one step, the agent evaluation, the summary and the figures."""
    from mgfrec.config.schema import (
        AgentConfig,
        DataConfig,
        EvalConfig,
        GroundingConfig,
        GRPOConfig,
        RetrieverConfig,
        TrainerConfig,
    )
    from mgfrec.data.prepared import prepare
    from mgfrec.eval.figures import figures_for
    from mgfrec.rl.fit import FitOptions

    options = {"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}
    ds = prepare(DataConfig(source="synthetic", options=options), tmp_path / "data")
    template = tmp_path / "system.txt"
    template.write_text("Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>.")
    cfg = MGFRecConfig(
        agent=AgentConfig(template=str(template), max_new_tokens_per_turn=16, max_new_tokens_total=48),
        retriever=RetrieverConfig(recall_size=5),
        grounding=GroundingConfig(top_k=3),
        grpo=GRPOConfig(group_size=2, kl_beta=0.0),
        trainer=TrainerConfig(max_steps=1, global_batch_size=2, micro_batch_size=4, val_check_interval=1),
        eval=EvalConfig(bootstrap_samples=20),
    )
    runner = sweep_mod.fit_and_evaluate(ds.root, FitOptions(valid_samples=2), ("valid",), 4)
    rows = run_sweep(cfg, {"agent.max_groundings": [1]}, tmp_path / "sweep", runner)
    assert rows[0]["status"] == "finished", rows[0]["error"]
    cell = tmp_path / "sweep" / "agent.max_groundings=1"
    for name in (
        "run.json",
        "metrics.csv",
        "eval_valid.json",
        "agent_valid_samples.csv",
    ):
        assert (cell / name).is_file(), name
    assert 0.0 <= rows[0]["ndcg_full"] <= 1.0 and rows[0]["format_valid"] is not None
    assert len(figures_for(tmp_path / "sweep", tmp_path / "fig")) == 2
    assert len(figures_for(cell, tmp_path / "fig")) >= 2


class KeyedExact:
    """A plugin grounder that takes a credential (a hosted index): exact L2 search."""

    from pydantic import BaseModel as _Base

    class Options(_Base):
        api_key: str = ""

    def __init__(self, item_embeddings, options=None):
        import numpy as np

        self.items = np.asarray(item_embeddings, dtype=np.float64)

    def search(self, queries, k):
        import numpy as np

        dist = np.linalg.norm(np.asarray(queries)[:, None, :] - self.items[None], axis=2)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(dist, order, axis=1).astype(np.float32)


@pytest.mark.slow
@pytest.mark.reliability
def test_a_real_cell_fits_the_grids_recall_model_and_evaluates_with_the_secret_it_trained_with(tmp_path):
    # --grid retriever.model=pop fitted sasrec in every cell (the cell named for a model it never used), and a cell
    # whose config holds a secret trained, then failed its evaluation on the <redacted> its config.yaml records
    from mgfrec.config.schema import DataConfig, EvalConfig, GRPOConfig, TrainerConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.registry import Registry, use_registry
    from mgfrec.rl.fit import FitOptions
    from mgfrec.runs import read_run_info

    secret = "sk-live-sweep-0123456789"
    options = {"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}
    ds = prepare(DataConfig(source="synthetic", options=options), tmp_path / "data")
    template = tmp_path / "system.txt"
    template.write_text("Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>.")
    cfg = MGFRecConfig.model_validate(
        {
            "agent": {"template": str(template), "max_new_tokens_per_turn": 16, "max_new_tokens_total": 48},
            "retriever": {"recall_size": 5},
            "grounding": {"grounder": "keyed", "top_k": 3, "options": {"api_key": secret}},
            "grpo": GRPOConfig(group_size=2, kl_beta=0.0).model_dump(),
            "trainer": TrainerConfig(max_steps=1, global_batch_size=2, micro_batch_size=4).model_dump(),
            "eval": EvalConfig(bootstrap_samples=20).model_dump(),
        }
    )
    reg = Registry.discover()
    reg.add("grounder", "keyed", KeyedExact)
    runner = sweep_mod.fit_and_evaluate(ds.root, FitOptions(valid_samples=2), ("valid",), 4)
    with use_registry(reg):
        rows = run_sweep(cfg, {"retriever.model": ["pop"]}, tmp_path / "sweep", runner)
    assert rows[0]["status"] == "finished", rows[0]["error"]
    cell = tmp_path / "sweep" / "retriever.model=pop"
    assert read_run_info(cell / "recall").model == "pop"  # the grid's, not --recall-model's default
    assert load_config(cell / "config.yaml").retriever.model == "pop"
    assert (cell / "eval_valid.json").is_file()
    leaked = [p for p in (tmp_path / "sweep").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []


def test_cells_evaluated_on_different_samples_say_so_and_names_stay_whole(tmp_path):
    from rich.console import Console

    def runner(cfg, out):
        g = cfg.agent.max_groundings
        out.mkdir(parents=True, exist_ok=True)
        payload = {"ndcg_full": 0.1 * g, "ndcg@10": 0.05 * g, "samples": 2 if g == 1 else 6, "ci": {}}
        (out / "eval_valid.json").write_text(json.dumps(payload))
        return sweep_mod.cell_summary(out, "valid")

    rows = run_sweep(MGFRecConfig(), {"agent.max_groundings": [1, 2]}, tmp_path, runner)
    assert [r["samples"] for r in rows] == [2, 6]
    assert list(csv.DictReader((tmp_path / "summary.csv").open()))[0]["samples"] == "2"
    md = (tmp_path / "summary.md").read_text()
    assert "different numbers of samples (2, 6)" in md and "| `agent.max_groundings=1` | finished | 2 |" in md
    console = Console(width=80, record=True)
    console.print(sweep_mod.summary_table(rows))
    shown = console.export_text()
    assert "different numbers of samples" in " ".join(shown.split()) and "…" not in shown
    assert "=1" in shown and "=2" in shown  # the names were cut to "agent.max_…" for both cells


@pytest.mark.reliability
def test_secrets_in_grid_values_never_reach_names_records_or_messages(tmp_path):
    """A URL password or an api_key query parameter given as a grid value was printed, used in the cell folder's
    name and written to sweep.json and summary.csv/.md (config.yaml and derive --set redacted it)."""
    urls = [
        "http://bob:hunter2@h1.example/v1",
        "https://h2.example/v1?api_key=sk-SECRET123",
        "https://h2.example/v1?api_key=sk-OTHER456",
    ]
    seen: list[str] = []

    def runner(cfg, out):
        seen.append(cfg.user_agent.base_url)
        return FakeCells()(cfg, out)

    said: list[str] = []
    rows = run_sweep(MGFRecConfig(), {"user_agent.base_url": urls}, tmp_path, runner, say=said.append)
    assert seen == urls  # each cell ran with the real value
    assert [r["status"] for r in rows] == ["finished"] * 3
    names = [p.name for p in tmp_path.iterdir()]
    written = " ".join([*names, *said, *(p.read_text() for p in tmp_path.iterdir() if p.is_file())])
    for secret in ("hunter2", "sk-SECRET123", "sk-OTHER456"):
        assert secret not in written and secret not in str(rows), secret
    grid = read_sweep(tmp_path)["grid"]["user_agent.base_url"]
    assert grid == [
        "http://bob:<redacted>@h1.example/v1",
        "https://h2.example/v1?api_key=<redacted> #2",  # two secrets that would read alike, told apart
        "https://h2.example/v1?api_key=<redacted> #3",
    ]
    assert not any(s.startswith("note:") for s in said)  # a new sweep "held another grid ()"
    again = run_sweep(MGFRecConfig(), {"user_agent.base_url": urls}, tmp_path, runner)  # a rerun: all skipped
    assert len(seen) == 3 and [r["status"] for r in again] == ["finished"] * 3


@pytest.mark.reliability
def test_a_sweep_refuses_an_out_that_holds_something_else(tmp_path):
    """sweep --out accepted the --data folder itself and a finished run, and wrote sweep.json and cells into them."""
    grid = {"agent.max_groundings": [1]}
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    project = tmp_path / "project"
    (project / "analysis").mkdir(parents=True)
    for out, words in (
        (data, "is the data set given as --data"),
        (run, "holds a run (run.json)"),
        (project, "holds folders that are not a sweep's cells (analysis; no sweep.json)"),
    ):
        before = sorted(p.name for p in out.iterdir())
        cells = FakeCells()
        with pytest.raises(ValueError, match=re.escape(words)):
            run_sweep(MGFRecConfig(), grid, out, cells, settings={"data": str(data)})
        assert cells.calls == [] and sorted(p.name for p in out.iterdir()) == before
    run_sweep(MGFRecConfig(), grid, tmp_path / "new", FakeCells())  # new, then a rerun of the same sweep
    assert [r["status"] for r in run_sweep(MGFRecConfig(), grid, tmp_path / "new", FakeCells())] == ["finished"]
    mine = tmp_path / "mine"  # `cd exp && mgfrec sweep --out . --grid-file grid.yaml`: the user's loose files stay
    mine.mkdir()
    (mine / "grid.yaml").write_text("agent.max_groundings: [1]\n")
    (mine / ".gitkeep").write_text("")
    run_sweep(MGFRecConfig(), grid, mine, FakeCells())
    assert (mine / "grid.yaml").read_text() == "agent.max_groundings: [1]\n" and (mine / "sweep.json").is_file()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "agent.max_groundings: [1, 2\ntrainer.lr: [1]\n",
            r"grid.yaml:2: not valid YAML: expected",
        ),  # PyYAML's caret block
        ("agent:\n  max_groundings: [1, 2]\n", r"key 'agent' holds a mapping; the keys are dotted fields, e.g. "),
    ],
    ids=["garbage", "nested"],
)
def test_a_grid_file_that_cannot_be_a_grid_is_one_line(tmp_path, text, words):
    (tmp_path / "grid.yaml").write_text(text)
    with pytest.raises(ConfigError, match=words) as err:
        build_grid([], tmp_path / "grid.yaml")
    assert "\n" not in str(err.value)


def test_two_grid_values_that_validate_to_one_config_are_refused(tmp_path):
    """`--grid agent.max_groundings=1,1.0` trained two identical cells named ...=1 and ...=1.0."""
    cells = FakeCells()
    with pytest.raises(ConfigError, match=r"cells agent.max_groundings=1 and agent.max_groundings=1.0 give the same"):
        run_sweep(MGFRecConfig(), {"agent.max_groundings": [1, 1.0]}, tmp_path / "s", cells)
    assert cells.calls == [] and not (tmp_path / "s").exists()


@pytest.mark.reliability
def test_a_cell_made_by_an_earlier_mgfrec_is_named_so_and_reused_with_the_setting_of_before(tmp_path):
    """A config field added since (agent.max_feedback_tokens) changed every finished cell's digest: a rerun was
    refused as if "the base --config or --set changed". The cell's own config.yaml now decides, its missing field
    read with the value of before."""
    import yaml

    grid = {"agent.max_groundings": [1]}
    run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells())
    cell = tmp_path / "agent.max_groundings=1"
    write_resolved(cell_config(MGFRecConfig(), grid_cells(grid)[0]), cell)
    old = yaml.safe_load((cell / "config.yaml").read_text(encoding="utf-8"))
    del old["agent"]["max_feedback_tokens"]  # as an mgfrec without the field wrote it
    (cell / "config.yaml").write_text(yaml.safe_dump(old), encoding="utf-8")
    record = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    record["cells"]["agent.max_groundings=1"]["config"] = "0123456789abcdef"  # that mgfrec's digest
    (tmp_path / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ValueError, match=r"by an earlier mgfrec, without agent.max_feedback_tokens; "
                       r"--set agent.max_feedback_tokens=null reuses it"):  # fmt: skip
        run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells())
    again = FakeCells()
    rows = run_sweep(load_config(None, ["agent.max_feedback_tokens=null"]), grid, tmp_path, again)
    assert again.calls == [] and [r["status"] for r in rows] == ["finished"]


@pytest.mark.reliability
def test_with_init_a_cells_own_recall_model_is_no_config_change(tmp_path):
    """With --init a fit writes the init's retriever.model into its config.yaml. A cell whose digest differed (an
    earlier mgfrec's) was then judged by that field too: refused as "the base --config or --set changed:
    retriever.model ..." (review s26), where without --init the same cell is reused as one of an earlier mgfrec."""
    import yaml

    grid = {"agent.max_groundings": [1]}
    settings = {"fit": {"init": str(tmp_path / "sft")}}
    run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells(), settings=settings)
    cell = tmp_path / "agent.max_groundings=1"
    write_resolved(cell_config(MGFRecConfig(), grid_cells(grid)[0]), cell)
    old = yaml.safe_load((cell / "config.yaml").read_text(encoding="utf-8"))
    del old["agent"]["max_feedback_tokens"]  # as an mgfrec without the field wrote it
    old["retriever"]["model"] = "sasrec" if MGFRecConfig().retriever.model != "sasrec" else "hybrid"  # the init's
    (cell / "config.yaml").write_text(yaml.safe_dump(old), encoding="utf-8")
    record = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    record["cells"]["agent.max_groundings=1"]["config"] = "0123456789abcdef"  # that mgfrec's digest
    (tmp_path / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ValueError, match=r"by an earlier mgfrec, without agent.max_feedback_tokens; ") as err:
        run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells(), settings=settings)
    assert "retriever.model" not in str(err.value)
    again = FakeCells()
    rows = run_sweep(load_config(None, ["agent.max_feedback_tokens=null"]), grid, tmp_path, again, settings=settings)
    assert again.calls == [] and [r["status"] for r in rows] == ["finished"]


@pytest.mark.reliability
def test_a_second_sweep_into_a_running_sweeps_folder_is_refused(tmp_path):
    # two sweeps on one --out both exited 0, each training the same cells into the same folders at once
    import subprocess
    import sys

    out = tmp_path / "sweep"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(out)!r}, os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cells = FakeCells()
        with pytest.raises(ValueError, match=rf"^--out {re.escape(str(out))}: another mgfrec sweep is running in it"):
            run_sweep(MGFRecConfig(), {"agent.max_groundings": [1]}, out, cells)
        assert cells.calls == [] and list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()
    run_sweep(MGFRecConfig(), {"agent.max_groundings": [1]}, out, cells)  # the lock went with its process
    assert cells.calls == [1]


@pytest.mark.reliability
def test_a_template_edited_in_place_does_not_pass_for_the_finished_cells(tmp_path):
    # sweep.json's digest held the template's path: the edited text reused the cells trained on the old one
    template = tmp_path / "tpl.txt"
    template.write_text("Think, then answer with <answer> </answer>.", encoding="utf-8")
    base = load_config(None, [f"agent.template={template}"])
    out, grid = tmp_path / "sweep", {"agent.max_groundings": [1]}
    run_sweep(base, grid, out, FakeCells())
    template.write_text("Answer at once with <answer> </answer>.", encoding="utf-8")
    again = FakeCells()
    with pytest.raises(ValueError, match=r"was made with other settings \(the base --config or --set changed"):
        run_sweep(base, grid, out, again)
    assert again.calls == []


@pytest.mark.reliability
def test_data_prepared_again_or_init_trained_again_is_named_for_the_finished_cells(tmp_path):
    # only paths were recorded: cells of the old and the new data (or --init) were mixed in one summary
    grid, out = {"agent.max_groundings": [1]}, tmp_path / "sweep"
    settings = {"data": "/d", "inputs": {"data_checksum": "aaa", "init_created": "t1"}}
    run_sweep(MGFRecConfig(), grid, out, FakeCells(), settings=settings)
    for inputs, words in [
        ({"data_checksum": "bbb", "init_created": "t1"}, "--data was prepared again since"),
        ({"data_checksum": "aaa", "init_created": "t2"}, "--init was trained again since"),
    ]:
        cells = FakeCells()
        with pytest.raises(ValueError, match=re.escape(words)):
            run_sweep(MGFRecConfig(), grid, out, cells, settings={**settings, "inputs": inputs})
        assert cells.calls == []
    same = FakeCells()
    run_sweep(MGFRecConfig(), grid, out, same, settings=settings)
    assert same.calls == []
    record = read_sweep(out)  # a sweep of before recorded no inputs: not compared on them
    for entry in record["cells"].values():
        entry.pop("inputs")
    (out / "sweep.json").write_text(json.dumps(record))
    run_sweep(MGFRecConfig(), grid, out, same, settings={**settings, "inputs": {"data_checksum": "ccc"}})
    assert same.calls == []


@pytest.mark.reliability
def test_deleting_a_damaged_sweep_json_or_a_cells_folder_does_what_the_messages_say(tmp_path):
    grid, out = {"agent.max_groundings": [1, 3]}, tmp_path / "sweep"
    run_sweep(MGFRecConfig(), grid, out, FakeCells())
    (out / "sweep.json").write_text('{"cells": {', encoding="utf-8")
    with pytest.raises(ValueError, match="delete it to start the sweep record again"):
        run_sweep(MGFRecConfig(), grid, out, FakeCells())
    (out / "sweep.json").unlink()  # as told: it refused the folder then ("holds folders that are not a sweep's")
    again = FakeCells()
    rows = run_sweep(MGFRecConfig(), grid, out, again)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    import shutil

    shutil.rmtree(out / "agent.max_groundings=3")  # a finished cell's folder deleted: it was still "finished"
    retrained = FakeCells()
    run_sweep(MGFRecConfig(), grid, out, retrained)
    assert retrained.calls == [3] and (out / "agent.max_groundings=3" / "eval_valid.json").is_file()


@pytest.mark.reliability
def test_the_real_cell_runner_names_a_damaged_or_derived_run_and_evaluates_a_damaged_result_again(
    tmp_path, monkeypatch
):
    import mgfrec.eval.runs as runs_mod
    import mgfrec.rl.fit as fit_mod
    from mgfrec.runs import RunInfo, write_run_info

    evals, said = [], []

    def fake_eval(out, split, config, limit=None, secrets_from=None):
        evals.append(split)
        (out / f"eval_{split}.json").write_text(json.dumps({"ndcg_full": 0.3, "ci": {}, "samples": 1}))

    monkeypatch.setattr(fit_mod, "run_fit", lambda *a, **k: pytest.fail("a finished fit is not trained again"))
    monkeypatch.setattr(runs_mod, "evaluate_run", fake_eval)
    monkeypatch.setattr("mgfrec.data.prepared.PreparedDataset", FakeData)
    runner = sweep_mod.fit_and_evaluate("data", None, ("valid",), say=said.append)
    cell = tmp_path / "cell"
    write_resolved(MGFRecConfig(), cell)
    write_run_info(cell, RunInfo(kind="agent", model="mgfrec", data="d", data_checksum="c0"))
    (cell / "eval_valid.json").write_text('{"ndcg_full": 0.', encoding="utf-8")  # every rerun failed on it
    assert runner(MGFRecConfig(), cell)["ndcg_full"] == 0.3 and evals == ["valid"]
    assert any("eval_valid.json cannot be read; the cell is evaluated again" in s for s in said)
    (cell / "run.json").write_text('{"kind": "agent",', encoding="utf-8")  # was taken as a finished fit
    with pytest.raises(ValueError, match=r"run.json: not a valid run file"):
        runner(MGFRecConfig(), cell)
    write_run_info(
        cell,
        RunInfo(kind="agent", model="mgfrec (x, eval-time)", data="d", data_checksum="c", extra={"trained_run": "/r"}),
    )
    with pytest.raises(ValueError, match=r"holds a derived run \(mgfrec derive of /r\), not a fit of this cell"):
        runner(MGFRecConfig(), cell)


@pytest.mark.reliability
def test_a_grid_field_beside_its_own_section_and_an_overlong_cell_name_are_refused():
    # the cell was named for agent.max_groundings=2 and ran with the section's 3; a name over 255 bytes failed
    # every cell at run time ("File name too long"), and "run again to retry" could not help
    with pytest.raises(ConfigError, match=r"grid fields agent and agent.max_groundings: the first sets the second"):
        build_grid(["agent.max_groundings=2", "agent={max_groundings: 3}"])
    with pytest.raises(ConfigError, match=r"would be \d+ bytes long, above the 255 a file name may have"):
        grid_cells({"agent.template": ["/" + "x" * 300 + "/a.txt"]})


def test_the_record_says_which_split_the_summary_and_its_curves_read(tmp_path, monkeypatch):
    # Figs. 7-8 were titled "ndcg_full vs field" whatever split the cells were evaluated on
    import matplotlib.axes

    from mgfrec.eval.figures import plot_sweep

    grid, settings = {"agent.max_groundings": [1, 3]}, {"eval_splits": ["valid"]}
    run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells(), settings=settings)
    assert read_sweep(tmp_path)["summary_split"] == "valid"
    seen, original = {}, matplotlib.axes.Axes.set

    def spy(self, **kw):
        seen.update(kw)
        return original(self, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set", spy)
    plot_sweep(tmp_path, tmp_path / "fig")
    assert seen["ylabel"] == "ndcg_full (valid)"


@pytest.mark.reliability
def test_a_cell_folder_without_a_record_is_checked_against_this_sweeps_settings(tmp_path, monkeypatch):
    # once sweep.json was deleted, a cell fitted under other settings (--max-train-samples, another data set, another
    # --eval-limit) was reused and recorded under the new ones; under --init every such cell was refused for the
    # recall model its fit derives from --init
    import mgfrec.eval.runs as runs_mod
    import mgfrec.rl.fit as fit_mod
    from mgfrec.rl.fit import FitOptions
    from mgfrec.rl.resume import START_FILE, start_options
    from mgfrec.runs import RunInfo, write_run_info

    class TenValid(FakeData):
        def __init__(self, root):
            super().__init__(root)
            self.counts = {"samples": {"train": 10, "valid": 10, "test": 10}}

    evals, said = [], []

    def fake_eval(out, split, config, limit=None, secrets_from=None):
        evals.append(limit)
        (out / f"eval_{split}.json").write_text(json.dumps({"ndcg_full": 0.3, "ci": {}, "samples": limit or 10}))

    monkeypatch.setattr(fit_mod, "run_fit", lambda *a, **k: pytest.fail("a finished fit is not trained again"))
    monkeypatch.setattr(runs_mod, "evaluate_run", fake_eval)
    monkeypatch.setattr("mgfrec.data.prepared.PreparedDataset", TenValid)
    cell = tmp_path / "cell"
    write_resolved(load_config(None, ["retriever.model=pop"]), cell)
    write_run_info(cell, RunInfo(kind="agent", model="mgfrec", data="d", data_checksum="c0"))
    (cell / START_FILE).write_text(json.dumps(start_options(FitOptions(recall_model="pop"))))
    (cell / "eval_valid.json").write_text(json.dumps({"ndcg_full": 0.2, "ci": {}, "samples": 10}))
    pop = load_config(None, ["retriever.model=pop"])
    runner = sweep_mod.fit_and_evaluate("data", FitOptions(max_train_samples=3), ("valid",), 4, say=said.append)
    with pytest.raises(
        ValueError, match=r"cell: holds a fit started with other settings \(max_train_samples: None -> 3\)"
    ):
        runner(pop, cell)
    runner = sweep_mod.fit_and_evaluate("data", FitOptions(), ("valid",), 4, say=said.append)
    assert runner(pop, cell)["ndcg_full"] == 0.3 and evals == [4]  # 10 stored samples, not --eval-limit 4
    assert any("holds 10 samples, not this sweep's 4; evaluated again" in s for s in said)
    write_run_info(cell, RunInfo(kind="agent", model="mgfrec", data="d", data_checksum="other"))
    with pytest.raises(ValueError, match=r"cell: holds a fit made on another data set than --data data"):
        runner(pop, cell)
    # under --init the fit's config.yaml holds --init's recall model (pop), the cell config the base's (sasrec)
    write_run_info(cell, RunInfo(kind="agent", model="mgfrec", data="d", data_checksum="c0"))
    init = FitOptions(init=str(tmp_path / "sft"))
    (cell / START_FILE).write_text(json.dumps(start_options(init)))
    runner = sweep_mod.fit_and_evaluate("data", init, ("valid",), 4, say=said.append)
    assert runner(MGFRecConfig(), cell)["ndcg_full"] == 0.3


def test_a_file_system_without_locks_warns_instead_of_refusing_every_sweep(tmp_path, monkeypatch):
    # any flock error read as "another mgfrec sweep is running": on a mount without locks no sweep could run
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    cells = FakeCells()
    with pytest.warns(UserWarning, match="its file system takes no lock"):
        run_sweep(MGFRecConfig(), {"agent.max_groundings": [1]}, tmp_path / "sweep", cells)
    assert cells.calls == [1]


@pytest.mark.reliability
def test_a_finished_cell_whose_run_was_retired_runs_again(tmp_path):
    """A fit into a finished cell, stopped, retired its run (only config.yaml and fit_start.json were left), yet every
    rerun said "finished earlier, skipped", the summary kept its numbers, and `figures` said to run the sweep again
    (review s26)."""
    grid = {"agent.max_groundings": [1, 2]}
    run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells())
    (tmp_path / "agent.max_groundings=1" / "run.json").unlink()
    said: list[str] = []
    again = FakeCells()
    run_sweep(MGFRecConfig(), grid, tmp_path, again, say=said.append)
    assert again.calls == [1]  # that cell alone, the other skipped
    assert any("agent.max_groundings=1: finished earlier, but its folder holds no finished run" in m for m in said)


@pytest.mark.reliability
def test_a_sweep_killed_in_a_cell_leaves_no_summary_calling_that_cell_finished(tmp_path):
    """summary.csv and summary.md were written only at the end: a sweep killed while it ran a cell again kept the
    cell's old numbers there as a finished row (review s26)."""
    grid = {"agent.max_groundings": [1, 2]}
    run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells())
    (tmp_path / "agent.max_groundings=2" / "run.json").unlink()

    class Killed(FakeCells):
        def __call__(self, cfg, out):
            import csv

            rows = {r["cell"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
            assert rows["agent.max_groundings=2"]["status"] == "running", rows  # what a kill here would leave
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(MGFRecConfig(), grid, tmp_path, Killed())


@pytest.mark.reliability
def test_with_init_every_recall_setting_but_the_list_length_is_the_init_runs():
    """A cell's run records its init's recall run's own settings (review s28): a rerun compared them with the
    cell's config and refused a finished or interrupted cell ("retriever.max_epochs: 3 -> 200")."""
    from mgfrec.config.load import load_config
    from mgfrec.experiments.reuse import FROM_INIT, config_changes

    written = load_config(
        None, ["retriever.model=hybrid", "retriever.max_epochs=3", "retriever.options.tune_metric=hit@10"]
    )
    assert config_changes(written, load_config(None), FROM_INIT) == {}
    shorter = load_config(None, ["retriever.recall_size=5"])
    assert list(config_changes(written, shorter, FROM_INIT)) == ["retriever.recall_size"]  # the agent's own setting
    assert "retriever.max_epochs" in config_changes(written, load_config(None))  # without --init: compared


@pytest.mark.reliability
def test_a_cell_value_fit_refuses_is_found_before_the_first_cell_trains(tmp_path):
    """--grid grpo.group_size=2,1 (or grounding.top_k above the catalogue) trained and evaluated cell 1, then
    failed cell 2, while docs/experiments.md says every cell config is validated before the first trains (review
    s29)."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.experiments.sweep import fit_and_evaluate

    prepare(DataConfig(source="synthetic", options={"n_users": 30}), tmp_path / "data")
    runner = fit_and_evaluate(tmp_path / "data")
    for grid, said in [
        ({"grpo.group_size": [2, 1]}, "sweep cell grpo.group_size=1: grpo.group_size (--group-size) 1"),
        ({"grounding.top_k": [5, 100000]}, "sweep cell grounding.top_k=100000: "),
    ]:
        with pytest.raises(ConfigError, match=re.escape(said)):
            run_sweep(MGFRecConfig(), grid, tmp_path / "sweep", runner)
        assert not (tmp_path / "sweep").exists()  # nothing trained, nothing written
    # l2_joint over a recall model without item embeddings: found when the cell's fit began (review s37)
    over_pop = MGFRecConfig.model_validate({"retriever": {"model": "pop"}})
    said = "sweep cell agent.final_ranking=l2_joint: the recall model 'pop' (--recall-model, retriever.model): "
    with pytest.raises(ConfigError, match=re.escape(said) + ".*l2_joint needs a recall run with item embeddings"):
        run_sweep(over_pop, {"agent.final_ranking": ["l2", "l2_joint"]}, tmp_path / "sweep", runner)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.reliability
def test_a_sweep_of_before_with_init_and_a_recall_model_is_still_reused(tmp_path):
    """A sweep made before --recall-model beside --init was refused recorded the recall model (never read: the
    init's recall run ranks); run again without it, every finished cell was "made with other settings" and had to be
    trained again (review s29). What the cells do not read is not compared; what they read still is."""
    grid = {"agent.max_groundings": [1, 3]}
    fit = {"init": "/runs/sft", "recall_model": "pop", "max_train_samples": 8}
    run_sweep(MGFRecConfig(), grid, tmp_path, FakeCells(), settings={"fit": fit})
    again = FakeCells()
    run_sweep(MGFRecConfig(), grid, tmp_path, again, settings={"fit": {**fit, "recall_model": None}})
    assert again.calls == []  # reused
    with pytest.raises(ValueError, match=r"other settings \(--max-train-samples: 8 -> 4\)"):
        run_sweep(MGFRecConfig(), grid, tmp_path, again, settings={"fit": {**fit, "max_train_samples": 4}})


@pytest.mark.reliability
def test_a_cell_that_needs_several_processes_is_refused_before_the_first_cell_trains(tmp_path):
    """`--grid trainer.devices=1,2` trained its first cell, then failed the second; the paper's config (8 devices)
    failed every cell one after another (review s33)."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.rl.fit import FitOptions

    ds = prepare(
        DataConfig(source="synthetic", options={"n_users": 30, "n_items": 40, "n_artists": 8}), tmp_path / "data"
    )
    runner = sweep_mod.fit_and_evaluate(ds.root, FitOptions(valid_samples=2), ("valid",), 4)
    with pytest.raises(ConfigError) as info:
        run_sweep(MGFRecConfig(), {"trainer.devices": [1, 2]}, tmp_path / "sweep", runner)
    assert str(info.value) == (
        "sweep cell trainer.devices=2: mgfrec sweep runs in one process (trainer.devices=2, trainer.num_nodes=1); "
        "train with several processes through 'mgfrec fit', then evaluate its run folder"
    )
    assert not (tmp_path / "sweep").exists()


def test_a_multi_line_cell_error_is_one_row_of_the_summary_and_one_line_said(tmp_path):
    """A hub's or CUDA's error spans lines: it split summary.md's row, and the table with it (review s33)."""

    def runner(cfg, out):
        raise OSError("401 Client Error\n\nRepository Not Found | gated repo")

    said: list[str] = []
    run_sweep(MGFRecConfig(), {"agent.max_groundings": [1]}, tmp_path, runner, say=said.append)
    rows = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| `")]
    assert rows == [
        "| `agent.max_groundings=1` | failed (OSError: 401 Client Error Repository Not Found \\| gated repo) | - | - "
        "| - | - | - |"
    ]
    assert [s for s in said if "failed" in s] == [
        "[1/1] agent.max_groundings=1: failed: OSError: 401 Client Error Repository Not Found | gated repo"
    ]
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"]["agent.max_groundings=1"]["error"] == (
        "OSError: 401 Client Error\n\nRepository Not Found | gated repo"
    )


@pytest.mark.reliability
@pytest.mark.parametrize(
    "again",
    [
        {"agent.max_groundings": [1.0, 3], "grpo.kl_beta": [0.0, 0.04]},  # a value written otherwise
        {"grpo.kl_beta": [0.0, 0.04], "agent.max_groundings": [1, 3]},  # the fields in another order
    ],
    ids=["1.0-for-1", "field-order"],
)
def test_a_rerun_whose_grid_names_finished_cells_otherwise_is_refused(tmp_path, again):
    """Each cell trained again under a new folder name, and the figures drew every cell twice (review s33)."""
    grid = {"agent.max_groundings": [1, 3], "grpo.kl_beta": [0.0, 0.04]}
    cells = FakeCells()
    run_sweep(MGFRecConfig(), grid, tmp_path, cells)
    assert len(cells.calls) == 4
    with pytest.raises(ConfigError) as info:
        run_sweep(MGFRecConfig(), again, tmp_path, cells)
    text = str(info.value)
    assert text.startswith("grid: cell ") and ", finished earlier in " in text, text
    assert "under another name (a value written otherwise, 1.0 for 1, or the fields in another order)" in text
    assert len(cells.calls) == 4  # nothing trained again
    run_sweep(MGFRecConfig(), grid, tmp_path, cells)  # as before: every cell skipped
    assert len(cells.calls) == 4


@pytest.mark.reliability
def test_a_failed_cells_error_is_recorded_and_said_without_its_secrets(tmp_path, monkeypatch):
    """A cell's error, written to sweep.json (with its traceback) and summary.md and printed, kept a URL's password
    or a key from the environment as the exception held it (review s33)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdef")

    def runner(cfg, out):
        raise ConnectionError("http://bob:hunter2-pw@10.0.0.1/v1 refused the key sk-live-0123456789abcdef")

    said: list[str] = []
    run_sweep(MGFRecConfig(), {"agent.max_groundings": [1]}, tmp_path, runner, say=said.append)
    written = " ".join([*said, *(p.read_text() for p in tmp_path.iterdir() if p.is_file())])
    assert "hunter2-pw" not in written and "sk-live-0123456789abcdef" not in written, written
    assert "http://bob:<redacted>@10.0.0.1/v1 refused the key <redacted>" in written


def test_a_rerun_over_another_field_is_no_renamed_cell(tmp_path):
    """A grid over another field (`trainer.lr` after `grpo.kl_beta`) has a cell at the defaults, the config of a
    finished cell of the first grid: it was refused as that cell renamed, where the docs promise a note (a cell
    of another grid is never drawn with this one's)."""
    cells = FakeCells()
    run_sweep(MGFRecConfig(), {"grpo.kl_beta": [0.0, 0.04]}, tmp_path, cells)
    said: list[str] = []
    rows = run_sweep(MGFRecConfig(), {"trainer.lr": [1e-4, 2e-4]}, tmp_path, cells, say=said.append)
    assert [r["status"] for r in rows] == ["finished", "finished"] and len(cells.calls) == 4
    assert any(s.startswith(f"note: {tmp_path / 'sweep.json'} held another grid") for s in said), said

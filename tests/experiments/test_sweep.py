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
    with pytest.raises(
        ValueError, match=r"cell agent.max_groundings=1 and 1 more was made with other settings.*--eval-limit"
    ):
        run_sweep(MGFRecConfig(), grid, tmp_path, other, settings={"eval_limit": 5, "eval_splits": ["valid"]})
    assert other.calls == []
    # an entry of an older sweep.json (no settings recorded) is not compared on them
    record = read_sweep(tmp_path)
    for entry in record["cells"].values():
        entry.pop("settings")
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    run_sweep(MGFRecConfig(), grid, tmp_path, other, settings={"eval_limit": 5})
    assert other.calls == []


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


def test_default_runner_resumes_from_a_checkpoint_and_skips_a_finished_fit(tmp_path, monkeypatch):
    """fit_and_evaluate: resume only when a checkpoint exists and run.json does not; evaluate missing splits."""
    import mgfrec.eval.runs as runs_mod
    import mgfrec.rl.fit as fit_mod

    fits, evals = [], []

    def fake_fit(data, out, cfg, options, **_):
        fits.append(options.resume)
        write_resolved(cfg, out)  # as run_fit does
        (out / "run.json").write_text("{}")

    def fake_eval(out, split, config, limit=None):
        evals.append(split)
        (out / f"eval_{split}.json").write_text(json.dumps({"ndcg_full": 0.2, "ci": {}}))

    monkeypatch.setattr(fit_mod, "run_fit", fake_fit)
    monkeypatch.setattr(runs_mod, "evaluate_run", fake_eval)
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
    monkeypatch.setattr("mgfrec.data.prepared.PreparedDataset", lambda root: root)
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
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # one cell failed: the exit code says so
    assert fake.calls == [1, 3, 6, 9]
    assert seen["init"] == str(tmp_path / "sft") and seen["splits"] == ("valid",)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"agent.max_groundings={g}" for g in (1, 3, 6, 9)]
    assert json.loads((out / "sweep.json").read_text())["cells"]["agent.max_groundings=9"]["status"] == "failed"
    bad = CliRunner().invoke(app, ["--data", "d", "--out", str(tmp_path / "x"), "--grid", "agent.nope=1"])
    assert bad.exit_code == 2 and "agent.nope" in bad.output
    split = CliRunner().invoke(app, [*args, "--eval-split", "tset"])  # trained a cell, then failed it
    assert split.exit_code == 2 and "--eval-split 'tset': choose one of train, valid, test" in split.output
    # the same sweep again with another --recall-model: its finished cells are not skipped as if they matched
    again = CliRunner().invoke(app, [*args, "--recall-model", "last-title"])
    assert again.exit_code == 2 and "made with other settings" in " ".join(again.output.split())
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

"""Figures: real PNG files from metrics, sweeps and per-sample agent files; the numbers behind Figs. 3 and 5;
and the ``figures`` command (the case study is tests/eval/test_case_study.py)."""

from __future__ import annotations

import csv
import json
import re
import shutil

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mgfrec.cli.figures import figures as figures_command
from mgfrec.eval.figures import (
    difficulty_by_band,
    figures_for,
    mean_rank_by_limit,
    plot_difficulty_bands,
    plot_mean_rank_vs_limit,
    plot_sweep,
    plot_training_curves,
    sweep_points,
)


def assert_png(path):
    """A real, non-trivial image: the PNG signature, some size, and pixels that are not all one colour."""
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01


def write_metrics(run_dir, steps=8):
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=[
                "step",
                "reward/mean",
                "ndcg",
                "reward/format",
                "response_length",
                "valid/ndcg@10",
            ],
        )
        writer.writeheader()
        for s in range(1, steps + 1):  # validation columns are empty on most steps, as GRPOModule writes them
            writer.writerow(
                {
                    "step": s,
                    "reward/mean": 0.1 * s,
                    "ndcg": 0.05 * s,
                    "reward/format": 1.0,
                    "response_length": 100 + 10 * s,
                    "valid/ndcg@10": 0.3 if s % 4 == 0 else "",
                }
            )


def write_sweep(root, limits=(1, 3, 6), failed=9):
    cells = {}
    for g in limits:
        name = f"agent.max_groundings={g}"
        (root / name).mkdir(parents=True)
        (root / name / "ranks_valid.csv").write_text(f"sample_id,target,rank\n0,1,{40 - g}\n1,2,{60 - g}\n")
        cells[name] = {
            "values": {"agent.max_groundings": g},
            "status": "finished",
            "summary": {"ndcg_full": 0.1 + 0.01 * g, "ndcg_full_lo": 0.09 + 0.01 * g, "ndcg_full_hi": 0.11 + 0.01 * g},
        }
    cells[f"agent.max_groundings={failed}"] = {
        "values": {"agent.max_groundings": failed},
        "status": "failed",
        "error": "x",
    }
    grid = {"agent.max_groundings": [*limits, failed]}
    (root / "sweep.json").write_text(json.dumps({"grid": grid, "cells": cells}))


def test_training_curves_are_png_files(tmp_path):
    write_metrics(tmp_path / "run")
    written = plot_training_curves(tmp_path / "run", tmp_path / "fig")
    assert set(written) == {"reward", "response_length", "valid"}  # valid: the steps with valid/ndcg@10
    for path in written.values():
        assert_png(path)


def test_training_curves_refuse_a_file_without_their_columns(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="reward/mean"):
        plot_training_curves(tmp_path / "metrics.csv", tmp_path)


def test_sweep_curve_and_mean_rank_vs_limit(tmp_path):
    write_sweep(tmp_path / "sweep")
    written = plot_sweep(tmp_path / "sweep", tmp_path / "fig")
    assert list(written) == ["agent.max_groundings"]
    assert_png(written["agent.max_groundings"])
    frame = mean_rank_by_limit(tmp_path / "sweep")  # the failed cell is left out
    assert frame["limit"].tolist() == [1, 3, 6] and frame["mean_rank"].tolist() == [
        49.0,
        47.0,
        44.0,
    ]
    assert_png(plot_mean_rank_vs_limit(tmp_path / "sweep", tmp_path / "fig"))


def test_cells_outside_the_current_grid_are_not_plotted(tmp_path):
    """A rerun over another field left the old cells in sweep.json: they were drawn as a curve labelled
    "agent.recall_prior=nan", and Fig. 5 pooled them with the new cells."""
    write_sweep(tmp_path / "sweep")
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    record["grid"] = {"agent.max_groundings": [1, 6]}  # a narrower rerun: the cell for 3 stays on disk
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(record))
    assert sweep_points(tmp_path / "sweep")["cell"].tolist() == ["agent.max_groundings=1", "agent.max_groundings=6"]
    assert mean_rank_by_limit(tmp_path / "sweep")["limit"].tolist() == [1, 6]


def test_mean_rank_vs_limit_refuses_cells_evaluated_on_other_samples(tmp_path):
    """`mgfrec report --limit 1` had rewritten one cell's ranks: Fig. 5 averaged 1 sample against 2."""
    write_sweep(tmp_path / "sweep")
    (tmp_path / "sweep" / "agent.max_groundings=3" / "ranks_valid.csv").write_text("sample_id,target,rank\n0,1,5\n")
    with pytest.raises(
        ValueError, match=r"cells agent.max_groundings=1 \(2 samples\) and agent.max_groundings=3 \(1\)"
    ):
        mean_rank_by_limit(tmp_path / "sweep")


def test_mean_rank_vs_limit_draws_one_line_per_other_swept_value(tmp_path):
    root = tmp_path / "sweep"
    cells = {}
    for g in (1, 3):
        for prior in (0, 4):
            name = f"agent.max_groundings={g},agent.recall_prior={prior}"
            (root / name).mkdir(parents=True)
            (root / name / "ranks_valid.csv").write_text(f"sample_id,target,rank\n0,1,{10 * g + prior}\n")
            values = {"agent.max_groundings": g, "agent.recall_prior": prior}
            cells[name] = {"values": values, "status": "finished", "summary": {}}
    grid = {"agent.max_groundings": [1, 3], "agent.recall_prior": [0, 4]}
    (root / "sweep.json").write_text(json.dumps({"grid": grid, "cells": cells}))
    frame = mean_rank_by_limit(root)  # it averaged the two priors into one point per limit
    assert frame[["limit", "agent.recall_prior", "mean_rank"]].values.tolist() == [
        [1, 0, 10],
        [1, 4, 14],
        [3, 0, 30],
        [3, 4, 34],
    ]
    assert_png(plot_mean_rank_vs_limit(root, tmp_path / "fig"))


def test_sweep_curves_with_two_fields_draw_one_line_per_other_value(tmp_path):
    cells = {}
    for g in (1, 3):
        for beta in (0.0, 0.04):
            cells[f"g={g},b={beta}"] = {
                "values": {"agent.max_groundings": g, "grpo.kl_beta": beta},
                "status": "finished",
                "summary": {"ndcg@10": g * 0.01 + beta},
            }
    (tmp_path / "sweep.json").write_text(
        json.dumps(
            {
                "grid": {"agent.max_groundings": [1, 3], "grpo.kl_beta": [0.0, 0.04]},
                "cells": cells,
            }
        )
    )
    written = plot_sweep(tmp_path, tmp_path / "fig", metric="ndcg@10")
    assert set(written) == {"agent.max_groundings", "grpo.kl_beta"}
    for path in written.values():
        assert_png(path)


def test_a_null_cell_is_a_point_and_values_are_labelled_as_written(tmp_path, monkeypatch):
    """A grid of 32 and null (uncapped feedback): the points' column became 32.0 and NaN, the null cells were left
    out of Figs. 7-8 without a word, and the legends read "=32.0" and "=nan" (review s33)."""
    import mgfrec.eval.sweep_figures as sweep_figures

    cells = {}
    for cap in (32, None):
        for g in (1, 3):
            cells[f"c={cap},g={g}"] = {
                "values": {"agent.max_feedback_tokens": cap, "agent.max_groundings": g},
                "status": "finished",
                "summary": {"ndcg_full": 0.1 * g + (0.05 if cap is None else 0.0)},
            }
    grid = {"agent.max_feedback_tokens": [32, None], "agent.max_groundings": [1, 3]}
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": grid, "cells": cells}))
    drawn = []
    real = sweep_figures.draw_line

    def record(ax, x, y, lo=None, hi=None, **kw):
        drawn.append((kw.get("label"), list(x), [round(v, 3) for v in y]))
        return real(ax, x, y, lo, hi, **kw)

    monkeypatch.setattr(sweep_figures, "draw_line", record)
    written = plot_sweep(tmp_path, tmp_path / "fig")
    assert drawn == [
        ("agent.max_groundings=1", [32, None], [0.1, 0.15]),
        ("agent.max_groundings=3", [32, None], [0.3, 0.35]),
        ("agent.max_feedback_tokens=32", [1, 3], [0.1, 0.3]),
        ("agent.max_feedback_tokens=null", [1, 3], [0.15, 0.35]),
    ]
    for path in written.values():
        assert_png(path)


def test_sweep_curves_with_a_list_valued_field_draw_without_a_traceback(tmp_path):
    """A grid of reward lists (from --grid-file) beside another field: the lists are grouped by their text."""
    rewards = [["ndcg"], ["ndcg", "format"]]
    cells = {}
    for n, r in enumerate(rewards):
        for seed in (1, 2):
            cells[f"r={n},s={seed}"] = {
                "values": {"grpo.rewards": r, "trainer.seed": seed},
                "status": "finished",
                "summary": {"ndcg@10": 0.1 * (n + 1) + 0.01 * seed},
            }
    (tmp_path / "sweep.json").write_text(
        json.dumps({"grid": {"grpo.rewards": rewards, "trainer.seed": [1, 2]}, "cells": cells})
    )
    written = plot_sweep(tmp_path, tmp_path / "fig", metric="ndcg@10")
    assert set(written) == {"grpo.rewards", "trainer.seed"}
    for path in written.values():
        assert_png(path)


def test_difficulty_by_band_uses_inverse_training_popularity():
    samples = pd.DataFrame(
        {
            "sample_id": range(5),
            "target": [0, 1, 2, 2, 3],
            "groundings": [0, 1, 3, 5, 6],
        }
    )
    popularity = np.array([4.0, 2.0, 1.0, 0.0])  # item 3 never seen in training: counted as popularity 1
    bands = difficulty_by_band(samples, popularity)
    assert bands["band"].tolist() == ["[0,1]", "[2,4]", "[5,6]"]
    assert bands["samples"].tolist() == [2, 1, 2]
    assert bands["mean_difficulty"].tolist() == pytest.approx([(0.25 + 0.5) / 2, 1.0, 1.0])
    # agent.max_groundings above 6: one more band, so that no trajectory is left out of the figure
    more = difficulty_by_band(samples.assign(groundings=[0, 1, 3, 8, 9]), popularity)
    assert more["band"].tolist() == ["[0,1]", "[2,4]", "[5,6]", "[7,9]"] and more["samples"].sum() == 5


def test_difficulty_band_figure_from_an_agent_samples_file(tmp_path):
    class TinyData:  # what item_popularity reads of a PreparedDataset: the whole log
        num_items = 4
        interactions = pd.DataFrame({"item_idx": [0, 0, 0, 1, 2, 3]})

    pd.DataFrame(
        {
            "sample_id": [0, 1, 2],
            "target": [0, 1, 3],
            "groundings": [1, 3, 6],
            "end_reason": ["answered"] * 3,
            "rank": [1, 5, 80],
        }
    ).to_csv(tmp_path / "agent_valid_samples.csv", index=False)
    assert_png(plot_difficulty_bands(tmp_path, tmp_path / "fig", ds=TinyData()))
    with pytest.raises(FileNotFoundError, match="agent_test_samples.csv"):
        plot_difficulty_bands(tmp_path, tmp_path / "fig", split="test", ds=TinyData())


def test_figures_for_and_the_command(tmp_path):
    write_metrics(tmp_path / "run")
    write_sweep(tmp_path / "sweep")
    written = figures_for(tmp_path / "sweep", tmp_path / "fig")
    assert sorted(p.name for p in written) == [
        "sweep_mean_rank_vs_limit.png",
        "sweep_sweep_agent.max_groundings_ndcg_full.png",
    ]
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(
        app,
        [
            str(tmp_path / "run"),
            str(tmp_path / "sweep"),
            "--out",
            str(tmp_path / "cli"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)
    assert len(paths) == 5  # reward, response length, valid, sweep curve, mean rank vs limit
    for path in paths:
        assert_png(type(tmp_path)(path))
    # a run evaluated on test only: the default --split valid left its difficulty figure out without a word
    (tmp_path / "run" / "agent_test_samples.csv").write_text("sample_id,target,groundings\n0,1,1\n")
    noted = CliRunner().invoke(app, [str(tmp_path / "run"), "--out", str(tmp_path / "cli2")])
    assert noted.exit_code == 0 and "no agent_valid_samples.csv" in noted.output, noted.output
    assert "--split test draws it" in " ".join(noted.output.split()), noted.output
    # an agent run never evaluated: its curves alone, without a word (review s38); a baseline or a sweep says nothing
    (tmp_path / "run" / "agent_test_samples.csv").unlink()
    run_json = {"kind": "agent", "model": "mgfrec", "data": "d", "data_checksum": "c"}
    (tmp_path / "run" / "run.json").write_text(json.dumps(run_json))
    noted = CliRunner().invoke(app, [str(tmp_path / "run"), "--out", str(tmp_path / "cli3")])
    said = " ".join(noted.output.split())
    assert noted.exit_code == 0 and f"mgfrec evaluate {tmp_path / 'run'} --split valid writes it" in said, said
    quiet = CliRunner().invoke(app, [str(tmp_path / "sweep"), "--out", str(tmp_path / "cli4")])
    assert quiet.exit_code == 0 and "agent_valid_samples.csv" not in quiet.output, quiet.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, [str(empty), "--out", str(tmp_path / "cli")])
    assert bad.exit_code == 2 and "nothing to plot" in bad.output
    # a demo's folder: "nothing to plot" where report names the runs in it; now it names the agent run and the
    # figures the demo drew (review s33)
    (empty / "demo.json").write_text("{}")
    demo = CliRunner().invoke(app, [str(empty), "--out", str(tmp_path / "cli")])
    said = " ".join(demo.output.split())
    assert (
        demo.exit_code == 2 and "a demo's output folder (demo.json); give an agent run (the demo makes one" in said
    ), said
    shutil.copytree(tmp_path / "run", empty / "mgfrec")
    (empty / "mgfrec" / "run.json").write_text(json.dumps({"kind": "agent", "model": "mgfrec", "data": "d"}))
    (empty / "figures").mkdir()
    demo = CliRunner().invoke(app, [str(empty), "--out", str(tmp_path / "cli")])
    said = " ".join(demo.output.split())
    assert f"its figures are in {empty / 'figures'}; give its agent run ({empty / 'mgfrec'})" in said, said
    shutil.rmtree(empty)
    empty.mkdir()
    write_metrics(tmp_path / "other" / "run")  # another folder named "run": its files would replace the first's
    clash = CliRunner().invoke(
        app, [str(tmp_path / "run"), str(tmp_path / "other" / "run"), "--out", str(tmp_path / "c")]
    )
    assert clash.exit_code == 2 and "have the same folder name" in " ".join(clash.output.split())
    assert not (tmp_path / "c").exists()
    # a run with something to plot, then one with nothing (evaluated on test only): the first's figures were
    # written before the error; and one folder named twice was drawn twice
    shown_test = tmp_path / "shown_test"
    shown_test.mkdir()
    (shown_test / "agent_test_samples.csv").write_text("sample_id,target,groundings\n0,1,1\n")
    late = CliRunner().invoke(app, [str(tmp_path / "run"), str(shown_test), "--out", str(tmp_path / "c")])
    text = " ".join(late.output.split())
    assert late.exit_code == 2 and "shown_test: nothing to plot" in text and "--split test draws" in text, text
    assert not (tmp_path / "c").exists()
    twice = CliRunner().invoke(app, [str(tmp_path / "run"), str(tmp_path / "run") + "/", "--out", str(tmp_path / "c")])
    assert twice.exit_code == 2 and "are one folder; give each folder once" in " ".join(twice.output.split())
    assert not (tmp_path / "c").exists()


@pytest.mark.reliability
def test_an_unfinished_sweep_or_fit_is_drawn_with_a_note_saying_so(tmp_path):
    """A sweep stopped in its third cell drew the curve of the first two, and an unfinished fit's partial curves were
    drawn, both with exit code 0 and no word, where every other command names such a folder (review s28)."""
    from mgfrec.runs import RunInfo, write_run_info

    write_sweep(tmp_path / "sweep")  # three finished cells and one failed
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    record["cells"]["agent.max_groundings=12"] = {"values": {"agent.max_groundings": 12}, "status": "finished"}
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(record))  # an earlier grid's cell: not named
    write_metrics(tmp_path / "run")  # no run.json: a fit still running, stopped or killed
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(app, [str(tmp_path / "sweep"), str(tmp_path / "run"), "--out", str(tmp_path / "f")])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert "3 of 4 cells of its grid finished (agent.max_groundings=9: failed)" in text, text
    assert "run: an unfinished fit (no run.json yet): its training curves end where it stopped" in text, text
    write_run_info(tmp_path / "run", RunInfo("agent", "mgfrec", str(tmp_path), "0"))
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    record["grid"] = {"agent.max_groundings": [1, 3, 6]}  # every cell of the grid finished
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(record))
    quiet = CliRunner().invoke(app, [str(tmp_path / "sweep"), str(tmp_path / "run"), "--out", str(tmp_path / "g")])
    said = " ".join(quiet.output.split())
    assert quiet.exit_code == 0 and "an unfinished fit" not in said and "cells of its grid" not in said, said
    assert "no agent_valid_samples.csv, so no difficulty figure (mgfrec evaluate" in said  # never evaluated (s38)


@pytest.mark.slow
def test_agent_evaluation_writes_per_sample_groundings_for_the_band_figure(tmp_path, monkeypatch):
    """A real agent evaluation (scripted engine: ground once, then answer) writes agent_<split>_samples.csv
    whose ranks equal ranks_<split>.csv and whose grounding counts feed the Fig. 3 plot."""
    from agentkit import tiny_agent_run

    from mgfrec.config.schema import EvalConfig
    from mgfrec.eval import agent_eval
    from mgfrec.eval.runs import evaluate_run
    from mgfrec.rollout.scripted_engine import ScriptedEngine

    sets = ["retriever.recall_size=5", "agent.max_new_tokens_per_turn=64"]
    run, ds, _ = tiny_agent_run(tmp_path, sets, data={"n_users": 30, "n_items": 60, "n_artists": 8, "max_length": 6})

    def script(context: str, j: int) -> str:
        history = context.split("<|im_start|>user", 1)[1].split("\n\n")[0]
        last = [line.split(". ", 1)[1] for line in history.splitlines() if ". " in line][-1].strip()
        first_turn = context.endswith("<|im_start|>assistant\n")  # later turns follow an observation
        return (
            f"<think>look</think><ground>{last}</ground>" if first_turn else f"<think>ok</think><answer>{last}</answer>"
        )

    monkeypatch.setattr(agent_eval, "build_engine", lambda c, m, tok: ScriptedEngine(tok, script))
    evaluate_run(run, "valid", EvalConfig(bootstrap_samples=20))
    samples = pd.read_csv(run / "agent_valid_samples.csv")
    ranks = pd.read_csv(run / "ranks_valid.csv")
    assert list(samples.columns) == [
        "sample_id",
        "target",
        "groundings",
        "end_reason",
        "rank",
        "reward",
        "answer",
    ]
    assert (
        samples["sample_id"].tolist() == ranks["sample_id"].tolist()
        and samples["rank"].tolist() == ranks["rank"].tolist()
    )
    assert samples["target"].tolist() == ranks["target"].tolist()
    frame = ds.split("valid")
    lasts = [ds.titles[h[-1]] for h in frame["history"]]  # the scripted agent answers its last history title
    assert [a.replace("\u2060", "") for a in samples["answer"]] == lasts
    stats = json.loads((run / "agent_valid.json").read_text())
    assert (
        samples["groundings"].mean() == pytest.approx(stats["mean_groundings"]) and (samples["groundings"] == 1).all()
    )
    assert_png(plot_difficulty_bands(run, tmp_path / "fig"))  # the run's own data set gives the popularity


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("sweep.json", "[]", "sweep.json: expected a JSON object, got list"),
        ("sweep.json", '{"cells": {"x": "finished"}}', "sweep.json: cell 'x' must be an object"),
        ("sweep.json", '{"cells": {"x": {"status": "finished", "summary": [1]}}}', "'summary' must be an object"),
        ("sweep.json", '{"grid": {', "sweep.json: not valid JSON"),
        ("metrics.csv", "", "metrics.csv: not a readable CSV file"),
        ("sweep.json", '{"grid": 5, "cells": {}}', "sweep.json: 'grid' must be an object of field -> list of values"),
        (
            "sweep.json",
            '{"grid": {}, "cells": {"x": {"status": "finished"}}}',
            "cell 'x' is finished but has no 'values'",
        ),
        (
            "sweep.json",
            '{"grid": {"a.b": [1]}, "cells": {"x": {"status": "finished", "values": {"a.b": 1}, "summary": '
            '{"ndcg_full": "high"}}}}',
            "cell 'x': summary 'ndcg_full' must be a number, got 'high'",
        ),
        (
            "metrics.csv",
            "step,reward/mean\n1,0.1\n2,bad\n",
            "metrics.csv:3: column reward/mean holds 'bad', not a number",
        ),
        (
            "run.json",
            '{"kind": "agent", "model": "mgfrec", "data": 5, "data_checksum": "x"}',
            "field 'data' must be text",
        ),
        (
            "run.json",
            '{"kind": "agent", "model": "mgfrec", "data": "d", "data_checksum": "x", "extra": []}',
            "field 'extra' must be an object, got list",
        ),
    ],
    ids=[
        "list",
        "cell-not-object",
        "summary-not-object",
        "truncated",
        "empty-metrics",
        "grid-not-object",
        "finished-without-values",
        "summary-text",
        "metrics-text",
        "run-data-number",
        "run-extra-list",
    ],
)
def test_a_damaged_file_is_one_line_naming_it(tmp_path, name, text, message):
    # tracebacks (AttributeError, TypeError) or pandas' and json's own words without the file ("error: target")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / name).write_text(text)
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(app, [str(folder), "--out", str(tmp_path / "fig")])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0,99999,1", "agent_valid_samples.csv:2: column target holds 99999, not a whole number in [0, 4)"),
        ("0,-1,1", "column target holds -1, not a whole number in [0, 4)"),  # indexed the last item
        ("0,x,1", "column target holds 'x'"),
        ("0,1,", "agent_valid_samples.csv:2: column groundings is empty, not a whole number from 0"),  # dropped
    ],
)
def test_a_damaged_samples_row_is_one_line_naming_it(tmp_path, row, message):
    """An IndexError or TypeError traceback, or an empty count dropping the sample from every band (n=4 of 5)."""

    class TinyData:
        num_items = 4
        interactions = pd.DataFrame({"item_idx": [0, 0, 1]})

    (tmp_path / "agent_valid_samples.csv").write_text(f"sample_id,target,groundings\n{row}\n1,1,2\n")
    with pytest.raises(ValueError) as err:
        plot_difficulty_bands(tmp_path, tmp_path / "fig", ds=TinyData())
    assert message in str(err.value) and str(err.value).endswith("; write it again")


def test_a_baseline_run_or_an_unknown_metric_is_refused_before_any_figure(tmp_path):
    write_sweep(tmp_path / "sweep")
    baseline = tmp_path / "pop"
    baseline.mkdir()
    (baseline / "run.json").write_text('{"kind": "baseline", "model": "pop", "data": "d", "data_checksum": "x"}')
    (baseline / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    app = typer.Typer()
    app.command()(figures_command)
    fig = tmp_path / "fig"
    result = CliRunner().invoke(app, [str(tmp_path / "sweep"), str(baseline), "--out", str(fig)])
    assert result.exit_code == 2 and "a baseline run (mgfrec baseline fit); the figures are drawn for agent runs" in (
        " ".join(result.output.split())
    )
    result = CliRunner().invoke(app, [str(tmp_path / "sweep"), "--out", str(fig), "--metric", "ndcg@5"])
    assert result.exit_code == 2 and "--metric 'ndcg@5': choose one of ndcg_full, ndcg@10, mean_rank" in result.output
    assert not fig.exists()  # the sweep's curve was written before the second folder or the metric failed


def test_a_samples_file_without_its_columns_is_named(tmp_path):
    from mgfrec.eval.figures import SAMPLE_COLUMNS, read_table

    (tmp_path / "agent_valid_samples.csv").write_text("sample_id,groundings\n0,1\n")
    with pytest.raises(ValueError, match=r"agent_valid_samples\.csv: no column\(s\) target"):  # was "error: target"
        read_table(tmp_path / "agent_valid_samples.csv", SAMPLE_COLUMNS)


def test_a_wrong_split_is_refused_before_any_figure_is_written(tmp_path):
    write_sweep(tmp_path / "sweep")
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(app, [str(tmp_path / "sweep"), "--out", str(tmp_path / "fig"), "--split", "tset"])
    assert result.exit_code == 2 and "--split 'tset': choose one of train, valid, test" in result.output
    assert not (tmp_path / "fig").exists()  # the sweep curve was written, then the command failed


def test_sweep_curves_with_mapping_values_keep_the_grid_order(tmp_path):
    """A --grid-file may sweep a mapping (retriever.options): sorting the values was a TypeError traceback."""
    options = [{"heads": 2}, {"heads": 1}]
    cells = {
        f"o={n}": {"values": {"retriever.options": o}, "status": "finished", "summary": {"ndcg_full": 0.1 * (n + 1)}}
        for n, o in enumerate(options)
    }
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {"retriever.options": options}, "cells": cells}))
    written = plot_sweep(tmp_path, tmp_path / "fig")
    assert_png(written["retriever.options"])
    from mgfrec.eval.sweep_figures import _x_order

    assert _x_order([{"heads": 1}, {"heads": 2}], options) == [1, 0]  # as the grid lists them
    assert _x_order([6, 1, 3], [1, 3, 6]) == [1, 2, 0]  # numbers by value


@pytest.mark.reliability
def test_a_sweep_without_fig5s_ranks_is_refused_before_any_figure(tmp_path):
    """Its sweep curves were written, then Fig. 5 failed: exit 2 with files on disk that --json never listed. The
    message now names the split the cells were evaluated on."""
    write_sweep(tmp_path / "sweep")
    for ranks in (tmp_path / "sweep").glob("*/ranks_valid.csv"):
        ranks.rename(ranks.with_name("ranks_test.csv"))
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(app, [str(tmp_path / "sweep"), "--out", str(tmp_path / "fig")])
    assert result.exit_code == 2 and "has ranks_valid.csv (its cells were evaluated on test: pass --split test)" in (
        " ".join(result.output.split())
    ), result.output
    assert not (tmp_path / "fig").exists()
    result = CliRunner().invoke(app, [str(tmp_path / "sweep"), "--out", str(tmp_path / "fig"), "--split", "test"])
    assert result.exit_code == 0, result.output


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("step,reward/mean\n", "metrics.csv: a header and no rows; nothing to plot"),
        ("step,reward/mean\n,0.5\n", "metrics.csv:2: column step is empty, not a whole number from 0"),
        ("step,reward/mean,reward/mean\n1,0.5,0.6\n", "metrics.csv:1: column(s) reward/mean appear more than once"),
    ],
    ids=["header-only", "empty-step", "column-twice"],
)
def test_a_metrics_file_that_cannot_be_drawn_is_one_line(tmp_path, text, message):
    """Each drew a PNG: an empty plot, a point at step NaN, a legend entry "reward: mean.1 part"."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text(text)
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(app, [str(tmp_path / "run"), "--out", str(tmp_path / "fig")])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "fig").exists()


def test_a_backend_name_matplotlib_does_not_know_does_not_break_the_figures():
    # MPLBACKEND=nosuch failed matplotlib's import: a traceback of mgfrec figures, which draws files with Agg anyway
    import os
    import subprocess
    import sys

    code = (
        "import os\nimport mgfrec.eval.figures\nimport matplotlib\n"
        "print(matplotlib.get_backend(), os.environ['MPLBACKEND'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "nosuch"}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lower().split() == ["agg", "nosuch"]  # drawn with Agg; the variable kept for other programs


def test_mean_rank_vs_limit_names_a_finished_cell_without_ranks_and_refuses_a_nan_rank(tmp_path):
    # a finished cell without ranks_valid.csv was dropped from Fig. 5 without a word (Figs. 7-8 still drew it);
    # a NaN rank was averaged around
    write_sweep(tmp_path / "sweep")
    ranks = tmp_path / "sweep" / "agent.max_groundings=3" / "ranks_valid.csv"
    ranks.unlink()
    with pytest.raises(ValueError, match=r"finished cell\(s\) agent.max_groundings=3 hold no ranks_valid.csv"):
        mean_rank_by_limit(tmp_path / "sweep")
    ranks.write_text("sample_id,target,rank\n0,1,5\n1,2,\n")
    with pytest.raises(ValueError, match=r"ranks_valid.csv: column rank holds values that are not numbers"):
        mean_rank_by_limit(tmp_path / "sweep")


@pytest.mark.reliability
def test_a_stale_agent_run_or_sweep_cell_is_refused_as_report_refuses_it(tmp_path):
    """An agent run whose recall run was fitted again since (or a derived run whose trained run was trained again):
    report and evaluate refuse its results, while figures drew its difficulty bands and curves with exit 0 (review
    s29). The same for a finished sweep cell."""
    from mgfrec.eval.figures import check_figure_args
    from mgfrec.runs import RunInfo, write_run_info

    def run(folder, kind="agent", **extra):
        write_run_info(folder, RunInfo(kind=kind, model="m", data="/d", data_checksum="c", extra=extra))
        return json.loads((folder / "run.json").read_text())["created"]

    recall = tmp_path / "hybrid"
    agent = tmp_path / "sft"
    agent.mkdir()
    write_metrics(agent)
    run(agent, recall_run=str(recall), recall_created=run(recall, kind="baseline"))
    write_sweep(tmp_path / "sweep")
    cell = tmp_path / "sweep" / "agent.max_groundings=3"
    run(cell, recall_run=str(recall), recall_created=json.loads((recall / "run.json").read_text())["created"])
    check_figure_args([agent, tmp_path / "sweep"], "valid", "ndcg_full")  # current: drawn
    run(recall, kind="baseline")  # fitted again
    for folder, named in ((agent, "sft"), (tmp_path / "sweep", "agent.max_groundings=3")):
        with pytest.raises(ValueError, match=rf"{re.escape(named)}: its recall run .* was fitted again"):
            check_figure_args([folder], "valid", "ndcg_full")


@pytest.mark.reliability
def test_a_sweep_whose_cells_were_evaluated_or_trained_again_is_refused(tmp_path):
    """figures drew sweep.json's summary (20 samples) in Figs. 7-8 beside a Fig. 5 from cells evaluated again on
    10, mixed cells ranked with and without their history, and drew a cell trained again by hand (review s30)."""
    sweep = tmp_path / "sweep"
    write_sweep(sweep)
    record = json.loads((sweep / "sweep.json").read_text())
    record["summary_split"] = "valid"
    for name, entry in record["cells"].items():
        if entry["status"] == "finished":
            entry["summary"].update(samples=2, mean_rank=50.0)
            entry["settings_shown"] = {"eval_limit": 2}
            stored = {"samples": 2, "ndcg_full": entry["summary"]["ndcg_full"], "mean_rank": 50.0}
            (sweep / name / "eval_valid.json").write_text(json.dumps({**stored, "exclude_history": True}))
    (sweep / "sweep.json").write_text(json.dumps(record))
    plot_sweep(sweep, tmp_path / "fig")  # every cell as summarised
    mean_rank_by_limit(sweep)
    cell = sweep / "agent.max_groundings=3"
    kept = (cell / "eval_valid.json").read_text()
    (cell / "eval_valid.json").write_text(kept.replace('"exclude_history": true', '"exclude_history": false'))
    with pytest.raises(ValueError, match=r"\(exclude_history true\) and agent.max_groundings=3 \(false\) were ranked"):
        mean_rank_by_limit(sweep)
    (cell / "eval_valid.json").write_text(kept.replace('"samples": 2', '"samples": 1'))
    for draw in (lambda: plot_sweep(sweep, tmp_path / "fig"), lambda: mean_rank_by_limit(sweep)):
        with pytest.raises(ValueError, match=r"cell agent.max_groundings=3 no longer holds .* \(samples 1 against 2"):
            draw()
    (cell / "eval_valid.json").unlink()  # a fit into the cell retires its results
    # the command restores the cell: the cell's config.yaml holds the eval section the sweep used
    with pytest.raises(
        ValueError, match=r"eval_valid.json is gone: .*--split valid --limit 2 --config \S+config.yaml\)"
    ):
        plot_sweep(sweep, tmp_path / "fig")
    (cell / "eval_valid.json").write_text(kept)
    # a grid over eval.exclude_history itself: one Fig. 5 line per way, each comparable in itself (it was refused)
    record["grid"]["eval.exclude_history"] = [True, False]
    import shutil

    for name in list(record["cells"]):
        entry = record["cells"].pop(name)
        if entry["status"] != "finished":
            continue
        for how in (True, False):
            both = f"{name},eval.exclude_history={str(how).lower()}"
            shutil.copytree(sweep / name, sweep / both)
            stored = json.loads((sweep / both / "eval_valid.json").read_text())
            (sweep / both / "eval_valid.json").write_text(json.dumps({**stored, "exclude_history": how}))
            record["cells"][both] = {**entry, "values": {**entry["values"], "eval.exclude_history": how}}
    record["grid"]["agent.max_groundings"] = [1, 3, 6]
    (sweep / "sweep.json").write_text(json.dumps(record))
    assert len(mean_rank_by_limit(sweep)) == 6


def test_a_fit_stopped_in_its_first_step_draws_no_blank_curves_and_says_why(tmp_path):
    """A fit stopped during step 1 leaves only the step-0 validation row: blank reward and response-length PNGs were
    written with exit code 0 and no word (review s37)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,reward/mean,ndcg,response_length,valid/ndcg@10\n0,,,,0.25\n")
    written = plot_training_curves(run / "metrics.csv", tmp_path / "f")
    assert set(written) == {"valid"} and not (tmp_path / "f" / "reward.png").exists()
    app = typer.Typer()
    app.command()(figures_command)
    result = CliRunner().invoke(app, [str(run), "--out", str(tmp_path / "g")])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "run: no training step recorded in metrics.csv" in text, text
    write_metrics(run)
    again = CliRunner().invoke(app, [str(run), "--out", str(tmp_path / "h")])
    assert "no training step" not in " ".join(again.output.split())


def test_one_step_has_whole_number_ticks_and_one_swept_value_keeps_its_interval():
    """A one-step fit's axis read 0.945, 0.960, ... (the docs promise whole numbers), and a sweep curve of one
    finished cell drew a band of no width: the interval in summary.csv was not shown (review s37)."""
    import matplotlib.pyplot as plt

    from mgfrec.eval.plotting import draw_line, integer_steps

    fig, ax = plt.subplots()
    ax.plot([1], [0.19])
    integer_steps(ax)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
    fig, ax = plt.subplots()
    draw_line(ax, ["l2"], [0.22], [0.2], [0.24])
    (bars,) = ax.containers
    segment = bars.lines[2][0].get_segments()[0]
    assert segment[:, 1].tolist() == pytest.approx([0.2, 0.24])
    plt.close(fig)


def test_fig3_popularity_counts_every_interaction_with_the_item():
    """Fig. 3's popularity counted train-split targets only: an item first seen in the valid or test split counted
    1, the hardest (351 of 490 CDs valid targets), where the paper counts "the number of user interactions with that
    item" (section 5.3.1; review s42)."""
    from mgfrec.eval.figures import item_popularity

    class TinyData:
        num_items = 5
        interactions = pd.DataFrame({"item_idx": [0, 0, 3, 1, 3, 3]})

    assert item_popularity(TinyData()).tolist() == [2.0, 1.0, 0.0, 3.0, 0.0]

"""Table-4-style reports: rows, intervals, paired marks against the reference, files."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from evalkit import N_ITEMS, FixedScorer, NextItemOracle, make_dataset, make_run

from mgfrec.config.schema import EvalConfig
from mgfrec.eval.report import BETTER, WORSE, build_report
from mgfrec.ranking.evaluator import evaluate_ranks

FAST = EvalConfig(bootstrap_samples=200)


@pytest.fixture
def runs(tiny_ds, tmp_path):
    return {
        "constant": make_run(tmp_path / "constant-tiny", tiny_ds, FixedScorer.name, np.zeros(N_ITEMS)),
        "oracle": make_run(tmp_path / "oracle-tiny", tiny_ds, NextItemOracle.name),
        "constant2": make_run(tmp_path / "constant2-tiny", tiny_ds, FixedScorer.name, np.ones(N_ITEMS)),
    }


def test_report_marks_significant_differences_only(runs):
    rep = build_report([runs["constant"], runs["oracle"], runs["constant2"]], "test", config=FAST)
    assert [r.name for r in rep.rows] == ["constant-tiny", "oracle-tiny", "constant2-tiny"]
    assert rep.reference == "constant-tiny" and rep.rows[0].is_reference and rep.rows[0].comparison is None
    oracle, twin = rep.rows[1], rep.rows[2]
    assert oracle.mark("ndcg@5") == BETTER and oracle.mark("ndcg_full") == BETTER
    assert oracle.mark("hit@10") == ""  # both hit at 10 on every sample
    assert all(twin.mark(m) == "" for m in rep.metrics)
    assert rep.columns == ["hit@5", "ndcg@5", "hit@10", "ndcg@10", "hit@20", "ndcg@20", "ndcg_full"]


def test_every_table_says_how_items_were_ranked(runs):
    """The numbers move by ~30% with eval.exclude_history and docs/evaluation.md asks that it be stated with every
    number, but the tables, the report files and the legends were the same either way (review s32)."""
    rep = build_report([runs["constant"], runs["oracle"]], "test", config=FAST)
    said = "Ranking: each sample's history items (its last history_length) left out, never the target"
    assert any(n.startswith(said) for n in rep.notes()) and any(n.startswith(said) for n in rep.terminal_notes())
    assert rep.to_dict()["exclude_history"] is True and said in rep.to_markdown()
    ranked = build_report(
        [runs["constant"], runs["oracle"]], "test", config=FAST.model_copy(update={"exclude_history": False})
    )
    assert "Ranking: every item ranked, history items too (eval.exclude_history: false)." in ranked.notes()
    assert ranked.to_dict()["exclude_history"] is False
    assert ranked.rows[0].result.table().title.endswith("samples, history ranked too)")
    assert rep.rows[0].result.table().title.endswith("samples, history excluded)")


def test_baseline_option_picks_the_reference_and_prepends_it(runs):
    rep = build_report([runs["constant"]], "test", baseline=runs["oracle"], config=FAST)
    assert [r.name for r in rep.rows] == ["oracle-tiny", "constant-tiny"]
    assert rep.reference == "oracle-tiny"
    assert rep.rows[1].mark("ndcg@5") == WORSE
    rep = build_report([runs["constant"], runs["oracle"]], "test", baseline=runs["oracle"], config=FAST)
    assert [r.is_reference for r in rep.rows] == [False, True]


def test_markdown_csv_and_json_say_the_same(runs, tmp_path):
    rep = build_report([runs["constant"], runs["oracle"]], "test", config=FAST)
    paths = rep.write(tmp_path / "out")
    md = paths["md"].read_text()
    assert "| Run | Method | n | H@5 | N@5 | H@10 | N@10 | H@20 | N@20 | N_full |" in md
    assert "| oracle-tiny | eval-test-oracle | 40 | **1.0000**▲ [1.0000, 1.0000] |" in md
    assert "constant-tiny (ref)" in md and "not significant" in md
    frame = pd.read_csv(paths["csv"])
    assert frame["run"].tolist() == ["constant-tiny", "oracle-tiny"]
    assert frame.loc[1, "ndcg@5_vs_reference"] == "better" and frame.loc[1, "hit@10_diff"] == 0.0
    payload = json.loads(paths["json"].read_text())
    assert payload["reference"] == "constant-tiny" and payload["rows"][0]["vs_reference"] is None
    assert payload["rows"][1]["vs_reference"]["ndcg_full"]["significant"] is True
    assert payload["rows"][1]["hit@5"] == 1.0 and payload["rows"][1]["ci"]["hit@5"] == [1.0, 1.0]


@pytest.mark.reliability
def test_a_run_a_signal_stopped_is_named_in_every_form_of_the_report(runs, tmp_path):
    """A baseline Ctrl-C stopped after one epoch (run.json extra.stopped: user) was an ordinary row in the table,
    the files and --json (review s28)."""
    from mgfrec.runs import read_run_info, write_run_info

    info = read_run_info(runs["oracle"])
    write_run_info(runs["oracle"], type(info)(**{**info.__dict__, "extra": {**info.extra, "stopped": "user"}}))
    rep = build_report([runs["constant"], runs["oracle"]], "test", config=FAST)
    said = "oracle-tiny: its training was stopped (Ctrl-C or SIGTERM) before it ended; the row is its best epoch"
    assert any(note.startswith(said) for note in rep.terminal_notes())
    paths = rep.write(tmp_path / "out")
    assert said in paths["md"].read_text()
    assert [r["stopped"] for r in json.loads(paths["json"].read_text())["rows"]] == [None, "user"]


def test_report_uses_its_own_ks_and_bootstrap_for_every_row(runs):
    build_report([runs["constant"]], "test", config=EvalConfig(bootstrap_samples=50))  # stores ks 5/10/20
    rep = build_report([runs["constant"], runs["oracle"]], "test", config=EvalConfig(ks=(1, 3), bootstrap_samples=0))
    assert rep.columns == ["hit@1", "ndcg@1", "hit@3", "ndcg@3", "ndcg_full"]
    assert all(list(r.result.metrics) == rep.metrics for r in rep.rows)
    # no bootstrap ran: the legend said "(0 resamples)" and that the bootstrap and the sign test both reject
    legend = " ".join(rep.notes())
    assert "No intervals (eval.bootstrap_samples: 0)" in legend and "exact sign test rejects" in legend
    assert "resamples" not in legend and "both reject" not in legend
    assert rep.rows[1].mark("ndcg_full") == BETTER  # the sign test alone still marks the oracle


def test_runs_on_other_samples_stay_in_the_table_unmarked(runs, tiny_ds, tmp_path):
    other_ds = make_dataset(tmp_path / "other", n_users=30)
    other = make_run(tmp_path / "other-run", other_ds, NextItemOracle.name)
    rep = build_report([runs["constant"], other, runs["constant2"]], "test", config=FAST)
    assert rep.rows[1].comparison is None and "different data sets" in rep.rows[1].comparison_error
    # named by their runs: two runs of one method were "'pop' and 'pop'"
    assert rep.rows[1].comparison_error.startswith(f"'{rep.rows[1].name}' and '{rep.rows[0].name}' were evaluated")
    assert any("not compared" in n for n in rep.notes())
    # nor bold: the oracle on other samples took "the best mean" of every column from the rows it was not compared with
    other_beats = [m for m in rep.metrics if rep.rows[1].result.metrics[m] > rep.rows[0].result.metrics[m]]
    assert other_beats  # the case is tried
    assert all(rep.best(m) == rep.rows[0].result.metrics[m] for m in rep.metrics)
    other_line = next(line for line in rep.to_markdown().splitlines() if line.startswith(f"| {rep.rows[1].name} "))
    assert "**" not in other_line, (other_beats, other_line)
    assert "Bold: the best mean of each metric among the rows compared on the same samples." in rep.notes()[0]
    assert any("bold: best of the rows compared on the same samples;" in line for line in rep.terminal_notes())
    # the reference the only row on its samples: it was bold in every column, "best" of nothing, above the rows on
    # other samples that beat it (review s34); nothing is bold now, and the notes say why
    alone = build_report([runs["constant"], other], "test", config=FAST)
    assert "**" not in alone.to_markdown() and not any(alone.is_best(alone.rows[0], m) for m in alone.metrics)
    assert "Nothing is bold: no row besides the reference was compared on its samples." in alone.notes()[0]
    # the terminal legend described bold as "best of the rows compared..." while nothing was bold (review s40)
    said = " ".join(alone.terminal_notes())
    assert "bold: none (no row besides the reference was compared on its samples)" in said and "bold: best" not in said


def test_agent_runs_with_a_stored_result_are_reported(runs, tiny_ds, tmp_path):
    agent = make_run(tmp_path / "mgfrec-tiny", tiny_ds, "mgfrec", kind="agent")
    with pytest.raises(FileNotFoundError, match="no policy"):  # no stored result, and nothing to roll out
        build_report([runs["constant"], agent], "test", config=FAST)
    test = tiny_ds.split("test")
    evaluate_ranks(
        np.full(len(test), 2),
        test["sample_id"].to_numpy(),
        split="test",
        method="mgfrec",
        targets=test["target"].to_numpy(),
        num_items=N_ITEMS,
        data_checksum=tiny_ds.checksum,
    ).save(agent)
    rep = build_report([runs["constant"], agent], "test", config=FAST)
    assert rep.rows[1].result.method == "mgfrec" and rep.rows[1].mark("ndcg@5") == BETTER


def test_a_run_named_twice_is_refused(runs):
    with pytest.raises(ValueError, match="named twice"):
        build_report([runs["constant"], runs["constant"]], "test", config=FAST)


def test_the_table_fits_80_columns_with_names_whole_and_a_legend(runs, tiny_ds, tmp_path):
    from rich.console import Console

    long_name = "mgfrec-no-multi-grounding-tiny"
    extra = [make_run(tmp_path / f"c{i}-tiny", tiny_ds, FixedScorer.name, np.full(N_ITEMS, float(i))) for i in range(3)]
    extra.append(make_run(tmp_path / long_name, tiny_ds, FixedScorer.name, np.full(N_ITEMS, 5.0)))
    rep = build_report([runs["constant"], runs["oracle"], *extra], "test", config=FAST)
    console = Console(width=80, record=True)
    console.print(rep.table(80))
    for line in rep.terminal_notes():
        console.print(line, markup=False, highlight=False)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "-tiny" in line]
    assert len(rows) == 6  # one line per run: no interval or name wrapped onto a second line
    assert any(long_name in line for line in rows) and any("constant-tiny (ref)" in line for line in rows)
    assert "N@10" in text and "N_full" in text and "in the report files" in text  # the rest is in the files
    assert "(ref): the reference run; ▲/▼: significantly better/worse" in text
    assert "bootstrap interval" in text and "N_full: NDCG without cut-off" in text
    # two folders of one name were shown as their whole paths, cut alike in a terminal, "(ref)" with them (s40)
    deep = tmp_path / "a-rather-long-folder-name-for-experiments" / "with-nested-levels-of-grid-cells"
    twins = [make_run(deep / cell / "run", tiny_ds, FixedScorer.name, np.full(N_ITEMS, 1.0)) for cell in ("a", "b")]
    named = build_report(twins, "test", config=FAST)
    assert [r.name for r in named.rows] == ["a/run", "b/run"]
    wide = Console(width=200, record=True)
    wide.print(rep.table(200))
    assert "H@5" in wide.export_text() and "in the report files" not in wide.export_text()
    # without a bootstrap (eval.bootstrap_samples: 0) the legend explained intervals that were not shown
    no_bootstrap = FAST.model_copy(update={"bootstrap_samples": 0})
    plain = build_report([runs["constant"], runs["oracle"]], "test", config=no_bootstrap)
    legend = " ".join(plain.legend())
    assert "bootstrap interval" not in legend and "sign test alone" in legend and "no intervals" in legend
    # the terminal legend left out what only the report file said: no correction, and a bootstrap too small to mark
    assert "no correction across metrics or runs" in " ".join(rep.legend())
    few = build_report(
        [runs["constant"], runs["oracle"]], "test", config=FAST.model_copy(update={"bootstrap_samples": 20})
    )
    assert (
        "with 20 resamples no difference can be marked and each [lo,hi] rests on 20 resampled means; give at least "
        "40 (--bootstrap)"  # an interval of one or two resamples was shown without a word (noted in review s40)
    ) in " ".join(few.legend())
    assert "no difference can be marked" not in " ".join(rep.legend())


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("limit", "error", "message"),
    [
        (0, ValueError, "limit (--limit): give at least 1 sample, got 0"),  # was "is the split empty?"
        (-1, ValueError, "limit (--limit): give at least 1 sample, got -1"),  # was numpy's negative dimensions
        (2.5, TypeError, "limit (--limit): give a whole number of samples, got 2.5"),
        ("3", TypeError, "limit (--limit): give a whole number of samples, got '3'"),
    ],
)
def test_a_bad_limit_is_named_by_the_library_too(runs, limit, error, message):
    from mgfrec.eval.runs import evaluate_run

    with pytest.raises(error, match=re.escape(message)):
        build_report([runs["constant"]], "test", config=FAST, limit=limit)
    with pytest.raises(error, match=re.escape(message)):
        evaluate_run(runs["constant"], "test", FAST, limit=limit, write=False)


@pytest.mark.reliability
def test_one_path_given_as_the_runs_is_refused(runs):
    """It was read letter by letter, and refused as "a run folder is named twice"."""
    with pytest.raises(TypeError, match="runs: give a list of run folders, not one path"):
        build_report(str(runs["constant"]), "test", config=FAST)


def test_a_bootstrap_too_small_to_mark_anything_says_so(runs):
    # with B <= 2/alpha - 1 resamples the percentile p-value is never below alpha: the legend read as usual
    few = build_report([runs["constant"], runs["oracle"]], "test", config=EvalConfig(bootstrap_samples=39))
    assert any("With 39 resamples the bootstrap p-value cannot fall below alpha=0.05" in n for n in few.notes())
    assert any("(its least is 2/40)" in n and "give at least 40" in n for n in few.notes())
    enough = build_report([runs["constant"], runs["oracle"]], "test", config=EvalConfig(bootstrap_samples=40))
    assert not any("cannot fall below alpha" in n for n in enough.notes())


def test_the_caption_of_hidden_metrics_says_where_they_are(runs):
    # without --out it pointed at "the report files", which nothing had written
    from rich.console import Console

    rep = build_report([runs["constant"], runs["oracle"]], "test", config=FAST)

    def caption(files):
        console = Console(width=200, record=True)
        console.print(rep.table(60, files=files))
        return " ".join(console.export_text().split())

    assert "in the report files" in caption(True)
    assert "not shown; --out DIR or --json gives every metric" in caption(False)

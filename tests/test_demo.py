"""The demo pipeline end to end on a tiny synthetic data set: prepare, index, baselines, agent, one report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.config.load import load_config
from mgfrec.demo import DemoOptions, demo_variants, run_demo

pytestmark = pytest.mark.slow  # the whole pipeline: every baseline fitted, and the agent stages

TINY = [
    "data.options={n_users: 80, n_items: 150, n_artists: 20, max_length: 8}",
    "retriever.max_epochs=2",
    "retriever.patience=1",
]


BASELINES_ONLY = DemoOptions(agent=False, eval_samples=None)


def test_run_demo_fits_evaluates_and_reuses(tmp_path):
    messages: list[str] = []
    cfg = load_config(None, TINY)
    result = run_demo(
        cfg, tmp_path, baselines=("pop", "last-title", "sasrec", "hybrid"), options=BASELINES_ONLY, say=messages.append
    )
    report = json.loads(result.written["json"].read_text())
    rows = {row["run"]: row for row in report["rows"]}
    assert set(rows) == {"pop", "last-title", "sasrec", "hybrid"}
    assert rows["last-title"]["reference"] and report["reference"] == "last-title"
    assert all(row["samples"] == rows["pop"]["samples"] > 0 for row in rows.values())
    # hybrid blends the demo's SASRec run rather than training another
    hybrid_state = json.loads((tmp_path / "hybrid" / "hybrid.json").read_text())
    assert hybrid_state["options"]["collaborative_run"] == str(tmp_path / "sasrec")
    # a second run reuses every finished stage
    again: list[str] = []
    run_demo(
        cfg, tmp_path, baselines=("pop", "last-title", "sasrec", "hybrid"), options=BASELINES_ONLY, say=again.append
    )
    assert sum("reusing" in m for m in again) == 5  # data + four runs
    # the opening line of a rerun that reuses every stage said "about N min", the whole demo's time (review s40)
    assert "prepare, pop, last-title, sasrec, hybrid finished and reused; the rest about" in again[0], again[0]
    # the evaluation said only "done in 0.2 s" when it reused every stored result (review s38)
    assert "[evaluate] reused the stored test evaluations of 4 of the 4 runs" in again, again
    assert not any(m.startswith("[evaluate] reused") for m in messages)
    for said in (messages, again):  # read = kept + dropped, as data prepare prints it, prepared or reused
        assert "[prepare] synthetic/interactions: read 505 = kept 505 + dropped 0" in said, said
    # SASRec fitted again under the hybrid (its folder replaced): the rerun refits the hybrid, which was reused and
    # then refused naming a `baseline fit` to run by hand; a baseline a signal stopped is reused with a note
    for name, extra in (("sasrec", {}), ("pop", {"stopped": "user"})):
        info = json.loads((tmp_path / name / "run.json").read_text())
        info["created"], info["extra"] = "2099-01-01T00:00:00", {**info["extra"], **extra}
        (tmp_path / name / "run.json").write_text(json.dumps(info))
    stale: list[str] = []
    run_demo(
        cfg, tmp_path, baselines=("pop", "last-title", "sasrec", "hybrid"), options=BASELINES_ONLY, say=stale.append
    )
    assert any(m.startswith("[hybrid] ") and "blends a collaborative run fitted again since" in m for m in stale)
    assert "[hybrid] reusing" not in " ".join(stale) and "[sasrec] reusing" in " ".join(stale)
    assert any(m.startswith("[pop] note: ") and "stopped before its training ended" in m for m in stale)
    hybrid_state = json.loads((tmp_path / "hybrid" / "hybrid.json").read_text())
    assert hybrid_state["collaborative_created"] == "2099-01-01T00:00:00"
    # ... also with another test subsample or with the agent stages added: they shape no stage that is reused
    from dataclasses import replace

    from mgfrec.demo import SETTINGS_FILE

    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["options"]["baseline_steps"] == 300
    run_demo(cfg, tmp_path, baselines=("pop",), options=replace(BASELINES_ONLY, eval_samples=20), say=again.append)
    # but not with settings that made the stages otherwise: refused in one line before any stage
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.iterdir())
    other = load_config(None, [*TINY, "retriever.max_epochs=5"])
    # agent-only settings (--fit-steps, --policy) bind no folder of baselines alone (--no-agent first): only the
    # config's retriever.max_epochs is named; before, --fit-steps was too (test_demo_settings.py has the rest)
    agent_only = replace(BASELINES_ONLY, fit_steps=7, policy="preset:tiny")
    with pytest.raises(ValueError, match=r"made with other settings \(retriever.max_epochs \(--retriever-epochs\)\);"):
        run_demo(other, tmp_path, options=agent_only, say=again.append)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.iterdir()) == before
    # which recall runs the joint-l2 reading can use: those with item embeddings
    from mgfrec.demo import has_item_vectors

    assert has_item_vectors(tmp_path / "sasrec") and has_item_vectors(tmp_path / "hybrid")
    assert not has_item_vectors(tmp_path / "last-title") and not has_item_vectors(tmp_path / "pop")


def test_demo_command_prints_an_80_column_table_with_its_legend(tmp_path):
    """A real subprocess at COLUMNS=80, as a user's terminal or log gets it: the estimate first, progress and
    stage lines, the table with names whole and no wrapped interval, the legend, no library chatter."""
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "mgfrec.cli.main",
        "demo",
        "--out",
        str(tmp_path),
        "--retriever-epochs",
        "1",
        "--no-agent",
        "--eval-samples",
        "100000",  # more than the split holds: every row is compared on the whole split, and the line says so
        "--set",
        TINY[0],
    ]
    proc = subprocess.run(args, check=False, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stderr.startswith("[demo] baselines pop, last-title, sasrec, hybrid") and "on 2 idle cores" in proc.stderr
    )
    table = proc.stdout.splitlines()
    assert max(len(line) for line in table) <= 80
    rows = {
        line.split()[0]: line
        for line in table
        if line.strip() and line.split()[0] in ("pop", "last-title", "sasrec", "hybrid")
    }
    assert set(rows) == {"pop", "last-title", "sasrec", "hybrid"} and "(ref)" in rows["last-title"]
    assert all("[" in line and "]" in line for line in rows.values())  # each interval on its run's line
    assert "gru4rec" not in proc.stdout  # the cheap default set; --baselines all adds it
    assert "(ref): the reference run" in proc.stderr and "N_full: NDCG without cut-off" in proc.stderr
    assert "[sasrec] valid NDCG@10" in proc.stderr
    assert not any(c in proc.stderr for c in ("Loading weights", "GPU available", "LeafSpec", "Traceback"))
    assert (tmp_path / "report_test.md").is_file() and (tmp_path / "config.yaml").is_file()
    assert "compared on the whole test split (" in " ".join(proc.stderr.split())
    # The printed table is the written report: each run's row carries its own numbers.
    report = json.loads((tmp_path / "report_test.json").read_text())
    assert {row["run"] for row in report["rows"]} == {"last-title", "pop", "sasrec", "hybrid"}
    lines = proc.stdout.splitlines()
    for row in report["rows"]:
        line = next((text for text in lines if text.split() and text.split()[0] == row["run"]), None)
        assert line is not None, f"no table row for {row['run']}:\n{proc.stdout}"
        assert f"{row['ndcg_full']:.3f}" in line, (row["run"], line)  # the row carries its own N_full


def test_the_closing_line_names_what_the_rows_were_compared_on():
    from mgfrec.cli.demo import compared_on

    assert compared_on(0, {491}) == "All rows are compared on the whole test split"
    assert compared_on(100, {100}) == "All rows are compared on a seeded subsample of 100 test samples"
    assert compared_on(1000, {491}) == (
        "All rows are compared on the whole test split (491 samples, fewer than --eval-samples 1,000)"
    )
    # rows of other sizes (a rerun with --eval-samples 0 kept the agent's 100; review s31) are not "the whole split"
    assert compared_on(0, {100, 675}).startswith("The rows do not all hold the same samples (100 and 675 by row)")
    assert compared_on(100, {100}, "valid") == "All rows are compared on a seeded subsample of 100 valid samples"


def test_the_closing_line_names_only_the_readings_made():
    from mgfrec.cli.demo import readings_line

    both = readings_line({"mgfrec", "mgfrec-answer-first", "mgfrec-joint-l2"})
    assert "mgfrec-answer-first ranks" in both and "mgfrec-joint-l2 by L2" in both
    one = readings_line({"mgfrec", "mgfrec-answer-first"})  # the recall run had no item embeddings
    assert "mgfrec-answer-first ranks" in one and "joint-l2" not in one


def test_the_demo_budget_over_a_config_file_is_said_not_silent(tmp_path, capsys):
    """--retriever-epochs (default 20), patience 2 and min_delta 0.002 are typed values: they win over the
    --config file's retriever fields, which the demo used to drop without a word."""
    from mgfrec.cli.demo import _note_budget_over_file

    budget = {"retriever.max_epochs": 20, "retriever.patience": 2, "retriever.min_delta": 0.002}
    path = tmp_path / "mine.yaml"
    path.write_text("retriever:\n  max_epochs: 3\n  patience: 7\n")
    _note_budget_over_file(str(path), ["retriever.patience=5"], budget)
    text = " ".join(capsys.readouterr().err.split())
    assert f"note: the demo's baseline budget sets retriever.max_epochs=20 over {path}'s values" in text, text
    assert "patience" not in text.split("over")[0]  # --set decided that one
    _note_budget_over_file(None, [], budget)
    path.write_text("agent:\n  max_groundings: 3\n")
    _note_budget_over_file(str(path), [], budget)
    assert capsys.readouterr().err == ""


def test_demo_baselines_flag():
    from mgfrec.cli.demo import _baselines
    from mgfrec.demo import ALL_BASELINES

    assert _baselines("all", list(ALL_BASELINES)) == ALL_BASELINES
    assert _baselines("pop, caser", list(ALL_BASELINES)) == ("pop", "caser")
    result = CliRunner().invoke(app, ["demo", "--baselines", "pop,nope", "--out", "unused"])
    assert result.exit_code == 2 and "--baselines: nope is not a retriever" in " ".join(result.output.split())


def test_run_demo_with_the_agent_stages(tmp_path):
    """SFT, a GRPO step, MGFRec, its SFT start, three eval-time ablations, the answer-first and joint-l2 readings
    and BIGRec beside the baselines, all paired on one seeded test subsample, then the figures and the case
    study."""
    cfg = load_config(None, [*TINY, "grpo.group_size=2"])
    options = DemoOptions(
        sft_train_samples=16,
        sft_epochs=1,
        fit_steps=1,
        fit_batch=2,
        valid_samples=4,
        eval_samples=12,
        recall_size=5,
        bigrec={"max_train_samples": 32, "epochs": 1, "valid_samples": 8, "max_new_tokens": 16},
    )
    first = run_demo(cfg, tmp_path, baselines=("last-title", "bigrec"), options=options, say=lambda m: None)
    rows = {row["run"]: row for row in json.loads(first.written["json"].read_text())["rows"]}
    agents = {"sft", "mgfrec", "mgfrec-no-multi-grounding", "mgfrec-no-feedback", "mgfrec-no-recall"}
    assert set(rows) == {"last-title", "bigrec", *agents, "mgfrec-answer-first"}  # last-title has no item vectors
    # A rerun that adds a baseline reuses the agent stages, trained over last-title: it stopped with "l2_joint
    # needs a recall run with item embeddings" (the variant was chosen by the new strongest baseline, sasrec)
    messages: list[str] = []
    result = run_demo(cfg, tmp_path, baselines=("last-title", "sasrec", "bigrec"), options=options, say=messages.append)
    assert any("the reused agent stages were trained over the recall run" in m and "last-title" in m for m in messages)
    report = json.loads(result.written["json"].read_text())
    rows = {row["run"]: row for row in report["rows"]}
    agents |= {"mgfrec-answer-first"}
    assert set(rows) == {"last-title", "sasrec", "bigrec", *agents}
    assert not (tmp_path / "mgfrec-joint-l2").exists()
    # a fit over a recall run with item embeddings gets the joint-l2 reading too
    assert demo_variants(tmp_path / "mgfrec") == ["answer-first"]
    over_sasrec = tmp_path / "fit-over-sasrec"
    over_sasrec.mkdir()
    info = json.loads((tmp_path / "mgfrec" / "run.json").read_text())
    info["extra"]["recall_run"] = str(tmp_path / "sasrec")
    (over_sasrec / "run.json").write_text(json.dumps(info))
    assert demo_variants(over_sasrec) == ["answer-first", "joint-l2"]
    assert all(row["samples"] == 12 for row in rows.values())  # one subsample for every row
    assert all(rows[name]["comparison_error"] is None for name in agents)  # so every agent is paired
    assert load_config(tmp_path / "mgfrec-no-feedback" / "config.yaml").user_agent.backend == "none"
    assert load_config(tmp_path / "mgfrec-answer-first" / "config.yaml").agent.final_ranking == "answer_then_recall"
    assert rows["mgfrec"]["ndcg_full"] != rows["mgfrec-answer-first"]["ndcg_full"]  # one policy, two readings
    for key in ("figure_reward", "figure_response_length", "figure_difficulty", "case_study"):
        assert result.written[key].is_file(), key
    assert result.written["case_study"].read_text(encoding="utf-8").startswith("# Case study")
    # a demo folder copied whole and rerun: its agent runs name the original's recall run, the very run beside
    # them; a note said they "were trained over the recall run OUT/last-title, not COPY/last-title" and invited
    # deleting them (review s33). Before the whole-split rerun below: the copy evaluates its derived rows again, on
    # 12 samples here
    import shutil

    copy = shutil.copytree(tmp_path, tmp_path.parent / f"{tmp_path.name}-copy")
    said: list[str] = []
    run_demo(cfg, copy, baselines=("last-title", "bigrec"), options=options, say=said.append)
    assert "[sft] reusing" in " ".join(said) and not any("were trained over the recall run" in m for m in said), said
    from dataclasses import replace

    # a rerun over the whole split (--eval-samples 0): the agent rows' stored 12-sample results were kept beside
    # whole-split rows and left unpaired, while the closing line said "the whole test split" (review s31)
    whole = run_demo(
        cfg,
        tmp_path,
        baselines=("last-title", "sasrec", "bigrec"),
        options=replace(options, eval_samples=None),
        say=lambda m: None,
    )
    rows = {row["run"]: row for row in json.loads(whole.written["json"].read_text())["rows"]}
    sizes = {row["samples"] for row in rows.values()}
    assert len(sizes) == 1 and sizes.pop() > 12, {n: r["samples"] for n, r in rows.items()}
    assert all(row["comparison_error"] is None for row in rows.values())


def test_ctrl_c_during_a_baseline_stops_the_demo_with_that_run_finished(tmp_path):
    """SIGINT while SASRec trains: its run is finished from the best checkpoint, the demo stops there
    (exit 130, no traceback) and says how to go on; a rerun reuses the stopped run."""
    import signal

    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1", "MGFREC_PROGRESS_SECONDS": "0"}
    args = [
        sys.executable,
        "-m",
        "mgfrec.cli.main",
        "demo",
        "--out",
        str(tmp_path),
        "--no-agent",
        "--retriever-epochs",
        "100000",
        "--baseline-seconds",
        "0",
        "--baseline-steps",
        "0",
        "--set",
        TINY[0],
        "--set",
        "retriever.patience=100000",
        "--set",
        "retriever.min_delta=0",
        "--set",
        "retriever.batch_size=8",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    try:
        for line in proc.stderr:  # wait until SASRec has validated once
            seen.append(line)
            if line.startswith("[sasrec] epoch") and "valid NDCG@10" in line:
                break
        else:
            raise AssertionError("the demo ended before it was signalled:\n" + "".join(seen))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(seen) + stderr
    assert json.loads((tmp_path / "sasrec" / "run.json").read_text())["extra"]["stopped"] == "user"
    assert not (tmp_path / "hybrid").exists()  # the demo did not go on
    text = " ".join(stderr.split())
    assert "rerun the same command to go on from the next stage" in text and "Traceback" not in stderr


def test_the_demo_policy_comes_from_its_option_and_a_conflicting_config_is_refused():
    from mgfrec.demo import demo_policy

    assert demo_policy(load_config(None), DemoOptions()) == "preset:tiny-items"
    assert demo_policy(load_config(None, ["policy.model=preset:small"]), DemoOptions(policy=None)) == "preset:small"
    with pytest.raises(ValueError, match="pass --policy preset:small to use it"):
        demo_policy(load_config(None, ["policy.model=preset:small"]), DemoOptions())
    result = CliRunner().invoke(app, ["demo", "--set", "policy.model=preset:small", "--out", "unused-demo"])
    assert result.exit_code != 0 and "pass --policy preset:small" in " ".join(result.output.split())


def test_the_demo_recall_prior_comes_from_its_option_and_a_conflicting_config_is_refused(tmp_path):
    from mgfrec.demo import demo_recall_prior

    assert demo_recall_prior(load_config(None), DemoOptions()) == 4.0
    assert demo_recall_prior(load_config(None, ["agent.recall_prior=4"]), DemoOptions()) == 4.0
    assert demo_recall_prior(load_config(None, ["agent.recall_prior=2"]), DemoOptions(recall_prior=None)) == 2.0
    assert demo_recall_prior(load_config(None, ["agent.decoding=free"]), DemoOptions()) == 0.0  # no constrained answer
    with pytest.raises(ValueError, match="pass --recall-prior 2 to use it"):
        demo_recall_prior(load_config(None, ["agent.recall_prior=2"]), DemoOptions())
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--set", "agent.recall_prior=2", "--out", str(out)])
    assert result.exit_code != 0 and "pass --recall-prior 2" in " ".join(result.output.split())
    assert not out.exists()  # refused before any stage wrote anything
    # free decoding dropped the prior without a word; several processes were refused after every baseline had
    # trained, and the folder then refused the corrected rerun (review s40)
    said: list[str] = []
    with pytest.raises(ValueError, match="mgfrec demo runs in one process"):
        run_demo(load_config(None, ["agent.decoding=free", "trainer.devices=2"]), out, say=said.append)
    assert not out.exists() and said == [
        "note: --recall-prior 4 is not used: agent.decoding is free, and the prior acts on constrained answers"
    ]


def test_each_baseline_takes_the_retriever_options_its_own_options_have(tmp_path, monkeypatch):
    """`--set retriever.options.heads=1` (SASRec's) went to every baseline: pop failed with "this component takes no
    options", naming no baseline, after the data and index were made (review s40). The options SASRec, GRU4Rec and
    Caser share still reach all three; what a baseline cannot take is named in a note."""
    import mgfrec.demo as demo_mod

    given: dict[str, dict] = {}
    real = demo_mod.fit_baseline

    def spy(ds, cfg, run_dir):
        given[cfg.retriever.model] = dict(cfg.retriever.options)
        return real(ds, cfg, run_dir)

    monkeypatch.setattr(demo_mod, "fit_baseline", spy)
    said: list[str] = []
    cfg = load_config(None, [*TINY, "retriever.options={heads: 1, layers: 1}"])
    names = ("pop", "last-title", "gru4rec")
    result = run_demo(cfg, tmp_path, baselines=names, options=BASELINES_ONLY, say=said.append)
    assert {row.name for row in result.report.rows} == set(names)
    assert given == {"pop": {}, "last-title": {}, "gru4rec": {"layers": 1}}
    assert "note: [pop] takes no heads, layers of retriever.options; it is fitted without them" in said
    assert "note: [gru4rec] takes no heads of retriever.options; it is fitted without them" in said


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a JSON object, got list"),
        ('{"config": {}}', "expected an object with 'config' and 'options' objects"),  # was "error: options"
        ('{"config": {', "not valid JSON"),
    ],
)
def test_a_damaged_demo_json_is_one_line_naming_it(tmp_path, text, message):
    from mgfrec.demo import check_same_settings

    (tmp_path / "demo.json").write_text(text)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")  # a finished stage: the settings bind the rerun
    with pytest.raises(ValueError, match=rf"demo\.json: {message}.*restore it, or give another --out"):
        check_same_settings(tmp_path, load_config(None), DemoOptions())


def test_settings_bind_a_rerun_only_once_a_stage_has_finished(tmp_path):
    """A first demo that failed before any stage (a bad CSV row) left only demo.json, and the rerun with the fix
    (--set data.skip_bad=true) was refused as "made with other settings" (review s26)."""
    import json as _json

    from mgfrec.demo import check_same_settings, demo_settings

    (tmp_path / "demo.json").write_text(_json.dumps(demo_settings(load_config(None), DemoOptions())))
    fixed = load_config(None, ["data.skip_bad=true"])
    check_same_settings(tmp_path, fixed, DemoOptions())  # nothing was made under the first settings
    (tmp_path / "pop").mkdir()
    (tmp_path / "pop" / "run.json").write_text("{}")
    with pytest.raises(ValueError, match=r"its stages were made with other settings \(data.skip_bad\)"):
        check_same_settings(tmp_path, fixed, DemoOptions())


def test_the_estimate_counts_no_made_up_time_for_uncapped_baselines():
    # without a time cap each learned baseline counted 300 s: "about 17 min" for a run of 3 min
    from mgfrec.demo import DemoOptions, estimate_line

    names = ["pop", "last-title", "sasrec", "gru4rec", "caser", "hybrid"]
    line = estimate_line(names, DemoOptions(baseline_seconds=None, baseline_steps=None, agent=False))
    assert "plus the training of sasrec, gru4rec, caser (no time cap)" in line and "17 min" not in line
    capped = estimate_line(names, DemoOptions(agent=False))
    assert "plus the training" not in capped and "capped at 300 steps or 60 s each" in capped
    # BIGRec takes no step cap: the line said it did (review s40)
    with_bigrec = estimate_line([*names, "bigrec"], DemoOptions(agent=False))
    assert "capped at 300 steps or 60 s each; bigrec at 60 s)" in with_bigrec


def test_the_estimate_counts_the_agent_stages_work():
    """`--fit-steps 30 --sft-samples 2000 --eval-samples 0` got "about 5 min", the defaults' figure (review s33)."""
    from mgfrec.demo import AGENT_SECONDS, DemoOptions, agent_seconds, estimate_line

    assert agent_seconds(DemoOptions()) == AGENT_SECONDS  # the measured defaults
    more = agent_seconds(DemoOptions(fit_steps=30, sft_train_samples=2000, eval_samples=1000))
    assert more["sft"] == 10 + 65 * 10 and more["fit"] == 10 + 30 * 10 and more["evaluate"] == 10 + 50 * 10
    assert estimate_line(["pop"], DemoOptions()).startswith(
        "[demo] baselines pop; then SFT, GRPO, evaluation, figures: about 4 min on"
    )
    line = estimate_line(["pop"], DemoOptions(fit_steps=30, sft_train_samples=2000, eval_samples=None))
    assert "about 17 min plus the evaluation of the whole test split (about 0.5 s a sample) on 2 idle" in line
    # a rerun: the stages it reuses are named and not counted (review s40)
    done = ["prepare", "pop", "sft", "fit"]
    rerun = estimate_line(["pop"], DemoOptions(fit_steps=30, sft_train_samples=2000), done)
    assert ": prepare, pop, sft, fit finished and reused; the rest about 1 min 30 s on 2 idle cores" in rerun, rerun


def test_a_hybrid_without_the_sasrec_run_trains_its_own_under_the_demos_caps(tmp_path):
    """`--baselines pop,hybrid`: the hybrid trains its own SASRec, which ran every epoch the config allowed while
    the opening line said the demo's caps held (review s26). It now stops at the step cap, and the estimate counts
    its training."""
    from mgfrec.demo import estimate_line

    options = DemoOptions(agent=False, eval_samples=None, baseline_steps=3)
    cfg = load_config(None, [*TINY[:1], "retriever.max_epochs=40", "retriever.patience=40"])
    run_demo(cfg, tmp_path, baselines=("pop", "hybrid"), options=options, say=lambda _: None)
    epochs = (tmp_path / "hybrid" / "collaborative" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert 1 <= len(epochs) <= 2, epochs  # 340 training samples, batch 256: two steps an epoch, three at most
    assert "plus the training of hybrid" in estimate_line(["pop", "hybrid"], DemoOptions(baseline_seconds=None))

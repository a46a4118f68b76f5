"""``mgfrec recommend``: one trajectory for one user, from an agent run folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from agentkit import tiny_agent_run
from typer.testing import CliRunner

import mgfrec.recommend as rec_module
from mgfrec.cli.main import app
from mgfrec.rollout.scripted_engine import ScriptedEngine


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory, minilm):
    """A tiny synthetic data set, a last-title recall run and an (untrained) tiny policy in an agent run."""
    root = tmp_path_factory.mktemp("recommend")
    sets = ["retriever.recall_size=5", "agent.max_new_tokens_per_turn=64"]
    run, ds, _ = tiny_agent_run(root, sets, method="mgfrec-sft")
    return run, ds


def test_scripted_agent_grounds_answers_and_ranks(agent_run, monkeypatch):
    run, ds = agent_run
    answer_title = ds.titles[7]

    ground = f"<ground>{ds.titles[3]}</ground>"

    def script(context: str, j: int) -> str:
        if ground not in context:  # (the system prompt itself mentions the tags, so look for this call)
            return f"<think>the user likes this</think>{ground}"
        return f"<think>that list fits</think><answer>{answer_title}</answer>"

    monkeypatch.setattr(rec_module, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    user = str(ds.interactions.user_id.iloc[0])
    rec, _ = rec_module.recommend(run, user=user, top_k=5)
    out = rec.to_dict(ds)
    assert out["end_reason"] == "answered" and out["format_ok"] and out["groundings"] == 1
    assert out["turns"][0]["kind"] == "ground" and len(out["turns"][0]["items"]) == 10
    assert out["turns"][0]["items"][0]["title"] == ds.titles[3]  # the grounded title is in the catalogue
    assert out["turns"][0]["feedback"]  # the simulated user agent answered
    assert len(out["recall"]) == 5 and len(out["top"]) == 5
    # the none backend shows no feedback: null, as a served request with "feedback": "none" says it (it was "")
    quiet, _ = rec_module.recommend(run, user=user, top_k=5, sets=("user_agent.backend=none",))
    assert quiet.to_dict(ds)["turns"][0]["feedback"] is None
    history = {h["item_idx"] for h in out["history"]}
    assert not history & {t["item_idx"] for t in out["top"]}  # history excluded, as the evaluator does
    if 7 not in history:
        assert out["top"][0]["item_idx"] == 7 or ds.titles[out["top"][0]["item_idx"]] == answer_title


def test_cli_runs_the_policy_and_reports_json(agent_run):
    run, ds = agent_run
    titles = f"{ds.titles[0]}; {ds.titles[1]}"
    result = CliRunner().invoke(app, ["recommend", str(run), "--history", titles, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [h["item_idx"] for h in out["history"]] == [0, 1]  # typed titles grounded to themselves
    assert out["end_reason"] in {"answered", "grounding_limit", "length_limit", "format_error"}
    assert out["turns"] and (out["top"] == [] or len(out["top"]) == 10)
    shown = CliRunner().invoke(app, ["recommend", str(run), "--user", str(ds.interactions.user_id.iloc[0])])
    assert shown.exit_code == 0, shown.output
    assert "history" in shown.stdout and "end:" in shown.stdout


def test_bad_arguments_are_named(agent_run):
    run, _ = agent_run
    both = CliRunner().invoke(app, ["recommend", str(run)])
    assert both.exit_code == 2 and "--user" in both.output
    nobody = CliRunner().invoke(app, ["recommend", str(run), "--user", "no-such-user"])
    assert nobody.exit_code == 2 and "no-such-user" in nobody.output
    # and which ids there are: no command listed them, and the docs' USER_ID was a guess away from working
    from mgfrec.data.prepared import PreparedDataset
    from mgfrec.runs import read_run_info

    first = str(PreparedDataset(read_run_info(run).data).interactions["user_id"].iloc[0])
    assert f"e.g. '{first}'" in " ".join(nobody.output.split()), nobody.output
    # with --split too: it said "no sample of this user in split 'test'", naming none that exist (review s31)
    split = CliRunner().invoke(app, ["recommend", str(run), "--user", "no-such-user", "--split", "test"])
    text = " ".join(split.output.split())
    assert split.exit_code == 2 and "no such user" in text and f"e.g. '{first}'" in text, text


def test_unknown_user_is_refused_before_the_policy_loads(agent_run, monkeypatch):
    """The query's user, split sample and sample id are checked against the data set first: an unknown user was
    refused only after the policy had loaded (~30 s on CDs; note s31)."""
    run, ds = agent_run

    def no_policy(*args, **kwargs):
        raise AssertionError("the policy was loaded")

    monkeypatch.setattr(rec_module, "load_policy", no_policy)
    for kwargs in ({"user": "no-such-user"}, {"user": "no-such-user", "split": "test"}):
        with pytest.raises(KeyError, match="no such user"):
            rec_module.recommend(run, **kwargs)
    with pytest.raises(KeyError, match="no such user"):  # chat and serve's way in
        rec_module.load_recommender(run, (), rec_module.Query(user="no-such-user"))
    user = str(ds.interactions.user_id.iloc[0])
    with pytest.raises(KeyError, match="not a sample of user"):
        rec_module.recommend(run, user=user, split="test", sample_id=10**9)
    result = CliRunner().invoke(app, ["recommend", str(run), "--user", "no-such-user"])
    assert result.exit_code == 2 and "no such user" in result.output and "policy was loaded" not in result.output
    with pytest.raises(AssertionError, match="the policy was loaded"):  # a known user goes on to load it
        rec_module.recommend(run, user=user)


def test_queries_and_user_agent_of_the_wrong_type_are_named(variant_run):
    """recommend_many("abc") was "'str' object has no attribute 'user'", one Query "not iterable", and
    user_agent="none" "builtins.str has no feedback() method" (review s35)."""
    rec = rec_module.load_recommender(variant_run / "lt")
    query = rec_module.Query("u0")
    for queries in ("abc", query, [query, "u1"]):
        with pytest.raises(TypeError, match="queries: give a list of Query objects"):
            rec.recommend_many(queries)
    with pytest.raises(TypeError, match="user_agent 'none': give 'run'"):
        rec.recommend(query, user_agent="none")
    assert rec.recommend(query, user_agent=None).top  # None: no feedback


def test_a_seed_without_sample_is_noted(agent_run):
    """--seed without --sample changed nothing, without a word (review s32)."""
    run, ds = agent_run
    titles = f"{ds.titles[0]}; {ds.titles[1]}"
    noted = CliRunner().invoke(app, ["recommend", str(run), "--history", titles, "--seed", "5", "--json"])
    assert noted.exit_code == 0 and "note: --seed is read only with --sample" in noted.stderr, noted.output
    json.loads(noted.stdout)  # the note is on stderr: the JSON stays whole
    sampled = CliRunner().invoke(app, ["recommend", str(run), "--history", titles, "--seed", "5", "--sample", "--json"])
    assert sampled.exit_code == 0 and "--seed is read only" not in sampled.stderr, sampled.output


def test_sampling_settings_without_sample_are_noted(agent_run, variant_run):
    """--set rollout.temperature=1.5 without --sample gave the same greedy turns without a word, and --sample on a
    baseline run was taken silently (review s35)."""
    run, ds = agent_run
    titles = f"{ds.titles[0]}; {ds.titles[1]}"
    hot = ["--set", "rollout.temperature=1.5"]
    noted = CliRunner().invoke(app, ["recommend", str(run), "--history", titles, *hot, "--json"])
    text = " ".join(noted.stderr.split())
    assert noted.exit_code == 0 and "--set rollout.temperature=1.5: mgfrec recommend without --sample does not" in text
    json.loads(noted.stdout)
    sampled = CliRunner().invoke(app, ["recommend", str(run), "--history", titles, *hot, "--sample", "--json"])
    assert sampled.exit_code == 0 and "does not read" not in sampled.stderr, sampled.output
    base = CliRunner().invoke(app, ["recommend", str(variant_run / "lt"), "--user", "u0", "--sample", "--json"])
    assert base.exit_code == 0 and "--sample and --seed are not read for a baseline run" in base.stderr, base.output
    seeded = CliRunner().invoke(app, ["recommend", str(variant_run / "lt"), "--user", "u0", "--seed", "3", *hot])
    assert "not read for a baseline run" in seeded.stderr and "read only with --sample" not in seeded.stderr
    assert "without --sample does not read" not in seeded.stderr  # it was told to add --sample, then that it reads none


def test_markdown_case_study_is_written(agent_run, tmp_path):
    run, ds = agent_run
    path = tmp_path / "case" / "study.md"
    result = CliRunner().invoke(
        app, ["recommend", str(run), "--history", f"{ds.titles[0]}; {ds.titles[1]}", "--json", "--markdown", str(path)]
    )
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Case study: a typed history") and "## History" in text
    assert ds.titles[0] in text and ds.titles[1] in text
    again = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[2], "--markdown", str(path)])
    assert again.exit_code == 0, again.output  # an earlier case study is replaced
    history = path.read_text(encoding="utf-8").split("## History")[1].split("##")[0]
    assert ds.titles[2] in history and ds.titles[0] not in history


@pytest.mark.reliability
def test_a_markdown_path_that_cannot_be_a_file_is_refused_before_the_rollout(agent_run, tmp_path, monkeypatch):
    """A folder or a path under a file was a traceback after the whole rollout had run; a run's config.yaml was
    written over."""
    run, ds = agent_run
    (tmp_path / "afile").write_text("x")

    def no_rollout(*args, **kwargs):
        raise AssertionError("the rollout ran before the path was checked")

    monkeypatch.setattr(rec_module, "recommend", no_rollout)
    (tmp_path / "notes.md").write_text("# My notes\n\nkeep me\n")
    cases = [
        (tmp_path, "a folder"),
        (tmp_path / "afile" / "x.md", "is a file, not a folder"),
        (run / "config.yaml", "exists and is not a case study mgfrec wrote"),  # it was written over: a broken run
        (tmp_path / "notes.md", "exists and is not a case study mgfrec wrote"),
        (Path("/proc/mgfrec-case-study.md"), "cannot be written"),  # a folder no file can be made in
        (Path("/proc/nope/x.md"), "its folder cannot be made"),  # failed after the rollout, naming no flag
    ]
    before = (run / "config.yaml").read_bytes()
    for path, words in cases:
        result = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[0], "--markdown", str(path)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in text and "--markdown" in text and words in text, text
    assert (run / "config.yaml").read_bytes() == before and (tmp_path / "notes.md").read_text().endswith("keep me\n")


@pytest.mark.reliability
def test_a_markdown_path_that_is_a_pipe_is_written_to_not_read(agent_run, tmp_path):
    """`--markdown /dev/stdout` (a pipe, a terminal) or a FIFO was read first, to tell whether it held an earlier
    case study: the command hung for good, and /dev/full was read until the process was killed (review s37)."""
    import os
    import threading

    run, ds = agent_run
    fifo = tmp_path / "case.fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text(encoding="utf-8")), daemon=True)
    reader.start()  # as `cat case.fifo` would: the command writes to it, nobody writes to the command
    result = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[0], "--markdown", str(fifo)])
    reader.join(120)
    assert result.exit_code == 0, result.output
    assert got and got[0].startswith("# Case study: a typed history")


@pytest.mark.reliability
def test_a_markdown_folder_made_for_a_case_study_is_removed_when_the_command_fails(agent_run, tmp_path, monkeypatch):
    """The folders of --markdown are made before the rollout; one refused or interrupted left them empty behind."""
    run, ds = agent_run

    def fails(*args, **kwargs):
        raise ValueError("--user x: refused for this test")

    monkeypatch.setattr(rec_module, "recommend", fails)
    (tmp_path / "kept").mkdir()
    path = tmp_path / "kept" / "new" / "sub" / "case.md"
    result = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[0], "--markdown", str(path)])
    assert result.exit_code == 2 and "refused for this test" in result.output, result.output
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "new").exists()
    too_long = tmp_path / "kept" / "new" / "sub" / ("x" * 300 + ".md")  # refused after its folders were made
    result = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[0], "--markdown", str(too_long)])
    assert result.exit_code == 2 and "cannot be written" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "kept" / "new").exists()


def test_a_variant_run_recommends_by_its_own_final_ranking(agent_run, monkeypatch, tmp_path):
    """An answer-first run puts the answered item first and the recall model's order after it, as the evaluator
    ranks it; a joint-l2 run whose recall model has no item embeddings is refused when it is loaded."""
    import numpy as np

    from mgfrec.experiments.ablations import derive_variant_run
    from mgfrec.retrievers.fit import load_retriever

    run, ds = agent_run

    def script(context: str, j: int) -> str:  # answer the recall list's second title
        listed = context.split("candidate items from the item database:\n", 1)[1].splitlines()
        return f"<think>this one</think><answer>{listed[1].split('. ', 1)[1].strip()}</answer>"

    monkeypatch.setattr(rec_module, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    first = derive_variant_run(run, "answer-first", tmp_path / "answer-first")
    frame = ds.split("test")
    user, history, target = str(frame.user_id.iloc[0]), list(frame.history.iloc[0]), int(frame.target.iloc[0])
    rec, _ = rec_module.recommend(first, user=user, split="test", top_k=6)
    top = [i for i, _ in rec.top]
    recall = load_retriever(run.parent / "last-title", ds).scores([np.asarray(history, dtype=np.int64)])[0]
    order = [int(i) for i in np.argsort(-recall.numpy(), kind="stable") if i not in history]
    assert rec.recall == order[:5] and rec.trajectory.answer.replace("\u2060", "") == ds.titles[order[1]]
    ranked = [order[1], order[0], *order[2:]]  # the answer first, then the recall model's order
    assert top == ranked[:6]
    assert rec.target_rank == 1 + ranked.index(target)  # the target's place in this very ranking
    payload = json.dumps(rec.to_dict(ds), allow_nan=False)  # every score is finite: JSON carries it
    assert json.loads(payload)["top"][0]["score"] > json.loads(payload)["top"][1]["score"]
    paper, _ = rec_module.recommend(run, user=user, split="test", top_k=6)
    assert [i for i, _ in paper.top] != top  # the paper's rule ranks the same answer by title distance
    with pytest.raises(ValueError, match="l2_joint needs a recall run with item embeddings"):
        derive_variant_run(run, "joint-l2", tmp_path / "refused")  # refused when derived (review s37)
    joint = derive_variant_run(run, "answer-first", tmp_path / "joint-l2")  # as an earlier mgfrec derived it
    written = (joint / "config.yaml").read_text(encoding="utf-8")
    (joint / "config.yaml").write_text(written.replace("final_ranking: answer_then_recall", "final_ranking: l2_joint"))
    with pytest.raises(ValueError, match="l2_joint needs a recall run with item embeddings"):
        rec_module.recommend(joint, user=user, split="test")


def test_a_target_that_is_also_in_the_history_stays_in_the_shown_ranking(agent_run):
    """As the evaluator ranks (the history left out, never the target): a re-consumed target keeps its place in
    the top list, so a reported rank 1 is the first item shown; without a target the whole history is left out."""
    import torch

    run, ds = agent_run
    recommender = rec_module.load_recommender(run)
    try:
        scores = -torch.arange(ds.num_items, dtype=torch.float32).unsqueeze(0)  # item 0 first, then 1, 2, ...
        query = rec_module.Query(history_titles=("x",), top_k=3)
        rec = recommender._ranked(query, [0, 1], 0, [], None, scores)
        assert rec.target_rank == 1 and [i for i, _ in rec.top] == [0, 2, 3]
        rec = recommender._ranked(query, [0, 1], None, [], None, scores)
        assert rec.target_rank is None and [i for i, _ in rec.top] == [2, 3, 4]
    finally:
        recommender.close()


def test_nan_scores_neither_lead_nor_shorten_the_shown_ranking(agent_run):
    """A descending sort puts NaN first; as the evaluator, NaN counts as -inf, so the top list still holds k items."""
    import torch

    run, ds = agent_run
    recommender = rec_module.load_recommender(run)
    try:
        scores = -torch.arange(ds.num_items, dtype=torch.float32).unsqueeze(0)
        scores[0, 3] = float("nan")
        query = rec_module.Query(history_titles=("x",), top_k=3)
        rec = recommender._ranked(query, [0], None, [], None, scores)
        assert [i for i, _ in rec.top] == [1, 2, 4]
    finally:
        recommender.close()


def test_a_tied_target_is_listed_at_the_place_reported_for_it(agent_run):
    """Items 3 and 5 tie; the target 3 was listed at #4, ahead of 5 by item index, above a line saying "at place 5"
    (its pessimistic rank, as the evaluator counts it). Scores differing below float32's precision stay apart
    (review s29: float64 scores were cut to float32 and tied)."""
    import torch

    run, ds = agent_run
    recommender = rec_module.load_recommender(run)
    try:
        scores = -torch.arange(ds.num_items, dtype=torch.float32).unsqueeze(0)
        scores[0, 5] = scores[0, 3]
        query = rec_module.Query(history_titles=("x",), top_k=5)
        rec = recommender._ranked(query, [0], 3, [], None, scores)
        shown = [i for i, _ in rec.top]
        assert rec.target_rank == 4 and shown == [1, 2, 5, 3, 4] and shown.index(3) + 1 == rec.target_rank
        fine = torch.full((1, ds.num_items), 100.0, dtype=torch.float64)
        fine[0] += 1e-6 * torch.arange(ds.num_items, dtype=torch.float64)  # the last item strictly best
        last = ds.num_items - 1
        rec = recommender._ranked(query, [0], last, [], None, fine)
        assert rec.target_rank == 1 and rec.top[0][0] == last
    finally:
        recommender.close()


@pytest.fixture(scope="module")
def bracket_run(tmp_path_factory, minilm):
    """A catalogue with a duplicated title and titles that look like rich markup, and a last-title run."""
    root = tmp_path_factory.mktemp("brackets")
    titles = [
        *("Abbey Road", "Back in Black [/live]", "Abbey Road", "Thriller [explicit]", "Kind of Blue", "Rock; Roll"),
        "Evil \x1b]52;c;aGk=\x07 \u202eTrack",  # sets the clipboard (OSC 52) and reverses the rest of its line
    ]
    raw = root / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f'i{n},"{t}"\n' for n, t in enumerate(titles)))
    log = "".join(f"u{n % 3},i{n},{n}\n" for n in range(len(titles) * 2) if n < len(titles)) + "".join(
        f"u{n % 3},i{(n + 2) % len(titles)},{n + 10}\n" for n in range(len(titles))
    )
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log)
    runner = CliRunner()
    assert runner.invoke(app, ["data", "prepare", str(raw), "--out", str(root / "data")]).exit_code == 0
    fit = runner.invoke(
        app, ["baseline", "fit", "--model", "last-title", "--data", str(root / "data"), "--out", str(root / "lt")]
    )
    assert fit.exit_code == 0, fit.output
    return root


def test_a_typed_title_excludes_every_item_with_that_title(bracket_run):
    """Two items are titled "Abbey Road": typing it grounded to the first, and the second came back first."""
    result = CliRunner().invoke(app, ["recommend", str(bracket_run / "lt"), "--history", "Abbey Road", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [h["title"] for h in out["history"]] == ["Abbey Road"]
    assert "Abbey Road" not in [t["title"] for t in out["top"]], out["top"]


def test_titles_that_look_like_markup_are_printed_as_they_are(bracket_run):
    runner = CliRunner()
    shown = runner.invoke(app, ["recommend", str(bracket_run / "lt"), "--history", "Back in Black [/live]"])
    assert shown.exit_code == 0 and "Traceback" not in shown.output, shown.output  # a MarkupError before
    assert "Back in Black [/live]" in shown.output and "Thriller [explicit]" in shown.output
    query = runner.invoke(app, ["index", "query", str(bracket_run / "data"), "Abbey Road [remastered]", "-k", "6"])
    assert query.exit_code == 0, query.output
    assert "<ground>Abbey Road [remastered]</ground>" in query.output and "Thriller [explicit]" in query.output


def test_a_semicolon_inside_a_typed_title_is_written_backslash_semicolon(bracket_run):
    """``--history`` splits at ';', so "Rock; Roll" could not be typed: it became "Rock" and "Roll"."""
    typed = r"Rock\; Roll; Kind of Blue"
    result = CliRunner().invoke(app, ["recommend", str(bracket_run / "lt"), "--history", typed, "--json"])
    assert result.exit_code == 0, result.output
    assert [h["title"] for h in json.loads(result.stdout)["history"]] == ["Rock; Roll", "Kind of Blue"]


def test_escape_sequences_in_titles_are_shown_never_acted_on(bracket_run):
    """rich prints a string's escape sequences as they are: a catalogue title could write the clipboard."""
    runner = CliRunner()
    shown = runner.invoke(app, ["recommend", str(bracket_run / "lt"), "--history", "Kind of Blue", "--top-k", "7"])
    assert shown.exit_code == 0, shown.output
    query = runner.invoke(app, ["index", "query", str(bracket_run / "data"), "Evil Track", "-k", "7"])
    assert query.exit_code == 0, query.output
    for output in (shown.output, query.output):
        assert "\x1b" not in output and "\u202e" not in output and "\x07" not in output
        assert "Evil \\x1b]52;c;aGk=\\x07 \\u202eTrack" in output
    as_json = runner.invoke(app, ["recommend", str(bracket_run / "lt"), "--history", "Kind of Blue", "--json"])
    assert "Evil \x1b]52;c;aGk=\x07 \u202eTrack" in {t["title"] for t in json.loads(as_json.stdout)["top"]}


def test_a_ranking_shorter_than_top_k_says_why(bracket_run):
    """--top-k above what can be ranked returned fewer rows without a word (serve refuses a k above the catalogue)."""
    runner = CliRunner()
    base = ["recommend", str(bracket_run / "lt"), "--history", "Kind of Blue"]
    short = runner.invoke(app, [*base, "--top-k", "50", "--json"])
    assert short.exit_code == 0, short.output
    assert len(json.loads(short.stdout)["top"]) == 6  # 7 items, the history's one left out
    assert (
        "note: --top-k 50: 6 items ranked, every one there is (the catalogue holds 7, less the history, which is "
        "left out)" in " ".join(short.stderr.split())
    ), short.stderr
    history_in = runner.invoke(app, [*base, "--top-k", "9", "--set", "eval.exclude_history=false"])
    assert history_in.exit_code == 0, history_in.output
    assert "note: --top-k 9: 7 items ranked, every one there is (the catalogue holds 7)" in " ".join(
        history_in.stderr.split()
    ), history_in.stderr
    enough = runner.invoke(app, [*base, "--top-k", "6"])
    assert enough.exit_code == 0 and "note:" not in enough.stderr, enough.output


def test_split_titles():
    from mgfrec.cli.common import split_titles

    assert split_titles("a; b;c") == ["a", " b", "c"]
    assert split_titles(r"a\;b;c") == ["a;b", "c"]
    assert split_titles("") == [""]


def test_a_title_that_is_not_utf8_is_one_line(bracket_run):
    result = CliRunner().invoke(app, ["index", "query", str(bracket_run / "data"), "caf\udce9"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "not valid UTF-8 text" in result.output and result.output.count("error:") == 1


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory, minilm):
    """Titles the embedder cannot tell apart (case, composed and decomposed accents), prepared with histories of
    2 items, and a last-title run (whose config keeps the default data.history_length)."""
    root = tmp_path_factory.mktemp("variants")
    titles = ["Abbey Road", "Kind of Blue", "abbey road", "e\u0301te\u0301", "\u00e9t\u00e9", "Blue Train", "Giant"]
    raw = root / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text(
        "item_id,title\n" + "".join(f'i{n},"{t}"\n' for n, t in enumerate(titles)), encoding="utf-8"
    )
    log = "".join(f"u{n % 2},i{n % len(titles)},{n}\n" for n in range(24))  # 12 interactions a user
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log, encoding="utf-8")
    runner = CliRunner()
    prep = runner.invoke(app, ["data", "prepare", str(raw), "--out", str(root / "data"), "--history-length", "2"])
    assert prep.exit_code == 0, prep.output
    fit = runner.invoke(
        app, ["baseline", "fit", "--model", "last-title", "--data", str(root / "data"), "--out", str(root / "lt")]
    )
    assert fit.exit_code == 0, fit.output
    return root


@pytest.mark.parametrize("typed, item", [("abbey road", 2), ("\u00e9t\u00e9", 4), ("Abbey Road", 0)])
def test_a_title_the_catalogue_holds_is_that_item_and_never_recommended_back(variant_run, typed, item):
    """The uncased, accent-stripping embedder gave "abbey road" the vector of "Abbey Road" (the lower index won),
    so the typed item came back as the first recommendation."""
    result = CliRunner().invoke(app, ["recommend", str(variant_run / "lt"), "--history", typed, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [h["item_idx"] for h in out["history"]] == [item]
    assert item not in [t["item_idx"] for t in out["top"]]


def test_a_user_history_has_the_length_the_data_set_was_prepared_with(variant_run):
    """It took the run config's data.history_length (20), not the manifest's 2 the split samples have."""
    result = CliRunner().invoke(app, ["recommend", str(variant_run / "lt"), "--user", "u0", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["history"]) == 2


def test_a_typed_history_longer_than_the_window_reads_its_latest_titles(variant_run):
    """3,000 pasted titles were all read: the agent's context overflowed and it never answered. The latest of the
    data set's window (2 here) are read, as a user's history, and a note says so (review s35)."""
    typed = "Not A Real Album At All; Kind of Blue; Blue Train; Giant"
    result = CliRunner().invoke(app, ["recommend", str(variant_run / "lt"), "--history", typed, "--json"])
    assert result.exit_code == 0, result.output
    assert [h["item_idx"] for h in json.loads(result.stdout)["history"]] == [5, 6]
    assert "note: 4 titles typed; the latest 2 were read" in " ".join(result.stderr.split())
    assert "not in the catalogue" not in result.stderr  # the mistyped title was not read: nothing to name


def test_a_component_a_set_names_is_blamed_on_the_set_not_the_run(variant_run):
    """`--set grounding.grounder=nope` was "RUN/config.yaml: grounding.grounder: unknown grounder": the run's file
    was blamed for the user's own override (review s36)."""
    with pytest.raises(ValueError, match=r"config.yaml with flags or --set: .*unknown grounder 'nope'"):
        rec_module.load_recommender(variant_run / "lt", ["grounding.grounder=nope"])


def test_a_history_given_as_one_string_is_refused(variant_run):
    with pytest.raises(TypeError, match="not one string"):
        rec_module.recommend(variant_run / "lt", history_titles="Abbey Road")
    with pytest.raises(TypeError, match="title strings"):
        rec_module.typed_history(None, ["Abbey Road", 3])
    # the overrides too: "override 'a' must look like section.field=value", read letter by letter
    with pytest.raises(TypeError, match="sets: give a list of 'section.field=value' overrides, not one string"):
        rec_module.recommend(variant_run / "lt", user="u0", sets="agent.max_groundings=3")


@pytest.mark.reliability
def test_a_user_with_several_samples_in_a_split_gets_any_of_them_by_its_id(agent_run):
    """Only a user's last sample of a split could be asked for, and nothing said that they had others."""
    run, ds = agent_run
    frame = ds.split("valid")
    counts = frame["user_id"].astype(str).value_counts()
    assert counts.max() > 1, "the tiny data set should give some user several valid samples"
    user = counts.index[0]
    mine = frame[frame["user_id"].astype(str) == user]
    first, last = mine.iloc[0], mine.iloc[-1]
    latest, _ = rec_module.recommend(run, user=user, split="valid", top_k=3)
    assert latest.sample_id == int(last["sample_id"]) and latest.target == int(last["target"])
    chosen, _ = rec_module.recommend(run, user=user, split="valid", top_k=3, sample_id=int(first["sample_id"]))
    assert chosen.sample_id == int(first["sample_id"]) and chosen.target == int(first["target"])
    assert chosen.history == [int(i) for i in first["history"]]
    assert chosen.to_dict(ds)["target"]["sample_id"] == int(first["sample_id"])

    base = ["recommend", str(run), "--user", user, "--split", "valid", "--top-k", "3"]
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 0, result.output
    assert f"has {len(mine)} samples in split 'valid'" in result.stderr and "--sample-id" in result.stderr
    assert f"(sample {int(last['sample_id'])})" in " ".join(result.stdout.split())
    result = CliRunner().invoke(app, [*base, "--sample-id", str(int(first["sample_id"])), "--json"])
    assert result.exit_code == 0 and "samples in split" not in result.stderr, result.output
    assert json.loads(result.stdout)["target"]["sample_id"] == int(first["sample_id"])
    other = int(frame[frame["user_id"].astype(str) != user]["sample_id"].iloc[0])
    result = CliRunner().invoke(app, [*base, "--sample-id", str(other)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and f"--sample-id {other}: not a sample of user '{user}'" in text, text


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"user": "u", "top_k": 2.5}, TypeError, "top_k (--top-k): give a whole number, got 2.5"),
        ({"user": "u", "top_k": "5"}, TypeError, "top_k (--top-k): give a whole number, got '5'"),
        ({"user": "u", "top_k": True}, TypeError, "top_k (--top-k): give a whole number, got True"),
        ({"user": "u", "top_k": 0}, ValueError, "top_k (--top-k) must be >= 1, got 0"),
        ({"user": 7.5}, TypeError, "user: give a user id as a string or a whole number, got float"),
        ({"user": True}, TypeError, "user: give a user id as a string or a whole number, got bool"),
        ({"history_titles": ("a", None)}, TypeError, "history_titles: give a sequence of title strings"),
        ({"history_titles": "abc"}, TypeError, "history_titles: give a list of title strings, not one string"),
        ({}, ValueError, "give exactly one of --user USER_ID or --history 'title; ...' (user or history_titles)"),
        ({"history_titles": ("a",), "split": "test"}, ValueError, "split (--split) needs user (--user)"),
        ({"user": "u", "sample_id": 3}, ValueError, "sample_id (--sample-id) needs split (--split)"),
        ({"user": "u", "split": "test", "sample_id": "3"}, TypeError, "sample_id (--sample-id): give a whole number"),
    ],
)
def test_a_query_names_the_argument_it_refuses(kwargs, error, message):
    """A float top_k ran the whole rollout and then failed in a slice; '5' failed in a comparison naming nothing."""
    with pytest.raises(error, match=re.escape(message)):
        rec_module.Query(**kwargs)


@pytest.mark.reliability
def test_a_history_that_is_not_a_list_is_refused_before_loading_the_run(tmp_path):
    with pytest.raises(TypeError, match="history_titles: give a list of title strings, got int"):
        rec_module.recommend(tmp_path, history_titles=5)


@pytest.mark.reliability
def test_search_names_a_text_that_is_not_a_string(agent_run):
    run, ds = agent_run
    recommender = rec_module.load_recommender(run)
    try:
        with pytest.raises(TypeError, match="text: give one title or query string, got list"):
            recommender.search([ds.titles[0], ds.titles[1]])  # was AttributeError: 'list' has no 'encode'
        assert recommender.search(ds.titles[0], k=1)[0][0] == 0
    finally:
        recommender.close()


@pytest.mark.reliability
def test_an_agent_run_on_another_data_set_is_refused(agent_run, tmp_path):
    """Only a baseline run's data checksum was checked: an agent run pointed at another data set (its recall off)
    was served on a catalogue its policy never saw."""
    import shutil

    run, ds = agent_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    info = json.loads((moved / "run.json").read_text())
    info["data_checksum"] = "0" * len(info["data_checksum"])
    (moved / "run.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=rf"is not the one the run was trained on .*{re.escape(str(moved))}"):
        rec_module.load_recommender(moved, sets=("agent.use_recall=false",))
    result = CliRunner().invoke(app, ["recommend", str(moved), "--user", str(ds.interactions.user_id.iloc[0])])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "was the data set prepared again?" in text and "--data" not in text, text


@pytest.mark.reliability
def test_an_agent_run_without_its_policy_folder_is_named_so(agent_run, tmp_path):
    """A deleted policy/ was loaded as a hub id and refused as one ("Repo id must be in the form ...")."""
    import shutil

    run, ds = agent_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(moved / "policy")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{moved / 'policy'}: no policy in this agent run")):
        rec_module.load_recommender(moved)
    result = CliRunner().invoke(app, ["recommend", str(moved), "--user", str(ds.interactions.user_id.iloc[0])])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "no policy in this agent run" in text and "hub id" not in text, text


def test_a_numeric_user_id_is_read_as_text():
    """ml-100k's user ids are numbers: Query(user=42) worked before the type check and must keep working."""
    import numpy as np

    assert rec_module.Query(user=42).user == "42" and rec_module.Query(user=np.int64(7)).user == "7"


def test_a_trajectory_stopped_before_its_first_turn_says_why(agent_run):
    """A turn budget that could overflow the policy's context stopped the agent before it wrote a token, and the
    output said only "end: length_limit ... no answer, so no ranking": the reason was recorded and never shown."""
    run, ds = agent_run
    big = ("--set", "agent.max_new_tokens_per_turn=1000000", "--set", "agent.max_new_tokens_total=1000000")
    result = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[0], "--json", *big])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["end_reason"] == "length_limit" and out["turns"] == []
    assert "could overflow the model's context" in out["end_detail"], out
    shown = CliRunner().invoke(app, ["recommend", str(run), "--history", ds.titles[0], *big])
    assert "end: length_limit (format invalid), 0 groundings: the next turn could overflow" in " ".join(
        shown.output.split()
    ), shown.output


def test_a_typed_title_the_catalogue_lacks_is_named_with_the_item_it_was_read_as(agent_run):
    """A mistyped title silently became its nearest item: the recommendation was another history's."""
    run, ds = agent_run
    result = CliRunner().invoke(app, ["recommend", str(run), "--history", f"Totally Not A Real Album; {ds.titles[1]}"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "note: 1 typed title(s) not in the catalogue, read as their nearest item: 'Totally Not A Real Album' ->" in (
        text
    ), text
    exact = CliRunner().invoke(app, ["recommend", str(run), "--history", f"{ds.titles[0]}; {ds.titles[1]}"])
    assert "not in the catalogue" not in exact.output


def test_recommend_ranks_as_evaluate_whatever_the_run_recorded_for_exclude_history(tmp_path):
    """A baseline fitted with --set eval.exclude_history=false: recommend ranked its samples with the history in
    (the run's recorded value) while evaluate, report and ranks_test.csv left it out, so one sample had two places
    (review s29). Ranking is the ranking command's choice: --set eval.exclude_history=false asks recommend for it."""
    import pandas as pd

    from mgfrec.config.load import load_config
    from mgfrec.config.schema import DataConfig, EvalConfig
    from mgfrec.data.prepared import PreparedDataset, prepare
    from mgfrec.eval.runs import evaluate_run
    from mgfrec.retrievers.fit import fit_baseline

    prepare(DataConfig(source="synthetic", options={"n_users": 40}), tmp_path / "data")
    ds = PreparedDataset(tmp_path / "data")
    run = tmp_path / "pop"
    fit_baseline(ds, load_config(None, ["retriever.model=pop", "eval.exclude_history=false"]), run)
    left_out = evaluate_run(run, "test", EvalConfig(bootstrap_samples=0))
    assert left_out.exclude_history is True
    frame = ds.split("test")
    ranks = pd.read_csv(run / "ranks_test.csv").set_index("sample_id")["rank"]
    moved = 0
    for sample_id, user in list(zip(frame["sample_id"], frame["user_id"], strict=True))[:10]:
        rec, _ = rec_module.recommend(run, user=str(user), split="test", sample_id=int(sample_id))
        assert rec.target_rank == ranks[sample_id]
        ranked_in, _ = rec_module.recommend(
            run, user=str(user), split="test", sample_id=int(sample_id), sets=("eval.exclude_history=false",)
        )
        moved += ranked_in.target_rank != rec.target_rank
    assert moved > 0  # the two conventions differ on these samples: the first assertion can fail


def test_a_score_of_minus_zero_is_written_as_zero(agent_run):
    """The answer's own item, at distance 0, was scored -0.0 (a negated distance) in `recommend --json` and serve's
    answers (review s42)."""
    from mgfrec.recommendation import Recommendation

    _, ds = agent_run
    top = Recommendation(history=[], recall=[], trajectory=None, top=[(3, -0.0), (4, -0.5)]).to_dict(ds)["top"]
    assert json.dumps([t["score"] for t in top]) == "[0.0, -0.5]"

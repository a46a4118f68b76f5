"""Agent runs through the one evaluator: rolled out on a split, ranked from their grounded answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from agentkit import tiny_agent_run
from typer.testing import CliRunner

import mgfrec.eval.agent_eval as agent_eval
from mgfrec.cli.main import app
from mgfrec.config.load import load_config
from mgfrec.config.schema import EvalConfig
from mgfrec.eval.runs import evaluate_run
from mgfrec.retrievers.fit import fit_baseline, split_ranks
from mgfrec.rollout.scripted_engine import ScriptedEngine

FAST = EvalConfig(bootstrap_samples=50)


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    sets = [
        "retriever.recall_size=5",
        "agent.max_new_tokens_per_turn=64",
        "agent.decoding=free",  # the scripted agents answer a history title, or break the format on purpose
    ]
    return tiny_agent_run(tmp_path_factory.mktemp("agent-eval"), sets)


def test_an_agent_that_answers_its_last_history_title_ranks_like_last_title(agent_run, monkeypatch):
    run, ds, last_title = agent_run

    def script(context: str, j: int) -> str:
        # the history is the numbered list in the first user message; answer its last title
        history = context.split("<|im_start|>user", 1)[1].split("\n\n")[0]
        last = [line.split(". ", 1)[1] for line in history.splitlines() if ". " in line][-1]
        return f"<think>more of the same</think><answer>{last.strip()}</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    result = evaluate_run(run, "test", FAST)
    stats = json.loads((run / "agent_test.json").read_text())
    assert stats["format_valid"] == 1.0 and stats["answered"] == stats["samples"] == len(ds.split("test"))
    # grounding the answer ranks the catalogue exactly as the last-title retriever does
    expected = split_ranks(last_title, ds, "test")
    assert np.mean(result.ranks == expected) >= 0.95
    assert (run / "eval_test.json").is_file() and (run / "ranks_test.csv").is_file()
    # every answer is well formed, so each sample's training reward (eq. 8) is the NDCG of its rank
    samples = pd.read_csv(run / "agent_test_samples.csv")
    np.testing.assert_allclose(samples["reward"], 1.0 / np.log2(1.0 + samples["rank"]), rtol=1e-6)
    assert stats["reward"] == pytest.approx(samples["reward"].mean()) and stats["reward_ci"][0] <= stats["reward"]


def test_cli_evaluates_the_policy_on_a_subsample(agent_run):
    run, ds, _ = agent_run
    res = CliRunner().invoke(
        app, ["evaluate", str(run), "--split", "valid", "--json", "--limit", "4", "--bootstrap", "20"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["samples"] == 4 and out["method"] == "mgfrec"
    for key in ("hit@5", "ndcg@5", "hit@10", "ndcg@10", "hit@20", "ndcg@20", "ndcg_full", "mean_rank", "ci"):
        assert key in out
    stats = json.loads((run / "agent_valid.json").read_text())
    assert stats["samples"] == 4 and sum(stats["end_reasons"].values()) == 4
    # an untrained policy rarely answers; unanswered samples get the worst rank
    assert out["mean_rank"] <= ds.num_items


def test_rollout_batch_size_sets_the_chunks_and_leaves_the_ranks_alone(agent_run, monkeypatch):
    run, _, _ = agent_run

    def script(context: str, j: int) -> str:
        history = context.split("<|im_start|>user", 1)[1].split("\n\n")[0]
        first = [line.split(". ", 1)[1] for line in history.splitlines() if ". " in line][0]
        return f"<think>the first one</think><answer>{first.strip()}</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    chunks: list[int] = []
    real = agent_eval._rollout_chunk

    def record(*args, **kwargs):
        chunks.append(len(args[7]))
        return real(*args, **kwargs)

    monkeypatch.setattr(agent_eval, "_rollout_chunk", record)
    runner = CliRunner()
    base = ["evaluate", str(run), "--split", "valid", "--json", "--limit", "7", "--bootstrap", "0"]
    whole = runner.invoke(app, base)
    assert whole.exit_code == 0, whole.output
    assert chunks == [7]  # the default chunk, eval.rollout_batch_size = 32, holds all 7
    ranks_whole = (run / "ranks_valid.csv").read_text()
    chunks.clear()
    split = runner.invoke(app, [*base, "--rollout-batch-size", "3"])
    assert split.exit_code == 0, split.output
    assert chunks == [3, 3, 1]
    assert json.loads(split.stdout)["ndcg_full"] == json.loads(whole.stdout)["ndcg_full"]
    # the answers are ranked eval.batch_size at a time (--batch-size): the same ranks, never a [split, items] matrix
    scored: list[int] = []
    real_inputs = agent_eval.reward_inputs

    def count(trajectories, *args, **kwargs):
        scored.append(len(trajectories))
        return real_inputs(trajectories, *args, **kwargs)

    monkeypatch.setattr(agent_eval, "reward_inputs", count)
    small = runner.invoke(app, [*base, "--batch-size", "2"])
    assert small.exit_code == 0, small.output
    assert scored == [2, 2, 2, 1]
    assert (run / "ranks_valid.csv").read_text() == ranks_whole
    assert json.loads(small.stdout)["ndcg_full"] == json.loads(whole.stdout)["ndcg_full"]
    bad = runner.invoke(app, [*base, "--rollout-batch-size", "0"])
    assert bad.exit_code != 0 and "--rollout-batch-size" in bad.output


def test_an_eval_time_ablation_and_a_baseline_compare_on_one_subsample(agent_run, monkeypatch, tmp_path):
    from mgfrec.eval.report import build_report
    from mgfrec.experiments.ablations import derive_ablation_run

    run, ds, _ = agent_run
    seen = []

    def script(context: str, j: int) -> str:
        seen.append(context)
        return "<think>pick</think><answer>" + ds.titles[0] + "</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    ablated = derive_ablation_run(run, "no-recall", tmp_path / "no-recall")
    cfg = load_config(ablated / "config.yaml")
    assert cfg.agent.use_recall is False and load_config(run / "config.yaml").agent.use_recall is True
    info = json.loads((ablated / "run.json").read_text())
    assert info["kind"] == "agent" and info["extra"]["policy"] == str((run / "policy").resolve())
    limit = 7
    report = build_report([run.parent / "last-title", ablated], "test", None, FAST, limit=limit)
    rows = {r.name: r for r in report.rows}
    assert all(len(r.result.ranks) == limit for r in rows.values())
    assert rows["no-recall"].comparison_error is None and rows["no-recall"].comparison is not None
    assert len(seen) == limit  # rolled out on the subsample only, one answering turn each
    assert not any("candidate items from the item database" in c for c in seen)  # the ablation reached the prompt
    written = {p.name for p in ablated.iterdir() if p.name.startswith(("eval_", "ranks_", "agent_"))}
    assert {"eval_test.json", "ranks_test.csv", "agent_test.json", "agent_test_samples.csv"} <= written
    # derived again into the same folder, with another preset: no result of the earlier one is left to be read
    derive_ablation_run(run, "no-feedback", tmp_path / "no-recall")
    assert not [p.name for p in ablated.iterdir() if p.name.startswith(("eval_", "ranks_", "agent_"))]
    # the same rule picks the baseline's samples and the agent's
    np.testing.assert_array_equal(
        np.sort(rows["last-title"].result.sample_ids), np.sort(rows["no-recall"].result.sample_ids)
    )


def test_a_stored_whole_split_result_answers_every_limit_and_a_stored_subsample_only_its_own(
    agent_run, monkeypatch, tmp_path
):
    import shutil

    from mgfrec.eval.runs import ResultReplacedWarning, result_for_run

    run, ds, _ = agent_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval_*", "ranks_*", "agent_*"))
    rolled = []

    def script(context: str, j: int) -> str:
        rolled.append(context)
        return "<think>pick</think><answer>" + ds.titles[0] + "</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    n = ds.counts["samples"]["test"]
    first = result_for_run(copy, "test", FAST, limit=n + 100)
    assert len(first.ranks) == n and len(rolled) == n  # the subsample of more than n samples is the whole split
    again = result_for_run(copy, "test", FAST, limit=n + 500, evaluate_missing=False)
    assert len(rolled) == n and again.ranks.tolist() == first.ranks.tolist()  # read back, nothing rolled out
    # a smaller subsample is in the whole split: the stored result answers it (the report cuts it), neither rolled
    # out again nor overwritten by the subsample's (which emptied the whole-split result before)
    assert len(result_for_run(copy, "test", FAST, limit=3).ranks) == n and len(rolled) == n
    for name in ("eval_test.json", "ranks_test.csv"):
        (copy / name).unlink()
    assert len(result_for_run(copy, "test", FAST, limit=3).ranks) == 3 and len(rolled) == n + 3  # none stored
    with pytest.warns(ResultReplacedWarning, match=r"stored test evaluation \(3 samples\) is replaced by one on the 4"):
        assert len(result_for_run(copy, "test", FAST, limit=4).ranks) == 4 and len(rolled) == n + 7  # another size
    assert len(result_for_run(copy, "test", FAST, limit=4).ranks) == 4 and len(rolled) == n + 7  # the same one
    # the same size under another eval.seed is another subsample: it was answered with the stored one, whose
    # samples the report's reference did not cover ("not compared ... cover different samples")
    other_seed = FAST.model_copy(update={"seed": 3})
    stored_ids = np.sort(result_for_run(copy, "test", FAST, limit=4, evaluate_missing=False).sample_ids)
    # the command report --no-evaluate names makes that subsample: it made eval.seed 0's again (review s40)
    with pytest.raises(FileNotFoundError, match=r"--split test --limit 4 --set eval.seed=3', or leave out"):
        result_for_run(copy, "test", other_seed, limit=4, evaluate_missing=False)
    with pytest.warns(ResultReplacedWarning, match="eval.seed 3"):
        reseeded = result_for_run(copy, "test", other_seed, limit=4)
    assert len(rolled) == n + 11 and not np.array_equal(np.sort(reseeded.sample_ids), stored_ids)
    # the stored 4 samples are not the whole split, so a limit beyond it rolls the agent out again
    # ... and says it is the whole split: "the 104-sample subsample" was said, with a hint to do just that
    with pytest.warns(
        ResultReplacedWarning, match=rf"\(4 samples\) is replaced by one on the whole test split \({n} samples\)$"
    ):
        assert len(result_for_run(copy, "test", FAST, limit=n + 100).ranks) == n and len(rolled) == 2 * n + 11
    # a stored result is reused however it was decoded (docs/evaluation.md): the report's note says how
    sampled = FAST.model_copy(update={"greedy": False})
    assert len(result_for_run(copy, "test", sampled, limit=n + 100).ranks) == n and len(rolled) == 2 * n + 11


def test_a_format_error_costs_the_format_penalty_in_the_reward_column(agent_run, monkeypatch):
    run, ds, _ = agent_run
    monkeypatch.setattr(
        agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, lambda context, j: "no tags at all")
    )
    files = ("agent_test.json", "agent_test_samples.csv", "eval_test.json")
    before = {f: (run / f).stat().st_mtime_ns if (run / f).exists() else None for f in files}
    evaluate_run(run, "test", FAST, limit=3, write=False)  # writes nothing: not the agent's files either
    assert {f: (run / f).stat().st_mtime_ns if (run / f).exists() else None for f in files} == before
    result = evaluate_run(run, "valid", FAST, limit=5)
    samples = pd.read_csv(run / "agent_valid_samples.csv")
    assert (samples["end_reason"] == "format_error").all() and (result.ranks == ds.num_items).all()
    assert (samples["reward"] == -0.5).all()  # eq. 8: the format reward alone; the ranking counts the worst rank


def test_answer_first_variant_of_an_agent_that_copies_the_recall_top_item_ranks_like_the_recall_run(
    agent_run, monkeypatch, tmp_path
):
    """agent.final_ranking: answer_then_recall: answering the recall model's first item gives its own ranks."""
    from mgfrec.experiments.ablations import derive_variant_run

    run, ds, last_title = agent_run

    def script(context: str, j: int) -> str:
        listed = context.split("candidate items from the item database:\n", 1)[1]
        return f"<think>the first</think><answer>{listed.splitlines()[0].split('. ', 1)[1].strip()}</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    variant = derive_variant_run(run, "answer-first", tmp_path / "answer-first")
    assert load_config(variant / "config.yaml").agent.final_ranking == "answer_then_recall"
    assert json.loads((variant / "run.json").read_text())["extra"]["variant"] == "answer-first"
    first = evaluate_run(variant, "test", FAST, write=False)
    paper = evaluate_run(run, "test", FAST, write=False)  # the same answers ranked by the paper's rule
    expected = split_ranks(last_title, ds, "test")
    assert np.mean(first.ranks == expected) >= 0.95  # ties at the recall model's top may differ
    assert not np.array_equal(paper.ranks, first.ranks)  # the paper's L2 rule reads the same answers differently
    with pytest.raises(ValueError, match="unknown; choose one of answer-first"):
        derive_variant_run(run, "nope", tmp_path / "nope")


def test_answer_then_recall_ranks_against_a_brute_force_ordering():
    import torch

    from mgfrec.agent.final_ranking import answer_then_recall_ranks

    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.normal(size=(30, 12)))
    histories = [rng.choice(12, size=3, replace=False) for _ in range(30)]
    targets = [int(rng.choice([i for i in range(12) if i not in h])) for h in histories]
    answers = [None if n % 7 == 0 else int(rng.integers(12)) for n in range(30)]
    got = answer_then_recall_ranks(answers, scores, targets, histories)
    for n in range(30):
        if answers[n] is None:
            assert got[n] is None
            continue
        order = [i for i in np.argsort(-scores[n].numpy(), kind="stable") if i not in histories[n] or i == targets[n]]
        order = [answers[n], *[i for i in order if i != answers[n]]]
        order = [i for i in order if i not in histories[n] or i == targets[n]]
        assert got[n] == order.index(targets[n]) + 1


def test_answer_first_scores_are_finite_and_put_the_answer_strictly_first_in_float32_too():
    """The raised score is finite (JSON can carry it) and above every other item's, the history's -inf and huge
    or negative recall scores included, also once the evaluator reads the scores as float32."""
    import torch

    from mgfrec.agent.final_ranking import answer_first_scores

    rows = torch.tensor(
        [
            [0.5, -1.0, float("-inf"), 2.0],
            [1e8 + 1, 1e8 + 2, 0.5, float("-inf")],
            [-3.0, -7.0, -5.0, -4.0],
            [float("-inf")] * 4,
        ],
        dtype=torch.float64,
    )
    answers = [0, 2, 1, 3]
    scores = answer_first_scores(answers, rows)
    assert torch.isfinite(scores[torch.arange(4), torch.tensor(answers)]).all()
    for n, a in enumerate(answers):
        for s in (scores[n], scores[n].float()):
            others = torch.cat([s[:a], s[a + 1 :]])
            assert (s[a] > others).all(), (n, s)
        kept = [i for i in range(4) if i != a]
        assert torch.equal(scores[n, kept], rows[n, kept])  # every other score as the recall model gave it


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_joint_l2_ranks_against_a_brute_force_ordering():
    import torch

    from mgfrec.agent.final_ranking import joint_item_vectors, joint_l2_ranks

    rng = np.random.default_rng(1)
    title, ids = rng.normal(size=(15, 6)), rng.normal(size=(15, 4))
    histories = [rng.choice(15, size=3, replace=False) for _ in range(40)]
    targets = [int(rng.choice([i for i in range(15) if i not in h])) for h in histories]
    answers = [None if n % 9 == 0 else int(rng.integers(15)) for n in range(40)]
    for weight in (1.0, 0.5, 0.0):
        vectors = joint_item_vectors(title, torch.tensor(ids), weight)
        assert vectors.shape == (15, 10)
        joined = np.concatenate([weight * _unit(title), _unit(ids)], 1)
        got = joint_l2_ranks(answers, vectors, targets, histories)
        for n in range(40):
            if answers[n] is None:
                assert got[n] is None
                continue
            d = np.linalg.norm(joined - joined[answers[n]], axis=1)
            others = [i for i in range(15) if i != targets[n] and i not in histories[n]]
            assert got[n] == 1 + sum(d[i] <= d[targets[n]] + 1e-6 for i in others)  # ties count against
    with pytest.raises(ValueError, match="one each per item"):
        joint_item_vectors(title, torch.tensor(ids[:-1]))


def test_joint_l2_variant_refuses_a_recall_run_without_item_embeddings_before_rolling_out(
    agent_run, monkeypatch, tmp_path
):
    from mgfrec.experiments.ablations import derive_variant_run

    run, _, _ = agent_run  # its recall run is last-title: no item embeddings
    rolled = []
    monkeypatch.setattr(
        agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, lambda c, j: rolled.append(c) or "x")
    )
    with pytest.raises(ValueError, match="l2_joint needs a recall run with item embeddings"):
        derive_variant_run(run, "joint-l2", tmp_path / "refused")  # refused when derived now (review s37)
    variant = derive_variant_run(run, "answer-first", tmp_path / "joint-l2")  # as an earlier mgfrec derived it
    written = (variant / "config.yaml").read_text(encoding="utf-8").replace("answer_then_recall", "l2_joint")
    (variant / "config.yaml").write_text(written)
    assert load_config(variant / "config.yaml").agent.final_ranking == "l2_joint"
    with pytest.raises(ValueError, match="l2_joint needs a recall run with item embeddings"):
        evaluate_run(variant, "test", FAST, write=False)
    assert not rolled


def test_joint_l2_variant_ranks_the_answers_over_title_and_recall_item_embeddings(agent_run, monkeypatch, tmp_path):
    """A run whose recall model is a SASRec: the variant ranks the same answers by L2 over the joined vectors."""
    import shutil

    from mgfrec.experiments.ablations import apply_overrides, derive_variant_run
    from mgfrec.grounding.engine import load_grounding
    from mgfrec.retrievers.fit import load_scorer

    run, ds, _ = agent_run
    cfg = load_config(run / "config.yaml")
    sasrec_cfg = apply_overrides(cfg, ["retriever.model=sasrec", "retriever.max_epochs=2"])
    sasrec = tmp_path / "sasrec"
    fit_baseline(ds, sasrec_cfg, sasrec)
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval_*", "ranks_*", "agent_*"))
    info = json.loads((copy / "run.json").read_text())
    info["extra"]["recall_run"] = str(sasrec)
    (copy / "run.json").write_text(json.dumps(info))

    def script(context: str, j: int) -> str:
        listed = context.split("candidate items from the item database:\n", 1)[1]
        return f"<think>the first</think><answer>{listed.splitlines()[0].split('. ', 1)[1].strip()}</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    variant = derive_variant_run(copy, "joint-l2", tmp_path / "joint-l2")
    joint = evaluate_run(variant, "test", FAST)
    paper = evaluate_run(copy, "test", FAST, write=False)
    samples = pd.read_csv(variant / "agent_test_samples.csv")
    answers = samples["answer"].tolist()
    # the reward column (what GRPO maximises) reads the same rank as the metrics: eq. 7 of the joint rank
    np.testing.assert_allclose(samples["reward"], 1.0 / np.log2(1.0 + np.asarray(joint.ranks)))
    grounding = load_grounding(ds, cfg)
    items = [int(row[0]) for row in grounding.ground(answers, k=1)]
    joined = np.concatenate(
        [_unit(np.asarray(grounding.item_embeddings)), _unit(load_scorer(sasrec).scorer.item_vectors().numpy())], 1
    )
    frame = ds.split("test")
    for n, (item, target, history) in enumerate(zip(items, frame["target"], frame["history"], strict=True)):
        d = np.linalg.norm(joined - joined[item], axis=1)
        others = [i for i in range(ds.num_items) if i != target and i not in set(history)]
        assert joint.ranks[n] == 1 + sum(d[i] <= d[target] + 1e-5 for i in others)
    assert not np.array_equal(paper.ranks, joint.ranks)  # the paper's rule reads the same answers by title alone


def test_an_answered_title_shared_by_several_items_grounds_to_the_one_the_recall_list_showed():
    """CDs has 184 titles shared by 551 items; the nearest-embedding tie went to the lowest index, so an agent
    answering the recall model's first item ("Greatest Hits", the second of two) was ranked as if it had put the
    other one first: not the recall model's ranks, as docs/agent.md promises."""
    import torch

    from mgfrec.agent.final_ranking import FinalRanking, joint_item_vectors
    from mgfrec.grounding.engine import Grounding
    from mgfrec.grounding.exact import ExactGrounder

    titles = ["Greatest Hits", "Rumours", "Thriller", "Nevermind", "Kind of Blue", "Greatest Hits", "OK Computer"]
    vectors = np.eye(len(titles), dtype=np.float32)
    vectors[5] = vectors[0]  # the same title, the same embedding

    class Embedder:
        dim = len(titles)

        def encode(self, texts, query=False, **kw):
            return np.stack([vectors[titles.index(t)] for t in texts])

    grounding = Grounding(Embedder(), ExactGrounder(vectors), titles, vectors, top_k=3)

    class Recall:  # this user's best item is item 5, the second "Greatest Hits"; item 0 is in the history
        def scores(self, histories):
            return torch.tensor([[0.95, 0.5, 0.4, 0.3, 0.2, 0.9, 0.0]] * len(histories), dtype=torch.float64)

        def item_vectors(self):
            return torch.eye(len(titles))

    final = FinalRanking("answer_then_recall", grounding, recall=Recall())
    assert final.answer_items(["Greatest Hits"]) == [0]  # without a history: the first of them
    assert final.answer_items(["Greatest Hits", "Rumours"], [[3], [3]]) == [0, 1]  # item 0 scores highest
    assert final.answer_items(["Greatest Hits"], [[0, 3]]) == [5]  # item 0 is in the history: the one shown
    scores = final.scores(["Greatest Hits"], [[0, 3]])
    assert int(scores[0].argmax()) == 5
    joint = FinalRanking(
        "l2_joint", grounding, recall=Recall(), vectors=joint_item_vectors(vectors, Recall().item_vectors())
    )
    assert joint.answer_items(["Greatest Hits"], [[0, 3]]) == [5]


@pytest.mark.reliability
def test_an_agent_run_trained_anew_while_it_is_evaluated_gets_none_of_the_earlier_policys_results(
    agent_run, monkeypatch
):
    """An hour-long rollout overlapping a fit into the same folder saved the earlier policy's results into the new
    run, which report then showed as its own (review s33)."""
    run, ds, _ = agent_run
    recorded = (run / "run.json").read_text()

    def script(context: str, j: int) -> str:  # a new fit's run.json lands while the rollout goes on
        (run / "run.json").write_text(json.dumps({**json.loads(recorded), "created": "2026-12-07T01:02:03+00:00"}))
        return "<think>pick</think><answer>" + ds.titles[0] + "</answer>"

    monkeypatch.setattr(agent_eval, "build_engine", lambda cfg, model, tok: ScriptedEngine(tok, script))
    files = [
        run / "agent_train.json",
        run / "agent_train_samples.csv",
        run / "eval_train.json",
        run / "ranks_train.csv",
    ]
    try:
        result = CliRunner().invoke(app, ["evaluate", str(run), "--split", "train", "--limit", "3", "--bootstrap", "0"])
    finally:
        (run / "run.json").write_text(recorded)
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and f"{run}: another run was made in it while it was evaluated; nothing" in text, text
    assert "Traceback" not in result.output and not any(p.exists() for p in files)


@pytest.mark.reliability
def test_a_vllm_run_where_vllm_is_missing_is_refused_before_the_policy_loads(agent_run, monkeypatch, tmp_path):
    """`evaluate`, `recommend`, `serve` and `chat` of a run trained with vLLM, on a machine without it, loaded the
    policy and the embedder first (18 s on a tiny run), and evaluate's advice (--rollout-engine hf) was a flag it
    does not have (review s37)."""
    import importlib.util
    import shutil

    from mgfrec import recommend as rec_module
    from mgfrec.registry import MissingExtraError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the refusal is for a machine without it")
    run, ds, _ = agent_run
    copy = tmp_path / "vllm-run"
    shutil.copytree(run, copy)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace("engine: hf", "engine: vllm"))

    def no_policy(*args, **kwargs):
        raise AssertionError("the policy loaded before the engine was checked")

    monkeypatch.setattr(agent_eval, "load_policy", no_policy)
    monkeypatch.setattr(rec_module, "load_policy", no_policy)
    with pytest.raises(MissingExtraError, match=rf"derive a copy \(mgfrec derive {copy} OUT --ablation full --set"):
        evaluate_run(copy, "test", FAST, write=False)
    with pytest.raises(MissingExtraError, match=r"rollout.engine 'vllm' needs vLLM"):
        rec_module.load_recommender(copy)

"""The full-ranking evaluator and EvalResult: ranks from scorers, from precomputed ranks, and on disk."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from evalkit import N_ITEMS, FixedScorer, NextItemOracle

from mgfrec.config.schema import DataConfig, EvalConfig
from mgfrec.data.prepared import prepare
from mgfrec.ranking.evaluator import NaNScoresWarning, evaluate, evaluate_ranks, rank_targets
from mgfrec.ranking.metrics import per_sample
from mgfrec.ranking.results import EvalResult
from mgfrec.ranking.stats import MismatchedSamplesError

FAST = EvalConfig(bootstrap_samples=200)


def test_rank_targets_hand_made_batch_with_and_without_history_exclusion():
    scorer = FixedScorer(np.array([0.9, 0.8, 0.7, 0.6, 0.5]))
    histories = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([4, 3])]
    targets = np.array([3, 3, 3])
    assert rank_targets(scorer, histories, targets).tolist() == [2, 4, 4]
    assert rank_targets(scorer, histories, targets, exclude_history=False).tolist() == [4, 4, 4]


def test_nan_target_scores_rank_last_and_are_counted_in_a_warning():
    """A model that diverged scores NaN: its targets ranked last with no word, so its metrics were zero and looked
    like a weak model's (review s40). They still rank last; one warning counts them."""
    scorer = FixedScorer(np.array([0.9, np.nan, 0.7, np.nan, 0.5]))
    histories = [np.array([0]), np.array([], dtype=np.int64), np.array([2])]
    with pytest.warns(NaNScoresWarning, match=r"eval-test-fixed.*scores gave the target a NaN score in 2 of 3 samples"):
        ranks = rank_targets(scorer, histories, np.array([1, 3, 4]), batch_size=2)
    assert ranks.tolist() == [4, 5, 2]  # last of the 4 and 5 ranked items; the third: its history left out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rank_targets(scorer, histories, np.array([0, 2, 4]))  # NaN elsewhere only: nothing to say


def test_batch_size_does_not_change_ranks(tiny_ds):
    test = tiny_ds.split("test")
    scorer = FixedScorer(np.random.default_rng(0).random(N_ITEMS))
    args = (scorer, test["history"].tolist(), test["target"].to_numpy())
    seen = []
    one = rank_targets(*args, batch_size=1, progress=lambda done, total: seen.append((done, total)))
    assert one.tolist() == rank_targets(*args, batch_size=256).tolist()
    assert seen[-1] == (len(test), len(test)) and len(seen) == len(test)


def test_evaluate_oracle_ranks_every_target_first(tiny_ds):
    result = evaluate(NextItemOracle(N_ITEMS), tiny_ds, "test", FAST)
    assert result.method == "eval-test-oracle" and result.split == "test"
    assert result.samples == 40 and result.ranks.tolist() == [1] * 40
    assert result.metrics["hit@5"] == 1.0 and result.metrics["ndcg_full"] == 1.0 and result.metrics["mean_rank"] == 1.0
    assert result.ci["hit@5"] == (1.0, 1.0)
    assert result.sample_ids.tolist() == tiny_ds.split("test")["sample_id"].tolist()
    assert result.data_checksum == tiny_ds.checksum and result.num_items == N_ITEMS


def test_evaluate_constant_scorer_gets_the_pessimistic_rank(tiny_ds):
    # Every test history holds 5 distinct items other than the target: with them excluded, the target
    # ties with the remaining 7 items and ranks 7; without exclusion it ties with all 12.
    constant = FixedScorer(np.zeros(N_ITEMS))
    excluded = evaluate(constant, tiny_ds, "test", FAST)
    assert set(excluded.ranks.tolist()) == {N_ITEMS - 5}
    assert excluded.metrics["hit@5"] == 0.0 and excluded.metrics["hit@10"] == 1.0
    assert excluded.metrics["ndcg@10"] == pytest.approx(1 / math.log2(1 + 7))
    kept = evaluate(constant, tiny_ds, "test", FAST, exclude_history=False)
    assert set(kept.ranks.tolist()) == {N_ITEMS} and kept.exclude_history is False


def test_metric_means_are_means_of_per_sample_values(tiny_ds):
    result = evaluate(FixedScorer(np.random.default_rng(1).random(N_ITEMS)), tiny_ds, "valid", FAST)
    values = per_sample(result.ranks, (5, 10, 20))
    for name, mean in result.metrics.items():
        assert mean == pytest.approx(values[name].mean())
        lo, hi = result.ci[name]
        assert lo <= mean <= hi


def test_evaluate_refuses_a_scorer_for_another_catalogue(tiny_ds):
    with pytest.raises(ValueError, match=f"returned {N_ITEMS + 1} columns but the data set has {N_ITEMS} items"):
        evaluate(FixedScorer(np.zeros(N_ITEMS + 1)), tiny_ds, "test", FAST)


def test_a_registered_retriever_with_too_few_columns_is_named_with_its_package(tiny_ds):
    from mgfrec.registry import Registry, use_registry

    class Narrow(FixedScorer):
        pass

    reg = Registry.discover()
    reg.add("retriever", "narrow", Narrow)
    with use_registry(reg), pytest.raises(ValueError) as err:
        evaluate(Narrow(np.zeros(N_ITEMS - 1)), tiny_ds, "test", FAST)
    message = str(err.value)
    assert message.startswith("retriever 'narrow' (") and ", from python:" in message, message
    assert f"scores returned {N_ITEMS - 1} columns but the data set has {N_ITEMS} items" in message


def test_rank_targets_refuses_wrong_shapes_and_targets():
    class Wrong:
        def scores(self, histories):
            return torch.zeros(len(histories) + 1, 3)

    with pytest.raises(ValueError, match=r"expected \[1, N\]"):
        rank_targets(Wrong(), [np.array([0])], np.array([1]))
    with pytest.raises(ValueError, match="outside the scorer's 3 items"):
        rank_targets(FixedScorer(np.zeros(3)), [np.array([0])], np.array([3]))


def test_evaluate_ranks_summarises_precomputed_ranks():
    result = evaluate_ranks(np.array([1, 3, 30]), np.array([7, 8, 9]), split="test", method="agent", config=FAST)
    assert result.metrics["hit@5"] == pytest.approx(2 / 3)
    assert result.metrics["ndcg_full"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(31)) / 3)
    assert result.metrics["mean_rank"] == pytest.approx(34 / 3)
    assert result.sample_ids.tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="repeat"):
        evaluate_ranks(np.array([1, 2]), np.array([5, 5]), split="test", method="agent")
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_ranks(np.array([1, 20]), split="test", method="agent", num_items=10)
    with pytest.raises(ValueError, match="no samples"):
        evaluate_ranks(np.array([], dtype=int), split="test", method="agent")


def test_configured_ks_and_zero_bootstrap():
    result = evaluate_ranks(
        np.array([1, 2, 3]), split="valid", method="m", config=EvalConfig(ks=(1, 3), bootstrap_samples=0)
    )
    assert list(result.metrics) == ["hit@1", "ndcg@1", "hit@3", "ndcg@3", "ndcg_full", "mean_rank"]
    payload = result.to_dict()
    assert payload["ci"]["hit@1"] == [None, None]


def test_save_and_load_round_trip(tiny_ds, tmp_path):
    result = evaluate(FixedScorer(np.random.default_rng(2).random(N_ITEMS)), tiny_ds, "test", FAST)
    paths = result.save(tmp_path)
    payload = json.loads(paths["json"].read_text())
    flat = ("hit@5", "ndcg@5", "hit@10", "ndcg@10", "hit@20", "ndcg@20", "ndcg_full", "mean_rank", "samples")
    assert all(key in payload for key in (*flat, "split", "method", "ci"))
    assert payload["ci"]["ndcg@10"] == list(result.ci["ndcg@10"])
    ranks = pd.read_csv(paths["ranks"])
    assert list(ranks.columns) == ["sample_id", "target", "rank"]
    assert ranks["target"].tolist() == tiny_ds.split("test")["target"].tolist()
    row = pd.read_csv(paths["csv"])
    assert row.loc[0, "ndcg@20_hi"] == pytest.approx(result.ci["ndcg@20"][1])
    loaded = EvalResult.load(tmp_path, "test")
    assert loaded.ranks.tolist() == result.ranks.tolist()
    assert loaded.metrics == pytest.approx(result.metrics)
    assert loaded.ci == result.ci and loaded.data_checksum == result.data_checksum


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval_valid.json: missing; run 'mgfrec evaluate"):
        EvalResult.load(tmp_path, "valid")


def test_a_damaged_or_mismatched_ranks_file_is_named(tiny_ds, tmp_path):
    """A broken ranks CSV was reported as a broken eval JSON, and ranks of another save were paired with the JSON's
    metrics without a word (a save cut short)."""
    result = evaluate(FixedScorer(np.random.default_rng(2).random(N_ITEMS)), tiny_ds, "test", FAST)
    paths = result.save(tmp_path)
    rows = paths["ranks"].read_text().splitlines()
    paths["ranks"].write_text("\n".join(rows[:-1]) + "\n")  # one sample short
    with pytest.raises(ValueError, match=rf"ranks_test.csv: {len(rows) - 2} rows, but eval_test.json says"):
        EvalResult.load(tmp_path, "test")
    paths["ranks"].write_text("nothing,useful\n1,2\n")
    with pytest.raises(ValueError, match=r"ranks_test.csv: not a valid ranks file"):
        EvalResult.load(tmp_path, "test")
    paths["ranks"].write_text(rows[0] + "\n")  # a header alone: was "column sample_id holds ... not whole numbers"
    with pytest.raises(ValueError, match=r"ranks_test.csv: 0 rows, but eval_test.json says"):
        EvalResult.load(tmp_path, "test")
    paths["ranks"].write_bytes(b"\xff\xfe\x00garbage" * 30)  # its UnicodeDecodeError's repr held the bytes
    with pytest.raises(ValueError, match=r"ranks_test.csv: not a valid ranks file \(not UTF-8 text\); evaluate"):
        EvalResult.load(tmp_path, "test")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: [rows[0], "abc" + rows[1][rows[1].index(",") :], *rows[2:]], "column sample_id holds values"),
        (lambda rows: [rows[0], rows[1], rows[1], *rows[3:]], "appears more than once"),
        (lambda rows: [rows[0], rows[1].rsplit(",", 1)[0] + ",x", *rows[2:]], "column rank holds values"),
    ],
    ids=["text-id", "repeated-id", "text-rank"],
)
def test_a_damaged_ranks_row_is_named(tiny_ds, tmp_path, edit, message):
    """A text sample id was reported as "cover different samples ... without subsampling", a repeated one as
    "sample ids repeat", naming no file."""
    paths = evaluate(FixedScorer(np.random.default_rng(2).random(N_ITEMS)), tiny_ds, "test", FAST).save(tmp_path)
    rows = paths["ranks"].read_text().splitlines()
    paths["ranks"].write_text("\n".join(edit(rows)) + "\n")
    with pytest.raises(ValueError, match=rf"ranks_test.csv: .*{message}.*; evaluate the run again"):
        EvalResult.load(tmp_path, "test")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("samples", "x"),
        ("ci", {"hit@5": [1]}),
        ("ci", {"hit@5": ["a", "b"]}),
        ("ks", None),
        ("num_items", "abc"),  # a numpy traceback from the report's rank check
        ("num_items", True),
        ("num_items", 1),  # below the ranks: "rank ... exceeds the 1 items", naming neither file
    ],
)
def test_a_damaged_evaluation_json_is_named(tiny_ds, tmp_path, field, value):
    paths = evaluate(FixedScorer(np.random.default_rng(2).random(N_ITEMS)), tiny_ds, "test", FAST).save(tmp_path)
    payload = json.loads(paths["json"].read_text())
    payload[field] = value
    paths["json"].write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"eval_test.json: not a valid evaluation result .*; evaluate the run again"):
        EvalResult.load(tmp_path, "test")


def test_compare_refuses_other_data_sets_and_other_targets(tiny_ds, tmp_path):
    oracle = evaluate(NextItemOracle(N_ITEMS), tiny_ds, "test", FAST)
    other = prepare(
        DataConfig(source="csv", path=str(tiny_ds.root.parent / "csv"), split_ratios=(0.5, 0.25, 0.25)), tmp_path
    )
    elsewhere = evaluate(FixedScorer(np.zeros(N_ITEMS)), other, "test", FAST)
    with pytest.raises(MismatchedSamplesError, match="different data sets"):
        oracle.compare(elsewhere)
    forged = evaluate_ranks(oracle.ranks, oracle.sample_ids, split="test", method="x", targets=oracle.targets + 1)
    with pytest.raises(MismatchedSamplesError, match="disagree on the target of 40 samples"):
        oracle.compare(forged)
    with pytest.raises(MismatchedSamplesError, match="different splits"):
        oracle.compare(evaluate(NextItemOracle(N_ITEMS), tiny_ds, "valid", FAST))
    ranked_too = evaluate(NextItemOracle(N_ITEMS), tiny_ds, "test", FAST, exclude_history=False)
    with pytest.raises(MismatchedSamplesError, match=r"ranked differently \(history left out vs history ranked too"):
        oracle.compare(ranked_too)


def test_compare_marks_the_oracle_better_than_a_constant_scorer(tiny_ds):
    oracle = evaluate(NextItemOracle(N_ITEMS), tiny_ds, "test", FAST)
    constant = evaluate(FixedScorer(np.zeros(N_ITEMS)), tiny_ds, "test", FAST)
    comps = oracle.compare(constant)
    # The constant scorer ranks every target 7th: a hit at 10 and 20 as often as the oracle.
    assert {m for m, c in comps.items() if c.significant and c.better == "a"} == set(comps) - {"hit@10", "hit@20"}
    assert comps["hit@10"].diff == 0.0 and not comps["hit@10"].significant
    same = oracle.compare(oracle)
    assert not any(c.significant for c in same.values())


@pytest.mark.shared_data
def test_constant_scorer_on_the_real_cds_split_ranks_below_every_unseen_item(cds_dir, tmp_path):
    ds = prepare(DataConfig(source="csv", path=str(cds_dir)), tmp_path / "cds")
    test = ds.split("test")
    result = evaluate(FixedScorer(np.zeros(ds.num_items)), ds, "test", FAST, batch_size=128)
    expected = [
        ds.num_items - len(set(h.tolist()) - {t}) for h, t in zip(test["history"], test["target"], strict=False)
    ]
    assert result.samples == len(test) == ds.counts["samples"]["test"]
    assert result.ranks.tolist() == expected


def test_a_ranks_file_edited_after_its_evaluation_is_named(tiny_ds, tmp_path):
    """report recomputes every metric from ranks_<split>.csv: a rank edited by hand gave numbers that disagreed
    with eval_<split>.json, without a word."""
    paths = evaluate(FixedScorer(np.random.default_rng(2).random(N_ITEMS)), tiny_ds, "test", FAST).save(tmp_path)
    assert EvalResult.load(tmp_path, "test").samples > 0  # as written, the two agree
    rows = paths["ranks"].read_text().splitlines()
    sample, target, rank = rows[1].split(",")
    rows[1] = f"{sample},{target},{int(rank) % N_ITEMS + 1}"
    paths["ranks"].write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"ranks_test.csv: its ranks give \S+ .*, but eval_test.json says .* edited"):
        EvalResult.load(tmp_path, "test")

"""Ranks and per-sample metrics: hand-computed values, the pessimistic tie rule, history exclusion, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgfrec.ranking.metrics import (
    check_ranks,
    history_mask,
    hit,
    metric_names,
    ndcg,
    per_sample,
    target_ranks,
    target_ranks_excluding,
)


def test_hit_and_ndcg_from_hand_computed_ranks():
    ranks = np.array([1, 2, 5, 6, 21])
    assert hit(ranks, 5).tolist() == [1, 1, 1, 0, 0]
    assert hit(ranks, 20).tolist() == [1, 1, 1, 1, 0]
    expected_at_5 = [1.0, 1 / math.log2(3), 1 / math.log2(6), 0.0, 0.0]
    assert ndcg(ranks, 5) == pytest.approx(expected_at_5)
    assert ndcg(ranks) == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(7), 1 / math.log2(22)])


def test_per_sample_has_every_metric_in_table_order():
    values = per_sample(np.array([1, 10]), (5, 10))
    assert list(values) == metric_names((5, 10)) == ["hit@5", "ndcg@5", "hit@10", "ndcg@10", "ndcg_full", "mean_rank"]
    assert values["hit@5"].tolist() == [1.0, 0.0]
    assert values["ndcg@10"] == pytest.approx([1.0, 1 / math.log2(11)])
    assert values["mean_rank"].tolist() == [1.0, 10.0]


def test_rank_counts_strictly_better_items():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.9], [0.9, 0.5, 0.3, 0.1]])
    assert target_ranks(scores, torch.tensor([2, 0])).tolist() == [3, 1]


def test_all_equal_scores_rank_last_not_first():
    scores = torch.zeros(2, 7)
    assert target_ranks(scores, torch.tensor([0, 6])).tolist() == [7, 7]


def test_target_tied_with_two_others_counts_them_above():
    # One item scores higher (index 4); two share the target's score (indices 0 and 3).
    scores = torch.tensor([[0.5, 0.2, 0.5, 0.5, 0.8, 0.1]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [4]


def test_history_exclusion_removes_history_but_never_the_target():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    target = torch.tensor([3])
    assert target_ranks(scores, target).tolist() == [4]
    exclude = history_mask([np.array([0, 1])], 5)
    assert target_ranks(scores, target, exclude).tolist() == [2]
    # The target was consumed before (a repeat): it stays in the ranking.
    exclude = history_mask([np.array([0, 3])], 5)
    assert target_ranks(scores, target, exclude).tolist() == [3]


def test_history_exclusion_with_ties_removes_tied_history_items():
    scores = torch.ones(1, 6)
    exclude = history_mask([np.array([1, 2, 2])], 6)
    assert target_ranks(scores, torch.tensor([0]), exclude).tolist() == [4]


def test_nan_scores_rank_last_and_a_nan_target_gets_rank_n():
    scores = torch.tensor([[float("nan"), 0.2, 0.1, float("nan")]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [2]
    assert target_ranks(scores, torch.tensor([0])).tolist() == [4]


def test_history_mask_marks_each_row_and_accepts_empty_history():
    mask = history_mask([np.array([], dtype=np.int64), np.array([2, 0])], 3)
    assert mask.tolist() == [[False, False, False], [True, False, True]]


@pytest.mark.parametrize(
    ("ranks", "num_items", "match"),
    [([0, 1], None, "1-based"), ([1.5], None, "whole numbers"), ([3], 2, "exceeds"), ([[1]], None, "1-d")],
)
def test_check_ranks_refuses_impossible_ranks(ranks, num_items, match):
    with pytest.raises(ValueError, match=match):
        check_ranks(np.array(ranks), num_items)


def test_check_ranks_accepts_whole_floats():
    assert check_ranks(np.array([1.0, 3.0]), 3).dtype == np.int64


def reference_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None) -> np.ndarray:
    """The definition, written for clarity: NaN -> -inf, count items >= the target that are not excluded."""
    s = np.nan_to_num(scores.float().numpy(), nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    out = []
    for b, t in enumerate(targets.tolist()):
        keep = np.ones(s.shape[1], dtype=bool) if exclude is None else ~exclude[b].numpy()
        keep[t] = True
        out.append(int(((s[b] >= s[b, t]) & keep).sum()))
    return np.array(out)


def adversarial_batch(seed: int, rows: int = 16, n: int = 30):
    """Scores from a few values (many ties) with NaN and +-inf; histories with repeats and the target."""
    rng = np.random.default_rng(seed)
    values = np.array([0.0, 0.5, 1.0, np.nan, np.inf, -np.inf])
    scores = torch.tensor(rng.choice(values, size=(rows, n), p=[0.3, 0.3, 0.25, 0.05, 0.05, 0.05]), dtype=torch.float32)
    targets = torch.tensor(rng.integers(0, n, size=rows))
    histories = [rng.integers(0, n, size=rng.integers(0, 8)) for _ in range(rows)]
    histories[0] = np.array([int(targets[0])] * 3, dtype=np.int64)  # a repeat consumer of the target
    return scores, targets, histories


@pytest.mark.parametrize("seed", range(30))
def test_fast_paths_match_the_definition_on_ties_nan_and_infinities(seed):
    scores, targets, histories = adversarial_batch(seed)
    mask = history_mask(histories, scores.shape[1])
    assert target_ranks(scores, targets).tolist() == reference_ranks(scores, targets, None).tolist()
    expected = reference_ranks(scores, targets, mask).tolist()
    assert target_ranks(scores, targets, mask).tolist() == expected
    assert target_ranks_excluding(scores, targets, histories).tolist() == expected


def test_float64_scores_are_ranked_at_their_own_precision():
    """A scorer's float64 scores (a popularity count plus a small recency tie-breaker) were cut to float32, became
    ties, and the pessimistic rule ranked the strictly best item last (review s29); the recall list lost it too."""
    from mgfrec.ranking.metrics import comparable, target_ranks_excluding
    from mgfrec.retrievers.recall import top_items

    scores = 100.0 + 1e-6 * torch.arange(1000, dtype=torch.float64).unsqueeze(0)  # item 999 best, then 998, ...
    assert target_ranks(scores, torch.tensor([999]))[0] == 1
    assert target_ranks_excluding(scores, torch.tensor([998]), [np.array([999])])[0] == 1

    class Scorer:
        def scores(self, histories):
            return scores.expand(len(histories), -1)

    assert top_items(Scorer(), [np.array([3])], 1000, 3).tolist() == [[999, 998, 997]]
    assert comparable(torch.tensor([1.0], dtype=torch.float16)).dtype == torch.float32  # halves as before
    # integers too: int64 scores above 2**24 cut to float32 became ties, and the model's first item ranked 2nd
    # (review s34); as float64 they stay apart up to 2**53
    assert comparable(torch.tensor([1], dtype=torch.int64)).dtype == torch.float64
    for big in (2**24, 2**40):
        ints = torch.tensor([[big + 1, big, 5]], dtype=torch.int64)
        assert target_ranks(comparable(ints), torch.tensor([0]))[0] == 1
    assert comparable(torch.tensor([True])).dtype == torch.float32

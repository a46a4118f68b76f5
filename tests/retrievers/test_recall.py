"""Recall lists: shape, history excluded, order, and reuse of the copy kept in the run folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgfrec.config.load import load_config
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.retrievers.recall import recall_file, recall_lists, top_items


class FixedScores:
    """A retriever whose score for item i is ``order[i]`` for every history; counts its calls."""

    name = "fixed"

    def __init__(self, order: np.ndarray):
        self.order = torch.tensor(np.asarray(order, dtype=np.float32).copy())
        self.calls = 0

    def scores(self, histories):
        self.calls += 1
        return self.order.unsqueeze(0).expand(len(histories), -1).clone()


class Refuses:
    name = "refuses"

    def scores(self, histories):
        raise AssertionError("the cached recall list should have been used")


@pytest.fixture
def sasrec_run(chain_ds, tmp_path):
    config = load_config(values={"retriever.model": "sasrec", "retriever.max_epochs": 1})
    return fit_baseline(chain_ds, config, tmp_path / "run")


def test_lists_have_recall_size_items_best_first_without_history(chain_ds, sasrec_run):
    lists = recall_lists(chain_ds, "test", 30, sasrec_run.run_dir)
    test = chain_ds.split("test")
    assert lists.shape == (len(test), 30)
    scores = sasrec_run.retriever.scores(test["history"].tolist())
    for row, history, score in zip(lists, test["history"], scores, strict=False):
        assert (row >= 0).all() and len(set(row.tolist())) == 30
        assert not set(row.tolist()) & set(history.tolist())
        picked = score[torch.as_tensor(row)]
        assert (picked[:-1] >= picked[1:]).all()
        # Nothing left out scores above the last item picked.
        rest = np.setdiff1d(np.arange(chain_ds.num_items), np.concatenate([row, history]))
        assert (score[torch.as_tensor(rest)] <= picked[-1]).all()


def test_second_call_reuses_the_file(chain_ds, sasrec_run):
    first = recall_lists(chain_ds, "valid", 30, sasrec_run.run_dir)
    assert recall_file(sasrec_run.run_dir, "valid").is_file()
    assert np.array_equal(recall_lists(chain_ds, "valid", 30, sasrec_run.run_dir, retriever=Refuses()), first)
    # A shorter list is the prefix of the stored one.
    assert np.array_equal(recall_lists(chain_ds, "valid", 10, sasrec_run.run_dir, retriever=Refuses()), first[:, :10])


def test_a_longer_list_or_other_data_recomputes(chain_ds, prepare_log, tmp_path):
    fixed = FixedScores(np.arange(chain_ds.num_items)[::-1])  # item 0 best
    recall_lists(chain_ds, "valid", 5, tmp_path, retriever=fixed)
    recall_lists(chain_ds, "valid", 8, tmp_path, retriever=fixed)
    assert fixed.calls == 2
    other = prepare_log([("u", f"i{i}", i) for i in range(40)], chain_ds.num_items)
    lists = recall_lists(other, "valid", 8, tmp_path, retriever=fixed)
    assert fixed.calls == 3 and lists.shape == (len(other.split("valid")), 8)


def test_ties_go_to_the_lower_item_and_short_rows_pad_with_minus_one():
    fixed = FixedScores(np.zeros(5))
    lists = top_items(fixed, [np.array([1, 3]), np.array([], dtype=np.int64)], 5, 4)
    assert lists.tolist() == [[0, 2, 4, -1], [0, 1, 2, 3]]


def test_nan_scores_rank_last_as_the_evaluator_ranks_them():
    # a descending sort puts NaN first; the evaluator counts NaN as -inf, so the recall list leaves them out
    fixed = FixedScores(np.array([0.5, np.nan, 0.9, np.nan, 0.1]))
    lists = top_items(fixed, [np.array([], dtype=np.int64)], 5, 5)
    assert lists.tolist() == [[2, 0, 4, -1, -1]]


def test_refitting_drops_the_old_lists(chain_ds, sasrec_run):
    recall_lists(chain_ds, "test", 30, sasrec_run.run_dir)
    fit_baseline(chain_ds, load_config(values={"retriever.model": "pop"}), sasrec_run.run_dir)
    assert not recall_file(sasrec_run.run_dir, "test").exists()

"""Pop counts each train interaction once and scores every history alike."""

from __future__ import annotations

import numpy as np

from mgfrec.config.schema import MGFRecConfig
from mgfrec.retrievers.pop import PopRetriever, train_popularity


def test_counts_every_train_interaction_once(prepare_log):
    rows = [
        ("a", "i0", 1),
        ("a", "i1", 2),
        ("a", "i2", 3),
        ("a", "i1", 4),
        ("b", "i1", 5),
        ("b", "i3", 6),
        ("b", "i1", 7),
        ("c", "i4", 8),
        ("c", "i0", 9),
        ("c", "i2", 10),
        ("c", "i5", 11),
        ("a", "i5", 12),
        ("b", "i5", 13),
    ]
    ds = prepare_log(rows, 6)
    # 10 samples (targets at t=2,3,4,6,7,9,10,11 | 12 | 13) -> 8 train, 1 valid, 1 test.
    assert ds.counts["samples"] == {"train": 8, "valid": 1, "test": 1}
    # Train targets: i1 x3, i2 x2, i3, i0, i5; users' first items: i0 (a), i1 (b), i4 (c). Valid and test
    # interactions (i5 at t=12 and t=13) are not counted.
    assert train_popularity(ds).tolist() == [2, 4, 2, 1, 1, 1]


def test_scores_are_the_counts_for_every_history_and_survive_save_load(tmp_path, chain_ds):
    model = PopRetriever.fit(chain_ds, MGFRecConfig(), tmp_path)
    scores = model.scores([np.array([1, 2]), np.array([], dtype=np.int64)])
    assert scores.shape == (2, chain_ds.num_items)
    assert scores.dtype.is_floating_point
    assert scores[0].tolist() == scores[1].tolist() == train_popularity(chain_ds).astype(float).tolist()
    assert PopRetriever.load(tmp_path, chain_ds).scores([np.array([3])]).tolist() == scores[:1].tolist()


def test_unreadable_counts_are_named_as_unreadable_not_damaged(tmp_path, chain_ds, monkeypatch):
    """`popularity.npy` without read permission was "damaged ...; refit", and a refit would replace a file that is
    fine (review s42): the line says it cannot be read."""
    import errno

    import pytest

    PopRetriever.fit(chain_ds, MGFRecConfig(), tmp_path)

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(np, "load", refused)
    with pytest.raises(PermissionError) as err:
        PopRetriever.load(tmp_path, chain_ds)
    assert err.value.filename == str(tmp_path / "popularity.npy") and err.value.strerror == "Permission denied"

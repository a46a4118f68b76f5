"""The real shared data sets give the counts the paper's protocol gives them (skipped when ../shared is
absent). These numbers are what later results are compared against, so they are pinned exactly."""

from __future__ import annotations

import pytest

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import build, load_raw

pytestmark = pytest.mark.shared_data


def prepared(path):
    cfg = DataConfig(source="csv", path=str(path))
    raw = load_raw(cfg)
    items, log, splits = build(raw, cfg)
    return raw, items, log, splits


def test_amazon_cds_counts_match_the_r2ec_protocol(cds_dir):
    raw, items, log, splits = prepared(cds_dir)
    assert log["user_id"].nunique() == 1063
    assert len(items) == 4634
    assert log["item_idx"].nunique() == 4634
    assert len(log) == 5964
    assert {s: len(df) for s, df in splits.items()} == {"train": 3920, "valid": 490, "test": 491}
    train_targets = set(splits["train"]["target"])
    assert sum(t not in train_targets for t in splits["test"]["target"]) == 388  # cold targets for id models
    assert splits["train"]["history"].map(len).max() == 20
    for name, rep in raw.report.files.items():
        assert rep.read == rep.kept and rep.dropped_total == 0, name  # the shared files are clean


def test_movielens_100k_counts(ml100k_dir):
    raw, items, log, splits = prepared(ml100k_dir)
    assert log["user_id"].nunique() == 943
    assert len(items) == 1682
    assert len(log) == 100_000
    assert {s: len(df) for s, df in splits.items()} == {"train": 79245, "valid": 9905, "test": 9907}
    assert "genres" in items.columns  # an extra column kept as an attribute

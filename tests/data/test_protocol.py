"""The R2ec protocol on hand-made logs: exact samples, tie-breaking, split sizes and seeded subsampling."""

from __future__ import annotations

import pandas as pd
import pytest

from mgfrec.config.schema import DataConfig
from mgfrec.data.protocol import make_samples, split_samples, split_sizes, subsample_split, subsample_users


def log(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    """An indexed interaction log in file order from (user_id, item_idx, timestamp) rows."""
    users, items, stamps = zip(*rows, strict=False) if rows else ((), (), ())
    return pd.DataFrame({"user_id": list(users), "item_idx": list(items), "timestamp": [float(t) for t in stamps]})


def as_tuples(samples: pd.DataFrame) -> list[tuple[str, list[int], int, int]]:
    return [(r.user_id, list(r.history), r.target, r.position) for r in samples.itertuples()]


def test_history_window_is_truncated_to_the_most_recent_items():
    samples = make_samples(log([("a", i, 10 + i) for i in range(5)]), history_length=2)
    assert as_tuples(samples) == [
        ("a", [0], 1, 1),
        ("a", [0, 1], 2, 2),
        ("a", [1, 2], 3, 3),
        ("a", [2, 3], 4, 4),
    ]
    assert samples["sample_id"].tolist() == [0, 1, 2, 3]
    assert samples["timestamp"].tolist() == [11.0, 12.0, 13.0, 14.0]


def test_first_interaction_is_never_a_target_and_single_interaction_users_give_no_sample():
    samples = make_samples(log([("a", 7, 1), ("a", 8, 2), ("solo", 9, 3)]), history_length=20)
    assert as_tuples(samples) == [("a", [7], 8, 1)]


def test_user_sequence_is_put_in_time_order_whatever_the_file_order():
    samples = make_samples(log([("a", 3, 30), ("a", 1, 10), ("a", 2, 20)]), history_length=20)
    assert as_tuples(samples) == [("a", [1], 2, 1), ("a", [1, 2], 3, 2)]


def test_equal_timestamps_within_a_user_keep_file_order():
    # items 6 and 5 share a timestamp; 6 comes first in the file, so 6 precedes 5 in the sequence
    samples = make_samples(log([("a", 4, 1), ("a", 6, 5), ("a", 5, 5)]), history_length=20)
    assert as_tuples(samples) == [("a", [4], 6, 1), ("a", [4, 6], 5, 2)]


def test_equal_target_times_are_ordered_by_user_id_then_position():
    rows = [
        ("b", 0, 1),
        ("b", 1, 5),  # b's target at t=5
        ("a", 2, 1),
        ("a", 3, 5),  # a's target at t=5 too: 'a' < 'b' goes first
        ("c", 4, 5),
        ("c", 5, 5),
        ("c", 6, 5),  # two of c's targets at t=5: position 1 then 2
        ("a", 7, 3),  # an earlier target of a (t=3) sorts before all of them
    ]
    samples = make_samples(log(rows), history_length=20)
    assert [(r.user_id, r.target, r.position) for r in samples.itertuples()] == [
        ("a", 7, 1),
        ("a", 3, 2),
        ("b", 1, 1),
        ("c", 5, 1),
        ("c", 6, 2),
    ]


def test_history_length_must_be_positive():
    with pytest.raises(ValueError, match="history_length must be >= 1"):
        make_samples(log([("a", 0, 1), ("a", 1, 2)]), history_length=0)


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        (4901, (0.8, 0.1, 0.1), (3920, 490, 491)),  # the CDs subset of the paper
        (10, (0.8, 0.1, 0.1), (8, 1, 1)),
        (9, (0.8, 0.1, 0.1), (7, 0, 2)),  # floor/floor/rest, so test absorbs the remainder
        (100, (0.29, 0.61, 0.1), (29, 61, 10)),  # 0.29 * 100 is 28.999... in floating point
        (7, (0.5, 0.5, 0.0), (3, 3, 1)),
        (0, (0.8, 0.1, 0.1), (0, 0, 0)),
    ],
)
def test_split_sizes_floor_train_and_valid_and_give_test_the_rest(n, ratios, expected):
    assert split_sizes(n, ratios) == expected


def test_split_is_contiguous_in_time_order():
    rows = [(u, i, 100 * k + i) for k, u in enumerate("abcde") for i in range(5)]
    samples = make_samples(log(rows), history_length=3)
    splits = split_samples(samples, (0.6, 0.2, 0.2))
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [12, 4, 4]
    joined = pd.concat([splits["train"], splits["valid"], splits["test"]])
    assert joined["sample_id"].tolist() == list(range(20))
    assert splits["train"]["timestamp"].max() <= splits["valid"]["timestamp"].min()
    assert splits["valid"]["timestamp"].max() <= splits["test"]["timestamp"].min()


def test_split_ratios_are_configurable_and_checked():
    assert split_sizes(20, DataConfig(split_ratios=(0.5, 0.25, 0.25)).split_ratios) == (10, 5, 5)
    with pytest.raises(ValueError, match="split_ratios must be three non-negative numbers summing to 1"):
        DataConfig(split_ratios=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="split_ratios"):
        DataConfig(split_ratios=(1.1, -0.1, 0.0))


def twenty_users() -> pd.DataFrame:
    return log([(f"u{k:02d}", 10 * k + i, 1000 * i + k) for k in range(20) for i in range(3)])


def test_subsample_users_is_seeded_deterministic_and_keeps_whole_users():
    full = twenty_users()
    first = subsample_users(full, 5, seed=3)
    again = subsample_users(full, 5, seed=3)
    other = subsample_users(full, 5, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert first["user_id"].nunique() == 5
    assert len(first) == 15  # every interaction of each chosen user
    assert set(first["user_id"]) != set(other["user_id"])
    assert first.index.is_monotonic_increasing  # file order is untouched
    assert subsample_users(full, 50, seed=3) is full


def test_subsample_split_is_seeded_deterministic_and_keeps_time_order():
    samples = make_samples(twenty_users(), history_length=20)
    test = split_samples(samples, (0.5, 0.0, 0.5))["test"]
    picked = subsample_split(test, 6, seed=1)
    pd.testing.assert_frame_equal(picked, subsample_split(test, 6, seed=1))
    assert len(picked) == 6
    assert picked["sample_id"].is_monotonic_increasing
    assert set(picked["sample_id"]) <= set(test["sample_id"])
    assert set(picked["sample_id"]) != set(subsample_split(test, 6, seed=2)["sample_id"])
    assert subsample_split(test, 100, seed=1) is test

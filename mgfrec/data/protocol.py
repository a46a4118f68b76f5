"""The R2ec protocol: interaction log -> next-item samples -> chronological train/valid/test.

Each user's interactions are put in time order (ties keep file order). Every interaction after a user's
first is one sample: its history is the up to ``history_length`` preceding items, its target the item
itself. All samples are sorted by target time (ties by user id, then position in the user's sequence) and
cut in that order: the first ``floor(r_train * n)`` are train, the next ``floor(r_valid * n)`` valid, the
rest test. This is a global temporal split, so no test target precedes a training target in time.

This module works on item *indices* (0..N-1 over the catalogue); it reads no files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mgfrec.validation import is_whole_number

SPLITS = ("train", "valid", "test")
SAMPLE_COLUMNS = ("sample_id", "user_id", "history", "target", "timestamp", "position")


def make_samples(interactions: pd.DataFrame, history_length: int) -> pd.DataFrame:
    """One row per (user, position >= 1). ``interactions`` has ``user_id``, ``item_idx``, ``timestamp``,
    in file order; the result is sorted by (timestamp, user_id, position) and has a ``sample_id``."""
    if history_length < 1:
        raise ValueError(f"history_length must be >= 1, got {history_length}")
    log = interactions.reset_index(drop=True)
    log = log.assign(_order=np.arange(len(log)))
    log = log.sort_values(["user_id", "timestamp", "_order"], kind="stable")
    rows_user: list[str] = []
    rows_hist: list[list[int]] = []
    rows_target: list[int] = []
    rows_ts: list[float] = []
    rows_pos: list[int] = []
    for user, group in log.groupby("user_id", sort=False):
        items = group["item_idx"].to_numpy()
        stamps = group["timestamp"].to_numpy()
        for pos in range(1, len(items)):
            rows_user.append(user)
            rows_hist.append(items[max(0, pos - history_length) : pos].tolist())
            rows_target.append(int(items[pos]))
            rows_ts.append(stamps[pos])
            rows_pos.append(pos)
    samples = pd.DataFrame(
        {
            "user_id": pd.Series(rows_user, dtype=str),
            "history": rows_hist,
            "target": pd.Series(rows_target, dtype="int64"),
            "timestamp": pd.Series(rows_ts, dtype="float64"),
            "position": pd.Series(rows_pos, dtype="int64"),
        }
    )
    samples = samples.sort_values(["timestamp", "user_id", "position"], kind="stable").reset_index(drop=True)
    samples.insert(0, "sample_id", np.arange(len(samples), dtype="int64"))
    return samples


def split_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train and valid are floored; test takes the remainder (4,901 samples at 8:1:1 -> 3920/490/491)."""
    n_train = math.floor(ratios[0] * n + 1e-9)
    n_valid = math.floor(ratios[1] * n + 1e-9)
    return n_train, n_valid, n - n_train - n_valid


def split_samples(samples: pd.DataFrame, ratios: tuple[float, float, float]) -> dict[str, pd.DataFrame]:
    """Cut time-sorted samples into train / valid / test, in order."""
    n_train, n_valid, _ = split_sizes(len(samples), ratios)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, len(samples))}
    return {name: samples.iloc[a:b].reset_index(drop=True) for name, (a, b) in bounds.items()}


def subsample_users(interactions: pd.DataFrame, n_users: int, seed: int) -> pd.DataFrame:
    """Keep the interactions of a seeded random subset of ``n_users`` users (all of them if fewer)."""
    users = np.array(sorted(interactions["user_id"].unique()))
    if n_users >= len(users):
        return interactions
    chosen = set(np.random.default_rng(seed).choice(users, size=n_users, replace=False).tolist())
    return interactions[interactions["user_id"].isin(chosen)]


def check_limit(limit: int | None) -> None:
    """Refuse a sample ``limit`` that is not a whole number of at least 1 (None: no limit), naming it: 0 read as
    "the split is empty", a negative one failed inside numpy."""
    if limit is None:
        return
    if not is_whole_number(limit):
        raise TypeError(f"limit (--limit): give a whole number of samples, got {limit!r}")
    if limit < 1:
        raise ValueError(f"limit (--limit): give at least 1 sample, got {limit}")


def subsample_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted row positions of the seeded subsample of ``limit`` of ``n`` rows (all of them without a limit).
    The one rule behind every seeded subsample of a split: preparing, SFT/GRPO samples, ``mgfrec evaluate
    --limit`` and ``mgfrec report --limit``, so subsamples of the same size and seed agree."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def subsample_ids(sample_ids: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sample ids of the :func:`subsample_rows` subsample of a split given by its ``sample_ids`` (in any order: a
    split's ids ascend in row order, so sorting them gives the rows back)."""
    ids = np.sort(np.asarray(sample_ids))
    return ids[subsample_rows(len(ids), limit, seed)]


def subsample_split(split: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A seeded subset of ``n`` samples of one split, kept in time order."""
    if n >= len(split):
        return split
    return split.iloc[subsample_rows(len(split), n, seed)].reset_index(drop=True)

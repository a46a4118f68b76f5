"""Tiny prepared data sets for the retriever tests, written as csv and prepared by the real pipeline."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import PreparedDataset, prepare


def write_chain_log(folder: Path, num_items: int, num_users: int, length: int, seed: int) -> Path:
    """A log where item i is always followed by item i+1 (mod num_items): each user walks the chain from a
    random start. Users' interactions interleave in time, so every split holds many transitions."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        start, t0 = int(rng.integers(num_items)), float(rng.uniform(0, 1000))
        rows.extend((f"u{user}", f"i{(start + step) % num_items}", t0 + 10.0 * step) for step in range(length))
    return write_log(folder, rows, num_items)


def write_log(folder: Path, rows: list[tuple[str, str, float]], num_items: int) -> Path:
    """``items.csv`` with items i0..i<num_items-1> and ``interactions.csv`` with ``rows`` (user, item, time)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "items.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["item_id", "title"], *[[f"i{i}", f"Item {i}"] for i in range(num_items)]])
    with (folder / "interactions.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["user_id", "item_id", "timestamp"], *rows])
    return folder


def prepared(raw: Path, out: Path, history_length: int = 20) -> PreparedDataset:
    return prepare(DataConfig(source="csv", path=str(raw), history_length=history_length), out)


@pytest.fixture
def prepare_log(tmp_path: Path) -> Callable[..., PreparedDataset]:
    """``prepare_log(rows, num_items, history_length=20)``: a prepared data set of exactly that log."""

    def make(rows: list[tuple[str, str, float]], num_items: int, history_length: int = 20) -> PreparedDataset:
        folder = tmp_path / f"log{len(list(tmp_path.glob('log*')))}"
        return prepared(write_log(folder / "raw", rows, num_items), folder / "prepared", history_length)

    return make


@pytest.fixture(scope="session")
def chain_ds(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    """60 items, 150 users walking 8 steps of the chain: 1,050 samples, history window 5."""
    root = tmp_path_factory.mktemp("chain")
    return prepared(write_chain_log(root / "raw", 60, 150, 8, seed=0), root / "prepared", history_length=5)

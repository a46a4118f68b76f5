"""Helpers for the evaluation tests: a tiny prepared data set whose next item is predictable, and two
scorers registered in-process the way a plugin's retriever would be. (A uniquely named module, not
``conftest``, so that test modules can import it without clashing with other folders' conftest files.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from csvkit import cyclic_dataset

from mgfrec.data.prepared import PreparedDataset
from mgfrec.registry import registry
from mgfrec.runs import RunInfo, write_run_info

N_ITEMS, N_USERS, SEQ_LEN = 12, 40, 6


def make_dataset(root: Path, n_items: int = N_ITEMS, n_users: int = N_USERS, seq_len: int = SEQ_LEN) -> PreparedDataset:
    """User u consumes items u, u+1, ... (mod n_items): the next item is always the last one plus one.
    Timestamps put every user's last step in the test split (ratios 0.6/0.2/0.2)."""
    return cyclic_dataset(
        root,
        (0.6, 0.2, 0.2),
        out="prepared",
        n_items=n_items,
        n_users=n_users,
        seq_len=seq_len,
        title="Title {}",
        user="u{:03d}",
        time_step=1000,
    )


class FixedScorer:
    """The same score vector for every history (RUN/scores.npy)."""

    name = "eval-test-fixed"

    def __init__(self, vector: np.ndarray):
        self.vector = torch.as_tensor(np.asarray(vector), dtype=torch.float32)

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> FixedScorer:
        return cls(np.load(Path(run_dir) / "scores.npy"))

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        return self.vector.expand(len(histories), -1).clone()


class NextItemOracle:
    """Knows the cyclic data: scores (last item + 1) mod N highest, so every target ranks 1."""

    name = "eval-test-oracle"

    def __init__(self, num_items: int):
        self.num_items = num_items

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> NextItemOracle:
        return cls(ds.num_items)

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        out = torch.zeros(len(histories), self.num_items)
        for row, hist in enumerate(histories):
            out[row, (int(hist[-1]) + 1) % self.num_items] = 1.0
        return out


registry().add("retriever", FixedScorer.name, FixedScorer)
registry().add("retriever", NextItemOracle.name, NextItemOracle)


def make_run(
    run_dir: Path, ds: PreparedDataset, model: str, scores: np.ndarray | None = None, kind: str = "baseline"
) -> Path:
    write_run_info(run_dir, RunInfo(kind=kind, model=model, data=str(ds.root.resolve()), data_checksum=ds.checksum))
    if scores is not None:
        np.save(run_dir / "scores.npy", scores)
    return run_dir

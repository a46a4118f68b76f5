"""Helpers for the evaluation tests: a tiny prepared data set whose next item is predictable, and two
scorers registered in-process the way a plugin's retriever would be. (A uniquely named module, not
``conftest``, so that test modules can import it without clashing with other folders' conftest files.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import PreparedDataset, prepare
from mgfrec.registry import registry
from mgfrec.runs import RunInfo, write_run_info

N_ITEMS, N_USERS, SEQ_LEN = 12, 40, 6


def write_cyclic_csv(folder: Path, n_items: int = N_ITEMS, n_users: int = N_USERS, seq_len: int = SEQ_LEN) -> Path:
    """User u consumes items s, s+1, ... (mod n_items) with s = u mod n_items, so the next item is always
    the last one plus one. Timestamps put every user's last step in the test split (ratios 0.6/0.2/0.2)."""
    folder.mkdir(parents=True, exist_ok=True)
    items = ["item_id,title"] + [f"i{j},Title {j}" for j in range(n_items)]
    rows = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        s = u % n_items
        rows += [f"u{u:03d},i{(s + t) % n_items},{t * 1000 + u}" for t in range(seq_len)]
    (folder / "items.csv").write_text("\n".join(items) + "\n", encoding="utf-8")
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def make_dataset(root: Path, **kwargs) -> PreparedDataset:
    src = write_cyclic_csv(root / "csv", **kwargs)
    return prepare(DataConfig(source="csv", path=str(src), split_ratios=(0.6, 0.2, 0.2)), root / "prepared")


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

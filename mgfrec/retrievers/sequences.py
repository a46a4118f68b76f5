"""Histories as fixed-width tensors, and the Lightning data module of the sequential retrievers.

A history (item indices, oldest first) becomes one row of a ``[B, L]`` long tensor: item ``i`` is stored
as ``i + 1`` so that ``0`` can mean padding, and the row is *left*-padded so that the most recent item is
always in the last column. Histories longer than ``L`` keep their ``L`` most recent items.

Every prepared sample is one training example (history -> target); the R2ec protocol already made one
sample per position of each user's sequence, so nothing here slides windows or samples positions.

This module knows nothing about any model; it must not import one.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from mgfrec.data.prepared import PreparedDataset

PAD = 0


def history_window(ds: PreparedDataset) -> int:
    """The history length the data set was prepared with (the ``data.history_length`` of its manifest)."""
    protocol = ds.manifest.get("protocol", {})
    if "history_length" in protocol:
        return int(protocol["history_length"])
    # A manifest without the field (a third-party writer): the longest history present decides.
    longest = max((len(h) for s in ("train", "valid", "test") for h in ds.split(s)["history"]), default=1)
    return max(1, int(longest))


def pad_left(histories: Sequence[np.ndarray], length: int) -> torch.Tensor:
    """``[B, length]`` long tensor of ``item + 1``, left-padded with 0, most recent item last."""
    out = torch.zeros(len(histories), length, dtype=torch.long)
    for row, hist in enumerate(histories):
        recent = np.asarray(hist, dtype=np.int64)[-length:] if length else np.zeros(0, dtype=np.int64)
        if len(recent):
            out[row, length - len(recent) :] = torch.from_numpy(recent + 1)
    return out


def unpad(seq: torch.Tensor) -> list[np.ndarray]:
    """The inverse of :func:`pad_left`: item indices per row, oldest first."""
    return [row[row != PAD] - 1 for row in seq.detach().cpu().numpy()]


def right_align(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each left-padded row's items to the front; returns ``(right-padded seq, lengths >= 1)``.

    Recurrent models want this so that their state starts clean at the first real item (packed sequences);
    an empty history keeps length 1 (one padding step) so that it still yields a state.
    """
    width = seq.shape[1]
    lengths = (seq != PAD).sum(dim=1).clamp(min=1)
    # Rolling row b left by (width - length_b) puts its items at positions 0..length_b-1.
    index = (torch.arange(width, device=seq.device).unsqueeze(0) + (width - lengths).unsqueeze(1)) % width
    return seq.gather(1, index), lengths


def split_tensors(ds: PreparedDataset, split: str, length: int) -> TensorDataset:
    """One split as ``(padded histories [S, length], targets [S])``."""
    frame = ds.split(split)
    seq = pad_left(frame["history"].tolist(), length)
    targets = torch.tensor(frame["target"].to_numpy(dtype=np.int64))
    return TensorDataset(seq, targets)


class SequenceDataModule(L.LightningDataModule):
    """Train (shuffled with a seeded generator) and valid loaders over a prepared data set.

    Histories are padded to the data set's own window, not a model's: validation must exclude the whole
    history from the ranking even for a model that reads only its last few items (Caser).
    """

    def __init__(self, ds: PreparedDataset, length: int, batch_size: int, eval_batch_size: int, seed: int):
        super().__init__()
        self.ds, self.length = ds, length
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self._splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "valid"):
            if split not in self._splits:
                self._splits[split] = split_tensors(self.ds, split, self.length)
        if len(self._splits["train"]) == 0:
            raise ValueError(f"{self.ds.root}: the train split is empty; nothing to fit")
        if len(self._splits["valid"]) == 0:
            raise ValueError(f"{self.ds.root}: the valid split is empty; early stopping needs valid samples")

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self._splits["train"], batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._splits["valid"], batch_size=self.eval_batch_size, shuffle=False)

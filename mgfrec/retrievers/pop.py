"""Pop: every history gets the same scores, each item's number of interactions in the train split.

The interactions the train split's samples hold are counted once each: every train sample's target, plus the
first item of each user whose first sample (position 1) is a train one. A user whose first sample fell in valid
or test (the split is by time) has no train sample at all, so their first item is not counted, though it is older
than the train cut-off: the model counts what training shows. Items never seen in training all score 0 and tie;
the evaluator ranks ties pessimistically, as it must for a model that cannot tell them apart.

Saved as ``RUN/popularity.npy`` (int64 counts, one per item).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.atomic import atomic_write
from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset

COUNTS_FILE = "popularity.npy"


def train_popularity(ds: PreparedDataset) -> np.ndarray:
    """Interactions per item in ``ds``'s train split, counting each interaction once."""
    train = ds.split("train")
    counts = np.bincount(train["target"].to_numpy(dtype=np.int64), minlength=ds.num_items)
    firsts = [int(h[0]) for h, pos in zip(train["history"], train["position"], strict=False) if pos == 1 and len(h)]
    counts += np.bincount(np.asarray(firsts, dtype=np.int64), minlength=ds.num_items)
    return counts.astype(np.int64)


class PopRetriever:
    """Most popular items in training, for every history alike."""

    reads_training_settings = False  # retriever.lr, max_epochs, seed, ...: see mgfrec baseline fit's note
    reads_titles = False  # counts only: embedding.* does not change a fit (agent.samples._same_fit)

    name = "pop"

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.int64)

    @classmethod
    def fit(cls, ds: PreparedDataset, config: MGFRecConfig, out: Path, options: Any = None) -> PopRetriever:
        """Count the train split; nothing to tune, so the valid split is not read."""
        model = cls(train_popularity(ds))
        Path(out).mkdir(parents=True, exist_ok=True)
        # whole or not at all, and a short write (a full disk) named with its cause
        atomic_write(Path(out) / COUNTS_FILE, lambda handle: np.save(handle, model.counts, allow_pickle=False))
        return model

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> PopRetriever:
        path = Path(run_dir) / COUNTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no popularity counts; train with 'mgfrec baseline fit --model pop'")
        try:
            counts = np.load(path, allow_pickle=False)
        except PermissionError as exc:  # unreadable, not damaged: a refit would replace a file that is fine (s42)
            raise PermissionError(exc.errno, exc.strerror, str(path)) from None
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: damaged ({exc}); refit with 'mgfrec baseline fit --model pop'") from None
        if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.number):
            raise ValueError(
                f"{path}: expected one count per item, got an array of shape {counts.shape} ({counts.dtype}); "
                "refit with 'mgfrec baseline fit --model pop'"
            )
        if len(counts) != ds.num_items:
            raise ValueError(f"{path}: {len(counts)} items counted, but {ds.root} has {ds.num_items}; refit on it")
        return cls(counts)

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        row = torch.as_tensor(self.counts, dtype=torch.float32)
        return row.unsqueeze(0).expand(len(histories), -1).clone()

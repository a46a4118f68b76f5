"""Recall lists: a trained retriever's top-N items (history excluded) for every sample of a split.

These fill the agent's first prompt (``retriever.recall_size``, 30 in the paper). They are computed once
and kept in the run folder as ``RUN/recall_<split>.npz`` (``items`` [S, N] int64, ``sample_id`` [S],
``data_checksum``, ``size``); a later call with the same data and a size no larger reuses the file. Ties
are broken by item index (a stable sort), so the lists are deterministic for any retriever. A row holds
``-1`` where fewer than N items are left once the history is excluded.

Refitting a run folder (:func:`mgfrec.retrievers.fit.fit_baseline`) deletes its recall files.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.atomic import atomic_write
from mgfrec.data.prepared import PreparedDataset
from mgfrec.ranking.metrics import comparable, history_mask, nan_to_neg_inf
from mgfrec.registry.blame import call_component
from mgfrec.retrievers.fit import check_retriever_current, load_retriever


def recall_file(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / f"recall_{split}.npz"


def top_items(
    retriever: Any, histories: list[np.ndarray], num_items: int, size: int, batch_size: int = 1024
) -> np.ndarray:
    """``[B, size]`` best items per history, best first, history excluded; ``-1`` pads short rows."""
    size = min(size, num_items)
    rows = []
    for start in range(0, len(histories), batch_size):
        hist = histories[start : start + batch_size]
        scores = nan_to_neg_inf(
            comparable(call_component(retriever, "scores", hist))
        )  # a descending sort would put NaN first
        scores = scores.masked_fill(history_mask(hist, num_items, device=scores.device), -torch.inf)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :size]
        picked = torch.where(torch.gather(scores, 1, order) == -torch.inf, torch.full_like(order, -1), order)
        rows.append(picked.cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, size), dtype=np.int64)


def recall_lists(
    ds: PreparedDataset,
    split: str,
    size: int,
    run_dir: str | Path,
    retriever: Any | None = None,
) -> np.ndarray:
    """``[S, size]`` recall lists of ``split`` in sample order, from the cache in ``run_dir`` when it fits.

    ``retriever`` defaults to the one the run folder holds (loaded only when the cache cannot be used).
    """
    if size < 0:
        raise ValueError(f"retriever.recall_size must be >= 0, got {size}")
    path = recall_file(run_dir, split)
    frame = ds.split(split)
    if path.is_file():
        # a hybrid whose reused collaborative run was fitted again refuses (check_current), as loading it does:
        # its cached lists came from the old model, and sft trained on them without a word
        _check_current(Path(run_dir))
        cached = _cached(path, ds, frame["sample_id"].to_numpy(), size)
        if cached is not None:
            return cached
    if retriever is None:
        retriever = load_retriever(run_dir, ds)
    # Copies: arrays read from parquet are read-only, which torch warns about when wrapping them.
    items = top_items(retriever, [np.array(h, dtype=np.int64) for h in frame["history"]], ds.num_items, size)
    # through a temporary file: np.savez writes in place, and a kill mid-write left a file no later run could read
    atomic_write(
        path,
        lambda handle: np.savez(
            handle,
            items=items,
            sample_id=frame["sample_id"].to_numpy(),
            data_checksum=np.asarray(ds.checksum),
            size=np.asarray(min(size, ds.num_items)),
        ),
    )
    return items


def _cached(path: Path, ds: PreparedDataset, sample_ids: np.ndarray, size: int) -> np.ndarray | None:
    """The lists of ``path`` when they fit (data, size, samples); None when they do not or cannot be read (a
    damaged file is computed again and replaced)."""
    try:
        with np.load(path) as cached:
            if (
                str(cached["data_checksum"]) == ds.checksum
                and int(cached["size"]) >= min(size, ds.num_items)
                and np.array_equal(cached["sample_id"], sample_ids)
            ):
                return cached["items"][:, :size].copy()  # a stable top-k's prefix is the smaller top-k
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    return None


def _check_current(run_dir: Path) -> None:
    """:func:`~mgfrec.retrievers.fit.check_retriever_current` of a run folder with a ``run.json``."""
    from mgfrec.runs import RUN_FILE, read_run_info

    if (run_dir / RUN_FILE).is_file():
        check_retriever_current(run_dir, read_run_info(run_dir).model)

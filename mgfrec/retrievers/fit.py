"""Train any registered retriever into a run folder, load one back, and rank a split with it.

These functions dispatch by registry name only (``retriever.model``), so built-in and plugin retrievers
(pop, sasrec, gru4rec, caser, last-title, hybrid, ...) take the same path. ``mgfrec baseline fit`` is a thin
wrapper over :func:`fit_baseline`.

The ranking here is the one rule of :mod:`mgfrec.eval.metrics` (full catalogue, history excluded,
pessimistic ties); the evaluator with intervals lives in :mod:`mgfrec.eval`, not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.config.load import write_resolved
from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.eval.metrics import history_mask, per_sample, target_ranks
from mgfrec.registry import Registry, component_options, registry
from mgfrec.runs import RunInfo, read_run_info, write_run_info


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_baseline` produced."""

    retriever: Any
    run_dir: Path
    valid_ndcg10: float  # of the saved model (the best epoch, for models that early-stop)
    seconds: float  # wall time of the fit itself


def fit_baseline(ds: PreparedDataset, config: MGFRecConfig, out: str | Path, reg: Registry | None = None) -> FitResult:
    """Fit the retriever named by ``config.retriever.model`` on ``ds`` and write the run folder ``out``.

    Writes ``out/config.yaml``, whatever the model saves, and finally ``out/run.json`` (whose presence marks
    a finished fit) with the valid NDCG@10 and the fit time in ``extra``.
    """
    reg = reg or registry()
    name = config.retriever.model
    cls = reg.load("retriever", name)
    options = component_options(cls, config.retriever.options, "retriever.options")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Files that describe an earlier fit must not be mistaken for this one's.
    for stale in [out / "run.json", *out.glob("recall_*.npz")]:
        stale.unlink(missing_ok=True)
    write_resolved(config, out)
    start = time.perf_counter()
    retriever = cls.fit(ds, config, out, options)
    seconds = time.perf_counter() - start
    valid = float(per_sample(split_ranks(retriever, ds, "valid"), [10])["ndcg@10"].mean())
    extra = {"valid_ndcg@10": valid, "fit_seconds": round(seconds, 3)}
    if getattr(retriever, "best_epoch", None) is not None:
        extra["best_epoch"] = retriever.best_epoch
    write_run_info(
        out,
        RunInfo(kind="baseline", model=name, data=str(ds.root.resolve()), data_checksum=ds.checksum, extra=extra),
    )
    return FitResult(retriever, out, valid, seconds)


def load_retriever(run_dir: str | Path, ds: PreparedDataset | None = None, reg: Registry | None = None) -> Any:
    """The retriever a ``baseline`` run folder holds, on the data it was trained on (or ``ds``, if the same)."""
    info = read_run_info(run_dir)
    if info.kind != "baseline":
        raise ValueError(f"{Path(run_dir) / 'run.json'}: kind is '{info.kind}', not 'baseline'")
    ds = ds if ds is not None else PreparedDataset(info.data)
    if ds.checksum != info.data_checksum:
        raise ValueError(
            f"{run_dir}: trained on data {info.data_checksum} ({info.data}), but {ds.root} is {ds.checksum}"
        )
    cls = (reg or registry()).load("retriever", info.model)
    return cls.load(Path(run_dir), ds)


def split_ranks(retriever: Any, ds: PreparedDataset, split: str, batch_size: int = 1024) -> np.ndarray:
    """Pessimistic 1-based rank of every sample's target in the full catalogue, history excluded."""
    frame = ds.split(split)
    # Copies: arrays read from parquet are read-only, which torch warns about when wrapping them.
    histories = [np.array(h, dtype=np.int64) for h in frame["history"]]
    targets = frame["target"].to_numpy(dtype=np.int64, copy=True)
    ranks = []
    for start in range(0, len(frame), batch_size):
        hist = histories[start : start + batch_size]
        scores = retriever.scores(hist)
        exclude = history_mask(hist, ds.num_items, device=scores.device)
        target = torch.as_tensor(targets[start : start + batch_size], dtype=torch.long, device=scores.device)
        ranks.append(target_ranks(scores, target, exclude).cpu().numpy())
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)

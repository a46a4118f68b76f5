"""The one full-ranking evaluator: every method ranks the whole catalogue, scored by the same code.

A *scorer* is anything with ``scores(histories: list[np.ndarray]) -> torch.Tensor [B, N]`` (higher is
better), which every ``retriever`` component is. For each sample the evaluator asks for scores over all N
items and takes the pessimistic 1-based rank of the target (:func:`mgfrec.ranking.metrics.target_ranks`):
an item tied with the target counts as ranked above it, and NaN scores rank last. History exclusion
subtracts the (at most L) history items instead of masking all N, so it costs almost nothing.

By default the sample's history items are left out of the ranking (an already-consumed item is not a
recommendation), except the target itself, which is never removed even when the user consumed it before. The
history is the sample's window (the data set's ``history_length``, 20 by default): items the user consumed before
it stay ranked. RecBole's general recommenders mask every past interaction, its sequential ones none, so this is a
third convention between the two (on a 150-user ml-100k subset 1,196 of 1,452 test samples had older items
ranked; review s32). ``exclude_history=False`` ranks every item.

This module does not load models or read run folders (see :mod:`mgfrec.eval.runs`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from mgfrec.config.schema import EvalConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.data.protocol import subsample_split
from mgfrec.ranking.metrics import target_ranks, target_ranks_excluding
from mgfrec.ranking.results import EvalResult
from mgfrec.registry.blame import call_component


class Scorer(Protocol):
    """What the evaluator needs from a model: scores for every item, higher is better."""

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor: ...


def rank_targets(
    scorer: Scorer,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    *,
    num_items: int | None = None,
    batch_size: int = 256,
    exclude_history: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Pessimistic 1-based rank of every target among all items, in batches of ``batch_size`` samples.

    ``num_items`` (the catalogue size), when given, must equal the width of the scorer's output: a scorer
    trained on another catalogue is refused rather than evaluated on shifted item indices.
    ``progress(done, total)`` is called after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    targets = np.asarray(targets, dtype=np.int64)
    if len(histories) != len(targets):
        raise ValueError(f"{len(histories)} histories for {len(targets)} targets")
    total = len(targets)
    out = np.empty(total, dtype=np.int64)
    nan_targets = 0
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            batch = [np.asarray(h, dtype=np.int64) for h in histories[start:stop]]
            scores = call_component(scorer, "scores", batch)  # a plugin's wrong signature: one line
            _check_scores(scores, stop - start, num_items, scorer)
            width = scores.shape[1]
            tgt = targets[start:stop]
            if tgt.size and (tgt.min() < 0 or tgt.max() >= width):
                raise ValueError(f"target item index {int(tgt.max())} is outside the scorer's {width} items")
            tgt_t = torch.tensor(tgt, device=scores.device)
            nan_targets += int(torch.isnan(scores[torch.arange(len(tgt), device=scores.device), tgt_t]).sum())
            ranks = target_ranks_excluding(scores, tgt_t, batch) if exclude_history else target_ranks(scores, tgt_t)
            out[start:stop] = ranks.cpu().numpy()
            if progress is not None:
                progress(stop, total)
    if nan_targets:  # ranked last, as documented; a model that diverged scores NaN everywhere (review s40)
        warnings.warn(
            f"{_who(scorer)} gave the target a NaN score in {nan_targets} of {total} samples; those rank last (a model "
            "that diverged in training scores every item NaN)",
            NaNScoresWarning,
            stacklevel=2,
        )
    return out


class NaNScoresWarning(UserWarning):
    """A scorer gave some targets a NaN score: they were ranked last."""


def evaluate_frame(
    scorer: Scorer,
    samples: pd.DataFrame,
    *,
    split: str,
    method: str,
    config: EvalConfig | None = None,
    num_items: int | None = None,
    batch_size: int = 256,
    exclude_history: bool = True,
    data_checksum: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate on a frame of samples (``sample_id``, ``history``, ``target``), e.g. ``ds.split(name)``."""
    missing = [c for c in ("sample_id", "history", "target") if c not in samples.columns]
    if missing:
        raise ValueError(f"samples lack column(s) {', '.join(missing)}; pass a prepared split such as ds.split('test')")
    targets = samples["target"].to_numpy(dtype=np.int64)
    ranks = rank_targets(
        scorer,
        samples["history"].tolist(),
        targets,
        num_items=num_items,
        batch_size=batch_size,
        exclude_history=exclude_history,
        progress=progress,
    )
    return EvalResult.from_ranks(
        ranks,
        samples["sample_id"].to_numpy(),
        split=split,
        method=method,
        config=config,
        targets=targets,
        num_items=num_items,
        exclude_history=exclude_history,
        data_checksum=data_checksum,
    )


def evaluate(
    scorer: Scorer,
    ds: PreparedDataset,
    split: str | None = None,
    config: EvalConfig | None = None,
    *,
    method: str | None = None,
    batch_size: int = 256,
    exclude_history: bool = True,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> EvalResult:
    """Full-ranking evaluation of ``scorer`` on one split of a prepared data set.

    ``split`` defaults to ``config.split``; ``method`` to the scorer's ``name`` attribute or class name.
    ``limit``: the seeded subsample of that many samples an agent's evaluation takes (``config.seed``).
    """
    config = config or EvalConfig()
    split = split or config.split
    frame = ds.split(split) if limit is None else subsample_split(ds.split(split), limit, config.seed)
    return evaluate_frame(
        scorer,
        frame,
        split=split,
        method=method or getattr(scorer, "name", None) or type(scorer).__name__,
        config=config,
        num_items=ds.num_items,
        batch_size=batch_size,
        exclude_history=exclude_history,
        data_checksum=ds.checksum,
        progress=progress,
    )


def evaluate_ranks(
    ranks: np.ndarray,
    sample_ids: np.ndarray | None = None,
    *,
    split: str,
    method: str,
    config: EvalConfig | None = None,
    targets: np.ndarray | None = None,
    num_items: int | None = None,
    exclude_history: bool | None = None,
    data_checksum: str = "",
) -> EvalResult:
    """Summarise ranks a method produced itself (agents rank the catalogue from their answer).

    Pass ``targets`` and ``data_checksum`` (``ds.checksum``) so that paired comparisons can check that
    both methods were scored on the same samples; store the result with ``result.save(run_dir)``.
    """
    return EvalResult.from_ranks(
        ranks,
        sample_ids,
        split=split,
        method=method,
        config=config,
        targets=targets,
        num_items=num_items,
        exclude_history=exclude_history,
        data_checksum=data_checksum,
    )


def _who(scorer: object) -> str:
    """The scorer's ``scores`` as a message names it; only for a message: the registry is not searched for every
    batch."""
    from mgfrec.registry import registered_as  # the retriever's registry name and package, when it has them

    registered = registered_as(scorer, "retriever")
    return f"{registered}: scores" if registered else f"{type(scorer).__name__}.scores"


def _check_scores(scores: object, rows: int, num_items: int | None, scorer: object) -> None:
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"{_who(scorer)} must return a torch.Tensor [B, N], got {type(scores).__name__}")
    if scores.ndim != 2 or scores.shape[0] != rows:
        raise ValueError(
            f"{_who(scorer)} returned shape {tuple(scores.shape)} for {rows} histories; expected [{rows}, N]"
        )
    if num_items is not None and scores.shape[1] != num_items:
        raise ValueError(
            f"{_who(scorer)} returned {scores.shape[1]} columns but the data set has {num_items} items; one column per "
            "item is needed (a model fitted on another prepared data set has another count)"
        )

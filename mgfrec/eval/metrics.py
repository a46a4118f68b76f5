"""Full-ranking metrics for one relevant item per sample, from the rank of that item.

Ranks are 1-based. Ties are broken pessimistically: an item scored equal to the target counts as ranked
above it, so a method that scores every item the same gets rank N, never rank 1.

* Hit@K = 1 if rank <= K
* NDCG@K = 1 / log2(1 + rank) if rank <= K, else 0 (the ideal DCG with one relevant item is 1)
* ndcg_full = 1 / log2(1 + rank) with no cut-off: the paper's reward (eq. 7), far less noisy on small splits
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Pessimistic 1-based rank of ``targets[b]`` in ``scores[b]`` (higher score = better).

    ``exclude`` (bool, same shape as ``scores``) removes items from the ranking, e.g. the history; the target
    itself is never excluded. NaN scores rank last.
    """
    scores = scores.float()
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, -torch.inf), scores)
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_score = scores[rows, targets]
    at_least = scores >= target_score.unsqueeze(1)
    if exclude is not None:
        exclude = exclude.clone()
        exclude[rows, targets] = False
        at_least &= ~exclude
    return at_least.sum(dim=1)


def history_mask(histories: Sequence[np.ndarray], num_items: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [B, N] mask of each sample's history items."""
    mask = torch.zeros(len(histories), num_items, dtype=torch.bool, device=device)
    for row, hist in enumerate(histories):
        if len(hist):
            mask[row, torch.as_tensor(np.asarray(hist), dtype=torch.long, device=device)] = True
    return mask


def ndcg(ranks: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per-sample NDCG with one relevant item; ``k=None`` means no cut-off."""
    ranks = np.asarray(ranks, dtype=np.float64)
    gain = 1.0 / np.log2(1.0 + ranks)
    return gain if k is None else np.where(ranks <= k, gain, 0.0)


def hit(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-sample Hit@K: 1.0 where the target ranks within the top ``k``."""
    return (np.asarray(ranks) <= k).astype(np.float64)


def per_sample(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every metric as a per-sample array (the input of means, intervals and paired tests)."""
    ranks = np.asarray(ranks)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hit@{k}"] = hit(ranks, k)
        out[f"ndcg@{k}"] = ndcg(ranks, k)
    out["ndcg_full"] = ndcg(ranks)
    out["mean_rank"] = ranks.astype(np.float64)
    return out


# Metrics where a smaller value is the better one; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"mean_rank"})


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metric keys :func:`per_sample` produces, in table order (hit@k, ndcg@k per k, then the rest)."""
    names = [name for k in ks for name in (f"hit@{k}", f"ndcg@{k}")]
    return [*names, "ndcg_full", "mean_rank"]


def check_ranks(ranks: np.ndarray, num_items: int | None = None, where: str = "ranks") -> np.ndarray:
    """Validate 1-based integer ranks (at most ``num_items`` when given) and return them as int64."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ValueError(f"{where}: expected a 1-d array of ranks, got shape {ranks.shape}")
    if ranks.size and not np.issubdtype(ranks.dtype, np.integer):
        if not np.all(np.isfinite(ranks)) or np.any(ranks != np.round(ranks)):
            raise ValueError(f"{where}: ranks must be whole numbers (1 = best)")
    ranks = ranks.astype(np.int64)
    if ranks.size and ranks.min() < 1:
        raise ValueError(f"{where}: ranks are 1-based; found {int(ranks.min())} at position {int(ranks.argmin())}")
    if num_items is not None and ranks.size and ranks.max() > num_items:
        raise ValueError(f"{where}: rank {int(ranks.max())} exceeds the {num_items} items of the catalogue")
    return ranks

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


def comparable(scores: torch.Tensor) -> torch.Tensor:
    """Scores as every ranking here compares them: float64 kept as it is (a plugin's numpy scores, a count plus a
    small tie-breaker), integers as float64 (exact up to 2**53), anything else (half precision, bools) as float32.
    Cutting float64, or int64 above 2**24, to float32 made scores that differ into ties, and the pessimistic rule
    then ranked a target the model put first below them (review s34 for integers)."""
    if scores.dtype == torch.float64:
        return scores
    if not scores.dtype.is_floating_point and scores.dtype != torch.bool:
        return scores.double()
    return scores.float()


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Pessimistic 1-based rank of ``targets[b]`` in ``scores[b]`` (higher score = better).

    ``exclude`` (bool, same shape as ``scores``) removes items from the ranking, e.g. the history; the target
    itself is never excluded. NaN scores rank last.
    """
    scores = comparable(scores)
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_score = nan_to_neg_inf(scores[rows, targets])
    # A NaN item compares False with every score, so it is never counted above a target: it ranks last
    # without rewriting the whole [B, N] matrix. Only a target scored -inf (or NaN) needs care: it ties
    # with every item, NaN items included, which is corrected below.
    at_least = scores >= target_score.unsqueeze(1)
    if exclude is not None:
        exclude = exclude.clone()
        exclude[rows, targets] = False
        at_least &= ~exclude
    ranks = at_least.sum(dim=1)
    bottom = target_score == -torch.inf
    if bool(bottom.any()):
        remaining = scores.shape[1] - (exclude.sum(dim=1) if exclude is not None else 0)
        ranks = torch.where(bottom, torch.as_tensor(remaining, device=ranks.device), ranks)
    return ranks


def target_ranks_excluding(
    scores: torch.Tensor, targets: torch.Tensor, histories: Sequence[np.ndarray]
) -> torch.Tensor:
    """``target_ranks(scores, targets, history_mask(histories, N))`` without building the [B, N] mask.

    Ranks against every item, then subtracts the distinct history items (other than the target) that
    were counted above it: a gather of [B, L] instead of four passes over [B, N].
    """
    ranks = target_ranks(scores, targets)
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    if lengths.sum() == 0:
        return ranks
    device = scores.device
    width = int(lengths.max())
    padded = np.full((len(histories), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(histories)), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, cols] = np.concatenate([np.asarray(h, dtype=np.int64).ravel() for h in histories])
    items, _ = torch.from_numpy(padded).to(device).sort(dim=1)
    repeated = torch.zeros_like(items, dtype=torch.bool)
    repeated[:, 1:] = items[:, 1:] == items[:, :-1]  # count an item consumed twice once
    counted = (items >= 0) & ~repeated & (items != targets.unsqueeze(1))
    scores = comparable(scores)
    target_score = nan_to_neg_inf(scores[torch.arange(scores.shape[0], device=device), targets])
    item_score = nan_to_neg_inf(scores.gather(1, items.clamp(min=0)))
    return ranks - ((item_score >= target_score.unsqueeze(1)) & counted).sum(dim=1)


def nan_to_neg_inf(x: torch.Tensor) -> torch.Tensor:
    """NaN scores as ``-inf``: every ranking here (evaluator, recall lists, recommend) puts them last."""
    return torch.where(torch.isnan(x), torch.full_like(x, -torch.inf), x)


def history_mask(histories: Sequence[np.ndarray], num_items: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [B, N] mask of each sample's history items."""
    mask = torch.zeros(len(histories), num_items, dtype=torch.bool, device=device)
    lengths = [len(h) for h in histories]
    if sum(lengths):
        # One scatter for the whole batch; np.concatenate copies, so read-only arrays (parquet) are fine.
        cols = np.concatenate([np.asarray(h, dtype=np.int64).ravel() for h in histories])
        rows = np.repeat(np.arange(len(histories)), lengths)
        mask[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = True
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

"""Moved to :mod:`mgfrec.ranking.metrics` (docs/architecture.md); this path keeps working."""

from mgfrec.ranking.metrics import (
    LOWER_IS_BETTER,
    check_ranks,
    comparable,
    history_mask,
    hit,
    metric_names,
    nan_to_neg_inf,
    ndcg,
    per_sample,
    target_ranks,
    target_ranks_excluding,
)

__all__ = [
    "LOWER_IS_BETTER",
    "check_ranks",
    "comparable",
    "history_mask",
    "hit",
    "metric_names",
    "nan_to_neg_inf",
    "ndcg",
    "per_sample",
    "target_ranks",
    "target_ranks_excluding",
]

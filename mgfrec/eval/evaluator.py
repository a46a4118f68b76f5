"""Moved to :mod:`mgfrec.ranking.evaluator` (docs/architecture.md); this path keeps working."""

from mgfrec.ranking.evaluator import (
    NaNScoresWarning,
    Scorer,
    evaluate,
    evaluate_frame,
    evaluate_ranks,
    rank_targets,
)

__all__ = [
    "NaNScoresWarning",
    "Scorer",
    "evaluate",
    "evaluate_frame",
    "evaluate_ranks",
    "rank_targets",
]

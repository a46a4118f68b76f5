"""Moved to :mod:`mgfrec.ranking.results` (docs/architecture.md); this path keeps working."""

from mgfrec.ranking.results import (
    LABELS,
    EvalResult,
    label,
    result_paths,
)

__all__ = [
    "LABELS",
    "EvalResult",
    "label",
    "result_paths",
]

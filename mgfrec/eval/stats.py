"""Moved to :mod:`mgfrec.ranking.stats` (docs/architecture.md); this path keeps working."""

from mgfrec.ranking.stats import (
    MismatchedSamplesError,
    PairedComparison,
    SignTest,
    align,
    binomial_two_sided,
    bootstrap_can_reject,
    bootstrap_ci,
    bootstrap_cis,
    bootstrap_means,
    compare_ranks,
    paired_test,
    percentile_interval,
    sign_test,
)

__all__ = [
    "MismatchedSamplesError",
    "PairedComparison",
    "SignTest",
    "align",
    "binomial_two_sided",
    "bootstrap_can_reject",
    "bootstrap_ci",
    "bootstrap_cis",
    "bootstrap_means",
    "compare_ranks",
    "paired_test",
    "percentile_interval",
    "sign_test",
]

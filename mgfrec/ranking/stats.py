"""Uncertainty for evaluation results: bootstrap intervals and paired tests between two methods.

Test splits in this field are small (491 samples for CDs) and hit rates are around 1%, so a difference in
the fourth decimal is usually noise. Every number a table shows carries a percentile bootstrap interval,
and every "A beats B" claim goes through :func:`paired_test`, which looks at the *same* samples under both
methods:

* a paired percentile bootstrap of the per-sample difference (interval and two-sided p-value), and
* an exact two-sided sign test (binomial with p = 1/2 on the samples where the two methods differ).

A difference counts as significant only when both tests reject at level ``alpha`` and agree on the
direction, so a table never marks a win that either test calls noise. The bootstrap rejects when its
``1 - alpha`` interval excludes zero (given enough resamples): a mark and the interval printed beside it always
agree.

Everything is vectorised numpy and seeded; this module knows nothing about scorers, files or runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgfrec.ranking.metrics import LOWER_IS_BETTER, metric_names, per_sample

# Resample indices are drawn in chunks of at most this many elements so that 1,000 resamples of a
# 100K-sample split do not need 800 MB at once.
_CHUNK_ELEMENTS = 4_000_000


class MismatchedSamplesError(ValueError):
    """Two results that do not cover the same samples, so a paired comparison would be meaningless."""


def bootstrap_means(values: Mapping[str, np.ndarray], samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """``samples`` bootstrap replicates of the mean of every array in ``values``.

    All arrays must have the same length n; every metric is resampled with the *same* indices, so the
    replicates of different metrics stay consistent with each other. Returns metric -> float array [samples].
    """
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"bootstrap_means: arrays of different shapes {sorted(lengths)}")
    n = next(iter(lengths))[0] if lengths else 0
    if samples <= 0 or n < 2:  # one sample resamples to itself: a zero-width "interval" (review s40)
        return {name: np.full(max(samples, 0), np.nan) for name in arrays}
    out = {name: np.empty(samples, dtype=np.float64) for name in arrays}
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        for name, arr in arrays.items():
            out[name][start:stop] = arr[idx].mean(axis=1)
    return out


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates; (nan, nan) when there are none."""
    _check_confidence(confidence)
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.size == 0 or np.all(np.isnan(replicates)):
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def bootstrap_ci(
    values: np.ndarray, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    return percentile_interval(bootstrap_means({"x": values}, samples, seed)["x"], confidence)


def bootstrap_cis(
    values: Mapping[str, np.ndarray], samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of the mean of every array, resampled together (see bootstrap_means)."""
    reps = bootstrap_means(values, samples, seed)
    return {name: percentile_interval(r, confidence) for name, r in reps.items()}


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` trials under Binomial(n, 1/2).

    Twice the smaller tail, capped at 1 (the distribution is symmetric, so this equals the sum of the
    probabilities of all outcomes no more likely than ``k``). Log-space, so n in the millions is fine.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"binomial_two_sided: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    i = np.arange(1, n + 1, dtype=np.float64)
    # log C(n, j) for j = 0..n, built by the recurrence C(n, j) = C(n, j-1) * (n - j + 1) / j.
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(n - i + 1.0) - np.log(i))])
    log_pmf = log_comb - n * math.log(2.0)
    tail = min(k, n - k)
    if 2 * tail + 1 >= n:  # the middle outcome (or one of the two): every outcome is as likely or less, p is 1
        return 1.0  # exactly, where the float sum gave 0.9999999999999998
    p = 2.0 * float(np.exp(log_pmf[: tail + 1]).sum())
    return min(1.0, p)


def bootstrap_can_reject(samples: int, alpha: float) -> bool:
    """Whether ``samples`` resamples can mark anything at ``alpha``: the percentile p-value is at least
    ``2 / (samples + 1)``, so with ``samples <= 2 / alpha - 1`` the bootstrap never rejects."""
    return 2 / (samples + 1) < alpha


@dataclass(frozen=True)
class SignTest:
    """Exact sign test on paired differences: who is better on how many samples."""

    wins: int  # samples where A is better
    losses: int  # samples where B is better
    ties: int  # samples where they are equal (left out of the test)
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"wins": self.wins, "losses": self.losses, "ties": self.ties, "p_value": self.p_value}


def sign_test(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True) -> SignTest:
    """Exact two-sided sign test of paired per-sample values ``a`` against ``b``."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not higher_is_better:
        diff = -diff
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    return SignTest(wins, losses, int(diff.size - wins - losses), binomial_two_sided(wins, wins + losses))


@dataclass(frozen=True)
class PairedComparison:
    """A against B on one metric over the same samples. ``diff`` is mean(A) - mean(B)."""

    metric: str
    samples: int
    mean_a: float
    mean_b: float
    diff: float
    ci: tuple[float, float]  # bootstrap interval of diff
    p_bootstrap: float  # nan when the bootstrap is switched off
    sign: SignTest
    alpha: float
    higher_is_better: bool
    significant: bool
    better: str | None  # "a" or "b" when significant, else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "samples": self.samples,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "diff": self.diff,
            "ci": list(self.ci),
            "p_bootstrap": self.p_bootstrap,
            "p_sign": self.sign.p_value,
            "sign": self.sign.to_dict(),
            "alpha": self.alpha,
            "higher_is_better": self.higher_is_better,
            "significant": self.significant,
            "better": self.better,
        }


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    metric: str = "value",
    *,
    samples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    higher_is_better: bool | None = None,
) -> PairedComparison:
    """Compare per-sample values of two methods on the same samples (already aligned, same order).

    The bootstrap resamples the per-sample differences; it rejects when the ``1 - alpha`` percentile interval of
    their mean excludes zero, given more than ``2 / alpha - 1`` resamples. The p-value is the percentile one,
    reported beside it: twice the smaller share of replicates on either side of zero (zero counted on both), with
    the +1 correction so it is never 0, at least ``2 / (samples + 1)``; near alpha it can differ from the
    interval's verdict by a replicate or two of rounding, and the interval decides. (It was the shift method's,
    which assumes symmetric replicates: on skewed ones, e.g. 0 wins and 40 small losses, it called a difference
    noise that the interval shown beside it excluded, or the other way round.) ``samples=0`` skips the
    bootstrap; significance then rests on the sign test alone.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_test({metric}): need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if higher_is_better is None:
        higher_is_better = metric not in LOWER_IS_BETTER
    diff = a - b
    observed = float(diff.mean()) if diff.size else math.nan
    reps = bootstrap_means({"d": diff}, samples, seed)["d"]
    ci = percentile_interval(reps, 1.0 - alpha)
    if samples > 0 and diff.size >= 2:  # one difference: its least p-value, 2/(B+1), was reported (review s40)
        side = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
        p_boot = min(1.0, 2.0 * (1 + side) / (samples + 1))
    else:
        p_boot = math.nan
    sign = sign_test(a, b, higher_is_better)
    # Direction from the mean difference; the sign test must point the same way.
    a_better_by_mean = observed > 0 if higher_is_better else observed < 0
    a_better_by_sign = sign.wins > sign.losses
    agree = observed != 0 and sign.wins != sign.losses and a_better_by_mean == a_better_by_sign
    # the interval shown beside the mark decides, given resamples enough for the p-value to reach alpha at all
    boot_ok = math.isnan(p_boot) or (bootstrap_can_reject(samples, alpha) and (ci[0] > 0 or ci[1] < 0))
    significant = bool(agree and boot_ok and sign.p_value < alpha)
    better = ("a" if a_better_by_mean else "b") if significant else None
    return PairedComparison(
        metric=metric,
        samples=int(diff.size),
        mean_a=float(a.mean()) if a.size else math.nan,
        mean_b=float(b.mean()) if b.size else math.nan,
        diff=observed,
        ci=ci,
        p_bootstrap=p_boot,
        sign=sign,
        alpha=alpha,
        higher_is_better=higher_is_better,
        significant=significant,
        better=better,
    )


def align(ids_a: np.ndarray, ids_b: np.ndarray, name_a: str = "A", name_b: str = "B") -> tuple[np.ndarray, np.ndarray]:
    """Positions that put both results in the same sample order; refuse different sample sets.

    Returns ``(pos_a, pos_b)`` with ``ids_a[pos_a] == ids_b[pos_b]`` sorted by sample id.
    """
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    for ids, name in ((ids_a, name_a), (ids_b, name_b)):
        if len(np.unique(ids)) != len(ids):
            raise MismatchedSamplesError(f"{name}: sample ids repeat; a paired comparison needs each sample once")
    only_a = np.setdiff1d(ids_a, ids_b)
    only_b = np.setdiff1d(ids_b, ids_a)
    if only_a.size or only_b.size:
        where = ", ".join(
            f"{only.size} only in {name}" + (f" (e.g. {only[:3].tolist()})" if only.size else "")
            for only, name in ((only_a, name_a), (only_b, name_b))
        )
        fix = "evaluate both on the same split without subsampling"
        if not only_a.size or not only_b.size:  # one is a subsample of the other: the cheap way is to cut the other
            fix = (
                f"{name_a if not only_a.size else name_b} holds a subsample of the other's; evaluate both on the "
                f"same samples (mgfrec report --limit {min(len(ids_a), len(ids_b))} does, when that subsample is "
                "eval.seed's)"
            )
        raise MismatchedSamplesError(
            f"{name_a} ({len(ids_a)} samples) and {name_b} ({len(ids_b)} samples) cover different samples: "
            f"{where}; {fix}"
        )
    return np.argsort(ids_a, kind="stable"), np.argsort(ids_b, kind="stable")


def compare_ranks(
    ids_a: np.ndarray,
    ranks_a: np.ndarray,
    ids_b: np.ndarray,
    ranks_b: np.ndarray,
    ks: Sequence[int] = (5, 10, 20),
    *,
    samples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
) -> dict[str, PairedComparison]:
    """Paired tests of A against B on every metric (see :func:`metric_names`), aligned by sample id."""
    pos_a, pos_b = align(ids_a, ids_b, *names)
    per_a = per_sample(np.asarray(ranks_a)[pos_a], ks)
    per_b = per_sample(np.asarray(ranks_b)[pos_b], ks)
    return {m: paired_test(per_a[m], per_b[m], m, samples=samples, alpha=alpha, seed=seed) for m in metric_names(ks)}


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")

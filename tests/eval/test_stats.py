"""Bootstrap intervals, the exact sign test and the paired comparison, on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mgfrec.ranking.stats import (
    MismatchedSamplesError,
    align,
    binomial_two_sided,
    bootstrap_ci,
    bootstrap_cis,
    compare_ranks,
    paired_test,
    sign_test,
)


def test_binomial_two_sided_matches_hand_computed_values():
    # n=10, k=9: P(X>=9) = (C(10,9) + C(10,10)) / 2^10 = 11/1024, doubled.
    assert binomial_two_sided(9, 10) == pytest.approx(22 / 1024, rel=1e-12)
    assert binomial_two_sided(0, 10) == pytest.approx(2 / 1024, rel=1e-12)
    assert binomial_two_sided(5, 10) == 1.0
    assert binomial_two_sided(0, 0) == 1.0


def test_binomial_two_sided_matches_exact_integer_sum_for_larger_n():
    n, k = 60, 19
    exact = 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    assert binomial_two_sided(k, n) == pytest.approx(exact, rel=1e-10)
    assert binomial_two_sided(n - k, n) == pytest.approx(exact, rel=1e-10)


def test_binomial_two_sided_refuses_impossible_counts():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_two_sided(11, 10)


def test_sign_test_counts_wins_losses_ties_and_respects_direction():
    a = np.array([3.0, 1.0, 2.0, 2.0])
    b = np.array([1.0, 2.0, 2.0, 0.0])
    st = sign_test(a, b)
    assert (st.wins, st.losses, st.ties) == (2, 1, 1)
    assert st.p_value == pytest.approx(binomial_two_sided(2, 3))
    lower = sign_test(a, b, higher_is_better=False)
    assert (lower.wins, lower.losses) == (1, 2)


def test_identical_methods_are_never_significant():
    values = np.random.default_rng(1).random(200)
    comp = paired_test(values, values.copy(), "ndcg@10", samples=500)
    assert comp.diff == 0.0
    assert comp.ci == (0.0, 0.0)
    assert comp.p_bootstrap == 1.0
    assert comp.sign.p_value == 1.0
    assert not comp.significant and comp.better is None


def test_better_on_every_sample_is_significant():
    n, samples = 30, 999
    b = np.random.default_rng(2).random(n)
    comp = paired_test(b + 0.1, b, "ndcg_full", samples=samples, alpha=0.05)
    assert comp.diff == pytest.approx(0.1)
    assert comp.sign.wins == n and comp.sign.losses == 0
    assert comp.sign.p_value == pytest.approx(2 / 2**n, rel=1e-9)
    assert comp.p_bootstrap == pytest.approx(2 / (samples + 1))  # no replicate on the other side of zero
    assert comp.ci[0] > 0
    assert comp.significant and comp.better == "a"
    reverse = paired_test(b, b + 0.1, "ndcg_full", samples=samples)
    assert reverse.significant and reverse.better == "b"


def test_mean_rank_is_lower_is_better():
    comp = paired_test(np.full(25, 2.0), np.full(25, 9.0), "mean_rank", samples=200)
    assert not comp.higher_is_better
    assert comp.significant and comp.better == "a"


def test_few_samples_are_not_significant_even_if_all_better():
    # 4 of 4 wins: the exact sign test's p is 2/16 = 0.125, so no claim at alpha 0.05.
    comp = paired_test(np.ones(4), np.zeros(4), "hit@5", samples=200)
    assert comp.sign.p_value == pytest.approx(0.125)
    assert not comp.significant


def test_tests_that_disagree_on_direction_are_not_significant():
    # A wins 10 samples by a lot, B wins 30 by a little: the mean favours A, the sign test favours B.
    a = np.concatenate([np.full(10, 100.0), np.zeros(30)])
    b = np.concatenate([np.zeros(10), np.ones(30)])
    comp = paired_test(a, b, "ndcg_full", samples=999, alpha=0.05)
    assert comp.diff > 0 and comp.sign.losses > comp.sign.wins
    assert comp.p_bootstrap < 0.05 and comp.sign.p_value < 0.05
    assert not comp.significant


def test_without_bootstrap_significance_rests_on_the_sign_test():
    comp = paired_test(np.ones(30), np.zeros(30), "hit@10", samples=0)
    assert math.isnan(comp.p_bootstrap) and all(math.isnan(x) for x in comp.ci)
    assert comp.significant


def test_the_bootstrap_decision_agrees_with_the_interval_shown_on_skewed_differences():
    # 0 wins and 40 losses, two of them large (a target pushed from rank 1 to 3), 38 tiny: the replicates are
    # skewed. The shift-method p-value (0.051-0.057 over seeds) called it noise while the 95% interval beside it
    # excluded zero and the sign test gave p = 1.8e-12: the table said "not significant" under [-0.025, -0.00004].
    from mgfrec.ranking.metrics import per_sample

    rb = np.full(100, 200)
    rb[:2] = 1
    ra = rb.copy()
    ra[:2], ra[2:40] = 3, 201
    a, b = per_sample(ra, (10,))["ndcg_full"], per_sample(rb, (10,))["ndcg_full"]
    for seed in range(5):
        comp = paired_test(a, b, "ndcg_full", samples=1000, alpha=0.05, seed=seed)
        assert comp.ci[1] < 0 and (comp.sign.wins, comp.sign.losses) == (0, 40)
        assert comp.p_bootstrap < 0.05 and comp.significant and comp.better == "b", comp
    # and a difference whose interval holds zero is never marked, whatever the sign test says
    rng, held = np.random.default_rng(0), 0
    for _ in range(300):  # many small wins of A and a few large losses: the sign test rejects, the mean wavers
        x = rng.random(80)
        y = x - 0.001
        big = rng.random(80) < 0.15
        y[big] = x[big] + rng.random(int(big.sum())) * 0.01
        comp = paired_test(x, y, "ndcg_full", samples=300, seed=int(rng.integers(1000)))
        if comp.ci[0] <= 0 <= comp.ci[1]:
            held += 1
            assert not comp.significant, comp
        else:
            assert comp.significant == (
                comp.sign.p_value < 0.05 and (comp.diff > 0) == (comp.sign.wins > comp.sign.losses)
            )
    assert held > 20  # the case was tried


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(3).random(300)
    first = bootstrap_ci(values, samples=400, seed=7)
    assert first == bootstrap_ci(values, samples=400, seed=7)
    assert first != bootstrap_ci(values, samples=400, seed=8)
    assert first[0] < values.mean() < first[1]


def test_bootstrap_ci_width_matches_the_normal_approximation():
    # 0/1 values with p = 0.3: the 95% interval half-width is about 1.96 * sqrt(p (1 - p) / n).
    n = 2000
    values = (np.arange(n) < 0.3 * n).astype(float)
    lo, hi = bootstrap_ci(values, samples=1000, confidence=0.95, seed=0)
    expected = 2 * 1.96 * math.sqrt(0.3 * 0.7 / n)
    assert hi - lo == pytest.approx(expected, rel=0.15)
    narrow_lo, narrow_hi = bootstrap_ci(values, samples=1000, confidence=0.5, seed=0)
    assert narrow_hi - narrow_lo == pytest.approx(2 * 0.674 * math.sqrt(0.3 * 0.7 / n), rel=0.15)


def test_bootstrap_of_constant_values_is_a_point_and_zero_samples_give_nan():
    assert bootstrap_ci(np.full(10, 0.25), samples=100) == (0.25, 0.25)
    assert all(math.isnan(x) for x in bootstrap_ci(np.ones(10), samples=0))
    cis = bootstrap_cis({"a": np.ones(5), "b": np.zeros(5)}, samples=50)
    assert cis == {"a": (1.0, 1.0), "b": (0.0, 0.0)}


def test_one_sample_gives_no_interval_and_no_bootstrap_p_value():
    """`report --limit 1` showed each row's interval as a point and the comparison's bootstrap p-value as its least,
    2/(B+1), "maximal evidence" from one sample, which resamples to itself (review s40)."""
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([0.3]), samples=100))
    one = paired_test(np.array([1.0]), np.array([0.0]), samples=999)
    assert math.isnan(one.p_bootstrap) and all(math.isnan(x) for x in one.ci) and not one.significant
    two = paired_test(np.array([1.0, 0.5]), np.array([0.0, 0.0]), samples=999)
    assert not math.isnan(two.p_bootstrap) and two.ci[0] <= two.diff <= two.ci[1]


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_bootstrap_refuses_confidence_outside_zero_one(confidence):
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.ones(3), confidence=confidence)


def test_align_refuses_different_sample_sets_with_a_clear_error():
    with pytest.raises(MismatchedSamplesError, match=r"sasrec \(3 samples\) and pop \(3 samples\).*1 only in sasrec"):
        align(np.array([1, 2, 3]), np.array([1, 2, 4]), "sasrec", "pop")
    with pytest.raises(MismatchedSamplesError, match="repeat"):
        align(np.array([1, 1]), np.array([1, 2]))


def test_compare_ranks_pairs_by_sample_id_not_position():
    ids = np.arange(40)
    ranks_a = np.ones(40, dtype=int)
    ranks_b = np.full(40, 50)
    ranks_b[0] = 1  # one sample where B is as good as A
    perm = np.random.default_rng(0).permutation(40)
    shuffled = compare_ranks(ids[perm], ranks_a[perm], ids, ranks_b, (5,), samples=200)
    ordered = compare_ranks(ids, ranks_a, ids, ranks_b, (5,), samples=200)
    assert shuffled["hit@5"].sign.ties == 1
    assert {m: c.to_dict() for m, c in shuffled.items()} == {m: c.to_dict() for m, c in ordered.items()}
    assert list(ordered) == ["hit@5", "ndcg@5", "ndcg_full", "mean_rank"]


def test_runs_over_other_samples_name_only_the_side_that_has_extra_ones():
    """One run's samples a subset of the other's read "0 only in A (e.g. [])"."""
    from mgfrec.ranking.stats import MismatchedSamplesError, align

    with pytest.raises(MismatchedSamplesError) as caught:
        align(np.array([1, 2]), np.array([1, 2, 3]), "A", "B")
    assert "0 only in A, 1 only in B (e.g. [3])" in str(caught.value) and "[])" not in str(caught.value)
    # and the cheap way to pair them: the report cut to the smaller one's subsample, not a full agent evaluation
    assert "A holds a subsample of the other's" in str(caught.value) and "report --limit 2" in str(caught.value)


def test_two_runs_of_one_method_on_different_samples_are_named_by_their_runs():
    # "mgfrec (3 samples) and mgfrec (17 samples) ... 14 only in mgfrec": the runs' names were given and not used
    from mgfrec.ranking.results import EvalResult

    def result(ids):
        return EvalResult(
            method="mgfrec",
            split="valid",
            ranks=np.ones(len(ids), dtype=np.int64),
            sample_ids=np.asarray(ids),
            metrics={},
            ci={},
            ks=(10,),
            bootstrap_samples=10,
            confidence=0.95,
            seed=0,
        )

    with pytest.raises(MismatchedSamplesError) as caught:
        result([1, 2, 3]).compare(result([1, 2, 3, 4]), names=("cellA", "cellB"))
    assert "cellA (3 samples) and cellB (4 samples)" in str(caught.value) and "1 only in cellB" in str(caught.value)


def test_the_sign_test_of_a_middle_outcome_is_exactly_one():
    # k = (n - 1) / 2 summed to 0.9999999999999998 in floats; scipy's binomtest says 1.0
    from mgfrec.ranking.stats import binomial_two_sided

    assert [binomial_two_sided(k, n) for k, n in [(14, 29), (3, 7), (5, 10), (1, 3)]] == [1.0, 1.0, 1.0, 1.0]
    assert binomial_two_sided(2, 7) == pytest.approx(0.453125, abs=1e-15)

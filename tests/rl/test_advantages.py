"""Eq. 2 advantages: against ``statistics`` written out, against TRL's formula, and at the edges."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from mgfrec.config.schema import GRPOConfig
from mgfrec.rl.advantages import (
    advantages_from_config,
    degenerate_group_fraction,
    group_advantages,
)

# Eq. 8 rewards: NDCG values, -0.5 for a bad format; the last group is all equal.
REWARDS = [1.0, 0.5, -0.5, 0.0, 0.6309, 0.0, 0.3869, 1.0, 0.1, 0.1, 0.1, 0.1]
G = 4


def written_out(rewards: list[float], group: int, scale: bool, eps: float = 1e-4) -> list[float]:
    out = []
    for start in range(0, len(rewards), group):
        g = rewards[start : start + group]
        mean = statistics.mean(g)
        std = statistics.stdev(g) if len(g) > 1 else 0.0  # sample std: n - 1 in the denominator
        out += [(r - mean) / (std + eps) if scale else r - mean for r in g]
    return out


@pytest.mark.parametrize("scale", [True, False])
def test_matches_eq_2_with_the_sample_std(scale):
    got = group_advantages(torch.tensor(REWARDS, dtype=torch.float64), G, scale=scale)
    want = torch.tensor(written_out(REWARDS, G, scale), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_std_is_the_sample_one_not_the_population_one():
    # rewards (1, 0): sample std 0.7071, population std 0.5; the advantage of 1 is 0.5 / (std + eps)
    got = group_advantages([1.0, 0.0], 2, eps=0.0)
    assert got[0].item() == pytest.approx(0.5 / 2**-0.5)


def test_flat_and_grouped_inputs_agree_and_order_is_kept():
    flat = group_advantages(REWARDS, G)
    grouped = group_advantages(torch.tensor(REWARDS).view(-1, G), G)
    assert flat.shape == (len(REWARDS),) and torch.equal(flat, grouped)
    assert flat[0] > 0 > flat[2]  # the best of group 0 is first, the bad format third


def test_equal_rewards_and_single_responses_give_exactly_zero():
    # The float32 mean of six 1/log2(6) (NDCG at rank 5) is off by 3e-8; divided by eps that would be 3e-4.
    ndcg5 = torch.full((1, 6), 1 / math.log2(6), dtype=torch.float32)
    assert torch.count_nonzero(ndcg5 - ndcg5.mean(1, keepdim=True)) > 0  # the residue the rule removes
    assert torch.count_nonzero(group_advantages(ndcg5, 6)) == 0
    assert torch.count_nonzero(group_advantages([0.1, 0.1, 0.1], 3, scale=False)) == 0
    assert torch.count_nonzero(group_advantages([0.3, -0.5, 1.0], 1)) == 0
    assert torch.count_nonzero(group_advantages(REWARDS, G)[-G:]) == 0
    assert degenerate_group_fraction(REWARDS, G) == pytest.approx(1 / 3)


def test_a_group_sums_to_zero_and_scaled_has_unit_sample_std():
    adv = group_advantages(torch.tensor(REWARDS, dtype=torch.float64), G, eps=0.0).view(-1, G)[:2]
    torch.testing.assert_close(adv.sum(1), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(adv.std(1), torch.ones(2, dtype=torch.float64))


def test_integer_rewards_become_float():
    assert group_advantages([1, 0, 0, 1], 2).is_floating_point()


@pytest.mark.parametrize(
    ("rewards", "group", "message"),
    [
        ([1.0, 2.0, 3.0], 2, "do not split into groups of group_size=2"),
        (torch.zeros(2, 3), 2, "second dimension must be group_size=2"),
        (torch.zeros(2, 2, 2), 2, "rewards must be"),
        ([1.0], 0, "grpo.group_size"),
    ],
)
def test_bad_shapes_say_what_is_wrong(rewards, group, message):
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, group)


def test_config_fields_are_used():
    cfg = GRPOConfig(group_size=4, scale_rewards=False, advantage_epsilon=0.5)
    torch.testing.assert_close(advantages_from_config(REWARDS, cfg), group_advantages(REWARDS, 4, scale=False))
    cfg = GRPOConfig(group_size=4, advantage_epsilon=0.5)
    torch.testing.assert_close(advantages_from_config(REWARDS, cfg), group_advantages(REWARDS, 4, eps=0.5))


@pytest.mark.parametrize("scale_rewards", ["group", "none"])
def test_equals_trls_advantages(scale_rewards):
    """TRL computes advantages inline in ``GRPOTrainer._generate_and_score_completions`` (it needs generation to
    run), so its lines for ``multi_objective_aggregation="sum_then_normalize"`` are repeated here verbatim around
    TRL's own ``nanstd``; the std choice, the only real question, is TRL's code."""
    utils = pytest.importorskip("trl.trainer.utils", reason="trl is an optional reference, not an mgfrec dependency")
    rewards = torch.tensor(REWARDS, dtype=torch.float64)
    mean_grouped = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    std_rewards = utils.nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    trl = rewards - mean_grouped
    if scale_rewards != "none":
        trl = trl / (std_rewards + 1e-4)
    ours = group_advantages(rewards, G, scale=scale_rewards != "none")
    # rtol: TRL's nanstd forms Bessel's factor n / (n - 1) from integer counts, i.e. in float32 (~1e-8 relative);
    # atol: TRL leaves the ~1e-13 rounding residue on an all-equal group, mgfrec makes it exactly 0.
    torch.testing.assert_close(ours, trl, rtol=1e-7, atol=1e-9)

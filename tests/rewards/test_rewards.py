"""Rewards: eq. 7 (NDCG), eq. 8 (format gate), composition by name."""

from __future__ import annotations

import math

import pytest

from mgfrec.rewards.base import RewardInput
from mgfrec.rewards.compose import build_reward
from mgfrec.rewards.ndcg import NDCGReward


def test_ndcg_reward_is_eq7():
    r = NDCGReward()
    assert r(RewardInput(1, 100, True)) == 1.0
    assert r(RewardInput(3, 100, True)) == pytest.approx(0.5)
    assert r(RewardInput(100, 100, True)) == pytest.approx(1 / math.log2(101))
    assert r(RewardInput(None, 100, True)) == 0.0
    with pytest.raises(ValueError):
        r(RewardInput(0, 100, True))


def test_format_gate_is_eq8():
    reward = build_reward(["ndcg", "format"])
    assert reward(RewardInput(1, 10, True)) == 1.0
    assert reward(RewardInput(1, 10, False)) == -0.5
    assert reward.breakdown(RewardInput(3, 10, False)) == {"ndcg": 0.5, "format": -0.5, "total": -0.5}


def test_format_penalty_is_an_option():
    reward = build_reward(["ndcg", "format"], {"format": {"penalty": -1.0}})
    assert reward(RewardInput(2, 10, False)) == -1.0


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_penalty_that_is_not_finite_is_refused(value):
    # it made every total reward NaN or inf, and with it the advantages and the loss
    from mgfrec.config.components import check_components
    from mgfrec.config.load import load_config

    cfg = load_config(None, [f"grpo.rewards=[ndcg, {{name: format, options: {{penalty: {value}}}}}]"])
    with pytest.raises(ValueError, match=r"grpo.rewards.format.options.penalty"):
        check_components(cfg)


def test_unknown_reward_suggests():
    with pytest.raises(LookupError, match="Did you mean 'ndcg'"):
        build_reward(["ndgc"])

"""Rewards: eq. 7 (NDCG), eq. 8 (format gate), composition by name."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

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


def test_the_first_gating_reward_that_fires_decides():
    """The module's rule, which no test reached (only `format` gates among the built-ins; review s40): with two
    gating rewards firing, the first listed decides; one that does not fire (0) leaves the other's verdict."""
    from mgfrec.rewards.compose import ComposedReward
    from mgfrec.rewards.format import FormatReward

    class Always:
        gating = True

        def __call__(self, inp):
            return -2.0

    broken, fine = RewardInput(1, 10, False), RewardInput(1, 10, True)
    first = ComposedReward([("ndcg", NDCGReward()), ("format", FormatReward()), ("always", Always())])
    assert first(broken) == -0.5 and first(fine) == -2.0  # format fires first; fine: format gives 0, always fires
    second = ComposedReward([("ndcg", NDCGReward()), ("always", Always()), ("format", FormatReward())])
    assert second(broken) == -2.0 and second.breakdown(broken)["format"] == -0.5


def test_format_penalty_is_an_option():
    reward = build_reward(["ndcg", "format"], {"format": {"penalty": -1.0}})
    assert reward(RewardInput(2, 10, False)) == -1.0


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0.5"])
def test_a_penalty_that_is_not_finite_is_refused(value):
    # it made every total reward NaN or inf, and with it the advantages and the loss; a positive one (0.5)
    # rewarded every format error
    from mgfrec.config.components import check_components
    from mgfrec.config.load import load_config

    cfg = load_config(None, [f"grpo.rewards=[ndcg, {{name: format, options: {{penalty: {value}}}}}]"])
    with pytest.raises(ValueError, match=r"grpo.rewards.format.options.penalty"):
        check_components(cfg)


def test_unknown_reward_suggests():
    with pytest.raises(LookupError, match="Did you mean 'ndcg'"):
        build_reward(["ndgc"])


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "returned nan; a reward returns a finite number"),  # trained the policy into NaN weights
        (float("inf"), "returned inf; a reward returns a finite number"),
        ("high", "returned str 'high'; a reward returns a number"),  # was "could not convert string to float"
        (None, "returned NoneType None; a reward returns a number"),
        ("0.5", "returned str '0.5'; a reward returns a number"),  # float() would have read it
        (b"1", "returned bytes b'1'; a reward returns a number"),
        (10**400, "returned int"),  # float() overflows: was an OverflowError traceback
        (True, "returned bool True; a reward returns a number"),  # was trained on as 1.0
        # `target_rank <= k` with a NumPy k: also counted as 1.0 (review s41)
        (np.bool_(True), "returned bool np.True_; a reward returns a number"),
        (torch.tensor(True), "returned Tensor tensor(True); a reward returns a number"),
    ],
)
def test_a_reward_that_returns_no_finite_number_is_named(value, message):
    from mgfrec.rewards.compose import ComposedReward

    class Odd:
        def __call__(self, inp):
            return value

    reward = ComposedReward([("ndcg", NDCGReward()), ("odd", Odd())])
    with pytest.raises(ValueError, match=r"^reward 'odd' \(.*Odd\) " + re.escape(message)):
        reward(RewardInput(1, 10, True))


@pytest.mark.reliability
def test_an_options_validator_that_crashes_is_one_line_naming_the_component():
    """A validator raising RuntimeError (pydantic wraps only ValueError and AssertionError) was a traceback."""
    from pydantic import BaseModel, model_validator

    from mgfrec.registry import component_options

    class Crashy:
        class Options(BaseModel):
            crash: bool = False

            @model_validator(mode="after")
            def _boom(self):
                if self.crash:
                    raise RuntimeError("validator blew up")
                return self

    with pytest.raises(
        ValueError,
        match=r"^grounding.options: the component's options validator failed: RuntimeError: validator blew up "
        r"\(in .*Options\); a bug of the component",
    ):
        component_options(Crashy, {"crash": True}, "grounding.options")
    from mgfrec.registry import KINDS, Registry, RegistryError

    reg = Registry({k: {} for k in KINDS})
    reg.add("grounder", "crashy", Crashy)
    with pytest.raises(RegistryError, match=r"^grounder 'crashy' \(.*Crashy, from python:.*\): grounding.options: "):
        reg.build("grounder", "crashy", {"crash": True})  # the component and its package named

    class Missing(Crashy):
        class Options(Crashy.Options):
            @model_validator(mode="after")
            def _file(self):
                raise FileNotFoundError(2, "No such file or directory", "/no/vocab.txt")

    with pytest.raises(FileNotFoundError):  # a user error of the validator's own stays one
        component_options(Missing, {}, "grounding.options")


@pytest.mark.reliability
def test_a_reward_whose_call_takes_other_arguments_is_one_error_naming_it_when_built():
    """``def __call__(self, target_rank, num_items)``: a TypeError at mgfrec's call, printed as a full traceback;
    then one line, but at the first step, after fit's recall fit (review s39): now when the rewards are built."""
    from mgfrec.rewards.compose import ComposedReward

    class WrongSig:
        def __call__(self, target_rank, num_items):
            return 1.0

    class KeywordOnly:
        def __call__(self, *, inp):
            return 1.0

    class NotCallable:
        pass

    for part, said in (
        (WrongSig(), r"reward 'wrong' \(.*WrongSig\): __call__ cannot be called as mgfrec calls it"),
        (KeywordOnly(), r"reward 'wrong' \(.*KeywordOnly\): __call__ cannot be called as mgfrec calls it"),
        (NotCallable(), r"reward 'wrong' \(.*NotCallable\) has no __call__\(inp\) method"),
    ):
        with pytest.raises(ValueError, match=said):
            ComposedReward([("ndcg", NDCGReward()), ("wrong", part)])


@pytest.mark.reliability
@pytest.mark.parametrize("gating", ["yes", "false", 1, None])
def test_a_reward_whose_gating_is_not_a_bool_is_refused(gating):
    """``gating = "false"`` was taken by its truth: the reward gated, and NDCG was dropped without a word (s39)."""
    from mgfrec.rewards.compose import ComposedReward

    class Gate:
        def __call__(self, inp):
            return 0.5

    Gate.gating = gating
    with pytest.raises(ValueError, match=r"reward 'gate' \(.*Gate\): its gating is .*; give True or False"):
        ComposedReward([("ndcg", NDCGReward()), ("gate", Gate())])
    Gate.gating = np.bool_(False)  # numpy's bool is a bool
    assert ComposedReward([("ndcg", NDCGReward()), ("gate", Gate())])(RewardInput(1, 10, True)) == 1.5


def test_a_registered_reward_that_breaks_its_contract_is_named_with_its_package():
    from mgfrec.registry import Registry, use_registry
    from mgfrec.rewards.compose import ComposedReward

    class Half:
        def __call__(self, inp):
            return np.array([0.5])

    reg = Registry.discover()
    reg.add("reward", "r-array", Half)
    with use_registry(reg), pytest.raises(ValueError) as err:
        ComposedReward([("r-array", Half())])(RewardInput(1, 10, True))
    assert re.match(r"reward 'r-array' \(.*:.*Half, from python:.*\) returned ndarray", str(err.value)), err.value

"""Several rewards as one: the first gating reward that fires decides; otherwise the sum of the rest.

With ``["ndcg", "format"]`` this is exactly eq. 8: NDCG when the format is right, -0.5 when it is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mgfrec.config.training import RESERVED_REWARD_NAMES, RewardSpec, reserved_reward_error
from mgfrec.data.raw import shown
from mgfrec.registry import Registry, call_component, class_path, registered_as, registry
from mgfrec.registry.blame import binding_error
from mgfrec.rewards.base import Reward, RewardInput


class ComposedReward:
    def __init__(self, parts: Sequence[tuple[str, Reward]]):
        if not parts:
            raise ValueError("grpo.rewards: at least one reward is needed")
        names = [name for name, _ in parts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # the breakdown is keyed by name: a second part would hide the first
            raise ValueError(f"grpo.rewards: {', '.join(twice)} listed twice; list each reward once")
        reserved = sorted(set(names) & RESERVED_REWARD_NAMES)
        if reserved:  # one named "total" was overwritten by the total, "mean" replaced reward/mean (review s32)
            raise ValueError(reserved_reward_error(reserved[0]))
        for name, fn in parts:
            _check_contract(name, fn)
        self.parts = list(parts)

    def __call__(self, inp: RewardInput) -> float:
        return self.breakdown(inp)["total"]

    def breakdown(self, inp: RewardInput) -> dict[str, float]:
        """Each part's value and the total (what logs show per step)."""
        values: dict[str, float] = {}
        total, gate = 0.0, None
        for name, fn in self.parts:
            value = values[name] = _finite(name, fn, call_component(fn, "__call__", inp))
            if not getattr(fn, "gating", False):
                total += value
            elif value != 0.0 and gate is None:
                gate = value
        values["total"] = total if gate is None else gate
        return values


def _named(name: str, fn: Any) -> str:
    """How an error names reward ``name``: its registry name and package where it has one, else its class. Looked up
    on an error path only: not on every trajectory."""
    return registered_as(fn, "reward") or f"reward '{name}' ({class_path(fn)})"


def _check_contract(name: str, fn: Any) -> None:
    """Refuse, when the rewards are built (before ``fit``'s recall fit), a reward that cannot be called with one
    argument, or whose ``gating`` is not a bool: the first was found at the first step, after the recall fit; the
    second was taken by its truth (``gating = "false"`` made a reward gating, and NDCG was lost without a word;
    review s39)."""
    gating = getattr(fn, "gating", False)
    if not isinstance(gating, (bool, np.bool_)):
        raise ValueError(
            f"{_named(name, fn)}: its gating is {type(gating).__name__} {shown(gating)}; give True or False"
        )
    if not callable(fn):
        raise ValueError(f"{_named(name, fn)} has no __call__(inp) method, which mgfrec calls; see docs/plugins.md")
    exc = binding_error(fn, (object(),), {})  # the call mgfrec makes, with one RewardInput
    if exc is not None:
        raise ValueError(
            f"{_named(name, fn)}: __call__ cannot be called as mgfrec calls it, with one RewardInput ({exc}); see "
            "the signature a reward provides in docs/plugins.md"
        )


def _is_bool(raw: Any) -> bool:
    """A NumPy or torch boolean (``np.bool_``, a bool array or tensor): ``target_rank <= k`` with a NumPy ``k``
    gives one, and it was counted as 1.0 where a Python ``True`` is refused (review s41)."""
    dtype = getattr(raw, "dtype", None)
    return dtype is not None and (str(dtype) in ("bool", "torch.bool"))


def _finite(name: str, fn: Reward, raw: Any) -> float:
    """A reward's value as a float, refused in one line naming the reward when it is not a finite number: a NaN
    would train the policy into NaN weights, and a string failed far from the reward that returned it."""
    try:
        if isinstance(raw, (str, bytes, bool)) or _is_bool(raw):  # float() reads "0.5" and True: neither is a number
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{_named(name, fn)} returned {type(raw).__name__} {shown(raw)}; a reward returns a number"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{_named(name, fn)} returned {raw!r}; a reward returns a finite number")
    return value


def build_reward(
    rewards: Sequence[str | RewardSpec],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    reg: Registry | None = None,
) -> ComposedReward:
    """Rewards by registry name (built-in or plugin), each with its options: ``grpo.rewards`` entries carry
    their own; ``options`` (name -> mapping, the older ``grpo.reward_options`` layout) fills in the rest."""
    reg = reg or registry()
    parts = []
    for reward in rewards:
        spec = reward if isinstance(reward, RewardSpec) else RewardSpec(name=reward)
        if spec.options or spec.name not in (options or {}):
            built = reg.build("reward", spec.name, spec.options)
        else:
            built = reg.build("reward", spec.name, options[spec.name], where=f"grpo.reward_options.{spec.name}")
        parts.append((spec.name, built))
    return ComposedReward(parts)

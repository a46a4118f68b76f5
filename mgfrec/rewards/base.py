"""What a reward sees and returns.

A reward reads a :class:`RewardInput`, the facts of one finished trajectory, and returns a float. A reward
marked ``gating`` (the format reward) overrides all others when it fires: that is eq. 8 of the paper, where
a badly formatted response earns -0.5 whatever its rank. Rewards never see the policy or the text beyond
what is here, so they are cheap and easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class RewardInput:
    """One finished trajectory, as rewards see it."""

    target_rank: int | None  # 1-based full-ranking rank of the target for the grounded answer; None: no answer
    num_items: int
    format_ok: bool
    groundings: int = 0
    end_reason: str = "answered"
    extras: dict[str, Any] = field(default_factory=dict)


class Reward(Protocol):
    """A ``reward`` component. ``gating`` rewards return 0.0 when they do not fire."""

    gating: ClassVar[bool]

    def __call__(self, inp: RewardInput) -> float: ...

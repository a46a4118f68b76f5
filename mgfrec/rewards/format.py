"""The format reward of eq. 8: a fixed penalty (default -0.5) for a response that breaks the template."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mgfrec.rewards.base import RewardInput


class FormatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    penalty: float = Field(
        -0.5, le=0, allow_inf_nan=False, description="a finite number, at most 0 (NaN or inf poisons the loss)"
    )


class FormatReward:
    """Fires (returns ``penalty``) on a format error; gating, so it then replaces every other reward."""

    gating: ClassVar[bool] = True
    Options = FormatOptions

    def __init__(self, options: FormatOptions | None = None):
        self.penalty = (options or FormatOptions()).penalty

    def __call__(self, inp: RewardInput) -> float:
        return 0.0 if inp.format_ok else self.penalty

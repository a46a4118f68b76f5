"""A reward that pays 1.0 when the answer puts the target in the top k: sparser than NDCG, easy to read."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mgfrec.rewards.base import RewardInput


class HitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    k: int = Field(10, ge=1, description="1.0 when the target ranks within the top k, else 0.0")


class HitAtKReward:
    gating: ClassVar[bool] = False
    Options = HitOptions

    def __init__(self, options: HitOptions | None = None):
        self.k = (options or HitOptions()).k

    def __call__(self, inp: RewardInput) -> float:
        return 1.0 if inp.target_rank is not None and inp.target_rank <= self.k else 0.0

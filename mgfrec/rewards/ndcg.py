"""The recommendation reward of eq. 7: NDCG with one relevant item, 1 / log2(1 + rank), no cut-off."""

from __future__ import annotations

import math
from typing import ClassVar

from mgfrec.rewards.base import RewardInput


class NDCGReward:
    """1 / log2(1 + rank) of the target in the full ranking of the answer; 0 without an answer."""

    gating: ClassVar[bool] = False

    def __call__(self, inp: RewardInput) -> float:
        if inp.target_rank is None:
            return 0.0
        if inp.target_rank < 1:
            raise ValueError(f"target_rank is 1-based, got {inp.target_rank}")
        return 1.0 / math.log2(1.0 + inp.target_rank)

"""The ``none`` user agent: the paper's "w/o feedback" ablation.

Every request gets the empty string, and no text is produced at all. The agent's observation renderer
(:mod:`mgfrec.agent`) treats empty feedback as *no* feedback and leaves the ``<feedback>`` block out of the
observation entirely, so the policy sees only ``<item_list>`` after each ``<ground>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mgfrec.config.schema import UserAgentConfig
from mgfrec.user_agents.base import FeedbackRequest, UsageStats, UserAgentContext


class NoFeedbackAgent:
    """Returns ``""`` for every request (the w/o-feedback ablation); never cached, since there is nothing to save."""

    def __init__(
        self, cfg: UserAgentConfig | None = None, options: None = None, context: UserAgentContext | None = None
    ):
        self.usage = UsageStats()

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        self.usage.add(calls=len(requests))
        return [""] * len(requests)

    def stats(self) -> dict[str, Any]:
        return self.usage.snapshot()

    def close(self) -> None:
        pass

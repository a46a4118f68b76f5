"""User agents: the simulated user who critiques each grounding (MGFRec section 4.3, Table 1).

Backends are ``user_agent`` components (entry-point group ``mgfrec.user_agent``): ``simulated`` (offline
default), ``openai``, ``anthropic``, ``hf`` and ``none`` (the w/o-feedback ablation). Build the configured
one with :func:`load_user_agent`. Backend modules are imported only when chosen, so this package never
imports an API client, torch or transformers.
"""

from mgfrec.user_agents.base import (
    FeedbackRequest,
    UsageStats,
    UserAgent,
    UserAgentContext,
    UserAgentError,
    load_user_agent,
)
from mgfrec.user_agents.cache import CachedUserAgent, ResponseCache, cache_key

__all__ = [
    "CachedUserAgent",
    "FeedbackRequest",
    "ResponseCache",
    "UsageStats",
    "UserAgent",
    "UserAgentContext",
    "UserAgentError",
    "cache_key",
    "load_user_agent",
]

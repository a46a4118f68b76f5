"""Helpers for the user agent tests: requests, a toy embedder, a config for the local fake servers."""

from __future__ import annotations

import hashlib

import numpy as np

from mgfrec.config.schema import UserAgentConfig
from mgfrec.registry import component_options
from mgfrec.user_agents.base import FeedbackRequest

SECRET = "sk-test-0123456789-DO-NOT-LEAK"
KEY_ENV = "MGFREC_TEST_USER_AGENT_KEY"

TOPICS = ("jazz", "metal", "classical", "country")


def toy_vector(title: str) -> np.ndarray:
    """One axis per topic word in the title, plus a small deterministic per-title offset."""
    v = np.array([float(t in title.lower()) for t in TOPICS])
    noise = np.frombuffer(hashlib.sha256(title.encode()).digest()[:4], dtype=np.uint8) / 255.0
    return np.concatenate([v, 0.05 * noise]).astype(np.float32)


class ToyEmbed:
    """An ``embed`` function over :func:`toy_vector` that records every call it gets."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, titles: list[str]) -> np.ndarray:
        self.calls.append(list(titles))
        return np.stack([toy_vector(t) for t in titles])


def make_request(n: int = 0) -> FeedbackRequest:
    """A distinct request per ``n``; ``grounded_title`` carries ``n`` so replies can be matched to requests."""
    return FeedbackRequest(
        history_titles=[f"Blue Note Jazz Classics {n}", "Kind of Blue", "Late Night Jazz Piano"],
        grounded_title=f"Grounded Jazz Title {n}",
        item_titles=[f"Listed Item A{n}", f"Listed Item B{n}"],
    )


def api_config(url: str, **kw) -> UserAgentConfig:
    """A user_agent section for a local fake server, with short timeouts so fault tests stay fast."""
    base = {"base_url": url, "api_key_env": KEY_ENV, "timeout_s": 5.0, "max_retries": 2, "max_concurrency": 4}
    options = {"backoff_s": 0.01, **kw.pop("options", {})}
    return UserAgentConfig(**{**base, **kw, "options": options})


def build(cls, cfg: UserAgentConfig, context=None):
    """Construct a backend class the way load_user_agent does (``cfg.options`` validated), without a registry."""
    return cls(cfg, component_options(cls, cfg.options, "user_agent.options"), context)

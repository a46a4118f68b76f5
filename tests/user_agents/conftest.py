"""Fixtures for the user agent tests (helpers live in uakit.py, the fake API servers in ua_servers.py)."""

from __future__ import annotations

import pytest
from uakit import KEY_ENV, SECRET, ToyEmbed

from mgfrec.registry import KINDS, Registry


@pytest.fixture
def toy_embed() -> ToyEmbed:
    return ToyEmbed()


@pytest.fixture
def fresh_registry() -> Registry:
    """An empty registry: tests add the backends they use, independent of installed entry points."""
    return Registry({k: {} for k in KINDS})


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test key, in a test-only environment variable (the tests' user_agent.api_key_env)."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET

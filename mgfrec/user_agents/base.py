"""What a ``user_agent`` component is, what it may see, and the one factory that builds the configured one.

The user agent of MGFRec (section 4.3, Table 1) critiques each grounding: given the user's interaction
history, the title the recommendation agent grounded and the items the grounding returned, it writes
textual feedback, ``f_U([I_1..I_n], I_T, L_R) = F``. A :class:`FeedbackRequest` holds exactly those three
things and nothing else: the held-out target item is never part of it, so no backend can leak it into the
feedback.

A component registered under ``mgfrec.user_agent`` is a class built as ``cls(cfg, options, context)`` from
the ``user_agent`` config section, its validated ``Options`` (None when it declares none) and a
:class:`UserAgentContext`. It answers a whole environment step in one batched :meth:`UserAgent.feedback`
call. A backend that defines ``cache_key(request) -> str`` can be cached (:mod:`mgfrec.user_agents.cache`);
:func:`load_user_agent` wraps it when ``user_agent.cache_path`` is set, and :func:`with_run_cache` sets it to
a file in the run folder for training.

This module must not import any API client, torch or transformers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mgfrec.config.schema import UserAgentConfig
from mgfrec.registry import Registry, RegistryError, registry


@dataclass(frozen=True)
class FeedbackRequest:
    """One grounding to critique: what the user agent sees, and all it sees (never the target).

    Lists are stored as tuples so that a request is immutable and hashable.
    """

    history_titles: tuple[str, ...]
    grounded_title: str
    item_titles: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "history_titles", tuple(self.history_titles))
        object.__setattr__(self, "item_titles", tuple(self.item_titles))
        if not isinstance(self.grounded_title, str):
            raise TypeError(f"grounded_title must be a str, got {type(self.grounded_title).__name__}")


EmbedFn = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class UserAgentContext:
    """What the run gives a user agent at construction, beyond its config.

    ``embed`` maps titles to float32 ``[n, dim]`` vectors. The agent loop passes one that looks up cached
    catalogue vectors and encodes any other text with the grounding embedder; local backends such as
    ``simulated`` need it, API backends ignore it.
    """

    embed: EmbedFn | None = None
    ask: Callable[[FeedbackRequest], None] | None = None
    """Interactive backends (``human``): called once per grounding to show it to the person, who replies
    through the backend's own methods. None on every automatic path (training, evaluation)."""
    fallback: UserAgent | None = None
    """Interactive backends: the automatic user agent that answers when the person leaves it to the machine."""


@runtime_checkable
class UserAgent(Protocol):
    """A ``user_agent`` component: feedback for a batch of groundings."""

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        """One feedback text per request, in the same order. Raises :class:`UserAgentError` rather than
        returning a placeholder for a request it could not answer."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters since construction: see :class:`UsageStats` for the keys."""
        ...

    def close(self) -> None:
        """Release threads, connections, files and models. Idempotent."""
        ...


def agent_stats(agent: UserAgent) -> dict[str, Any]:
    """``agent.stats()``, checked: a plugin's that returned None or a list was an ``AttributeError`` traceback when
    training began (review s34)."""
    from mgfrec.registry.blame import call_component, registered_as

    stats = call_component(agent, "stats")
    if not isinstance(stats, dict):
        named = registered_as(agent) or f"{type(agent).__module__}.{type(agent).__qualname__}"
        raise ValueError(
            f"{named}: stats() returned {type(stats).__name__}; it must return a dict of counters (see user_agent in "
            "docs/plugins.md)"
        )
    return stats


class UserAgentError(RuntimeError):
    """A backend could not produce feedback; the message names the backend, where it went and how often."""


class PartialFeedbackError(UserAgentError):
    """Some requests of a batch failed: ``answers[i]`` holds request ``i``'s feedback where it succeeded (None
    where it failed), so a cache can keep what was already paid for. ``sent`` holds the same for the requests
    that reached the backend (a cache answered the others): all None when its server failed every one."""

    def __init__(self, message: str, answers: list[str | None], sent: list[str | None] | None = None):
        super().__init__(message)
        self.answers = answers
        self.sent = answers if sent is None else sent


class UsageStats:
    """Thread-safe counters every built-in backend reports through ``stats()``.

    ``calls``: requests answered by the backend itself; ``cache_hits``/``cache_misses``/``cache_not_stored``:
    filled in by the cache wrapper (0 without one); ``retries``: extra attempts after the first, over all requests;
    ``errors``: requests that failed for good; ``prompt_tokens``/``completion_tokens``: as the backend
    reports them; ``latency_s_total`` sums the wall time of each answered call (its retries included), so
    with concurrency it exceeds elapsed time; ``latency_s_mean`` is that per call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: dict[str, float] = dict.fromkeys(
            (
                "calls",
                "cache_hits",
                "cache_misses",
                "cache_not_stored",
                "prompt_tokens",
                "completion_tokens",
                "retries",
                "errors",
                "latency_s_total",
            ),
            0,
        )

    def add(self, **counts: float) -> None:
        with self._lock:
            for key, value in counts.items():
                self._c[key] = self._c.get(key, 0) + value

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {k: (v if k == "latency_s_total" else int(v)) for k, v in self._c.items()}
        out["latency_s_mean"] = out["latency_s_total"] / out["calls"] if out["calls"] else 0.0
        out.update(extra)
        return out


def require_automatic(cfg: UserAgentConfig, purpose: str, reg: Registry | None = None) -> None:
    """Refuse a backend that needs a person (a class with ``needs_person = True``, such as ``human``) where no
    one can answer: training, evaluation, SFT synthesis. Raises ``ValueError`` naming the field."""
    cls = (reg or registry()).load("user_agent", cfg.backend)
    if getattr(cls, "needs_person", False):
        raise ValueError(
            f"user_agent.backend '{cfg.backend}' needs a person to type every feedback, so it cannot be used for "
            f"{purpose}; it is chosen per conversation by 'mgfrec serve' and 'mgfrec chat'. Use an automatic "
            "backend here (simulated, openai, anthropic, hf, none)"
        )


def check_user_agent(cfg: UserAgentConfig, purpose: str, reg: Registry | None = None) -> None:
    """Before a command's long stages: the backend can answer automatically (:func:`require_automatic`), and what
    it needs to start is there (a backend class's ``check_ready(cfg)``: the remote ones' model and API key)."""
    require_automatic(cfg, purpose, reg)
    cls = (reg or registry()).load("user_agent", cfg.backend)
    check = getattr(cls, "check_ready", None)
    if callable(check):
        check(cfg)
    if isinstance(cfg.cache_path, str) and callable(getattr(cls, "cache_key", None)):
        from mgfrec.user_agents.cache import ResponseCache  # the cache imports this module

        ResponseCache.check(cfg.cache_path)  # a damaged file or a folder was found after the recall fit (s36)


def load_user_agent(
    cfg: UserAgentConfig, context: UserAgentContext | None = None, reg: Registry | None = None
) -> UserAgent:
    """Build the backend named by ``cfg.backend`` through the registry, with ``cfg.options`` validated.

    When ``cfg.cache_path`` is set and the backend can be cached (it defines ``cache_key``), the backend is
    wrapped in :class:`mgfrec.user_agents.cache.CachedUserAgent` over that SQLite file.
    """
    agent = (reg or registry()).build(
        "user_agent", cfg.backend, cfg.options, cfg, after=(context or UserAgentContext(),)
    )
    # one without stats() or close() trained, and failed (or leaked its threads) only where they were called
    missing = [name for name in ("feedback", "stats", "close") if not callable(getattr(agent, name, None))]
    if missing:
        entry = (reg or registry()).get("user_agent", cfg.backend)
        raise RegistryError(
            f"user_agent '{cfg.backend}' ({entry.target}, from {entry.origin}) has no {', '.join(missing)} method: a "
            "user agent provides feedback(requests), stats() and close() (see docs/plugins.md)"
        )
    if cfg.cache_path and callable(getattr(agent, "cache_key", None)):
        from mgfrec.user_agents.cache import CachedUserAgent

        agent = CachedUserAgent(agent, cfg.cache_path)
    return agent


RUN_CACHE_FILE = "user_agent_cache.sqlite"
"""The response cache a training run keeps in its folder when ``user_agent.cache_path`` is null."""


def with_run_cache(cfg: UserAgentConfig, run_dir: str | Path, reg: Registry | None = None) -> UserAgentConfig:
    """``cfg`` with ``cache_path`` set to ``<run_dir>/user_agent_cache.sqlite`` when it is null and the backend
    can be cached (it defines ``cache_key``: ``openai``, ``anthropic``, ``hf``); unchanged otherwise. An explicit
    path is kept, and ``cache_path: false`` turns the cache off."""
    if cfg.cache_path is not None:
        return cfg
    cls = (reg or registry()).load("user_agent", cfg.backend)
    if not callable(getattr(cls, "cache_key", None)):
        return cfg
    # absolute: a path relative to the working folder of the fit was another file (or a stray folder) for an
    # `mgfrec evaluate` run from elsewhere
    return cfg.model_copy(update={"cache_path": str((Path(run_dir) / RUN_CACHE_FILE).resolve())})


def cache_of_run(cfg: UserAgentConfig, run_dir: str | Path) -> UserAgentConfig:
    """A run folder's ``user_agent`` settings as a command that loads the run uses them: a ``cache_path`` whose
    folder is gone (the run was moved, or an older run recorded it relative to another working folder) is the run
    folder's own cache instead, so that loading a run never creates folders where it once was."""
    path = cfg.cache_path
    if not isinstance(path, str) or Path(path).parent.is_dir():
        return cfg
    return cfg.model_copy(update={"cache_path": str(Path(run_dir).resolve() / RUN_CACHE_FILE)})

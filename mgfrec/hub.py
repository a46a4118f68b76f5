"""What a Hugging Face hub id can load here without the network: whether the hub is offline
(``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``) and whether a model is in the local cache. A command refuses a model
it could never load before its long work (a fit's recall fit), not when the model's turn comes."""

from __future__ import annotations

import os

_TRUE = frozenset({"1", "ON", "YES", "TRUE"})


def hub_offline() -> bool:
    """Whether the hub is offline for this process, read from the environment now (huggingface_hub reads it once,
    at its import)."""
    return any(os.environ.get(name, "").strip().upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cached(repo_id: str, revision: str | None = None) -> bool:
    """Whether hub model ``repo_id`` (at ``revision``, default ``main``) has a snapshot with a ``config.json`` in the
    local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except (OSError, ValueError):  # not a valid repo id: the load says so with its own line
        return False
    return isinstance(found, str)

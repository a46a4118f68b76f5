"""What a Hugging Face hub id can load here without the network: whether the hub is offline
(``HF_HUB_OFFLINE``, else ``TRANSFORMERS_OFFLINE``, read as huggingface_hub reads them) and whether a model has a
snapshot in a local cache. A command refuses a model it could never load before its long work (a fit's recall
fit), not when the model's turn comes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

_TRUE = frozenset({"1", "ON", "YES", "TRUE"})


def offline_variable() -> str | None:
    """The environment variable that puts the hub offline for this process (``HF_HUB_OFFLINE``, or
    ``TRANSFORMERS_OFFLINE`` where the first is unset), or None. Read now, as huggingface_hub reads it once at its
    import: the first of the two that is set decides, so ``HF_HUB_OFFLINE=0`` keeps the hub online."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value:
            return name if value.strip().upper() in _TRUE else None
    return None


def hub_offline() -> bool:
    """Whether the hub is offline for this process (:func:`offline_variable`)."""
    return offline_variable() is not None


def snapshot_commit(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> str | None:
    """The commit that ``revision`` (default ``main``) of hub model ``repo_id`` resolves to in a local cache
    (``cache_dir``; None: the default Hugging Face cache), without the network; None when it is not there."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError is an OSError), or not a valid repo id
        return None
    return Path(folder).name  # the cache keeps each revision in snapshots/<commit>/


def hub_cached(repo_id: str, revision: str | None = None, cache_dirs: Sequence[str | None] = (None,)) -> bool:
    """Whether hub model ``repo_id`` (at ``revision``, default ``main``) has a snapshot in one of ``cache_dirs``
    (None: the default Hugging Face cache; sentence-transformers also keeps one under ``SENTENCE_TRANSFORMERS_HOME``).
    """
    return any(snapshot_commit(repo_id, revision, cache_dir) is not None for cache_dir in cache_dirs)

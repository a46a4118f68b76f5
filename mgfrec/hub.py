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


def hub_refusal(repo_id: str, revision: str | None = None, cache_dirs: Sequence[str | None] = (None,)) -> str | None:
    """Why hub model ``repo_id`` (at ``revision``) cannot load here, found before a command's long work, as the
    rest of a sentence that starts with the id (``'Qwen/Qwen2.5-1.5B-Instrct' was not found on the hub ...``); None
    when it can load, or when that cannot be told (a hub that does not answer: loading says why).

    A snapshot in ``cache_dirs`` loads. With the hub offline (:func:`offline_variable`) nothing else does. Online,
    the hub is asked once (its model page, 10 s at most): a mistyped id was found when the policy loaded, after the
    recall fit (review s35)."""
    if hub_cached(repo_id, revision, cache_dirs):
        return None
    offline = offline_variable()
    if offline:
        return (
            f"is not in the local Hugging Face cache, and {offline} lets nothing be downloaded; download it where the "
            "hub is reachable"
        )
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    where = constants.ENDPOINT
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=10)
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: asked first
        return (
            f"is gated on the hub ({where}) and no token here has been granted access: accept its terms on its "
            "page, then log in (`hf auth login`, or HF_TOKEN)"
        )
    except RevisionNotFoundError:
        return f"has no revision '{revision}' on the hub ({where}); give a branch, tag or commit it has"
    except RepositoryNotFoundError:  # also a private model no token here can read: the hub answers the same
        return (
            f"was not found on the hub ({where}): is it spelt as on its model page? (a private model needs a token "
            "that can read it: `hf auth login`, or HF_TOKEN)"
        )
    except Exception:  # noqa: BLE001 - unreachable, slow or answering otherwise: loading will say
        return None
    return None

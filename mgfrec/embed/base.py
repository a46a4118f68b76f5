"""What an ``embedder`` component is, and the one factory that builds the configured one.

An embedder turns titles into float32 vectors. Catalogue titles are *documents*; the titles the agent
writes inside ``<ground>`` (and its final answer) are *queries*, which instruction-tuned models such as
gte-Qwen2 embed with an instruction prefix. Grounding compares the two by L2 distance.

A component registered under ``mgfrec.embedder`` is a class built as ``cls(config, options)`` from the
``embedding`` config section and its validated ``Options``, or as ``cls(config)`` when it declares none.

This module must not import sentence-transformers or torch: building an embedder is cheap and the model
is loaded on first use, so a cache hit never pays for loading a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mgfrec.config.schema import EmbeddingConfig
from mgfrec.registry import Registry, RegistryError, class_path, registered_as, registry


@runtime_checkable
class Embedder(Protocol):
    """Titles in, float32 ``[n, dim]`` vectors out."""

    model_id: str
    """Stable identity of the model (hub id, absolute path, or ``bundled:<name>``); keys the embedding cache."""

    settings: Mapping[str, Any]
    """Everything besides the model that changes *document* vectors (dtype, normalisation, ...); keys the cache
    together with ``model_id``. Query-only settings (the query instruction) belong elsewhere: changing them
    must not throw away a catalogue's cached vectors."""

    @property
    def dim(self) -> int:
        """Length of one vector (may load the model)."""
        ...

    def encode(self, texts: list[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` as documents, or as queries when ``query`` is true; float32 ``[len(texts), dim]``."""
        ...


def load_embedder(cfg: EmbeddingConfig, reg: Registry | None = None) -> Embedder:
    """Build the embedder named by ``cfg.embedder`` through the registry, with ``cfg.options`` validated."""
    embedder = (reg or registry()).build("embedder", cfg.embedder, cfg.options, cfg)
    missing = [name for name in ("model_id", "settings", "encode") if not hasattr(embedder, name)]
    entry = (reg or registry()).get("embedder", cfg.embedder)
    who = f"embedder '{cfg.embedder}' ({entry.target}, from {entry.origin})"
    if missing or not callable(embedder.encode):
        lacks = ", ".join(missing or ["callable encode"])
        raise RegistryError(
            f"{who} has no {lacks}: an embedder provides model_id, settings and encode() (see docs/plugins.md)"
        )
    # what the embedding cache keys on: a model_id of None was a traceback from inside re.sub, and settings of
    # text "dictionary update sequence element #0 has length 1", naming no component (review s37)
    if not isinstance(embedder.model_id, str) or not embedder.model_id.strip():
        raise RegistryError(f"{who}: model_id must be a non-empty str, got {embedder.model_id!r:.60}")
    if not isinstance(embedder.settings, Mapping):
        raise RegistryError(f"{who}: settings must be a mapping, got {type(embedder.settings).__name__}")
    return embedder


def check_embedder_loadable(cfg: EmbeddingConfig, reg: Registry | None = None) -> None:
    """Refuse, before a command's long work, an embedder model that cannot load here (a device this machine lacks,
    a hub id not cached while the hub is offline): the built-in embedders' ``check_loadable``; a plugin's is built
    by the command itself (its constructor may load a model)."""
    reg = reg or registry()
    if reg.get("embedder", cfg.embedder).third_party:
        return
    check = getattr(load_embedder(cfg, reg), "check_loadable", None)
    if callable(check):
        check()


def embedder_named(embedder: object) -> str:
    """The embedder, for the message of a contract it broke: ``the embedder 'name' (module:Class, from pkg 1.0),
    model 'id'`` (its registered name and package, the choice a user made; else its class and the config field),
    then its model id where it has one. Looked up on the error path only: the registry is not searched per call.
    The model id alone named no component (a plugin's "model-x" said nothing of which package to blame)."""
    who = registered_as(embedder, "embedder") or f"embedder ({class_path(embedder)}, embedding.embedder)"
    model = getattr(embedder, "model_id", None)
    return f"the {who}, model {model!r}," if isinstance(model, str) else f"the {who}"

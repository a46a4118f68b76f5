"""The on-disk cache of catalogue (item title) embeddings.

One entry is a pair of files in ``embedding.cache_dir`` (default ``<prepared folder>/embeddings/``)::

    items-<model>-<key>.npy    float32 [num_items, dim], row i = item_idx i
    items-<model>-<key>.json   what the vectors were made from (the key), dim, counts, timing

The key is the embedder's ``model_id`` and document ``settings`` plus a sha256 of the titles in catalogue
order. Any change to one of them is a different entry, so a cache folder may be shared by data sets and
models; a stale entry is never read, only left behind (delete the folder to reclaim space). The JSON file is
written last and checked in full on every read, so a half-written or foreign entry is rebuilt, not trusted.

Identical titles are encoded once and share one vector bit for bit: the grounding tie rule (equal distances
are ordered by item index) relies on duplicated titles being exactly equal, which batching and padding
would otherwise not guarantee.

This module must not load a model on a cache hit.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgfrec import __version__
from mgfrec.atomic import atomic_write, atomic_write_text
from mgfrec.config.schema import EmbeddingConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.embed.base import Embedder, embedder_named, load_embedder
from mgfrec.registry import call_component

CACHE_FORMAT = 1


@dataclass(frozen=True)
class CachedEmbeddings:
    """The item vectors and where they came from."""

    vectors: np.ndarray
    path: Path
    hit: bool  # True: read from disk; False: encoded now (and written, unless ``written`` is False)
    seconds: float  # time to read or to build
    metadata: dict[str, Any]
    written: bool = True  # False: encoded now and not stored (the prepared folder is read-only); ``path`` is absent


def titles_checksum(titles: Sequence[str]) -> str:
    """sha256 of the titles in order; JSON encoding keeps ``["a,b"]`` and ``["a", "b"]`` apart."""
    return hashlib.sha256(json.dumps(list(titles), ensure_ascii=False).encode("utf-8")).hexdigest()


def cache_key(embedder: Embedder, titles: Sequence[str]) -> dict[str, Any]:
    """Everything the cached vectors depend on, as plain JSON data. A plugin embedder's class is part of it: two
    plugins (or a plugin and the built-in) that report one ``model_id`` never read each other's vectors. Its
    options are its ``settings``' to report (docs/plugins.md); the built-in's key is unchanged, so its caches
    stay valid."""
    key = {
        "format": CACHE_FORMAT,
        "model_id": embedder.model_id,
        "settings": dict(embedder.settings),
        "titles_sha256": titles_checksum(titles),
        "num_items": len(titles),
    }
    cls = type(embedder)
    if not cls.__module__.startswith("mgfrec."):
        key["component"] = f"{cls.__module__}.{cls.__qualname__}"
    return json.loads(json.dumps(key, sort_keys=True, default=str))  # what a round trip through the file gives


def cache_dir(ds: PreparedDataset, cfg: EmbeddingConfig) -> Path:
    """``embedding.cache_dir`` or ``<prepared folder>/embeddings``."""
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path(ds.root) / "embeddings"


def cache_path(folder: Path, key: dict[str, Any]) -> Path:
    """The ``.npy`` path of an entry; the ``.json`` sits beside it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key["model_id"]).strip("_")[-60:] or "model"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"items-{slug}-{digest}.npy"


def _not_finite(embedder: Embedder, titles: Sequence[str], finite: np.ndarray) -> str:
    """The line for vectors with NaN or infinite values: how many titles, the first, and what to try. Lower
    precision is the likely cause only in the built-in embedder's float16/bfloat16 (the hint named
    ``embedding.dtype`` for every embedder, plugins that never read it included)."""
    from mgfrec.embed.sentence import SentenceTransformerEmbedder

    bad = np.flatnonzero(~finite)
    first = " ".join(str(titles[bad[0]]).split())
    first = first if len(first) <= 60 else first[:57] + "..."
    line = (
        f"{embedder_named(embedder)} returned NaN or infinite values for {len(bad)} of {len(titles)} titles "
        f"(the first: item {bad[0]}, {first!r})"
    )
    dtype = getattr(getattr(embedder, "config", None), "dtype", "float32")
    if isinstance(embedder, SentenceTransformerEmbedder) and dtype != "float32":
        return f"{line}; try embedding.dtype=float32 (it runs in {dtype})"
    return f"{line}; every vector must be finite"


def cached_item_embeddings(
    ds: PreparedDataset,
    cfg: EmbeddingConfig,
    embedder: Embedder | None = None,
    progress: bool = False,
    on_miss: Callable[[int, Path], None] | None = None,
) -> CachedEmbeddings:
    """Read the catalogue's vectors from the cache, or encode and store them.

    ``ds`` needs only ``titles`` and ``root``. Without ``embedder`` one is built from ``cfg`` (cheap: the
    model loads only if encoding is needed). With one, its identity keys the cache and ``cfg`` only says where
    the cache lives. ``on_miss(titles, path)`` is called before encoding, so a caller can say why it waits.
    """
    start = time.perf_counter()
    titles = list(ds.titles)
    embedder = embedder if embedder is not None else load_embedder(cfg)
    key = cache_key(embedder, titles)
    folder = cache_dir(ds, cfg)
    path = cache_path(folder, key)
    found = _read(path, key)
    if found is not None:
        vectors, meta = found
        return CachedEmbeddings(vectors, path, True, time.perf_counter() - start, meta)

    # Where the entry goes is checked before encoding: a wrong place must not cost the whole catalogue first.
    writable = _check_writable(folder, explicit=bool(cfg.cache_dir))
    # Encode each distinct title once, so duplicates get bit-identical vectors (see the module docstring).
    unique = list(dict.fromkeys(titles))
    ready = getattr(embedder, "check_ready", None)  # optional: what would stop it encoding, before saying it will
    if callable(ready):
        ready()
    if on_miss is not None and writable:  # (unwritable: the warning has said it embeds for this command only)
        on_miss(len(unique), path)
    row_of = {title: row for row, title in enumerate(unique)}
    encoded = np.asarray(call_component(embedder, "encode", unique, query=False, progress=progress), dtype=np.float32)
    if encoded.ndim != 2 or encoded.shape[0] != len(unique):
        raise ValueError(
            f"{embedder_named(embedder)} returned vectors of shape {encoded.shape} for {len(unique)} distinct "
            f"titles, not [{len(unique)}, dim]: a bug of the embedder"
        )
    vectors = encoded[np.fromiter((row_of[t] for t in titles), dtype=np.int64, count=len(titles))]
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise ValueError(_not_finite(embedder, titles, finite))
    # An identity may be complete only once the model is loaded (a hub model downloaded just now names its commit
    # only then): the entry is stored under what the vectors were made from, never under the guess of before.
    key = cache_key(embedder, titles)
    path = cache_path(folder, key)
    seconds = time.perf_counter() - start
    meta = {
        "key": key,
        "dim": int(vectors.shape[1]),
        "num_items": len(titles),
        "unique_titles": len(unique),
        "data": str(ds.root),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 3),
        "mgfrec_version": __version__,
        "sha256": _digest(vectors),  # the array's bytes: damage inside a whole-looking file is a miss
    }
    if writable:
        atomic_write(path, lambda handle: np.save(handle, vectors, allow_pickle=False))
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return CachedEmbeddings(vectors, path, False, seconds, meta, written=writable)


class CacheNotWritten(UserWarning):
    """The prepared folder cannot hold the embedding cache; the vectors are used without being stored."""


def _check_writable(folder: Path, explicit: bool) -> bool:
    """Whether an entry can be written in ``folder`` (created if absent). ``embedding.cache_dir`` that names a
    file, or that cannot be written, is an error (the user chose it); the default place inside a prepared
    folder that is read-only (a shared data set) is a warning, and the vectors are used uncached."""
    where = f"embedding.cache_dir {folder}" if explicit else f"the embedding cache {folder}"
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{where}: a file, not a folder; set embedding.cache_dir to a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", suffix=".tmp"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if explicit:
            raise ValueError(f"{where}: cannot write there ({reason}); choose a writable folder") from None
        warnings.warn(
            f"{where}: cannot write there ({reason}); the title vectors are embedded for this command only. "
            "Set embedding.cache_dir to a writable folder to keep them.",
            CacheNotWritten,
            stacklevel=3,
        )
        return False
    return True


def item_embeddings(
    ds: PreparedDataset, cfg: EmbeddingConfig, embedder: Embedder | None = None, progress: bool = False
) -> np.ndarray:
    """Float32 ``[num_items, dim]`` title vectors of ``ds``'s catalogue, from the cache when it is current."""
    return cached_item_embeddings(ds, cfg, embedder, progress).vectors


def _read(path: Path, key: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The entry at ``path`` if its metadata matches ``key`` and the array is whole; otherwise ``None``."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None  # foreign or damaged metadata: rebuilt
        vectors = np.load(path, allow_pickle=False)
    # missing, empty, truncated or foreign files are a miss, rebuilt below; so is JSON nested too deep (review s41)
    except (OSError, ValueError, EOFError, RecursionError):
        return None
    if vectors.dtype != np.float32 or vectors.shape != (key["num_items"], meta.get("dim")):
        return None
    if meta.get("sha256") != _digest(vectors):  # changed bytes (or an entry from before the digest): rebuilt
        return None
    if not np.isfinite(vectors).all():  # never written so (encoding refuses them): damage, or every search fails
        return None
    return vectors, meta


def _digest(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()

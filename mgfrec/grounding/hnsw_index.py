"""The ``hnswlib`` grounder: an HNSW graph from hnswlib over the distinct item vectors (extra ``mgfrec[hnswlib]``).

Approximate: ``ef`` (raised to k + margin at search time) trades speed for recall; ``M`` and
``ef_construction`` set graph quality at build time. Building with several threads makes the graph, and so
rare misses, vary from run to run; ``num_threads=1`` makes it reproducible.

Candidates are re-scored and ordered by :func:`mgfrec.grounding.ties.finish_topk` (tie rule).
hnswlib is imported when a grounder is built, so this module imports without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mgfrec.grounding.ties import UniqueVectors, check_queries, finish_topk, num_candidates
from mgfrec.registry import MissingExtraError


def import_hnswlib() -> Any:
    try:
        import hnswlib
    except ImportError as exc:
        raise MissingExtraError(
            "grounding.grounder 'hnswlib' needs the hnswlib library: pip install 'mgfrec[hnswlib]', "
            "or use grounding.grounder=exact"
        ) from exc
    return hnswlib


class HnswGrounder:
    """Approximate top-k by L2 with hnswlib; see :class:`mgfrec.grounding.base.Grounder`."""

    approximate = True

    class Options(BaseModel):
        """``grounding.options`` for ``hnswlib``."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        M: int = Field(16, ge=2, description="links per node")
        ef_construction: int = Field(200, ge=1, description="candidate list size while building")
        ef: int = Field(50, ge=1, description="candidate list size while searching (raised to k+margin)")
        # hnswlib takes the seed as an unsigned 64-bit number: -1 was a TypeError traceback at build
        seed: int = Field(100, ge=0, le=2**64 - 1, description="level-assignment seed")
        num_threads: int = Field(-1, description="threads for build and search; -1 = all cores, 1 = reproducible")

        @field_validator("num_threads")
        @classmethod
        def _thread_count(cls, value: int) -> int:
            """hnswlib reads any count below 1 as "all cores", so 0 or -4 (meant as "none" or "four") silently
            used every core; only -1 means that here."""
            if value == 0 or value < -1:
                raise ValueError(f"{value} threads: give -1 (all cores) or a count of 1 or more (1 = reproducible)")
            return value

    def __init__(self, item_embeddings: np.ndarray, options: Options | None = None):
        hnswlib = import_hnswlib()
        self.options = opts = options or self.Options()
        self.unique = UniqueVectors.build(item_embeddings)
        self.num_items, self.dim = self.unique.num_items, self.unique.dim
        self._index = hnswlib.Index(space="l2", dim=self.dim)
        self._index.init_index(
            max_elements=self.unique.num_unique, ef_construction=opts.ef_construction, M=opts.M, random_seed=opts.seed
        )
        self._index.add_items(self.unique.vectors, np.arange(self.unique.num_unique), num_threads=opts.num_threads)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = check_queries(queries, self.dim, k, self.num_items)
        n_cand = num_candidates(k, self.unique)
        # hnswlib fails ("contiguous 2D array") when ef < the number of results asked for.
        self._index.set_ef(max(self.options.ef, n_cand))
        try:
            labels = self._index.knn_query(q, k=n_cand, num_threads=self.options.num_threads)[0]
        except RuntimeError:  # a sparse graph (M=2) reaches fewer than n_cand nodes from some queries
            labels = np.stack([self._labels_of(row, n_cand) for row in q]) if len(q) else np.empty((0, n_cand))
        return finish_topk(self.unique, q, labels.astype(np.int64), k)

    def _labels_of(self, query: np.ndarray, n_cand: int) -> np.ndarray:
        """One query's candidates, or none (-1s: :func:`finish_topk` then ranks every distinct vector exactly)
        when the graph cannot return ``n_cand`` of them."""
        try:
            return self._index.knn_query(query[None, :], k=n_cand, num_threads=1)[0][0].astype(np.int64)
        except RuntimeError:
            return np.full(n_cand, -1, dtype=np.int64)

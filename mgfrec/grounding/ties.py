"""The tie rule, and the exact re-ranking every grounder's top-k goes through.

**Tie rule.** Items at equal L2 distance from a query are ordered by item index, ascending. Items with
identical titles have bit-identical vectors (the embedding cache encodes each distinct title once), so they
are always at exactly equal distance and always come out in index order, next to each other.

How every backend honours it, approximate or not:

1. Identical item vectors are collapsed to one *distinct vector* (:class:`UniqueVectors`) and only distinct
   vectors are indexed. A search can therefore never return an arbitrary subset of a group of duplicates.
2. The backend proposes ``k + TIE_MARGIN`` distinct candidates by its own (float32, possibly approximate)
   distances.
3. :func:`finish_topk` re-scores those candidates exactly (in float64 and as ``||q - x||`` rather than the
   cancellation-prone ``||q||^2 - 2 q.x + ||x||^2``), rounds the distances to the float32 values it
   returns, expands each distinct vector into its items (with equal distances), sorts by
   ``(distance, item index)`` and keeps ``k``. Sorting the *returned* values means the rule holds for what
   a caller sees: two items shown with the same distance are always in index order.

Because step 3 is one shared function, two backends that propose the same candidates return the same
top-k, bit for bit: the exact torch backend and faiss ``IndexFlatL2`` differ in their float32 rounding,
and the margin absorbs it. An approximate backend can still *miss* a true neighbour (measure that with
:func:`mgfrec.grounding.quality.recall_against_exact`); it cannot order ties differently.

This module must not import faiss or hnswlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

TIE_MARGIN = 16
"""Extra distinct candidates fetched beyond k, so float32 rounding at the k-th place cannot change the result."""


@dataclass(frozen=True)
class UniqueVectors:
    """A catalogue's item vectors with exact duplicates collapsed.

    ``vectors[u]`` is a distinct vector, ``inverse[i]`` the distinct row of item ``i``, and the items sharing
    row ``u`` are ``members[offsets[u]:offsets[u + 1]]`` in ascending item order (``members[offsets[u]]`` is
    the smallest).
    """

    vectors: np.ndarray  # float32 [U, d], C-contiguous
    inverse: np.ndarray  # int64 [N]
    members: np.ndarray  # int64 [N], items grouped by distinct row
    offsets: np.ndarray  # int64 [U + 1]

    @classmethod
    def build(cls, item_embeddings: np.ndarray) -> UniqueVectors:
        items = check_items(item_embeddings)
        dim = items.shape[1]
        # Rows compared as raw bytes: "identical" means bit-identical, which is what makes distances equal.
        rows = np.ascontiguousarray(items).view(np.dtype((np.void, dim * items.itemsize))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        # np.unique orders distinct rows by byte value; renumber them by first occurrence so that a catalogue
        # without duplicates keeps distinct row u == item u.
        by_first = np.argsort(first, kind="stable")
        renumber = np.empty_like(by_first)
        renumber[by_first] = np.arange(len(by_first))
        inverse = renumber[inverse.ravel()].astype(np.int64)
        members = np.argsort(inverse, kind="stable").astype(np.int64)  # stable: ascending items per group
        counts = np.bincount(inverse, minlength=len(first))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        vectors = np.ascontiguousarray(items[np.sort(first)])
        return cls(vectors, inverse, members, offsets)

    @property
    def num_items(self) -> int:
        return int(self.inverse.shape[0])

    @property
    def num_unique(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def has_duplicates(self) -> bool:
        return self.num_unique < self.num_items

    @cached_property
    def centre(self) -> np.ndarray | None:
        """The float32 vector subtracted from items and queries before the expansion ``|x|^2 - 2 q.x`` that the
        exact grounder and the full ranking compute in float32, or None. Far from the origin (a plugin embedder that
        does not normalise: 2,000 items at 10 +- 0.01) the expansion's rounding, about eps * |x|^2, swamps the
        distances between items: the exact grounder missed the nearest item for 6 of 20 queries (note s31), the
        full ranking put another item first for 13 of 20 (16 dimensions); L2
        distances do not change under a shift. Only a catalogue whose mean lies more than 10 times its spread
        from the origin is shifted, so normalised embeddings (every bundled model's) score bit for bit as before."""
        wide = self.vectors.astype(np.float64)
        mean = wide.mean(axis=0)
        spread = float(np.sqrt(((wide - mean) ** 2).sum(axis=1).mean()))
        if float(np.linalg.norm(mean)) <= 10.0 * spread:
            return None
        return mean.astype(np.float32)


def check_items(item_embeddings: np.ndarray) -> np.ndarray:
    """Item vectors as float32 ``[N, d]`` with N, d > 0 and finite values, or a ValueError saying what is wrong."""
    items = np.asarray(item_embeddings, dtype=np.float32)
    if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
        raise ValueError(f"item embeddings must be a non-empty [num_items, dim] matrix, got shape {items.shape}")
    if not np.isfinite(items).all():
        raise ValueError("item embeddings contain NaN or infinite values")
    return items


def check_queries(queries: np.ndarray, dim: int, k: int, num_items: int) -> np.ndarray:
    """Queries as float32 ``[Q, d]``, with ``1 <= k <= num_items``, or a ValueError naming the mismatch."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be [num_queries, {dim}] like the item embeddings, got shape {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("queries contain NaN or infinite values")
    if not 1 <= k <= num_items:
        raise ValueError(f"k={k} must be between 1 and the catalogue size {num_items} (grounding.top_k)")
    return np.ascontiguousarray(q)


def num_candidates(k: int, unique: UniqueVectors) -> int:
    """How many distinct vectors a backend should propose for a top-``k`` search."""
    return min(unique.num_unique, k + TIE_MARGIN)


def finish_topk(
    unique: UniqueVectors, queries: np.ndarray, candidates: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items among proposed distinct rows, under the tie rule.

    ``candidates`` is int ``[Q, C]`` of distinct-row ids; negative ids (faiss's "no result") and repeats are
    ignored. Returns item indices int64 ``[Q, k]`` and L2 distances float32 ``[Q, k]``, ascending.
    """
    n_queries = queries.shape[0]
    if n_queries == 0:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    if not unique.has_duplicates and candidates.shape[1] >= k and (candidates >= 0).all():
        # Blocks of queries bound the float64 [block, C, d] temporary.
        parts = [
            _finish_distinct(unique, queries[s : s + 512], candidates[s : s + 512].astype(np.int64), k)
            for s in range(0, n_queries, 512)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    out_idx = np.empty((n_queries, k), dtype=np.int64)
    out_dist = np.empty((n_queries, k), dtype=np.float32)
    q64 = queries.astype(np.float64)
    for row in range(n_queries):
        cand = np.unique(candidates[row][candidates[row] >= 0])  # sorted, so repeats vanish
        if cand.shape[0] < unique.num_unique and _items_in(unique, cand) < k:
            # A backend returned too few results (tiny or degenerate index): fall back to every distinct row.
            cand = np.arange(unique.num_unique)
        out_idx[row], out_dist[row], crowded = _finish_row(unique, q64[row], cand, k)
        if crowded:  # the proposal's farthest ties with the k-th kept: more may tie beyond it
            out_idx[row], out_dist[row], _ = _finish_row(unique, q64[row], np.arange(unique.num_unique), k)
    return out_idx, out_dist


def _finish_row(unique: UniqueVectors, query: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """One query's top-``k`` items among distinct rows ``cand``, and whether the row is *crowded*: some of ``cand``
    were left out and the farthest proposed ties with the ``k``-th kept, so rows never proposed may tie too, and the
    tie rule's lowest items may be among them (more than ``TIE_MARGIN`` distinct vectors at one distance: one-hot
    or symmetric vectors; review s41). A crowded row is ranked again over every distinct row."""
    diff = unique.vectors[cand].astype(np.float64) - query
    dist = np.sqrt(np.einsum("cd,cd->c", diff, diff)).astype(np.float32)
    sizes = unique.offsets[cand + 1] - unique.offsets[cand]
    items = np.concatenate([unique.members[unique.offsets[u] : unique.offsets[u + 1]] for u in cand])
    item_dist = np.repeat(dist, sizes)
    order = np.lexsort((items, item_dist))[:k]  # primary key: distance; ties: item index
    crowded = cand.shape[0] < unique.num_unique and bool(item_dist[order[-1]] >= dist.max())
    return items[order], item_dist[order], crowded


def _finish_distinct(
    unique: UniqueVectors, queries: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`finish_topk` when every distinct row is one item (the common case), for all queries at once."""
    diff = unique.vectors[cand].astype(np.float64) - queries.astype(np.float64)[:, None, :]
    dist = np.sqrt(np.einsum("qcd,qcd->qc", diff, diff)).astype(np.float32)
    items = unique.members[unique.offsets[cand]]
    order = np.lexsort((items, dist), axis=-1)[:, :k]
    top, top_dist = np.take_along_axis(items, order, axis=1), np.take_along_axis(dist, order, axis=1)
    if cand.shape[1] < unique.num_unique:  # a crowded row (:func:`_finish_row`) is ranked over every row
        q64 = queries.astype(np.float64)
        for row in np.flatnonzero(top_dist[:, -1] >= dist.max(axis=1)):
            top[row], top_dist[row], _ = _finish_row(unique, q64[row], np.arange(unique.num_unique), k)
    return top, top_dist


def _items_in(unique: UniqueVectors, rows: np.ndarray) -> int:
    return int((unique.offsets[rows + 1] - unique.offsets[rows]).sum())

"""The grounding engine the agent talks to: titles in, nearest real catalogue items out.

:class:`Grounding` holds the embedder, the grounder built over the catalogue's cached title vectors, and
the titles. ``<ground>`` titles are embedded as *queries* (with the query instruction, if any) and searched
against the catalogue's *document* vectors; the final answer is ranked against every item exactly.

:func:`load_grounding` builds it from a config through the registry, the same way for built-in and plugin
embedders and grounders; :func:`build_index` does the same and reports what it did (``mgfrec index``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.config.redaction import redacted
from mgfrec.config.schema import GroundingConfig, MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.embed.base import Embedder, embedder_named, load_embedder
from mgfrec.embed.cache import cached_item_embeddings
from mgfrec.embed.cache import item_embeddings as cached_vectors
from mgfrec.grounding.base import Grounder
from mgfrec.grounding.ranking import full_scores
from mgfrec.grounding.ties import UniqueVectors
from mgfrec.registry import Registry, call_component, class_path, registered_as, registry, with_registry
from mgfrec.validation import not_utf8_at, refuse_one_string


def check_top_k(top_k: int, num_items: int, max_groundings: int = 1) -> None:
    """Refuse, before any work, a ``grounding.top_k`` above the catalogue's size: the agent's first ``<ground>``,
    possibly hours into a fit, was where it failed, naming a ``k`` the user never set. An agent that never grounds
    (``agent.max_groundings`` 0) never reads it. The line named ``--items-per-grounding``, which only ``fit``
    has, to ``sft``, ``evaluate`` and ``recommend`` too (review s32)."""
    if max_groundings > 0 and top_k > num_items:
        raise ValueError(
            f"grounding.top_k {top_k} is above the catalogue's {num_items} items: an item list cannot hold more; "
            f"give at most {num_items} (--set grounding.top_k=N; mgfrec fit: --items-per-grounding N)"
        )


def build_grounder(item_embeddings: np.ndarray, cfg: GroundingConfig, reg: Registry | None = None) -> Grounder:
    """Build the grounder named by ``cfg.grounder`` over ``item_embeddings``, with ``cfg.options`` validated. It
    gets a read-only view: the same vectors rank the whole catalogue for the answer, and a plugin grounder that
    changed them in place (centring them) changed every final score without a word (review s31)."""
    view = np.asarray(item_embeddings).view()
    view.flags.writeable = False
    return (reg or registry()).build("grounder", cfg.grounder, cfg.options, view)


class Grounding:
    """Grounds free-text titles to catalogue items (``item_idx``), and ranks the whole catalogue for answers."""

    def __init__(
        self,
        embedder: Embedder,
        grounder: Grounder,
        titles: Sequence[str],
        item_embeddings: np.ndarray,
        top_k: int = 10,
    ):
        if len(titles) != len(item_embeddings):
            raise ValueError(f"{len(titles)} titles but {len(item_embeddings)} item vectors: one per item is needed")
        self.embedder = embedder
        self.grounder = grounder
        self.titles = list(titles)
        self.item_embeddings = item_embeddings
        self.top_k = top_k

    @cached_property
    def _unique(self) -> UniqueVectors:
        return UniqueVectors.build(self.item_embeddings)

    def embed_queries(self, titles: Sequence[str]) -> np.ndarray:
        """Float32 ``[len(titles), dim]`` query vectors (with the query instruction, if configured)."""
        for title in titles:
            if (at := not_utf8_at(title)) is not None:  # bytes a Latin-1 terminal sent, or JSON "\ud800"
                raise ValueError(f"title {title!r}: not valid UTF-8 text (character {at}); type it again as UTF-8")
        vectors = call_component(self.embedder, "encode", list(titles), query=True)
        return self._checked_queries(vectors, len(titles))

    def _checked_queries(self, vectors: Any, n: int) -> np.ndarray:
        """The embedder's query vectors, refused in one line naming the embedder when they are not ``[n, dim]``
        like the catalogue's or not finite (a NaN query ranked every item last: a made-up rank, and under ``fit``
        a reward computed from it)."""
        found = np.asarray(vectors)
        dim = self.item_embeddings.shape[1]

        def which() -> str:  # named only for an error: the registry is not searched on every query
            return embedder_named(self.embedder)

        if found.shape != (n, dim):
            raise ValueError(
                f"{which()} returned query vectors of shape {found.shape} for {n} titles, not [{n}, {dim}] like the "
                "catalogue's item vectors: a bug of the embedder (or a cache made by another one)"
            )
        if not np.issubdtype(found.dtype, np.floating) or not np.isfinite(found).all():
            raise ValueError(f"{which()} returned query vectors that are not finite numbers: a bug of the embedder")
        return found.astype(np.float32, copy=False)

    def search(self, titles: Sequence[str], k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item indices int64 and L2 distances float32, both ``[len(titles), k]``, ascending (ties by index)."""
        refuse_one_string(titles, "titles", "titles")  # one title was ten rows, one per letter (review s35)
        named = "k" if k is not None else "grounding.top_k"  # the config's, when the caller gave none
        k = self.top_k if k is None else k
        if not titles:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        queries = self.embed_queries(titles)  # a title that cannot be embedded is named first
        if not 1 <= k <= len(self.titles):
            raise ValueError(f"{named}={k}: give a number of items from 1 to the catalogue's {len(self.titles)}")
        return self._checked_search(queries, k)

    def probe(self) -> None:
        """One search for the first item's own vector, checked as every search is: a plugin grounder that breaks
        its contract (indices that are not integers, distances not ascending) is named when the grounding is
        loaded, before any work, not at the policy's first ``<ground>`` mid-fit."""
        if len(self.titles):
            self._checked_search(
                np.asarray(self.item_embeddings[:1], dtype=np.float32), min(self.top_k, len(self.titles))
            )

    def _checked_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The grounder's answer for ``queries``, refused in one line naming it when it breaks the contract."""
        n = len(queries)
        answer = call_component(self.grounder, "search", queries, k)

        def who() -> str:  # named only for an error: the registry is not searched on every <ground>
            return registered_as(self.grounder, "grounder") or f"grounder ({class_path(self.grounder)})"

        if not isinstance(answer, (tuple, list)) or len(answer) != 2:  # was "too many values to unpack"
            got = f"{len(answer)} values" if isinstance(answer, (tuple, list)) else f"a {type(answer).__name__}"
            raise ValueError(f"the {who()} returned {got}, not the pair (indices, distances): a bug of the grounder")
        indices, distances = answer
        found = np.asarray(indices)

        swapped = (  # the pair in faiss's order: float "indices" beside integer "distances"
            " (it returned (distances, indices), faiss's order; search returns (indices, distances))"
            if not np.issubdtype(found.dtype, np.integer) and np.issubdtype(np.asarray(distances).dtype, np.integer)
            else ""
        )
        if found.shape != (n, k) or (found.size and (found.min() < 0 or found.max() >= len(self.titles))):
            raise ValueError(
                f"the {who()} returned item indices of shape {found.shape} in "
                f"[{found.min() if found.size else '-'}, {found.max() if found.size else '-'}], not [{n}, "
                f"{k}] in [0, {len(self.titles) - 1}]: a bug of the grounder{swapped}"
            )
        if np.shape(distances) != (n, k):
            raise ValueError(
                f"the {who()} returned distances of shape {np.shape(distances)}, "
                f"not [{n}, {k}] like its item indices: a bug of the grounder"
            )
        if not np.issubdtype(found.dtype, np.integer):
            raise ValueError(
                f"the {who()} returned item indices of type {found.dtype}, not integers: a bug of the grounder{swapped}"
            )
        if found.size and (np.diff(np.sort(found, axis=1), axis=1) == 0).any():  # an item listed twice (review s31)
            raise ValueError(f"the {who()} returned one item more than once for a query: a bug of the grounder")
        try:
            gaps = np.asarray(distances, dtype=np.float64)
        except (TypeError, ValueError):  # was "could not convert string to float", naming no grounder
            raise ValueError(f"the {who()} returned distances that are not numbers: a bug of the grounder") from None
        if not np.isfinite(gaps).all() or (np.diff(gaps, axis=1) < -1e-6 * max(1.0, np.abs(gaps).max())).any():
            raise ValueError(
                f"the {who()} returned distances that are not finite and ascending (nearest first): a bug of the "
                "grounder"
            )
        return found.astype(np.int64, copy=False), np.asarray(distances, dtype=np.float32)

    def ground(self, titles: Sequence[str], k: int | None = None) -> list[list[int]]:
        """The ``k`` (default ``grounding.top_k``) nearest items to each title, nearest first."""
        indices, _ = self.search(titles, k)
        return indices.tolist()

    def nearest(self, titles: Sequence[str]) -> list[int]:
        """The nearest item to each title, exactly, whatever ``grounding.grounder`` is: what an answer is grounded
        to by the final rankings that rank from one answered item (``answer_then_recall``, ``l2_joint``) and what a
        typed history title is read as. Through an approximate index (faiss ivf or hnsw, hnswlib) the answered item
        depended on the backend and its build (25 of 200 answers differed on CDs; review s41). A grounder that says
        it is exact (``approximate = False``) answers as before."""
        if getattr(self.grounder, "approximate", True) is False:
            return [int(row[0]) for row in self.ground(titles, k=1)]
        refuse_one_string(titles, "titles", "titles")
        if not titles:
            return []
        indices, _ = self._exact.search(self.embed_queries(titles), 1)
        return [int(i) for i in indices[:, 0]]

    @cached_property
    def _exact(self) -> Grounder:
        """An exact grounder over the catalogue, built when :meth:`nearest` first needs it."""
        from mgfrec.grounding.exact import ExactGrounder

        return ExactGrounder(self.item_embeddings)

    @cached_property
    def _title_groups(self) -> dict[str, list[int]]:
        """Catalogue title -> the items with exactly that title, in index order."""
        groups: dict[str, list[int]] = {}
        for j, title in enumerate(self.titles):
            groups.setdefault(title, []).append(j)
        return groups

    @cached_property
    def same_title(self) -> dict[int, tuple[int, ...]]:
        """Item -> every item with exactly its title (itself included), for titles several items share (CDs:
        "Greatest Hits" 61 times); items with a title of their own are absent."""
        return {j: tuple(g) for g in self._title_groups.values() if len(g) > 1 for j in g}

    @cached_property
    def title_index(self) -> dict[str, int]:
        """Catalogue title -> the first item (lowest index) with exactly that title."""
        return {title: group[0] for title, group in self._title_groups.items()}

    def item_titles(self, indices: Sequence[int]) -> list[str]:
        """Catalogue titles of item indices, in order."""
        return [self.titles[i] for i in indices]

    def full_scores(self, titles: Sequence[str], device: str | torch.device = "cpu") -> torch.Tensor:
        """Float32 ``[len(titles), N]`` negative L2 distance to every item: the exact final ranking."""
        return full_scores(self._unique, self.embed_queries(titles), device=device)


@with_registry
def load_grounding(
    ds: PreparedDataset,
    cfg: MGFRecConfig,
    *,
    embedder: Embedder | None = None,
    reg: Registry | None = None,
    progress: bool = False,
) -> Grounding:
    """Embedder from ``cfg.embedding``, cached item vectors of ``ds``, grounder from ``cfg.grounding``."""
    embedder = embedder if embedder is not None else load_embedder(cfg.embedding, reg)
    vectors = cached_vectors(ds, cfg.embedding, embedder, progress=progress)
    grounder = build_grounder(vectors, cfg.grounding, reg)  # the caller's registry, as the rest of its components
    grounding = Grounding(embedder, grounder, ds.titles, vectors, top_k=cfg.grounding.top_k)
    grounding.probe()
    return grounding


@dataclass
class IndexBuild:
    """What :func:`build_index` built (``grounding``) and the facts of how (``report``, ``mgfrec index
    build --json``'s keys)."""

    ds: PreparedDataset
    grounding: Grounding
    report: dict[str, Any] = field(default_factory=dict)


@with_registry
def build_index(
    ds: PreparedDataset,
    cfg: MGFRecConfig,
    *,
    progress: bool = False,
    status: Callable[[str], contextlib.AbstractContextManager[Any]] = lambda _: contextlib.nullcontext(),
    on_miss: Callable[[int, Path], None] | None = None,
    reg: Registry | None = None,
) -> IndexBuild:
    """Embeddings of ``ds``'s titles from the cache (or encoded and stored), then the configured grounder over
    them; with timings, cache hit or miss and the grounder's facts. ``status(message)`` wraps the grounder's
    build (the CLI shows a spinner). ``on_miss(titles, cache path)`` is told before titles are embedded."""
    if ds.num_items == 0:
        raise ValueError(f"{ds.root}: the data set holds 0 items (prepared with --allow-empty); nothing to index")
    embedder = load_embedder(cfg.embedding)
    cached = cached_item_embeddings(ds, cfg.embedding, embedder, progress=progress, on_miss=on_miss)
    start = time.perf_counter()
    with status(f"building the '{cfg.grounding.grounder}' grounder over {ds.num_items:,} items"):
        grounder = build_grounder(cached.vectors, cfg.grounding)
    report = {
        "data": str(ds.root),
        "items": ds.num_items,
        "dim": int(cached.vectors.shape[1]),
        "distinct_vectors": getattr(getattr(grounder, "unique", None), "num_unique", None),
        "embedder": cfg.embedding.embedder,
        "model_id": embedder.model_id,
        "cache_path": str(cached.path),
        "cache": "hit" if cached.hit else "built" if cached.written else "not written",  # (a read-only folder)
        "embedding_seconds": round(cached.seconds, 3),
        "grounder": cfg.grounding.grounder,
        "grounder_options": redacted(cfg)["grounding"]["options"],  # a plugin grounder's key is never printed
        "approximate": getattr(grounder, "approximate", None),  # optional for plugin grounders
        "grounder_build_seconds": round(time.perf_counter() - start, 3),
    }
    grounding = Grounding(embedder, grounder, ds.titles, cached.vectors, top_k=cfg.grounding.top_k)
    grounding.probe()  # a plugin grounder breaking its contract: named by `index build` too
    # titles that differ but got one vector (MiniLM reads emoji-only titles, or one long unknown word, as [UNK]):
    # they ground and rank as one, which the counts show
    report["distinct_titles"] = len(set(ds.titles))
    groups = _shared_vector_groups(ds.titles, grounding._unique)
    report["titles_sharing_a_vector"] = sum(len(group) for group in groups)
    # "Abbey Road" and "ABBEY ROAD": an uncased model (MiniLM) reads them alike; the note says so
    report["titles_differing_only_in_case"] = sum(len(g) for g in groups if len({t.casefold() for t in g}) == 1)
    return IndexBuild(ds, grounding, report)


def _shared_vector_groups(titles: Sequence[str], unique: UniqueVectors) -> list[set[str]]:
    """The groups of distinct titles that have one vector, each of two titles or more."""
    groups = (
        {titles[int(j)] for j in unique.members[unique.offsets[row] : unique.offsets[row + 1]]}
        for row in range(unique.num_unique)
    )
    return [group for group in groups if len(group) > 1]

"""Grounding on the real shared CDs catalogue with real MiniLM vectors (367 of its titles are duplicates)."""

from __future__ import annotations

import numpy as np
import pytest

from mgfrec.config.schema import GroundingConfig
from mgfrec.grounding.engine import build_grounder
from mgfrec.grounding.quality import recall_against_exact

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def queries(cds, minilm):
    """Titles an agent might write: lower-cased, cut short, or reworded, none verbatim from the catalogue."""
    titles, _ = cds
    rng = np.random.default_rng(0)
    picked = [titles[i] for i in rng.choice(len(titles), 300, replace=False)]
    texts = [t.lower()[: max(4, len(t) // 2)] for t in picked[:150]] + [f"albums like {t}" for t in picked[150:]]
    texts += ["jazz piano trio", "christmas songs for kids", "90s grunge rock", "greatest hits live"]
    return minilm.encode(texts, query=True)


def with_more_duplicates(titles: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The catalogue with every 7th title appended again, in reverse order (the cache's row gather)."""
    extra = list(range(0, len(titles), 7))[::-1]
    return titles + [titles[i] for i in extra], np.concatenate([vectors, vectors[extra]])


def check_tie_rule(indices: np.ndarray, distances: np.ndarray, titles: list[str], vectors: np.ndarray) -> None:
    """Equal distances in index order; a duplicated title strictly inside the top-k has all its copies there."""
    for row_idx, row_dist in zip(indices, distances, strict=False):
        same = row_dist[1:] == row_dist[:-1]
        assert (row_idx[1:][same] > row_idx[:-1][same]).all()
        for i, d in zip(row_idx, row_dist, strict=False):
            if d < row_dist[-1]:
                copies = np.flatnonzero((vectors == vectors[i]).all(axis=1))
                assert set(copies) <= set(row_idx.tolist()), titles[i]


@pytest.mark.parametrize("duplicated", [False, True], ids=["cds", "cds+duplicates"])
def test_exact_and_faiss_flat_return_the_same_topk(cds, queries, duplicated):
    titles, vectors = cds
    if duplicated:
        titles, vectors = with_more_duplicates(titles, vectors)
    exact = build_grounder(vectors, GroundingConfig(grounder="exact"))
    flat = build_grounder(vectors, GroundingConfig(grounder="faiss", options={"index": "flat"}))
    exact_idx, exact_dist = exact.search(queries, 10)
    flat_idx, flat_dist = flat.search(queries, 10)
    np.testing.assert_array_equal(exact_idx, flat_idx)
    np.testing.assert_array_equal(exact_dist, flat_dist)
    check_tie_rule(exact_idx, exact_dist, titles, vectors)


def test_catalogue_titles_ground_to_their_first_copy(cds, minilm):
    titles, vectors = cds
    titles, vectors = with_more_duplicates(titles, vectors)
    grounder = build_grounder(vectors, GroundingConfig(grounder="faiss"))
    duplicated = [t for t in dict.fromkeys(titles) if titles.count(t) > 1][:20]
    indices, distances = grounder.search(minilm.encode(duplicated, query=True), 3)
    for title, row, dist in zip(duplicated, indices, distances, strict=False):
        first = titles.index(title)
        assert row[0] == first and dist[0] == pytest.approx(0, abs=1e-5)
        assert titles[row[1]] == title and row[1] > first  # the next copy follows, by index


@pytest.mark.parametrize(
    ("name", "options"),
    [("faiss", {"index": "hnsw"}), ("hnswlib", {"num_threads": 1})],
    ids=["faiss-hnsw", "hnswlib"],
)
def test_graph_indexes_keep_high_recall_and_the_tie_rule(cds, queries, name, options):
    titles, vectors = cds
    grounder = build_grounder(vectors, GroundingConfig(grounder=name, options=options))
    assert recall_against_exact(grounder, vectors, queries, 10) >= 0.9
    check_tie_rule(*grounder.search(queries, 10), titles, vectors)

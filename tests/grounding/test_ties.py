"""The tie rule: equal distances come out in ascending item index, in every backend."""

from __future__ import annotations

import numpy as np
import pytest

from mgfrec.config.schema import GroundingConfig
from mgfrec.grounding.engine import build_grounder
from mgfrec.grounding.ties import UniqueVectors, finish_topk

BACKENDS = [
    ("exact", {}),
    ("faiss", {"index": "flat"}),
    ("faiss", {"index": "ivf"}),
    ("faiss", {"index": "hnsw"}),
    ("hnswlib", {"num_threads": 1}),
]
IDS = ["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "hnswlib"]

# Integer points around the origin: many distinct items at exactly equal distance from the query (0, 0),
# plus exact duplicates (items 5 and 7 repeat item 0; item 8 repeats item 4).
POINTS = np.array(
    [[1, 0], [0, 1], [-1, 0], [0, -1], [2, 0], [1, 0], [0, 2], [1, 0], [2, 0], [3, 0], [-2, 0]], dtype=np.float32
)


def test_unique_vectors_group_duplicates_in_item_order():
    unique = UniqueVectors.build(POINTS)
    assert unique.num_items == 11 and unique.num_unique == 8 and unique.has_duplicates
    # distinct rows are numbered by first occurrence
    np.testing.assert_array_equal(unique.inverse, [0, 1, 2, 3, 4, 0, 5, 0, 4, 6, 7])
    groups = [unique.members[unique.offsets[u] : unique.offsets[u + 1]].tolist() for u in range(unique.num_unique)]
    assert groups == [[0, 5, 7], [1], [2], [3], [4, 8], [6], [9], [10]]
    np.testing.assert_array_equal(unique.vectors, POINTS[[0, 1, 2, 3, 4, 6, 9, 10]])


def test_without_duplicates_distinct_row_is_item():
    unique = UniqueVectors.build(POINTS[:5])
    np.testing.assert_array_equal(unique.inverse, np.arange(5))
    assert not unique.has_duplicates


@pytest.mark.parametrize(("name", "options"), BACKENDS, ids=IDS)
def test_every_backend_orders_equal_distances_by_item_index(name, options):
    grounder = build_grounder(POINTS, GroundingConfig(grounder=name, options=options))
    indices, distances = grounder.search(np.zeros((1, 2), dtype=np.float32), 11)
    # distance 1: items 0,1,2,3,5,7; distance 2: items 4,6,8,10; distance 3: item 9
    assert indices[0].tolist() == [0, 1, 2, 3, 5, 7, 4, 6, 8, 10, 9]
    np.testing.assert_array_equal(distances[0], [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3])
    # a cut inside a group of ties keeps the smallest indices
    assert grounder.search(np.zeros((1, 2), dtype=np.float32), 3)[0][0].tolist() == [0, 1, 2]
    # from (2, 0): its duplicates 4, 8 at distance 0, then items 0, 5, 7 (all (1, 0)) and 9 (3, 0) at 1
    assert grounder.search(np.array([[2, 0]], dtype=np.float32), 6)[0][0].tolist() == [4, 8, 0, 5, 7, 9]


@pytest.mark.parametrize(("name", "options"), BACKENDS[:2], ids=IDS[:2])
def test_more_ties_than_the_margin_still_keep_the_lowest_items(name, options):
    """200 one-hot vectors are all at distance 1 from the origin: the exact backend's topk kept an arbitrary 21 of
    them as candidates and answered items 126-130 where the tie rule (and faiss flat) gives 0-4 (review s30)."""
    items = np.eye(200, dtype=np.float32)
    grounder = build_grounder(items, GroundingConfig(grounder=name, options=options))
    queries = np.zeros((3, 200), dtype=np.float32)
    queries[1, 150] = 1.0  # a row that is not crowded: item 150 first, then the lowest of the tied rest
    queries[2, :] = 0.5  # every item tied again, at another distance
    indices, distances = grounder.search(queries, 5)
    assert indices.tolist() == [[0, 1, 2, 3, 4], [150, 0, 1, 2, 3], [0, 1, 2, 3, 4]]
    assert distances[0].tolist() == [1.0] * 5


def test_finish_topk_ignores_missing_candidates_and_falls_back_when_too_few():
    unique = UniqueVectors.build(POINTS)
    query = np.array([[1, 0]], dtype=np.float32)
    # faiss marks "no result" with -1; two real candidates (items 0,5,7 and item 4,8) are enough for k=4
    indices, distances = finish_topk(unique, query, np.array([[4, 0, -1, -1]]), 4)
    assert indices[0].tolist() == [0, 5, 7, 4]
    np.testing.assert_allclose(distances[0], [0, 0, 0, 1])
    # one candidate cannot fill k=5: every distinct row is scored instead
    indices, _ = finish_topk(unique, query, np.array([[0, -1]]), 5)
    assert indices[0].tolist() == [0, 5, 7, 4, 8]


def test_a_proposal_crowded_with_ties_is_ranked_over_every_row():
    """A backend proposes k + TIE_MARGIN rows; with more distinct vectors than that at one distance (symmetric or
    one-hot vectors) it may propose any of them, and finish_topk kept the proposal's lowest, not the tie rule's:
    faiss flat and exact then disagreed (noted in review s41). A row whose farthest proposal ties with its k-th is
    ranked over every distinct row; one that is not crowded keeps its proposal."""
    eye = np.eye(200, dtype=np.float32)
    proposal = np.arange(100, 121)[None, :]  # 21 of the 200 rows tied at distance 1 from the origin
    origin = np.zeros((1, 200), dtype=np.float32)
    assert finish_topk(UniqueVectors.build(eye), origin, proposal, 5)[0].tolist() == [[0, 1, 2, 3, 4]]
    with_duplicates = UniqueVectors.build(np.concatenate([eye, eye[:3]]))  # items 200-202 repeat 0-2
    assert finish_topk(with_duplicates, origin, proposal, 5)[0].tolist() == [[0, 1, 2, 3, 4]]
    near = origin.copy()
    near[0, 110] = 1.0  # item 110 at 0, the other 20 proposed at sqrt(2): the farthest ties with the 5th
    assert finish_topk(UniqueVectors.build(eye), near, proposal, 5)[0].tolist() == [[110, 0, 1, 2, 3]]
    points = np.arange(40, dtype=np.float32)[:, None]  # one per distance: never crowded, the proposal kept
    picked = finish_topk(UniqueVectors.build(points), np.zeros((1, 1), np.float32), np.arange(21)[None, :], 5)
    assert picked[0].tolist() == [[0, 1, 2, 3, 4]]

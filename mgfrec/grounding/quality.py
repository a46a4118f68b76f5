"""How good an approximate grounder is: recall@k of its top-k against the exact top-k.

Recall@k is the share of the exact top-k items that the grounder also returns in its top-k, averaged over
queries. Both lists follow the tie rule, so a grounder that finds every true neighbour scores exactly 1.0
even on a catalogue full of duplicated titles.
"""

from __future__ import annotations

import numpy as np

from mgfrec.grounding.base import Grounder
from mgfrec.grounding.exact import ExactGrounder


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of ``|found[q] & truth[q]| / k`` for two int ``[Q, k]`` index arrays."""
    found, truth = np.asarray(found), np.asarray(truth)
    if found.shape != truth.shape or found.ndim != 2:
        raise ValueError(f"found {found.shape} and truth {truth.shape} must both be [num_queries, k]")
    if found.shape[0] == 0:
        return 1.0
    hits = [np.intersect1d(f, t, assume_unique=True).size for f, t in zip(found, truth, strict=False)]
    return float(np.mean(hits) / found.shape[1])


def recall_against_exact(
    grounder: Grounder,
    item_embeddings: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    exact: Grounder | None = None,
) -> float:
    """Recall@k of ``grounder`` against exact search over the same ``item_embeddings``.

    Pass ``exact`` to reuse an :class:`ExactGrounder` (or faiss flat) already built over those items.
    """
    reference = exact if exact is not None else ExactGrounder(item_embeddings)
    found, _ = grounder.search(queries, k)
    truth, _ = reference.search(queries, k)
    return recall_at_k(found, truth)

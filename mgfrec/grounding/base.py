"""What a ``grounder`` component is: top-k nearest catalogue items to query vectors by L2 distance.

A component registered under ``mgfrec.grounder`` is a class built as ``cls(item_embeddings, options)`` from
the float32 ``[N, d]`` item matrix (row i = item_idx i) and its validated ``Options``, or as
``cls(item_embeddings)`` when it declares none. Its ``search`` returns item indices and L2 distances in
ascending distance, with equal distances in ascending item index: the tie rule of
:mod:`mgfrec.grounding.ties`, which every built-in backend applies through
:func:`mgfrec.grounding.ties.finish_topk`.

Only the top-k used by ``<ground>`` goes through a grounder. The final ranking of every item (metrics,
reward) is always exact and lives in :mod:`mgfrec.grounding.ranking`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from mgfrec.registry import MissingExtraError

__all__ = ["Grounder", "MissingExtraError"]


@runtime_checkable
class Grounder(Protocol):
    """Nearest items to query vectors.

    ``search`` is all a plugin must provide. The built-in grounders also expose ``num_items``, ``dim`` and
    ``approximate`` (False when ``search`` always returns the true nearest items: exact, faiss flat), which
    reports such as ``mgfrec index build`` show when present.
    """

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Item indices int64 ``[Q, k]`` and L2 distances float32 ``[Q, k]``, ascending, ties by item index."""
        ...

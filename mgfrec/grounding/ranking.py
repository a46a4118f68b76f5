"""Full ranking: every catalogue item scored against an answer title's embedding (BIGRec-style final ranking).

The agent's final answer is a title; following BIGRec (paper section 4.1) every item is ranked by L2 distance
to its embedding, and the target's rank in that list gives the metrics and the NDCG reward (eq. 7).

**Why this is always exact, whatever ``grounding.grounder`` says.** An approximate index only knows its top
few candidates, but the reward needs the target's rank anywhere in the catalogue (rank 3,000 still earns
1/log2(3001)). Approximating it would make the reward and every reported metric depend on the index
backend and its random build. It is also cheap: one ``[Q, d] x [d, N]`` matrix product per batch of answers,
already the whole cost of exact search. Backends speed up only the repeated top-k of ``<ground>`` calls.

Scores are *negative* L2 distances (higher is better) so they plug straight into
:func:`mgfrec.ranking.metrics.target_ranks`. Items with identical vectors (duplicated titles) get bit-identical
scores, so the pessimistic tie rule of the metrics treats them as true ties. Scores are float32, from the
expansion |q|^2 + |x|^2 - 2 q.x: near a distance of zero that expansion cannot resolve distances below about
5e-4 (for unit-length vectors), so an item that close to the answer may tie with it or pass it, and may order
differently here than in a grounder's float64 top-k. Only near-twin titles are that close (identical vectors
are exact ties, above); far from zero the resolution is about 1e-7. A catalogue far from the origin (its mean more
than 10 times its spread away: an embedder that does not normalise) is shifted to its mean first
(:attr:`UniqueVectors.centre`), where the expansion would otherwise round the distances away.
"""

from __future__ import annotations

import numpy as np
import torch

from mgfrec.grounding.ties import UniqueVectors


def full_scores(
    item_embeddings: np.ndarray | torch.Tensor | UniqueVectors,
    queries: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Float32 ``[Q, N]`` negative L2 distance of every item to every query (higher = closer).

    Pass a prebuilt :class:`UniqueVectors` to skip finding duplicates on every call.
    """
    if isinstance(item_embeddings, UniqueVectors):
        unique = item_embeddings
    else:
        items = item_embeddings.detach().cpu().numpy() if isinstance(item_embeddings, torch.Tensor) else item_embeddings
        unique = UniqueVectors.build(items)
    q = torch.as_tensor(queries, dtype=torch.float32, device=device)
    if q.ndim == 1:
        q = q.unsqueeze(0)
    if q.ndim != 2 or q.shape[1] != unique.dim:
        raise ValueError(
            f"queries must be [num_queries, {unique.dim}] like the item embeddings, got shape {tuple(q.shape)}"
        )
    x = torch.from_numpy(unique.vectors).to(device)
    if unique.centre is not None:  # far from the origin: shifted first, as the exact grounder does (ties.py)
        centre = torch.from_numpy(unique.centre).to(device)
        x, q = x - centre, q - centre
    with torch.no_grad():  # not inference_mode: callers may edit the scores in place
        sq = (q * q).sum(dim=1, keepdim=True) + (x * x).sum(dim=1).unsqueeze(0) - 2.0 * (q @ x.T)
        distinct = sq.clamp_min_(0.0).sqrt_().neg_()  # rounding can push a true 0 slightly below zero
        inverse = torch.from_numpy(unique.inverse).to(device)
        return distinct.index_select(1, inverse)  # duplicates copy one column: exact ties

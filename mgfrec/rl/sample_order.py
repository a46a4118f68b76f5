"""Which train samples each GRPO step draws: the positions of an endless sequence of seeded per-epoch permutations,
so every sample comes once per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Epoch ``epoch``'s order of ``n`` train samples: a permutation drawn from ``(seed, epoch)`` (epoch 0's from
    ``seed`` alone, as before). It was ``permutation(seed + epoch)``: seed 0's second epoch was seed 1's first, and
    runs of consecutive seeds shared their sample orders (review s39)."""
    return np.random.default_rng(seed if epoch == 0 else [seed, epoch]).permutation(n)


def drawn(samples: Sequence[T], seed: int, start: int, size: int) -> list[T]:
    """The ``size`` samples at positions ``start``.. of the sequence of :func:`epoch_order` permutations; a batch
    crossing an epoch's end takes the next epoch's first samples (each epoch's order drawn once)."""
    n, orders, out = len(samples), {}, []
    for pos in range(start, start + size):
        epoch, offset = divmod(pos, n)
        if epoch not in orders:
            orders[epoch] = epoch_order(seed, epoch, n)
        out.append(samples[int(orders[epoch][offset])])
    return out

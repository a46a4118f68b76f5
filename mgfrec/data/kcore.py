"""Iterative k-core filtering over integer-coded interaction rows (used by sources that filter logs)."""

from __future__ import annotations

import numpy as np


def k_core(users: np.ndarray, items: np.ndarray, alive: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core over the rows where ``alive`` holds: rows of users or items with fewer than ``k``
    alive rows are removed until none is left. Returns the surviving mask and the number of rounds that
    removed something. ``users`` and ``items`` are non-negative integer codes."""
    alive = alive.copy()
    if k <= 1 or not alive.any():
        return alive, 0
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    rounds = 0
    while True:
        user_count = np.bincount(users[alive], minlength=n_users)
        item_count = np.bincount(items[alive], minlength=n_items)
        weak = alive & ((user_count[users] < k) | (item_count[items] < k))
        if not weak.any():
            return alive, rounds
        alive &= ~weak
        rounds += 1

"""The synthetic generator's hidden state, for measuring ceilings: what no model trained on the log can know.

:class:`SyntheticWorld` replays :mod:`mgfrec.data.sources.synthetic`'s draws to learn each user's favourite
genres, and gives the exact distribution the generator draws a user's next item from. It reads and writes no
files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mgfrec.data.sources.synthetic import GENRES, SyntheticOptions, _draw, _first_unread_volume


class SyntheticWorld:
    """The generator's hidden state, for measuring ceilings: what no model trained on the log can know.

    ``next_item_probabilities`` is the exact distribution the generator draws a user's next item from,
    given the user's favourite genres and what they have consumed. Ranking by it is the Bayes-optimal
    ranking (no method can have a higher expected NDCG), which ``tools/choice_headroom.py --oracle`` uses to
    bound what any recommender, the agent included, can reach on this data.
    """

    def __init__(self, options: SyntheticOptions | None = None):
        self.options = options or SyntheticOptions()
        self._cat, users = _draw(self.options)
        self.item_ids: np.ndarray = self._cat.items["item_id"].to_numpy()
        self._row = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self._fav = {u.user_id: u.favourite_genres for u in users}

    def favourite_genres(self, user_id: str) -> list[str]:
        genres = list(GENRES)[: self.options.n_genres]
        return [genres[g] for g in self._fav[user_id]]

    def next_item_probabilities(self, user_id: str, history: Sequence[str]) -> np.ndarray:
        """P(next item) over ``item_ids`` for ``user_id`` after ``history`` (item ids, oldest first)."""
        cat, opt = self._cat, self.options
        if user_id not in self._fav:
            raise KeyError(f"user {user_id!r} is not in the synthetic world (seed {opt.seed})")
        if not history:
            raise ValueError("the next item after an empty history is the first pick; give at least one item")
        rows = [self._row[i] for i in history]
        unread = np.ones(len(cat.popularity), dtype=bool)
        unread[rows] = False
        in_fav = np.isin(cat.genre_of, self._fav[user_id])

        def drawn(allowed: np.ndarray) -> np.ndarray | None:  # _pick's distribution, moved like _first_unread_volume
            w = np.where(allowed, cat.popularity, 0.0)
            if w.sum() <= 0:
                return None
            out = np.zeros(len(w))
            for i in np.flatnonzero(w):
                out[_first_unread_volume(cat, unread, int(i))] += w[i]
            return out / w.sum()

        focus, anything = drawn(in_fav & unread), drawn(unread)
        assert anything is not None, "every item is consumed"  # histories are shorter than the catalogue
        fresh = anything if focus is None else opt.genre_focus * focus + (1 - opt.genre_focus) * anything
        prev = rows[-1]
        p = np.zeros(len(cat.popularity))
        rest = 1.0
        nxt = int(cat.next_volume[prev])
        if nxt != -1 and unread[nxt]:
            p[nxt] += opt.series_continue
            rest -= opt.series_continue
        same = drawn(unread & (cat.artist_of == cat.artist_of[prev]))
        if same is None:
            return p + rest * fresh
        return p + rest * (opt.same_artist * same + (1 - opt.same_artist) * fresh)

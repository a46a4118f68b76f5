"""The ``synthetic`` data source: a seeded, music-like catalogue and users whose sequences can be learned.

It is the embedded default of ``mgfrec demo`` and of the fast tests, so its default size is small
(600 users, 1,500 items, 5-20 interactions per user) and it needs no file, network or model.

Generative process (every draw comes from one ``numpy.random.Generator`` seeded with ``seed``, in a fixed
order, so one seed gives identical frames):

1. **Genres.** The first ``n_genres`` of a fixed list of genres, each with its own vocabulary of album
   words and tag phrases (Jazz: "Midnight", "Velvet", "Bebop"...; Heavy Metal: "Iron", "Thunder"...).
2. **Artists.** ``n_artists`` unique names ("Nina Calloway", "The Iron Wolves"), each with one genre
   (every genre gets at least one artist) and a popularity weight ``1 / rank ** popularity_skew``.
3. **Items.** ``n_items`` releases shared out among the artists (each gets at least one). A release is a
   standalone album or, with probability ``series_fraction``, a series of 2-4 volumes. Titles read like
   ``"Nina Calloway - Midnight Velvet Sessions, Vol. 2 (Cool Jazz)"``: the artist, album words drawn from
   the genre's vocabulary, the volume, and a genre tag. Items carry the attribute columns ``genre``,
   ``artist``, ``series`` (empty for standalone albums) and ``volume`` (0 for standalone albums). An item's
   popularity is its artist's weight times a log-normal factor of its own.
4. **Users.** Each user likes one or two genres and has a sequence length drawn uniformly from
   ``[min_length, max_length]``. Nobody consumes an item twice. After an item ``prev``:

   - if ``prev`` has a next volume not yet consumed, it comes next with probability ``series_continue``;
   - otherwise, with probability ``same_artist``, another item by ``prev``'s artist;
   - otherwise a *fresh pick*: with probability ``genre_focus`` from one of the user's genres, else from the
     whole catalogue (the noise), in both cases proportional to popularity.

   A fresh pick that lands inside a series is moved to the series' first unread volume, because people
   start a series at its beginning. The first item is a fresh pick.
5. **Time.** Each user is active during a window of 10-60% of one year placed uniformly in that year, with
   event times drawn uniformly inside it and sorted (strictly increasing per user, integer seconds). Windows
   overlap, so users interleave and the R2ec global temporal split puts every user's late events in valid
   and test. Ratings (1-5) are higher for items in the user's genres.

Why the structure is learnable: the target follows from the last history item by a rule that the history
shows (the next volume of a series whose earlier volumes are in the history; another album by the same
artist), and the remaining picks lean towards genres that the history reveals and towards popular items.
The titles carry the artist, series, volume and genre words, so a text model sees the same structure that
an id-based model learns from co-occurrence. ``tests/data/test_synthetic.py`` checks that a two-line rule
("next volume, else the last artist's most popular unread item") hits the test target far above chance.

This module must not read or write files: ``mgfrec data prepare synthetic`` writes the prepared folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mgfrec.data.raw import BadInputError, RawLog, ReadReport
from mgfrec.data.sources.synthetic_vocabulary import ALBUM_FORMS, BAND_NOUNS, FIRST_NAMES, GENRES, LAST_NAMES

_YEAR_S = 365 * 24 * 3600
_EPOCH = 1_640_995_200  # 2022-01-01 UTC: timestamps look like real Unix seconds


_MAX_WEIGHT_DIGITS = 200  # the least popular artist's weight stays above 1e-200, far from float64's underflow


class SyntheticOptions(BaseModel):
    """Size, seed and strength of each structure of the synthetic data set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, description="seed of the one random generator; same seed -> identical data")
    # bounded: n_users=1e12 was accepted and ran for more than ten minutes without a line of progress
    n_users: int = Field(600, ge=1, le=1_000_000, description="at most 1,000,000")
    n_items: int = Field(1500, ge=1, le=1_000_000, description="at most 1,000,000")
    n_genres: int = Field(8, ge=1, le=len(GENRES), description=f"at most {len(GENRES)} (the built-in genres)")
    n_artists: int = Field(150, ge=1, le=1_000_000, description="at most 1,000,000")
    min_length: int = Field(5, ge=2, description="fewest interactions per user (2 gives one sample)")
    max_length: int = Field(20, ge=2, le=10_000, description="most interactions per user, at most 10,000")
    series_fraction: float = Field(0.25, ge=0, le=1, description="share of releases that are 2-4 volume series")
    series_continue: float = Field(0.7, ge=0, le=1, description="P(next volume | last item has an unread one)")
    same_artist: float = Field(0.3, ge=0, le=1, description="P(another item by the last item's artist)")
    genre_focus: float = Field(0.8, ge=0, le=1, description="P(a fresh pick is from the user's genres); rest is noise")
    popularity_skew: float = Field(0.8, ge=0, description="Zipf exponent of artist popularity (0 = uniform)")

    @model_validator(mode="after")
    def _sizes(self) -> SyntheticOptions:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be >= min_length ({self.min_length})")
        if self.n_artists > self.n_items:
            raise ValueError(
                f"n_artists ({self.n_artists}) must be <= n_items ({self.n_items}): each artist has an item"
            )
        if self.n_artists < self.n_genres:
            raise ValueError(
                f"n_artists ({self.n_artists}) must be >= n_genres ({self.n_genres}): each genre has an artist"
            )
        if self.max_length > self.n_items:
            raise ValueError(
                f"max_length ({self.max_length}) must be <= n_items ({self.n_items}): nobody repeats an item"
            )
        if self.n_artists > 1 and self.popularity_skew * math.log10(self.n_artists) > _MAX_WEIGHT_DIGITS:
            most = _MAX_WEIGHT_DIGITS / math.log10(self.n_artists)
            raise ValueError(
                f"popularity_skew ({self.popularity_skew:g}) is too large for n_artists ({self.n_artists}): the "
                f"least popular artist's weight 1/{self.n_artists}**{self.popularity_skew:g} underflows to 0; "
                f"at most {most:.4g} here"
            )
        return self


@dataclass(frozen=True)
class _Catalogue:
    items: pd.DataFrame
    genre_of: np.ndarray  # item -> genre index
    artist_of: np.ndarray  # item -> artist index
    next_volume: np.ndarray  # item -> item index of the next volume, or -1
    series_start: np.ndarray  # item -> item index of volume 1 of its series (itself if standalone)
    popularity: np.ndarray  # item -> unnormalised weight


def _artist_names(rng: np.random.Generator, genres: list[str], n: int) -> tuple[list[str], np.ndarray]:
    """``n`` unique artist names and each artist's genre index (every genre used at least once)."""
    genre_idx = rng.permutation(np.arange(n) % len(genres))
    names: list[str] = []
    seen: set[str] = set()
    for g in genre_idx:
        words = GENRES[genres[g]][0]
        for attempt in range(1000):
            if rng.random() < 0.5 and attempt < 500:
                name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            else:  # band names borrow a genre word, which makes the artist itself hint at the genre
                name = f"The {rng.choice(words)} {rng.choice(BAND_NOUNS)}"
                if attempt >= 500:  # pools exhausted: a numbered name keeps names unique
                    name += f" {attempt - 499}"
            if name not in seen:
                break
        seen.add(name)
        names.append(name)
    return names, genre_idx


def _numbered(album: str, taken: set[str], start: int) -> str:
    """``album`` with the first number from ``start`` that makes it a name not in ``taken``."""
    n = start
    while f"{album} {n}" in taken:
        n += 1
    return f"{album} {n}"


def _catalogue(rng: np.random.Generator, opt: SyntheticOptions) -> _Catalogue:
    genres = list(GENRES)[: opt.n_genres]
    names, artist_genre = _artist_names(rng, genres, opt.n_artists)
    artist_weight = 1.0 / (rng.permutation(opt.n_artists) + 1.0) ** opt.popularity_skew
    quota = rng.multinomial(opt.n_items - opt.n_artists, np.full(opt.n_artists, 1 / opt.n_artists)) + 1
    rows: list[dict[str, object]] = []
    genre_of, artist_of, next_volume, series_start = [], [], [], []
    for a, name in enumerate(names):
        words, tags = GENRES[genres[artist_genre[a]]]
        albums: set[str] = set()
        left = int(quota[a])
        while left > 0:
            volumes = int(rng.integers(2, 5)) if rng.random() < opt.series_fraction else 1
            volumes = min(volumes, left)
            crowded = len(albums) >= len(words) * (len(words) - 1) * len(ALBUM_FORMS) // 2
            for attempt in range(100):
                pair = rng.choice(len(words), size=2, replace=False)
                album = f"{words[pair[0]]} {words[pair[1]]} {rng.choice(ALBUM_FORMS)}".strip()
                if crowded:  # half its names taken: a numbered one at once (near n_items=1,000,000 the draws
                    # below failed 50 times per release, for more than ten minutes; review s39)
                    album = _numbered(album, albums, len(albums))
                    break
                if attempt >= 50:  # an artist with many releases can run out of word pairs
                    album += f" {attempt - 48}"
                if album not in albums:
                    break
            albums.add(album)
            tag = str(rng.choice(tags))
            first = len(rows)
            for v in range(1, volumes + 1):
                vol = f", Vol. {v}" if volumes > 1 else ""
                rows.append(
                    {
                        "title": f"{name} - {album}{vol} ({tag})",
                        "genre": genres[artist_genre[a]],
                        "artist": name,
                        "series": album if volumes > 1 else "",
                        "volume": str(v if volumes > 1 else 0),
                    }
                )
                genre_of.append(artist_genre[a])
                artist_of.append(a)
                next_volume.append(len(rows) if v < volumes else -1)
                series_start.append(first)
            left -= volumes
    items = pd.DataFrame(rows, columns=["title", "genre", "artist", "series", "volume"], dtype=str)
    width = len(str(len(items)))
    items.insert(0, "item_id", [f"S{i:0{width}d}" for i in range(len(items))])
    artist_of_arr = np.asarray(artist_of, dtype=np.int64)
    popularity = artist_weight[artist_of_arr] * rng.lognormal(0.0, 0.5, size=len(items))
    return _Catalogue(
        items=items.astype(str),
        genre_of=np.asarray(genre_of, dtype=np.int64),
        artist_of=artist_of_arr,
        next_volume=np.asarray(next_volume, dtype=np.int64),
        series_start=np.asarray(series_start, dtype=np.int64),
        popularity=popularity,
    )


def _pick(rng: np.random.Generator, weights: np.ndarray, allowed: np.ndarray) -> int | None:
    """An allowed item drawn in proportion to ``weights``; None when nothing is allowed."""
    w = np.where(allowed, weights, 0.0)
    total = w.sum()
    if total <= 0:
        return None
    return int(rng.choice(len(w), p=w / total))


def _first_unread_volume(cat: _Catalogue, unread: np.ndarray, item: int) -> int:
    """People start a series at its beginning: a pick inside one moves to its first unread volume."""
    v = int(cat.series_start[item])
    while v != -1 and not unread[v]:
        v = int(cat.next_volume[v])
    return item if v == -1 else v


def _next_item(
    rng: np.random.Generator,
    cat: _Catalogue,
    in_fav: np.ndarray,
    unread: np.ndarray,
    prev: int | None,
    opt: SyntheticOptions,
) -> int:
    """One step of a user's sequence after ``prev`` (None for the first item), by the module docstring's rules."""
    item: int | None = None
    if prev is not None:
        nxt = int(cat.next_volume[prev])
        if nxt != -1 and unread[nxt] and rng.random() < opt.series_continue:
            item = nxt
        elif rng.random() < opt.same_artist:
            item = _pick(rng, cat.popularity, unread & (cat.artist_of == cat.artist_of[prev]))
            item = None if item is None else _first_unread_volume(cat, unread, item)
    if item is None:  # a fresh pick
        pool = in_fav & unread if rng.random() < opt.genre_focus else unread
        item = _pick(rng, cat.popularity, pool)
        if item is None:  # the user has read all of their genres: fall back to anything unread
            item = _pick(rng, cat.popularity, unread)
        item = _first_unread_volume(cat, unread, int(item))  # type: ignore[arg-type]  # max_length <= n_items
    return item


def _sequence(
    rng: np.random.Generator, cat: _Catalogue, fav: np.ndarray, length: int, opt: SyntheticOptions
) -> list[int]:
    """One user's item sequence, following the rules in the module docstring."""
    unread = np.ones(len(cat.popularity), dtype=bool)
    in_fav = np.isin(cat.genre_of, fav)
    seq: list[int] = []
    while len(seq) < length:
        item = _next_item(rng, cat, in_fav, unread, seq[-1] if seq else None, opt)
        unread[item] = False
        seq.append(item)
    return seq


@dataclass(frozen=True)
class _User:
    user_id: str
    favourite_genres: np.ndarray
    sequence: list[int]
    times: np.ndarray
    ratings: np.ndarray


def _draw(opt: SyntheticOptions) -> tuple[_Catalogue, list[_User]]:
    """The catalogue and every user, drawn from one generator in a fixed order."""
    rng = np.random.default_rng(opt.seed)
    cat = _catalogue(rng, opt)
    user_width = len(str(opt.n_users))
    users: list[_User] = []
    for u in range(opt.n_users):
        n_fav = 1 if rng.random() < 0.5 or opt.n_genres == 1 else 2
        fav = rng.choice(opt.n_genres, size=n_fav, replace=False)
        length = int(rng.integers(opt.min_length, opt.max_length + 1))
        seq = _sequence(rng, cat, fav, length, opt)
        span = int(rng.uniform(0.1, 0.6) * _YEAR_S)
        start = _EPOCH + int(rng.integers(0, _YEAR_S - span))
        # sorted draws plus the position make times strictly increasing within a user
        times = start + np.sort(rng.integers(0, span, size=length)) + np.arange(length)
        liked = np.isin(cat.genre_of[seq], fav)
        rating = np.clip(np.where(liked, 4, 3) + rng.integers(-1, 2, size=length), 1, 5)
        users.append(_User(f"U{u:0{user_width}d}", fav, seq, times, rating))
    return cat, users


def generate(options: SyntheticOptions | None = None) -> RawLog:
    """The synthetic catalogue and interaction log for ``options`` (deterministic for a seed)."""
    opt = options or SyntheticOptions()
    cat, drawn = _draw(opt)
    item_ids = cat.items["item_id"].to_numpy()
    interactions = pd.DataFrame(
        {
            "user_id": pd.Series([u.user_id for u in drawn for _ in u.sequence], dtype=str),
            "item_id": pd.Series([i for u in drawn for i in item_ids[u.sequence].tolist()], dtype=str),
            "timestamp": pd.Series([t for u in drawn for t in u.times.astype(float).tolist()], dtype="float64"),
            "rating": pd.Series([r for u in drawn for r in u.ratings.astype(float).tolist()], dtype="float64"),
        }
    )
    report = ReadReport()
    for name, frame in (("synthetic/items", cat.items), ("synthetic/interactions", interactions)):
        rep = report.file(name)  # generated rows are all kept; the entry keeps the manifest's accounting uniform
        rep.read = rep.kept = len(frame)
    return RawLog(cat.items, interactions, report, source="synthetic", params=opt.model_dump())


class SyntheticSource:
    """``data_source`` component ``synthetic``: generates its data; reads no path."""

    Options = SyntheticOptions

    def __init__(self, options: SyntheticOptions | None = None):
        self.options = options or SyntheticOptions()

    def load(self, path: Path | None, skip_bad: bool) -> RawLog:
        """Generate the log; a path is refused because it would be silently ignored."""
        if path is not None:
            raise BadInputError(
                f"the synthetic source generates its data and reads no files, but was given path {path}; "
                "leave data.path unset, or use --source csv for a folder"
            )
        return generate(self.options)

"""The ``synthetic`` source: deterministic for a seed, small by default, readable titles that carry the
structure, timestamps that suit the global temporal split, and structure that a simple rule can learn."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import build
from mgfrec.data.raw import BadInputError
from mgfrec.data.sources.synthetic import GENRES, SyntheticOptions, SyntheticSource, generate
from mgfrec.data.sources.synthetic_world import SyntheticWorld
from mgfrec.registry import component_options

SMALL = SyntheticOptions(n_users=80, n_items=240, n_artists=24, n_genres=4)


@pytest.fixture(scope="module")
def default():
    """The default data set, prepared with the default protocol (generated once for the module)."""
    raw = generate()
    items, log, splits = build(raw, DataConfig(source="synthetic"))
    return raw, items, log, splits


def test_same_seed_gives_identical_frames_and_another_seed_does_not():
    a, b = generate(SMALL), generate(SMALL)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    c = generate(SMALL.model_copy(update={"seed": 1}))
    assert not c.interactions.equals(a.interactions)
    assert c.items["title"].tolist() != a.items["title"].tolist()


def test_default_size_is_small(default):
    raw, items, log, splits = default
    per_user = raw.interactions.groupby("user_id").size()
    assert len(per_user) == 600
    assert len(raw.items) == 1500
    assert per_user.min() >= 5 and per_user.max() <= 20
    assert 5000 < len(raw.interactions) < 9000
    assert sum(len(s) for s in splits.values()) == len(raw.interactions) - 600  # one sample per non-first item
    for name, rep in raw.report.files.items():
        assert rep.read == rep.kept > 0 and rep.dropped_total == 0, name


def test_nobody_consumes_an_item_twice_and_times_increase_per_user():
    raw = generate(SMALL)
    log = raw.interactions
    assert not log.duplicated(["user_id", "item_id"]).any()
    for _, group in log.groupby("user_id", sort=False):  # generated in time order per user
        assert (np.diff(group["timestamp"].to_numpy()) > 0).all()
    assert set(log["item_id"]) <= set(raw.items["item_id"])
    assert log["rating"].between(1, 5).all()


def test_users_interleave_in_time_so_every_split_has_many_users(default):
    _, _, log, splits = default
    spans = log.groupby("user_id")["timestamp"].agg(["min", "max"])
    # at the median time, a good share of users has started and not finished: they interleave
    mid = log["timestamp"].median()
    assert ((spans["min"] < mid) & (spans["max"] > mid)).mean() > 0.2
    for name in ("valid", "test"):
        assert splits[name]["user_id"].nunique() > 100, name
    assert splits["train"]["timestamp"].max() <= splits["test"]["timestamp"].min()


def test_titles_are_unique_and_carry_artist_series_volume_and_genre():
    items = generate(SMALL).items
    assert items["title"].is_unique and items["item_id"].is_unique
    assert list(items.columns) == ["item_id", "title", "genre", "artist", "series", "volume"]
    for row in items.itertuples():
        assert row.title.startswith(f"{row.artist} - ")
        tag = re.search(r"\(([^()]*)\)$", row.title).group(1)
        assert tag in GENRES[row.genre][1], row.title
        if row.series:
            assert f"{row.series}, Vol. {row.volume} (" in row.title
        else:
            assert row.volume == "0" and "Vol." not in row.title
    series = items[items["series"] != ""]
    assert len(series) > 0
    for _, group in series.groupby(["artist", "series"], sort=False):
        assert group["volume"].astype(int).tolist() == list(range(1, len(group) + 1))


def next_volume_or_artist_rule(items: pd.DataFrame, train: pd.DataFrame):
    """The 'learnable structure' rule: the next volume of the last item's series if unread, else the last
    item's artist's most popular (in train targets) unread item, else the most popular item."""
    artist = items["artist"].to_numpy()
    series, volume = items["series"].to_numpy(), items["volume"].astype(int).to_numpy()
    popularity = np.bincount(train["target"].to_numpy(), minlength=len(items)) + 1e-3 * np.arange(len(items))[::-1]
    by_artist = {a: np.flatnonzero(artist == a) for a in np.unique(artist)}

    def predict(history) -> int:
        last, seen = int(history[-1]), set(int(h) for h in history)
        nxt = last + 1  # the generator lists a series' volumes consecutively
        if series[last] and nxt < len(items) and series[nxt] == series[last] and volume[nxt] == volume[last] + 1:
            if artist[nxt] == artist[last] and nxt not in seen:
                return nxt
        candidates = [i for i in by_artist[artist[last]] if i not in seen]
        pool = candidates or range(len(items))
        return int(max(pool, key=lambda i: popularity[i]))

    return predict


def rule_accuracy(options: SyntheticOptions) -> tuple[float, float, int]:
    raw = generate(options)
    items, _, splits = build(raw, DataConfig(source="synthetic"))
    predict = next_volume_or_artist_rule(items, splits["train"])
    test = splits["test"]
    hits = np.mean([predict(h) == t for h, t in zip(test["history"], test["target"], strict=False)])
    guesses = np.random.default_rng(0).integers(0, len(items), size=len(test))
    return float(hits), float(np.mean(guesses == test["target"].to_numpy())), len(items)


def test_structure_is_learnable_a_simple_rule_beats_chance_by_far():
    hits, random_hits, n_items = rule_accuracy(SyntheticOptions())
    assert hits > 0.3  # ~0.44 for the default seed; chance is 1/1500
    assert random_hits < 0.01


def test_without_the_structure_the_same_rule_is_near_chance():
    # guards the test above: its hits come from the generator's structure, not from how the rule is scored
    flat = SyntheticOptions(series_fraction=0, series_continue=0, same_artist=0, genre_focus=0, popularity_skew=0)
    hits, _, _ = rule_accuracy(flat)
    assert hits < 0.02


def test_options_are_validated_with_the_field_named():
    with pytest.raises(ValueError, match=r"data\.options\.n_users"):
        component_options(SyntheticSource, {"n_users": 0}, "data.options")
    with pytest.raises(ValueError, match=r"data\.options\.n_user"):
        component_options(SyntheticSource, {"n_user": 10}, "data.options")
    with pytest.raises(ValueError, match=r"max_length \(4\) must be >= min_length \(5\)"):
        SyntheticOptions(max_length=4)
    with pytest.raises(ValueError, match=r"n_artists \(300\) must be <= n_items \(200\)"):
        SyntheticOptions(n_items=200, n_artists=300)
    with pytest.raises(ValueError, match=r"n_genres"):
        SyntheticOptions(n_genres=len(GENRES) + 1)
    # n_users=1e12 was accepted and generated for more than ten minutes without a line of progress
    for field in ("n_users", "n_items", "n_artists"):
        with pytest.raises(ValueError, match=rf"data\.options\.{field}.*less than or equal to 1000000"):
            component_options(SyntheticSource, {field: 10**12}, "data.options")
    with pytest.raises(ValueError, match=r"max_length"):
        SyntheticOptions(max_length=10**6)
    # weights 1/rank**1000 underflow to 0 and the generator drew nothing (was a TypeError traceback)
    with pytest.raises(ValueError, match=r"popularity_skew \(1000\) is too large for n_artists \(10\).*at most 200"):
        SyntheticOptions(n_users=30, n_items=60, n_artists=10, popularity_skew=1000)
    assert generate(SyntheticOptions(n_users=30, n_items=60, n_artists=10, popularity_skew=150)).interactions.size


def test_extreme_but_valid_options_still_generate():
    # every item an artist of its own, and sequences as long as the catalogue
    raw = generate(SyntheticOptions(n_users=3, n_items=12, n_artists=12, n_genres=12, min_length=12, max_length=12))
    assert raw.interactions.groupby("user_id").size().tolist() == [12, 12, 12]
    assert raw.items["artist"].is_unique


def test_a_path_is_refused_because_it_would_be_ignored(tmp_path):
    with pytest.raises(BadInputError, match="reads no files"):
        SyntheticSource().load(tmp_path, skip_bad=False)
    assert SyntheticSource(SMALL).load(None, skip_bad=False).params["n_users"] == 80


@pytest.mark.parametrize("case", ["series", "fresh"])
def test_the_worlds_next_item_distribution_is_the_one_the_generator_draws_from(case):
    """SyntheticWorld's exact distribution against 20,000 draws of the generator's own step from one state."""
    from mgfrec.data.sources.synthetic import _next_item  # the step the sequences use

    opt = SyntheticOptions(n_users=40, n_items=120, n_artists=12, n_genres=3, series_fraction=0.5)
    world = SyntheticWorld(opt)
    cat = world._cat
    user = "U00"
    with_next = [i for i in range(len(cat.popularity)) if cat.next_volume[i] != -1 and cat.series_start[i] == i]
    # "series": the last item has an unread next volume; "fresh": a standalone last item
    last = with_next[0] if case == "series" else int(np.flatnonzero(cat.next_volume == -1)[0])
    history = [int(i) for i in np.flatnonzero(cat.genre_of == cat.genre_of[last])[:3] if i != last] + [last]
    history = [i for i in history if cat.next_volume[last] != i]
    p = world.next_item_probabilities(user, [world.item_ids[i] for i in history])
    assert p.sum() == pytest.approx(1.0) and np.all(p[history] == 0)

    unread = np.ones(len(p), dtype=bool)
    unread[history] = False
    in_fav = np.isin(cat.genre_of, world._fav[user])
    rng = np.random.default_rng(1)
    draws = np.bincount([_next_item(rng, cat, in_fav, unread, last, opt) for _ in range(20_000)], minlength=len(p))
    tv = 0.5 * np.abs(draws / draws.sum() - p).sum()
    assert tv < 0.03  # measured 0.011 / 0.015; with same_artist 0.5 and genre_focus 0.6 instead: 0.07 / 0.23
    if case == "series":
        assert p[cat.next_volume[last]] >= opt.series_continue


def test_the_world_names_users_genres_and_refuses_unknown_users():
    world = SyntheticWorld(SMALL)
    assert set(world.favourite_genres("U00")) <= set(GENRES)
    with pytest.raises(KeyError, match="U999"):
        world.next_item_probabilities("U999", [world.item_ids[0]])


def test_an_artist_whose_album_names_run_out_gets_numbered_ones_all_distinct():
    """Near n_items=1,000,000 each release drew names 50 times before a numbered one (over ten minutes); an artist
    with half its names taken now gets a numbered one at once (review s39). 3,000 releases per artist here."""
    from mgfrec.data.sources.synthetic import _catalogue, _numbered

    assert (
        _numbered("Blue Hour Sessions", {"Blue Hour Sessions 5", "Blue Hour Sessions 6"}, 5) == "Blue Hour Sessions 7"
    )
    opt = SyntheticOptions(n_users=1, n_items=24_000, n_artists=8, n_genres=8, series_fraction=0.0)
    titles = _catalogue(np.random.default_rng(0), opt).items["title"]
    assert titles.is_unique and len(titles) == 24_000
    numbered = titles.str.contains(r" \d+ \(")  # "Artist - words Form 1441 (tag)"
    assert numbered.sum() > 8_000, numbered.sum()

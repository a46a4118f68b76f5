"""The ``amazon2023`` source on a small folder in the official schema (tests/fixtures/amazon2023).

The fixture's 25 reviews and 10 meta lines are built so that every filter removes something; its README
lists them. Most tests use ``k_core=2`` (the fixture is too small for 5-core) and ``min_items=3``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.data.raw import BadInputError
from mgfrec.data.sources.amazon2023 import Amazon2023Options, Amazon2023Source, clean_text, k_core
from mgfrec.data.sources.amazon2023_fields import months_back

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "amazon2023"
REVIEWS, META = "CDs_and_Vinyl.jsonl", "meta_CDs_and_Vinyl.jsonl"
SMALL = {"k_core": 2, "min_items": 3}
# What every run with the fixture's defaults drops from the review file before the window (25 lines):
BEFORE_WINDOW = {
    "duplicate_review": 1,  # alice's second review of A (line 6); the earlier one is kept
    "k_core": 3,  # frank (1 review), then H (left with 1), then erin (left with 1): three rounds
    "item_without_meta": 2,  # X has no meta line
    "item_no_title": 2,  # G's title is null
    "item_invalid_title": 2,  # S's title is page markup
    "item_title_too_long": 2,  # E's title has 51 words
    "item_no_price": 2,  # D's price is null
}


def load(folder: Path = FIXTURE, skip_bad: bool = False, **options):
    return Amazon2023Source(Amazon2023Options(**{**SMALL, **options})).load(folder, skip_bad)


def copy_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    shutil.copytree(FIXTURE, folder)
    return folder


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def review(user: str = "zoe", item: str = "A", day: str = "2023-02-10", **fields) -> dict:
    stamp = int(dt.datetime.fromisoformat(day + "T12:00:00+00:00").timestamp() * 1000)
    return {"rating": 5.0, "asin": item, "parent_asin": item, "user_id": user, "timestamp": stamp, **fields}


def by_user(raw) -> dict[str, list[str]]:
    return raw.interactions.groupby("user_id")["item_id"].agg(list).to_dict()


def accounted(raw) -> dict:
    rows = raw.report.to_dict()  # to_dict itself asserts read = kept + dropped for every file
    for rep in rows.values():
        assert rep["read"] == rep["kept"] + rep["dropped"]
    return rows


def test_fixture_kept_after_each_filter():
    raw = load()
    assert raw.items["item_id"].tolist() == ["A", "B", "C"]  # meta-file order
    assert raw.items["title"].tolist() == ["Abbey Road", "Blue Train", "Kind of Blue"]
    assert raw.items["price"].tolist() == [10.0, 12.5, 9.0]  # B's price is the string "12.50"
    assert raw.items["store"].tolist() == ["Store A", "Store B", "Store C"]
    assert by_user(raw) == {"alice": ["A", "B", "C"], "bob": ["A", "B", "C"], "carol": ["A", "C"], "dave": ["B"]}
    first_a = raw.interactions[(raw.interactions.user_id == "alice") & (raw.interactions.item_id == "A")]
    assert first_a["rating"].tolist() == [5.0]  # the earliest of alice's two reviews of A
    assert str(raw.interactions["timestamp"].dtype) == "int64"

    rows = accounted(raw)
    assert rows[REVIEWS]["read"] == 25 and rows[REVIEWS]["kept"] == 9
    outside = {"outside_window": 2}  # carol's and dave's reviews of F (2022-05)
    assert rows[REVIEWS]["dropped_by_reason"] == {**BEFORE_WINDOW, **outside}
    assert rows[REVIEWS]["first_example_by_reason"]["duplicate_review"].endswith(f"{REVIEWS}:6: user 'alice', item 'A'")
    assert rows[META]["read"] == 10 and rows[META]["kept"] == 3
    # F is outside the window, H lost its reviews to the k-core, Z has none
    assert rows[META]["dropped_by_reason"] == {
        "no_title": 1,
        "invalid_title": 1,
        "title_too_long": 1,
        "no_price": 1,
        "no_kept_reviews": 3,
    }
    assert rows[META]["first_example_by_reason"]["no_kept_reviews"].endswith(f"{META}:6")
    assert raw.params["window_start_used"] == "2022-10-01" and raw.params["widen_steps"] == 0
    assert raw.params["category"] == "CDs_and_Vinyl"


def test_window_widens_back_three_months_at_a_time_until_min_items():
    raw = load(min_items=4)
    # 2022-10 holds A, B, C; 2022-07 still 3; 2022-04 takes in F (reviewed 2022-05)
    assert raw.params["window_start_used"] == "2022-04-01" and raw.params["widen_steps"] == 2
    assert raw.items["item_id"].tolist() == ["A", "B", "C", "F"]
    assert by_user(raw)["carol"] == ["A", "C", "F"] and by_user(raw)["dave"] == ["B", "F"]
    rows = accounted(raw)
    assert rows[REVIEWS]["kept"] == 11 and rows[REVIEWS]["dropped_by_reason"] == BEFORE_WINDOW
    assert rows[META]["kept"] == 4


def test_widening_stops_at_the_earliest_review():
    raw = load(min_items=50)  # can never be met: stop once the window holds every review
    assert raw.params["window_start_used"] == "2022-04-01" and raw.params["widen_steps"] == 2
    assert len(raw.items) == 4


def test_widening_stops_at_year_1(tmp_path):
    """A review on the calendar's first day: the window widened past it into year 0 and stopped with
    "year 0 is out of range", naming nothing."""
    folder = copy_fixture(tmp_path)
    day_2 = -62_135_596_800_000 + 86_400_000  # 0001-01-02
    append(folder / REVIEWS, *(json.dumps(review(item=i, timestamp=day_2 + n)) for n, i in enumerate("ABC")))
    raw = load(folder, min_items=50, widen_step_months=12)
    assert raw.params["window_start_used"] == "0001-01-01"


def test_widen_step_and_window_bounds_are_options():
    raw = load(min_items=4, widen_step_months=12, window_start="2023-01", window_end="2023-03")
    # 2023-01..2023-03 holds A, B (Feb); one 12-month step back to 2022-01 takes in F but not C (March),
    # and as 2022-01 is before the earliest review (2022-05) widening stops there, one item short
    assert raw.params["window_start_used"] == "2022-01-01"
    assert raw.items["item_id"].tolist() == ["A", "B", "F"]


def test_k_core_iterates_until_stable():
    # rows (user, item): u3's only row goes first; that leaves i2 with one row, then u2 with one
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 1, 2, 2])
    kept, rounds = k_core(users, items, np.ones(7, dtype=bool), 2)
    assert rounds == 3
    assert kept.tolist() == [True, True, True, True, False, False, False]  # the 2 x 2 core remains
    assert k_core(users, items, np.ones(7, dtype=bool), 3)[0].sum() == 0
    same, rounds = k_core(users, items, np.ones(7, dtype=bool), 0)
    assert same.all() and rounds == 0

    raw = load()  # the fixture's cascade: frank, then H, then erin
    assert raw.params["k_core_rounds"] == 3
    assert {"erin", "frank"}.isdisjoint(raw.interactions["user_id"])


def test_default_five_core_leaves_nothing_and_says_why():
    with pytest.raises(BadInputError, match=r"no review of CDs_and_Vinyl.jsonl survives the filters.*k_core"):
        Amazon2023Source().load(FIXTURE, skip_bad=False)


def test_window_k_core_applies_inside_the_window():
    raw = load(window_k_core=2)
    assert "dave" not in by_user(raw)  # one review (B) inside the window
    assert accounted(raw)[REVIEWS]["dropped_by_reason"]["window_k_core"] == 1


def test_title_word_limit(tmp_path):
    raw = load(max_title_words=2, min_items=2)  # "Kind of Blue" has three words
    assert raw.items["item_id"].tolist() == ["A", "B"] and raw.params["widen_steps"] == 0
    # with the usual min_items=3, losing C makes the window widen back to F
    assert load(max_title_words=2).items["item_id"].tolist() == ["A", "B", "F"]
    rows = accounted(raw)
    # E's two, C's three and D's two: titles are checked before prices, as in R2ec
    assert rows[REVIEWS]["dropped_by_reason"]["item_title_too_long"] == 2 + 3 + 2
    assert "item_no_price" not in rows[REVIEWS]["dropped_by_reason"]
    assert rows[META]["dropped_by_reason"]["title_too_long"] == 3

    folder = copy_fixture(tmp_path)
    meta = folder / META
    lines = meta.read_text(encoding="utf-8").splitlines()
    e = json.loads(lines[4])
    e["title"] = " ".join(["Greatest"] * 25 + ["Hits"] * 25)  # exactly 50 words: allowed
    lines[4] = json.dumps(e)
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "E" in load(folder).items["item_id"].tolist()


def test_price_requirement_is_optional():
    raw = load(require_price=False)
    assert raw.items["item_id"].tolist() == ["A", "B", "C", "D"]
    assert np.isnan(raw.items.loc[raw.items.item_id == "D", "price"]).all()
    assert by_user(raw)["alice"] == ["A", "B", "C", "D"]
    assert "item_no_price" not in accounted(raw)[REVIEWS]["dropped_by_reason"]


def test_gz_and_plain_jsonl_read_the_same(tmp_path):
    folder = tmp_path / "gz"
    folder.mkdir()
    for name in (REVIEWS, META):
        (folder / f"{name}.gz").write_bytes(gzip.compress((FIXTURE / name).read_bytes()))
    plain, packed = load(), load(folder)
    assert packed.items.equals(plain.items) and packed.interactions.equals(plain.interactions)
    rows = accounted(packed)
    assert set(rows) == {f"{REVIEWS}.gz", f"{META}.gz"} and rows[f"{REVIEWS}.gz"]["read"] == 25


def test_truncated_gz_is_an_error_naming_the_file(tmp_path):
    folder = tmp_path / "gz"
    folder.mkdir()
    shutil.copy(FIXTURE / META, folder / META)
    packed = gzip.compress((FIXTURE / REVIEWS).read_bytes() * 20)
    (folder / f"{REVIEWS}.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(BadInputError, match=rf"{REVIEWS}.gz: unreadable after line \d+ .*truncated download"):
        load(folder)


BAD_REVIEW_LINES = [
    ('{"user_id": "zoe", "parent_asin": ', "bad_json", "not valid JSON"),
    ("[1, 2, 3]", "not_an_object", "expected a JSON object, got list"),
    (
        json.dumps({k: v for k, v in review().items() if k != "timestamp"}),
        "missing_timestamp",
        "field 'timestamp' is missing",
    ),
    (json.dumps(review(timestamp="yesterday")), "bad_timestamp", "field 'timestamp' must be an integer"),
    (json.dumps(review(timestamp=10**20)), "bad_timestamp", "field 'timestamp' must be an integer"),  # was a traceback
    (json.dumps(review(timestamp=-(10**14))), "bad_timestamp", "field 'timestamp' must be an integer"),  # year -1199
    (
        json.dumps(review()).replace('"timestamp": ', '"timestamp": ' + "9" * 5000 + ', "x": '),
        "bad_json",
        "not valid JSON (Exceeds the limit (4300 digits)",
    ),
    ('{"user_id": ' + "[" * 100_000 + "]" * 100_000 + "}", "bad_json", "not valid JSON (nested too deeply)"),
    (json.dumps(review(user_id="\udc00x")), "bad_json", "a \\udXXX escape outside a surrogate pair"),  # a traceback
    (json.dumps(review(rating="five")), "bad_rating", "field 'rating' must be a number"),
    (json.dumps(review(user_id="")), "bad_user_id", "field 'user_id' must be a non-empty string"),
    (  # a 1 MB value is cut in the message, which says how long it was
        json.dumps(review(rating="x" * 1_000_000)),
        "bad_rating",
        "field 'rating' must be a number, got '" + "x" * 56 + "... (1,000,000 characters)",
    ),
    (
        json.dumps({k: v for k, v in review().items() if k != "parent_asin"}),
        "missing_parent_asin",
        "field 'parent_asin' is missing",
    ),
]


@pytest.mark.parametrize(("line", "reason", "message"), BAD_REVIEW_LINES, ids=[r for _, r, _ in BAD_REVIEW_LINES])
def test_bad_review_line_stops_with_file_line_and_field(tmp_path, line, reason, message):
    folder = copy_fixture(tmp_path)
    append(folder / REVIEWS, line)
    with pytest.raises(BadInputError) as err:
        load(folder)
    text = str(err.value)
    assert f"{folder / REVIEWS}:26: {message}" in text and "--skip-bad" in text


def test_skip_bad_counts_every_bad_line_by_reason(tmp_path):
    folder = copy_fixture(tmp_path)
    append(folder / REVIEWS, *(line for line, _, _ in BAD_REVIEW_LINES), "")
    append(
        folder / META, '{"parent_asin": 7, "title": "Seven"}', '{"parent_asin": "Q", "title": ["not", "text"]}', "oops"
    )
    clean, raw = load(), load(folder, skip_bad=True)
    assert raw.items.equals(clean.items) and raw.interactions.equals(clean.interactions)
    rows = accounted(raw)
    assert rows[REVIEWS]["read"] == 25 + len(BAD_REVIEW_LINES) + 1
    assert rows[REVIEWS]["dropped_by_reason"] == {
        **BEFORE_WINDOW,
        "outside_window": 2,
        "blank_line": 1,
        **Counter(reason for _, reason, _ in BAD_REVIEW_LINES),
    }
    assert rows[META]["read"] == 13
    assert {k: rows[META]["dropped_by_reason"][k] for k in ("bad_parent_asin", "bad_title", "bad_json")} == {
        "bad_parent_asin": 1,
        "bad_title": 1,
        "bad_json": 1,
    }
    assert rows[META]["first_example_by_reason"]["bad_title"].startswith(f"{folder / META}:12: field 'title'")


def test_bad_meta_line_stops_with_file_line_and_field(tmp_path):
    folder = copy_fixture(tmp_path)
    append(folder / META, '{"parent_asin": 7, "title": "Seven"}')
    with pytest.raises(BadInputError, match=rf"{META}:11: field 'parent_asin' must be a non-empty string, got 7"):
        load(folder)


def test_second_meta_line_for_a_reviewed_item_is_an_error(tmp_path):
    folder = copy_fixture(tmp_path)
    append(folder / META, json.dumps({"parent_asin": "A", "title": "Abbey Road (again)", "price": 1.0}))
    with pytest.raises(BadInputError, match=rf"{META}:11: parent_asin 'A' already described at line 1"):
        load(folder)


def test_category_is_inferred_and_missing_files_are_named(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    shutil.copy(FIXTURE / META, folder / META)
    with pytest.raises(BadInputError, match=r"CDs_and_Vinyl.jsonl or CDs_and_Vinyl.jsonl.gz not found"):
        load(folder)
    (folder / "CDs_and_Vinyl.jsonl.gz.part").write_bytes(b"\x1f\x8b")
    with pytest.raises(BadInputError, match=r"only the unfinished download CDs_and_Vinyl.jsonl.gz.part"):
        load(folder)
    shutil.copy(FIXTURE / META, folder / "meta_Books.jsonl")
    with pytest.raises(BadInputError, match=r"several categories \(Books, CDs_and_Vinyl\).*-o category=NAME"):
        load(folder)
    shutil.copy(FIXTURE / REVIEWS, folder / REVIEWS)
    assert load(folder, category="CDs_and_Vinyl").params["category"] == "CDs_and_Vinyl"


def test_asin_as_item_id_keeps_variants_apart(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    rows = [review("u1", "P"), review("u1", "Q"), review("u2", "P"), review("u2", "Q", day="2023-02-11")]
    rows[0]["asin"], rows[2]["asin"] = "P-red", "P-blue"  # two variants of one product
    (folder / "Toys.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    meta = [
        {"parent_asin": "P", "title": "Puzzle", "price": 3.0},
        {"parent_asin": "Q", "title": "Quoits", "price": 4.0},
    ]
    (folder / "meta_Toys.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta), encoding="utf-8")
    raw = load(folder, k_core=0, min_items=1, item_id_field="asin")
    assert raw.items[["item_id", "title", "parent_asin"]].values.tolist() == [
        ["P-red", "Puzzle", "P"],
        ["P-blue", "Puzzle", "P"],
        ["Q", "Quoits", "Q"],
    ]
    assert by_user(raw) == {"u1": ["P-red", "Q"], "u2": ["P-blue", "Q"]}
    assert accounted(raw)["meta_Toys.jsonl"]["kept"] == 2

    # one asin under two parent_asins: was "error: 10" (a KeyError) at the end of the read
    with (folder / "Toys.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({**review("u3", "Q"), "asin": "P-red"}) + "\n")
    with pytest.raises(BadInputError, match=r"Toys\.jsonl:5: asin 'P-red' has parent_asin 'Q' here but 'P' at line 1"):
        load(folder, k_core=0, min_items=1, item_id_field="asin")
    raw = load(folder, skip_bad=True, k_core=0, min_items=1, item_id_field="asin")
    assert accounted(raw)["Toys.jsonl"]["dropped_by_reason"]["inconsistent_parent_asin"] == 1
    assert by_user(raw) == {"u1": ["P-red", "Q"], "u2": ["P-blue", "Q"]}


def test_options_are_checked():
    assert Amazon2023Options(window_start=dt.date(2022, 7, 1)).window_start == "2022-07-01"
    assert Amazon2023Options(window_end="2024-01").window_end == "2024-01-01"
    with pytest.raises(ValidationError, match="expected a month YYYY-MM"):
        Amazon2023Options(window_start="2022-13")
    with pytest.raises(ValidationError, match="must be before window_end"):
        Amazon2023Options(window_start="2023-10", window_end="2023-10")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Amazon2023Options(kcore=5)


def test_months_back_crosses_years_and_short_months():
    assert months_back("2022-10-01", 3) == "2022-07-01"
    assert months_back("2022-02-01", 3) == "2021-11-01"
    assert months_back("2023-05-31", 3) == "2023-02-28"


def test_clean_text_follows_r2ec():
    assert clean_text("Caf&eacute; &amp; <b>Bar</b>\n\tLive") == "Caf & Bar Live"
    assert clean_text("Caf&eacute; &amp; <b>Bar</b>", ascii_only=False) == "Café & Bar"


def test_cli_prepare_reads_the_fixture_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "prepared"
    args = ["data", "prepare", str(FIXTURE), "--out", str(out), "-o", "k_core=2", "-o", "min_items=3", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("users", "items", "interactions")} == {"users": 4, "items": 3, "interactions": 9}
    assert report["rows"][REVIEWS]["read"] == 25 and report["rows"][META]["kept"] == 3
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["source"]["name"] == "amazon2023"
    assert manifest["source"]["params"]["category"] == "CDs_and_Vinyl"  # inferred from meta_CDs_and_Vinyl.jsonl


@pytest.mark.reliability
def test_a_file_whose_bytes_are_not_what_its_name_says_is_named_so(tmp_path):
    """A whole plain file named .gz was called a truncated download to delete; gzip data named .jsonl was "not valid
    UTF-8" on every line, and --skip-bad then dropped them all (review s39)."""
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(FIXTURE / REVIEWS, plain / (REVIEWS + ".gz"))
    shutil.copy(FIXTURE / META, plain / META)
    with pytest.raises(BadInputError, match=rf"not gzip data, though its name ends in .gz .*name it {REVIEWS}\)$"):
        load(plain)
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / REVIEWS).write_bytes(gzip.compress((FIXTURE / REVIEWS).read_bytes()))
    shutil.copy(FIXTURE / META, packed / META)
    for skip_bad in (False, True):
        with pytest.raises(
            BadInputError, match=rf"gzip data, though its name does not end in .gz; name it {REVIEWS}.gz"
        ):
            load(packed, skip_bad)


@pytest.mark.reliability
def test_an_empty_meta_file_is_called_empty_and_the_hint_names_only_options_to_loosen(tmp_path):
    """An empty meta file dropped every review as item_without_meta, then "loosen the options, e.g. -o k_core=2"
    to a user who had given k_core=2 (review s39)."""
    folder = copy_fixture(tmp_path)
    (folder / META).write_text("")
    with pytest.raises(BadInputError, match=rf"{META}: empty file; expected one JSON item per line"):
        load(folder)
    with pytest.raises(BadInputError) as info:
        load(FIXTURE, window_start="2030-01", window_end="2030-02", min_items=0, require_price=False)
    said = str(info.value)
    assert "loosen the options, e.g. an earlier -o window_start" in said and "k_core=2" not in said, said

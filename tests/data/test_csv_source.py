"""The ``csv`` source: every kind of bad row stops the read naming file, line and field, or with
``skip_bad`` is skipped and counted so that rows read = kept + dropped."""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path

import pytest

from mgfrec.data.raw import BadInputError
from mgfrec.data.sources.csv_folder import CsvOptions, CsvSource

pytestmark = pytest.mark.reliability

ITEMS = b"item_id,title,genre\ni1,Alpha,rock\ni2,Beta,jazz\ni3,Gamma,pop\n"
INTERACTIONS = b"user_id,item_id,timestamp,rating\nu1,i1,1,5\nu1,i2,2,4\nu2,i3,3,3\n"


def write(folder: Path, items: bytes = ITEMS, interactions: bytes = INTERACTIONS) -> Path:
    """A csv-source folder holding exactly these bytes (bytes, so that bad encodings can be written)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_bytes(items)
    (folder / "interactions.csv").write_bytes(interactions)
    return folder


# (case, file the bad row goes in, the bad row as line 5, dropped reason, words the error must contain)
BAD_ROWS = [
    ("item wrong field count", "items.csv", b"i4,Delta", "wrong_field_count", ["2 fields, header has 3"]),
    # the usual cause of one field too many is named (review s37)
    ("unquoted comma", "items.csv", b"i4,Hello, World,rock", "wrong_field_count", ["4 fields", "',' must be quoted"]),
    (
        "item latin-1 bytes",
        "items.csv",
        b"i4,Caf\xe9 del Mar,jazz",
        "bad_encoding",
        ["field title not valid utf-8; if the file is in another encoding, pass -o encoding=latin-1 (or cp1252; to"],
    ),
    ("empty item id", "items.csv", b" ,Delta,rock", "empty_item_id", ["field item_id"]),
    ("empty title", "items.csv", b"i4,   ,rock", "empty_title", ["field title", "'i4'"]),
    # kept as a title that shows nothing (review s32)
    ("zero-width title", "items.csv", b"i4,\xe2\x80\x8b,rock", "empty_title", ["field title shows nothing", "'i4'"]),
    ("control-only title", "items.csv", b"i4,\x01\x02,rock", "empty_title", ["field title shows nothing", "'i4'"]),
    # which row was kept, and whether the titles differ: the item's interactions read the first (review s38)
    (
        "duplicate item id",
        "items.csv",
        b"i1,Alpha again,rock",
        "duplicate_item_id",
        ["item_id 'i1' appears again (kept from line 2, with title 'Alpha', not 'Alpha again')"],
    ),
    # two files joined with cat: the second header was kept as an item called "title"
    ("repeated header", "items.csv", b"\xef\xbb\xbfitem_id,title,genre", "repeated_header", ["the header row again"]),
    ("interaction wrong field count", "interactions.csv", b"u2,i1,4", "wrong_field_count", ["3 fields, header has 4"]),
    ("interaction latin-1 bytes", "interactions.csv", b"J\xfcrgen,i1,4,5", "bad_encoding", ["field user_id not valid"]),
    ("empty user id", "interactions.csv", b",i1,4,5", "empty_user_id", ["field user_id"]),
    (
        "non-numeric timestamp",
        "interactions.csv",
        b"u2,i1,yesterday,5",
        "bad_timestamp",
        ["field timestamp", "'yesterday'"],
    ),
    ("infinite timestamp", "interactions.csv", b"u2,i1,inf,5", "bad_timestamp", ["field timestamp"]),
    ("bad rating", "interactions.csv", b"u2,i1,4,great", "bad_rating", ["field rating", "'great' is not a number"]),
    ("unknown item id", "interactions.csv", b"u2,i9,4,5", "unknown_item_id", ["item_id 'i9'", "item table"]),
    ("duplicate row", "interactions.csv", b"u1,i1,1,5", "duplicate_row", ["user 'u1'", "item 'i1'"]),
    # it was "field timestamp 'timestamp' is not a number" (review s28)
    ("repeated log header", "interactions.csv", b"user_id,item_id,timestamp,rating", "repeated_header", ["header"]),
    # Python's float() takes these; a timestamp must be a plain number within +-2**53
    (
        "underscored timestamp",
        "interactions.csv",
        b"u2,i1,8_747_247_10,5",
        "bad_timestamp",
        ["field timestamp", "'8_747_247_10'", "plain digits"],
    ),
    ("huge timestamp", "interactions.csv", b"u2,i1,1e300,5", "bad_timestamp", ["field timestamp", "'1e300'", "2**53"]),
    ("huge negative timestamp", "interactions.csv", b"u2,i1,-1e300,5", "bad_timestamp", ["'-1e300'", "2**53"]),
    # a number too large for a float was "not a number"
    ("overflowing timestamp", "interactions.csv", b"u2,i1,1e400,5", "bad_timestamp", ["'1e400'", "beyond +-2**53"]),
    ("nan timestamp", "interactions.csv", b"u2,i1,nan,5", "bad_timestamp", ["'nan'"]),
    # float64 rounds it to 2**53 itself, which passed the check (then it was a "duplicate" of ...992)
    ("just past 2**53", "interactions.csv", b"u2,i1,9007199254740993,5", "bad_timestamp", ["2**53"]),
    ("full-width digits", "interactions.csv", "u2,i1,１２３,5".encode(), "bad_timestamp", ["plain digits"]),
    # ISO 8601 dates are read (review s37); a day that does not exist, or a locale's order, is not guessed at
    ("impossible date", "interactions.csv", b"u2,i1,2020-02-30,5", "bad_timestamp", ["'2020-02-30'", "ISO 8601"]),
    ("locale's date", "interactions.csv", b"u2,i1,01/31/2020,5", "bad_timestamp", ["'01/31/2020'", "ISO 8601"]),
    ("underscored rating", "interactions.csv", b"u2,i1,4,1_0", "bad_rating", ["field rating", "'1_0'"]),
    ("huge rating", "interactions.csv", b"u2,i1,4,1e309", "bad_rating", ["'1e309' is too large for a float64"]),
    # the lenient reader dropped the quotes and kept the row: "Heroes" (Live) became Heroes (Live) (review s38)
    ("text after a quote", "items.csv", b'i4,"Heroes" (Live),rock', "bad_quote", ["text after its closing", '""']),
    ("quoted id and text", "interactions.csv", b'u2,"i1" x,4,5', "bad_quote", ["text after its closing quote"]),
    ("NUL byte in a title", "items.csv", b"i4,Del\x00ta,rock", "nul_byte", ["field title", "NUL"]),
    ("NUL byte in a user id", "interactions.csv", b"u\x002,i1,4,5", "nul_byte", ["field user_id", "NUL"]),
]


def with_bad_row(tmp_path: Path, file: str, row: bytes) -> Path:
    items = ITEMS + row + b"\n" if file == "items.csv" else ITEMS
    interactions = INTERACTIONS + row + b"\n" if file == "interactions.csv" else INTERACTIONS
    return write(tmp_path / "data", items, interactions)


@pytest.mark.parametrize(("case", "file", "row", "reason", "words"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_stops_the_read_naming_file_line_and_field(tmp_path, case, file, row, reason, words):
    folder = with_bad_row(tmp_path, file, row)
    with pytest.raises(BadInputError) as info:
        CsvSource().load(folder, skip_bad=False)
    message = str(info.value)
    assert f"{folder / file}:5:" in message  # header is line 1, three good rows, the bad one is line 5
    for word in words:
        assert word in message
    assert "--skip-bad" in message


@pytest.mark.parametrize(("case", "file", "row", "reason", "words"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_is_skipped_and_counted_with_skip_bad(tmp_path, case, file, row, reason, words):
    folder = with_bad_row(tmp_path, file, row)
    raw = CsvSource().load(folder, skip_bad=True)
    rep = raw.report.files[file]
    assert (rep.read, rep.kept, rep.dropped_total) == (4, 3, 1)
    assert dict(rep.dropped) == {reason: 1}
    assert rep.examples[reason].startswith(f"{folder / file}:5:")
    other = "interactions.csv" if file == "items.csv" else "items.csv"
    assert raw.report.files[other].dropped_total == 0
    assert raw.report.to_dict()[file] == {
        "read": 4,
        "kept": 3,
        "dropped": 1,
        "dropped_by_reason": {reason: 1},
        "first_example_by_reason": {reason: rep.examples[reason]},
    }
    assert len(raw.items) == 3 and len(raw.interactions) == 3


def test_a_header_ending_in_a_delimiter_is_named(tmp_path):
    """``item_id,title,`` over rows ``i1,Alpha``: every row was "2 fields, header has 3", the cause left to guess."""
    folder = write(tmp_path / "data", items=b"item_id,title,\ni1,Alpha\ni2,Beta\n")
    with pytest.raises(BadInputError, match=r"items.csv:2: 2 fields, header has 3; the header ends with a delimiter"):
        CsvSource().load(folder, skip_bad=False)


def test_quotes_the_lenient_reader_dropped_are_named_and_a_skipped_items_interactions_say_why(tmp_path):
    """`"Heroes" (Live)` and `"Weird Al" Yankovic` were read as `Heroes (Live)` and `Weird Al Yankovic`, counted as
    kept, without a word (review s38). A quote inside an unquoted field is a character, as before; a doubled quote
    inside a quoted one is a quote."""
    items = b'item_id,title\ni1,"Heroes" (Live)\ni2,The "Best" Of\ni3,"Say ""Hi"""\n'
    logs = b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\nu1,i3,3\n"
    folder = write(tmp_path / "a", items=items, interactions=logs)
    with pytest.raises(BadInputError, match=r"items.csv:2: a field has text after its closing quote; .*\"\"\""):
        CsvSource().load(folder, skip_bad=False)
    raw = CsvSource().load(folder, skip_bad=True)
    assert raw.items["title"].tolist() == ['The "Best" Of', 'Say "Hi"']
    rep = raw.report.files["items.csv"]
    assert (rep.read, rep.kept, dict(rep.dropped)) == (3, 2, {"bad_quote": 1})
    log = raw.report.files["interactions.csv"]
    assert (log.read, log.kept, dict(log.dropped)) == (3, 2, {"dropped_item": 1})
    assert "item_id 'i1' was dropped from items.csv (bad_quote, line 2)" in log.examples["dropped_item"]
    # a header so written is one line naming it; a quote left open at the end still refuses the whole file
    header = write(tmp_path / "b", items=b'item_id,"title" x\ni1,A\n', interactions=logs)
    with pytest.raises(BadInputError, match=r"items.csv:1: the header is not valid CSV"):
        CsvSource().load(header, skip_bad=True)
    open_end = write(tmp_path / "c", items=b'item_id,title\ni1,A\ni2,"B\ni3,C\n', interactions=logs)
    with pytest.raises(BadInputError, match=r"items.csv:3: a quote opened on this line runs on to line 4"):
        CsvSource().load(open_end, skip_bad=True)


def test_a_file_without_csv_quoting_is_read_with_quoting_none_and_the_last_lines_open_quote_named(tmp_path):
    """Plain TSV has no quoting, so a title may start with a quote (`"Weird Al" Yankovic`), which strict CSV reading
    refuses: `-o quoting=none` reads quotes as characters, and the refusal names it. A quote left open on the last
    line said it "runs on to" that very line, "0 following line(s)" (review s38, Z7)."""
    logs = b"user_id\titem_id\ttimestamp\nu1\ti1\t1\nu1\ti2\t2\n"
    items = b'item_id\ttitle\ni1\t"Weird Al" Yankovic - Greatest Hits\ni2\tB "side"\n'
    folder = write(tmp_path / "a", items=items, interactions=logs)
    with pytest.raises(BadInputError, match=r"items.csv:2: a field has text after .* read with -o quoting=none"):
        CsvSource(CsvOptions(delimiter="tab")).load(folder, skip_bad=False)
    raw = CsvSource(CsvOptions(delimiter="tab", quoting="none")).load(folder, skip_bad=False)
    assert raw.items["title"].tolist() == ['"Weird Al" Yankovic - Greatest Hits', 'B "side"']
    cut = write(tmp_path / "b", items=b'item_id,title\ni1,A\ni2,"B\n', interactions=logs.replace(b"\t", b","))
    with pytest.raises(BadInputError, match=r"items.csv:3: a quote opened on this line is never closed \(the file"):
        CsvSource().load(cut, skip_bad=True)


def test_a_lone_carriage_return_inside_a_field_is_named_not_a_cut_title(tmp_path):
    """`i1,Foo\\rBar` in a file of \\n lines: the csv module ends the line at the \\r, so the error was "1 fields,
    header has 2" about `Bar`, and --skip-bad kept i1 titled `Foo` (review s38). A file whose every line ends with a
    lone \\r (classic Mac) is read as before."""
    logs = b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\nu1,i3,3\n"
    folder = write(tmp_path / "a", items=b"item_id,title\ni1,Foo\rBar\ni2,B\ni3,C\n", interactions=logs)
    with pytest.raises(BadInputError, match=r"items.csv:2: a lone carriage return \(\\r\) in an unquoted field"):
        CsvSource().load(folder, skip_bad=False)
    raw = CsvSource().load(folder, skip_bad=True)
    assert raw.items["title"].tolist() == ["B", "C"]
    rep = raw.report.files["items.csv"]
    assert (rep.read, rep.kept, dict(rep.dropped)) == (4, 2, {"carriage_return": 1, "wrong_field_count": 1})
    assert "(carriage_return, line 2)" in raw.report.files["interactions.csv"].examples["dropped_item"]
    # rows ending \r\r\n under a \n header (a header typed by hand joined to a Windows writer's rows): nothing cut
    doubled = write(tmp_path / "d", items=b"item_id,title\ni1,A\r\r\ni2,B\r\r\ni3,C\r\r\n", interactions=logs)
    assert CsvSource().load(doubled, skip_bad=False).items["title"].tolist() == ["A", "B", "C"]
    mac = write(tmp_path / "b", items=b"item_id,title\ri1,A\ri2,B\ri3,C\r", interactions=logs)
    assert CsvSource().load(mac, skip_bad=False).items["title"].tolist() == ["A", "B", "C"]
    quoted = write(tmp_path / "c", items=b'item_id,title\ni1,"Foo\rBar"\ni2,B\ni3,C\n', interactions=logs)
    assert CsvSource().load(quoted, skip_bad=False).items["title"].tolist() == ["Foo Bar", "B", "C"]


def test_timestamps_in_two_units_refuse_the_file_naming_both_lines(tmp_path):
    """A log merged from an export in milliseconds and one in seconds (or ISO dates, read as seconds) was split as
    written: the split orders all users' samples together by time, so every user of the milliseconds part was in
    test, without a word (review s38). Whole-file: --skip-bad cannot pick which unit is right. Judged per user (at
    least two users with two rows, or all, in each unit), so that sentinel dates and odd values refuse nothing (review
    s38, Z7)."""
    items = b"item_id,title\ni1,A\ni2,B\ni3,C\n"

    def log(rows: list[tuple[str, str]]) -> bytes:
        body = "".join(f"{user},i{n % 2 + 1},{stamp}\n" for n, (user, stamp) in enumerate(rows))
        return ("user_id,item_id,timestamp\n" + body).encode()

    ms = [("a", "1600000000000"), ("a", "1600000100000"), ("b", "1600000200000"), ("b", "1600000300000")]
    sec = [("c", "1700000000"), ("c", "1700000100"), ("d", "1700000200"), ("d", "1700000300")]
    for skip in (False, True):
        with pytest.raises(BadInputError) as info:
            CsvSource().load(write(tmp_path / f"a{skip}", items=items, interactions=log(ms + sec)), skip_bad=skip)
        said = str(info.value)
        assert "interactions.csv:2: 2 users have timestamps that are numbers beyond Unix seconds (milliseconds?" in said
        assert "and 2 users have ones that read as Unix seconds or ISO dates (the first on line 6)" in said
    dated = [("c", "2020-01-31"), ("c", "2020-02-01"), ("d", "2020-02-02"), ("d", "2020-02-03")]
    with pytest.raises(BadInputError, match=r"interactions.csv:2: 2 users have .* \(the first on line 6\)"):
        CsvSource().load(write(tmp_path / "b", items=items, interactions=log(ms + dated)), skip_bad=False)
    # the same users in both exports (an older one in milliseconds, a newer one in seconds): each user's 2023 items
    # were read as earlier than its 2022 ones and went into their histories, without a word (review s41)
    both = [(u, f"16500000{n}0000") for u in "ab" for n in (1, 2)] + [
        (u, f"16800000{n}0") for u in "ab" for n in (1, 2)
    ]
    with pytest.raises(BadInputError, match=r"interactions.csv:2: 2 users have .* \(the first on line 6\)"):
        CsvSource().load(write(tmp_path / "e", items=items, interactions=log(both)), skip_bad=False)
    # read as before: one unit, whichever; small numbers (a sequence, days) beside either; a sentinel date or
    # number among a user's real ones; one user in another unit; milliseconds across 1973 within users
    for n, rows in enumerate(
        (
            ms,
            sec,
            [("a", "3"), ("a", "4"), *ms],
            [*sec, ("c", "9999-12-31"), ("d", "9999-12-31")],
            [*sec, ("c", "253402300799"), ("d", "253402300799")],
            [*sec, ("e", "1600000000000"), ("e", "1600000100000")],
            [("a", "99000000000"), ("a", "101000000000"), ("b", "99500000000"), ("b", "102000000000")],
            # a sentinel written twice by each of two users, among real seconds or milliseconds (review s41)
            [*sec, *[(u, "253402300799") for u in "ccdd"]],
            [*ms, *[(u, "9999-12-31") for u in "aabb"]],
            # milliseconds across March 1973 (1e11 ms), two values each side, within each of two users
            [(u, f"{v}000000000") for u in "ab" for v in (98, 99, 101, 102)],
        )
    ):
        read = CsvSource().load(write(tmp_path / f"c{n}", items=items, interactions=log(rows)), False).interactions
        assert len(read) == len(rows)


def test_a_column_without_a_name_is_dropped_when_empty_and_else_named_by_its_place(tmp_path):
    """A header and rows that all end with a delimiter (a spreadsheet's export) kept an attribute named "" in
    items.parquet (review s37). Empty in every kept row, it goes (nothing is lost); holding values, it is kept as
    ``column_<n>``."""
    empty = write(tmp_path / "a", items=b"item_id,title,\ni1,Alpha,\ni2,Beta,\ni3,Gamma, \n")
    raw = CsvSource().load(empty, skip_bad=False)
    assert list(raw.items.columns) == ["item_id", "title"]
    assert raw.items["title"].tolist() == ["Alpha", "Beta", "Gamma"]
    held = write(tmp_path / "b", items=b"item_id, ,title\ni1,x,Alpha\ni2,,Beta\ni3,,Gamma\n")
    raw = CsvSource().load(held, skip_bad=False)
    assert list(raw.items.columns) == ["item_id", "column_2", "title"]
    assert raw.items["column_2"].tolist() == ["x", "", ""]


def test_iso_dates_are_read_as_unix_seconds_in_their_order(tmp_path):
    """An exported log's dates were refused as "not a number", and --skip-bad dropped every row: 0 samples with
    nothing to do but convert the column by hand (review s37). A date or time without a zone is UTC; dates and Unix
    seconds may share the column."""
    log = (
        b"user_id,item_id,timestamp\n"
        b"u1,i2,2020-01-02T10:00:00Z\n"
        b"u1,i1,2020-01-02\n"
        b"u1,i3,2020-01-02 12:00:00.5+02:00\n"
        b"u2,i1,1577836800\n"
        b"u2,i2,2020-01-01T00:00:01\n"
    )
    raw = CsvSource().load(write(tmp_path / "data", interactions=log), skip_bad=False)
    assert raw.interactions["timestamp"].tolist() == [
        1577959200.0,  # 2020-01-02 10:00 UTC
        1577923200.0,  # 2020-01-02 00:00 UTC
        1577959200.5,  # 12:00:00.5 at +02:00
        1577836800.0,
        1577836801.0,
    ]
    rep = raw.report.files["interactions.csv"]
    assert (rep.read, rep.kept, rep.dropped_total) == (5, 5, 0)


def test_many_bad_rows_are_all_counted(tmp_path):
    rows = b"u2,i1,x,5\nu2,i1,y,5\nu3,i9,7,5\nu1,i1,1,5\nu4,i2,8,5\n"
    folder = write(tmp_path / "data", interactions=INTERACTIONS + rows)
    rep = CsvSource().load(folder, skip_bad=True).report.files["interactions.csv"]
    assert rep.read == 8 == rep.kept + rep.dropped_total
    assert dict(rep.dropped) == {"bad_timestamp": 2, "unknown_item_id": 1, "duplicate_row": 1}
    assert rep.examples["bad_timestamp"].startswith(f"{folder / 'interactions.csv'}:5:")  # the first of the two


@pytest.mark.parametrize(
    ("file", "header", "missing"),
    [
        ("items.csv", b"item_id,name\ni1,Alpha\n", "title"),
        ("interactions.csv", b"user,item_id,time\nu1,i1,1\n", "user_id, timestamp"),
    ],
)
def test_missing_columns_name_file_line_one_and_the_columns(tmp_path, file, header, missing):
    folder = write(tmp_path / "data", **{file.removesuffix(".csv"): header})
    for skip_bad in (False, True):  # a wrong header is never a row to skip
        with pytest.raises(BadInputError) as info:
            CsvSource().load(folder, skip_bad=skip_bad)
        assert f"{folder / file}:1: missing column(s) {missing}" in str(info.value)


def test_empty_or_absent_files_and_folders_are_named(tmp_path):
    folder = write(tmp_path / "data", interactions=b"")
    with pytest.raises(BadInputError, match=r"interactions\.csv: empty file; expected a header"):
        CsvSource().load(folder, skip_bad=False)
    (folder / "items.csv").unlink()
    with pytest.raises(BadInputError, match=r"items\.csv: file not found"):
        CsvSource().load(folder, skip_bad=False)
    with pytest.raises(BadInputError, match="not a folder"):
        CsvSource().load(tmp_path / "nowhere", skip_bad=False)
    with pytest.raises(BadInputError, match="needs a folder"):
        CsvSource().load(None, skip_bad=False)


def test_extra_item_columns_are_kept_as_attributes_and_order_is_file_order(tmp_path):
    raw = CsvSource().load(write(tmp_path / "data"), skip_bad=False)
    assert list(raw.items.columns) == ["item_id", "title", "genre"]
    assert raw.items.to_dict("records") == [
        {"item_id": "i1", "title": "Alpha", "genre": "rock"},
        {"item_id": "i2", "title": "Beta", "genre": "jazz"},
        {"item_id": "i3", "title": "Gamma", "genre": "pop"},
    ]
    assert raw.interactions[["user_id", "item_id"]].values.tolist() == [["u1", "i1"], ["u1", "i2"], ["u2", "i3"]]
    assert raw.interactions["timestamp"].tolist() == [1.0, 2.0, 3.0]
    assert raw.interactions["rating"].tolist() == [5.0, 4.0, 3.0]
    assert raw.source == "csv"


def test_titles_have_whitespace_collapsed_and_lines_count_past_multiline_fields(tmp_path):
    # a quoted title may span lines; grounding compares titles, so runs of whitespace become one space
    folder = write(
        tmp_path / "data",
        items=b'item_id,title\ni1,"  Live   at\n the Barn "\ni1,Again\ni2,Beta\n',
        interactions=b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n",
    )
    with pytest.raises(BadInputError, match=r"items\.csv:4: item_id 'i1' appears again"):
        CsvSource().load(folder, skip_bad=False)
    raw = CsvSource().load(folder, skip_bad=True)
    assert raw.items["title"].tolist() == ["Live at the Barn", "Beta"]


def test_rating_is_optional_and_may_be_empty(tmp_path):
    folder = write(tmp_path / "a", interactions=b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n")
    raw = CsvSource().load(folder, skip_bad=False)
    assert len(raw.interactions) == 2 and all(math.isnan(r) for r in raw.interactions["rating"])
    folder = write(tmp_path / "b", interactions=b"user_id,item_id,timestamp,rating\nu1,i1,1,\nu1,i2,2,4\n")
    ratings = CsvSource().load(folder, skip_bad=False).interactions["rating"].tolist()
    assert math.isnan(ratings[0]) and ratings[1] == 4.0


def test_other_encodings_and_delimiters_are_options(tmp_path):
    folder = tmp_path / "data"
    write(
        folder,
        items="item_id;title\ni1;Café del Mar\n".encode("latin-1"),
        interactions=b"user_id;item_id;timestamp\nu1;i1;1\n",
    )
    raw = CsvSource(CsvOptions(encoding="latin-1", delimiter=";")).load(folder, skip_bad=False)
    assert raw.items["title"].tolist() == ["Café del Mar"]
    assert raw.params["encoding"] == "latin-1" and raw.params["path"] == str(folder)


def test_a_bom_before_a_quoted_header_is_read(tmp_path):
    # what pandas' to_csv(encoding="utf-8-sig", quoting=QUOTE_ALL) writes; was "missing column(s) item_id"
    items = b'\xef\xbb\xbf"item_id","title"\n"i1","Alpha"\n"i2","Beta"\n'
    interactions = b'\xef\xbb\xbf"user_id","item_id","timestamp"\n"u1","i1","1"\n"u1","i2","2"\n'
    raw = CsvSource(CsvOptions()).load(write(tmp_path / "data", items, interactions), skip_bad=False)
    assert raw.items["item_id"].tolist() == ["i1", "i2"] and raw.interactions["user_id"].tolist() == ["u1", "u1"]


def test_a_header_with_bytes_not_valid_in_the_encoding_names_the_file(tmp_path):
    # an extra column named with a latin-1 byte: Arrow could not store the name ("can't encode character")
    folder = write(tmp_path / "data", items=b"item_id,title,g\xe9nre\ni1,Alpha,rock\n")
    with pytest.raises(BadInputError, match=r"items\.csv:1: the header holds bytes that are not valid utf-8"):
        CsvSource(CsvOptions()).load(folder, skip_bad=True)
    # the hint a bad row gets was missing from the header's line: which -o encoding reads it (review s35)
    with pytest.raises(BadInputError, match=r"not valid utf-8; if the file is in another encoding, pass -o encoding"):
        CsvSource(CsvOptions()).load(folder, skip_bad=True)
    utf16 = write(tmp_path / "utf16", items="item_id,title\ni1,Alpha\n".encode("utf-16"))
    with pytest.raises(BadInputError, match=r"UTF-16 byte order mark: pass -o encoding=utf-16"):
        CsvSource(CsvOptions()).load(utf16, skip_bad=False)


def test_a_blank_first_line_is_named_not_read_as_an_empty_header(tmp_path):
    """It was "missing column(s) item_id, title; header is ; required: ..." (review s35)."""
    folder = write(tmp_path / "data", items=b"\nitem_id,title\ni1,Alpha\n")
    with pytest.raises(BadInputError, match=r"items\.csv:1: the line is blank; the header \(the column names\) must"):
        CsvSource(CsvOptions()).load(folder, skip_bad=True)


@pytest.mark.parametrize("skip_bad", [False, True])
def test_bytes_utf16_cannot_decode_name_the_file_and_line(tmp_path, skip_bad):
    # utf-16 has no escape for bad bytes: the file cannot be read past them, and the error named no file or line
    lines = "user_id,item_id,timestamp\n" + "".join(f"u{k},i1,{k}\n" for k in range(2, 400))
    data = lines.encode("utf-16")
    cut = data.index("u300,".encode("utf-16-le"))
    data = data[:cut] + b"\x00\xdc" + data[cut + 2 :]  # a lone low surrogate where line 300 starts
    folder = write(tmp_path / "data", items="item_id,title\ni1,Alpha\n".encode("utf-16"), interactions=data)
    with pytest.raises(BadInputError, match=r"interactions\.csv:300: bytes that are not valid utf-16"):
        CsvSource(CsvOptions(encoding="utf-16")).load(folder, skip_bad=skip_bad)


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_utf8_file_read_as_utf16_names_the_file(tmp_path, skip_bad):
    # utf-16 without a byte order mark raised a plain UnicodeError: "error: UTF-16 stream does not start with BOM",
    # naming no file, when one of the two files was still utf-8
    folder = write(tmp_path / "data", items="item_id,title\ni1,Alpha\n".encode("utf-16"), interactions=b"user_id\n")
    with pytest.raises(BadInputError, match=r"interactions\.csv:1: not utf-16 text \(.*BOM\); is this file in another"):
        CsvSource(CsvOptions(encoding="utf-16")).load(folder, skip_bad=skip_bad)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"encoding": "utf8x"}, "unknown text encoding 'utf8x'"),
        ({"encoding": "base64"}, "'base64' is not a text encoding"),  # a codec, but bytes to bytes: was a traceback
        ({"encoding": "rot13"}, "'rot13' is not a text encoding"),
        ({"delimiter": ";;"}, "the delimiter must be one character"),
        ({"delimiter": '"'}, "other than a quote"),
    ],
)
def test_a_bad_encoding_or_delimiter_is_named_through_the_cli(tmp_path, option, message):
    from typer.testing import CliRunner

    from mgfrec.cli.main import app

    folder = write(tmp_path / "data", items=b"item_id,title\ni1,A\n", interactions=b"user_id,item_id,timestamp\n")
    ((key, value),) = option.items()
    res = CliRunner().invoke(
        app, ["data", "prepare", str(folder), "--out", str(tmp_path / "out"), "-o", f"{key}={value}"]
    )
    assert res.exit_code == 2 and message in " ".join(res.output.split()) and "Traceback" not in res.output


def test_a_title_longer_than_the_csv_modules_default_field_limit_is_read(tmp_path):
    title = "Live " + "x" * 200_000  # the csv module's default limit is 131,072 characters
    folder = write(
        tmp_path / "data",
        items=b"item_id,title\ni1,Alpha\ni2," + title.encode() + b"\n",
        interactions=b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n",
    )
    for skip_bad in (False, True):
        raw = CsvSource().load(folder, skip_bad=skip_bad)
        assert raw.items["title"].tolist() == ["Alpha", title]


def test_an_unclosed_quote_is_refused_naming_the_line_where_it_opened(tmp_path):
    # line 4 opens a quote that only closes on line 12: the rows between would silently become one title
    rows = [b"i%d,Title %d" % (n, n) for n in range(1, 20)]
    rows[2] = b'i3,"Broken title'
    rows[10] = b'i11,"Quoted, Title"'
    folder = write(
        tmp_path / "data",
        items=b"item_id,title\n" + b"\n".join(rows) + b"\n",
        interactions=b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n",
    )
    for skip_bad in (False, True):  # --skip-bad cannot skip it: the lost rows are not counted anywhere
        with pytest.raises(
            BadInputError,
            match=r"items\.csv:4: a quote opened on this line runs on to line 12 \(closed there, or never",
        ):
            CsvSource().load(folder, skip_bad=skip_bad)


def test_an_unclosed_quote_that_keeps_the_field_count_is_refused_too(tmp_path):
    # the swallowed lines hold the delimiter, so they were rows; the quote closes at the end of the file
    items = b'item_id,title\ni1,Alpha\ni2,"Beta\ni3,Gamma\ni4,Delta"\n'
    folder = write(tmp_path / "data", items=items, interactions=b"user_id,item_id,timestamp\nu1,i1,1\n")
    with pytest.raises(BadInputError, match=r"items\.csv:3: a quote opened"):
        CsvSource().load(folder, skip_bad=True)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("items", "titles"),
    [
        (b'item_id,title\n1,"Live at Leeds,\nDeluxe, Remastered"\n2,B\n', ["Live at Leeds, Deluxe, Remastered", "B"]),
        (b'item_id,title\ni1,"Songs,\nthe sequel, part two"\ni2,B\n', ["Songs, the sequel, part two", "B"]),
        # a year on the second line is no id when no id has its length (review s28)
        (
            b'item_id,title\nB000001,A\nB000002,"Live at Budokan\n1978, Remastered"\n',
            ["A", "Live at Budokan 1978, Remastered"],
        ),
    ],
)
def test_a_closed_quoted_title_whose_second_line_holds_a_comma_is_read(tmp_path, items, titles):
    """It was refused, --skip-bad or not, as "a quote opened on this line is not closed": any comma on a title's
    second line made the line look like a row of its own."""
    first = items.split(b"\n")[1].split(b",")[0]
    folder = write(tmp_path / "data", items=items, interactions=b"user_id,item_id,timestamp\nu1,%s,1\n" % first)
    assert CsvSource().load(folder, skip_bad=False).items["title"].tolist() == titles


@pytest.mark.reliability
@pytest.mark.parametrize(
    "items",
    [
        # ids of several shapes (ASINs): the swallowed row's id is not shaped like the first row's
        b'item_id,title\nB00000I1BJ,"Alpha\n0767915909,Beta\nB000002KXA,Gamma"\nB0000AAAA1,Delta\n',
        # the id is not the first column
        b'title,item_id\n"Alpha,i1\nBeta,i2\nGamma",i3\nDelta,i4\n',
    ],
    ids=["asin-shapes", "title-first"],
)
def test_a_swallowed_row_is_refused_whatever_the_ids_shape_or_column(tmp_path, items):
    """A review of the first version of the title rule: both files had two items vanish into one title."""
    folder = write(tmp_path / "data", items=items, interactions=b"user_id,item_id,timestamp\nu1,x,1\n")
    with pytest.raises(
        BadInputError, match=r"items\.csv:2: a quote opened on this line runs on to line 4 \(closed there, or never"
    ):
        CsvSource().load(folder, skip_bad=True)


def test_multiline_true_trusts_a_well_quoted_title_the_check_takes_for_a_swallowed_row(tmp_path):
    """A closed title whose second line begins like a row ("2, the return" beside numeric ids) was refused as a
    quote left open, and nothing could override it (review s30). The refusal names the option."""
    folder = write(
        tmp_path / "data",
        items=b'item_id,title\n1,"Toy Story\n2, the return"\n2,Jumanji\n3,Heat\n',
        interactions=b"user_id,item_id,timestamp\nu1,1,1\nu1,2,2\n",
    )
    with pytest.raises(BadInputError, match=r"items\.csv:2: a quote opened .* pass -o multiline=true"):
        CsvSource().load(folder, skip_bad=True)
    raw = CsvSource(CsvOptions(multiline=True)).load(folder, skip_bad=False)
    assert raw.items["title"].tolist() == ["Toy Story 2, the return", "Jumanji", "Heat"]


def test_a_quote_left_open_at_the_end_of_the_file_is_refused(tmp_path):
    folder = write(
        tmp_path / "data",
        items=b'item_id,title\ni1,Alpha\ni2,"Beta\ni3,Gamma\n',
        interactions=b"user_id,item_id,timestamp\nu1,i1,1\n",
    )
    with pytest.raises(BadInputError, match=r"items\.csv:3: a quote opened"):
        CsvSource().load(folder, skip_bad=True)


@pytest.mark.parametrize("header", [b'user_id,item_id,timestamp,"rating', b'"user_id,item_id,timestamp,rating'])
def test_a_quote_left_open_in_the_header_is_refused(tmp_path, header):
    """The rows up to the closing quote became part of a column name: the read said "read 3 = kept 3 + dropped 0"
    and exited 0 (or, with a required column swallowed, printed every swallowed row in its error)."""
    interactions = header + b'\nu1,i1,1,5\nu1,i2,2,4\nu2,i1,1,3"\nu3,i1,1,5\nu3,i2,2,4\nu3,i3,3,4\n'
    folder = write(tmp_path / "data", interactions=interactions)
    for skip_bad in (False, True):
        with pytest.raises(BadInputError) as err:
            CsvSource().load(folder, skip_bad=skip_bad)
        assert str(err.value) == (
            f"{folder / 'interactions.csv'}:1: a quote opened in the header runs on to line 4 (closed there, or "
            "never: the file's end), so 3 following line(s) were read as part of a column name; close the quote"
        )


@pytest.mark.parametrize("stamp", [b"9007199254740993.0", b"9.007199254740993e15", b"-9007199254740993.00"])
def test_a_decimal_timestamp_beyond_2_53_is_refused(tmp_path, stamp):
    """float64 rounds these to 2**53, where "u1,i2,9007199254740992" became a tie with it."""
    folder = write(tmp_path / "data", interactions=b"user_id,item_id,timestamp\nu1,i1," + stamp + b"\nu1,i2,2\n")
    with pytest.raises(BadInputError, match=r"interactions\.csv:2: field timestamp .* is beyond \+-2\*\*53"):
        CsvSource().load(folder, skip_bad=False)
    raw = CsvSource().load(folder, skip_bad=True)
    rep = raw.report.files["interactions.csv"]
    assert dict(rep.dropped) == {"bad_timestamp": 1} and (rep.read, rep.kept) == (2, 1)


def test_a_huge_bad_value_is_cut_in_the_message(tmp_path):
    """A 1 MB field was quoted whole: a 1 MB error line, and as much in manifest.json and `data stats`."""
    huge = b"x" * 1_000_000
    folder = write(tmp_path / "data", interactions=b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2," + huge + b"\n")
    with pytest.raises(BadInputError) as err:
        CsvSource().load(folder, skip_bad=False)
    said = str(err.value).replace(str(folder), "")  # the temporary folder's path is as long as the machine makes it
    assert len(said) < 300 and "(1,000,000 characters)" in said
    folder = write(tmp_path / "ids", interactions=b"user_id,item_id,timestamp\nu1,i1,1\nu1," + huge + b",2\n")
    with pytest.raises(BadInputError, match=r"item_id 'x+\.\.\. \(1,000,000 characters\) is not in the item table"):
        CsvSource().load(folder, skip_bad=False)


def test_a_folder_where_a_file_belongs_is_named_as_a_folder(tmp_path):
    folder = write(tmp_path / "data")
    (folder / "items.csv").unlink()
    (folder / "items.csv").mkdir()
    with pytest.raises(BadInputError, match=r"items\.csv: a folder, not a file$"):
        CsvSource().load(folder, skip_bad=False)


def test_columns_with_empty_names_are_named(tmp_path):
    folder = write(tmp_path / "data", items=b"item_id,title,,\ni1,Alpha,a,b\n")
    with pytest.raises(BadInputError, match=r"column\(s\) \(an empty name\) appear more than once"):
        CsvSource().load(folder, skip_bad=False)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b"item_idx,item_id,title", ["items.csv:1:", "item_idx", "reserved"]),
        (b"item_id,title,title", ["items.csv:1:", "title", "more than once"]),
    ],
)
def test_a_reserved_or_repeated_column_is_refused_naming_the_file(tmp_path, header, words):
    width = header.count(b",") + 1
    row = b",".join([b"0", b"i1", b"Alpha"][:width] if width == 3 else [b"i1", b"Alpha"])
    folder = write(tmp_path / "data", items=header + b"\n" + row + b"\n", interactions=b"user_id,item_id,timestamp\n")
    with pytest.raises(BadInputError) as info:
        CsvSource().load(folder, skip_bad=True)
    for word in words:
        assert word in str(info.value)


def test_an_interaction_of_an_item_dropped_from_items_csv_says_why_it_is_gone(tmp_path):
    """It was "item_id 'i4' is not in the item table", counted as unknown_item_id, for an item items.csv holds."""
    folder = write(
        tmp_path / "data",
        items=ITEMS + b"i4,   ,rock\n",
        interactions=INTERACTIONS + b"u2,i4,4,5\nu2,i9,5,5\n",
    )
    raw = CsvSource().load(folder, skip_bad=True)
    rep = raw.report.files["interactions.csv"]
    assert rep.read == 5 == rep.kept + rep.dropped_total
    assert dict(rep.dropped) == {"dropped_item": 1, "unknown_item_id": 1}
    assert rep.examples["dropped_item"] == (
        f"{folder / 'interactions.csv'}:5: item_id 'i4' was dropped from items.csv (empty_title, line 5)"
    )


@pytest.mark.parametrize(
    ("row", "reason"),
    [(b"i4,Beta, Deluxe,rock\n", "wrong_field_count"), (b"i4,B\xe9ta,rock\n", "bad_encoding")],
)
def test_an_item_row_dropped_for_its_shape_is_named_by_its_interactions(tmp_path, row, reason):
    # only an empty title was recorded: these said "item_id 'i4' is not in the item table" for a row items.csv holds
    folder = write(tmp_path / "data", items=ITEMS + row, interactions=INTERACTIONS + b"u2,i4,4,5\n")
    rep = CsvSource().load(folder, skip_bad=True).report.files["interactions.csv"]
    assert rep.read == rep.kept + rep.dropped_total and dict(rep.dropped) == {"dropped_item": 1}
    assert rep.examples["dropped_item"].endswith(f"item_id 'i4' was dropped from items.csv ({reason}, line 5)")


def test_a_line_of_spaces_is_blank_and_another_files_delimiter_is_named(tmp_path):
    """A trailing line of spaces was "1 fields, header has 3"; a tab-separated file was only "missing column(s)"."""
    folder = write(tmp_path / "data", items=ITEMS + b"   \n")
    assert CsvSource().load(folder, skip_bad=False).report.files["items.csv"].read == 3
    tabs = write(
        tmp_path / "tabs", items=b"item_id\ttitle\ni1\tAlpha\n", interactions=b"user_id\titem_id\ttimestamp\nu\ti1\t1\n"
    )
    with pytest.raises(
        BadInputError, match=r"it holds '\\t', the delimiter of another file kind: pass -o delimiter=tab"
    ):
        CsvSource().load(tabs, skip_bad=False)
    assert CsvSource(CsvOptions(delimiter="tab")).load(tabs, skip_bad=False).items["title"].tolist() == ["Alpha"]
    assert CsvOptions(delimiter="\\t").delimiter == "\t"


_NFC, _NFD = unicodedata.normalize("NFC", "é1"), unicodedata.normalize("NFD", "é1")


@pytest.mark.parametrize(
    ("item_id", "logged", "said"),
    [
        # both looked the same in the message: "item_id 'é1' is not in the item table"
        (_NFC, _NFD, "only in Unicode normalisation"),
        # a spreadsheet's export writes 7 as 7.0 or 007 in one file only: the message said nothing of why, and
        # --skip-bad, which it suggested, dropped every such row (review s28)
        ("7", "7.0", "is item_id '7' written as another number; ids are read as text"),
        ("7", "007", "is item_id '7' written as another number"),
        ("0012", "12", "is item_id '0012' written as another number"),
        # no number key: 5e1234567 overflowed Decimal's context (a traceback); 31-digit ids were rounded together
        ("12", "5e1234567", "item_id '5e1234567' is not in the item table"),
        ("1234567890123456789012345678902", "1234567890123456789012345678901", "is not in the item table"),
    ],
    ids=["unicode", "float", "zeros", "fewer-zeros", "huge-exponent", "long-digits"],
)
def test_an_id_that_differs_from_an_item_only_in_form_is_named_as_such(tmp_path, item_id, logged, said):
    folder = write(
        tmp_path / "data",
        items=f"item_id,title\n{item_id},Alpha\nx1,Beta\n".encode(),
        interactions=f"user_id,item_id,timestamp\nu1,{logged},1\n".encode(),
    )
    with pytest.raises(BadInputError, match=re.escape(said)) as refused:
        CsvSource().load(folder, skip_bad=False)
    assert "not in the item table" not in said or "another number" not in str(refused.value)


@pytest.mark.parametrize(("kind", "magic"), [("gzip", b"\x1f\x8b\x08\x00"), ("zip", b"PK\x03\x04")])
def test_a_compressed_file_is_named_as_one(tmp_path, kind, magic):
    """A gzipped items.csv was "the header holds bytes that are not valid utf-8" (review s28)."""
    folder = write(tmp_path / "data", items=magic + b"\x00\x01rest")
    with pytest.raises(BadInputError, match=rf"items\.csv: a {kind} file; the csv source reads plain text"):
        CsvSource().load(folder, skip_bad=True)


def test_a_header_in_other_case_gets_the_rename_hint(tmp_path):
    # "missing column(s) item_id, title; header is Item_ID, Title" said nothing of the case
    folder = write(tmp_path / "data", items=b"Item_ID,Title\ni1,Alpha\n")
    with pytest.raises(
        BadInputError, match=r"column names are case-sensitive: rename Item_ID -> item_id, Title -> title"
    ):
        CsvSource(CsvOptions()).load(folder, skip_bad=False)


def test_a_byte_order_mark_at_the_start_of_a_later_line_is_not_part_of_its_id(tmp_path):
    """Two files joined with `cat`, the second starting with a byte order mark and no header: its first row's user
    became "\\ufeffu1", a user of its own, and u1's history lost the item without a word (review s41)."""
    folder = write(
        tmp_path / "a",
        items=b"item_id,title\ni1,A\ni2,B\n\xef\xbb\xbfi3,C\ni4,D\n",
        interactions=b'user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n\xef\xbb\xbfu1,i3,3\n\xef\xbb\xbf"u1",i4,4\n',
    )
    raw = CsvSource().load(folder, skip_bad=False)
    assert raw.items["item_id"].tolist() == ["i1", "i2", "i3", "i4"]
    assert raw.interactions["user_id"].tolist() == ["u1"] * 4


def test_a_stray_byte_in_a_utf8_file_is_not_answered_with_another_encoding(tmp_path):
    """The error suggested -o encoding=latin-1, which read every other title as mojibake ("CafÃ© del Mar") without
    a word; where rows above decoded as non-ASCII UTF-8, the file is UTF-8 with a stray byte (review s41)."""
    items = "item_id,title\na,Café del Mar\n".encode() + b"b,Bj\xf6rk\nc,C\n"
    folder = write(tmp_path / "a", items=items, interactions=b"user_id,item_id,timestamp\nu,a,1\nu,c,2\n")
    with pytest.raises(BadInputError) as info:
        CsvSource().load(folder, skip_bad=False)
    said = str(info.value)
    assert "items.csv:3: field title not valid utf-8; the file holds non-ASCII text that is valid UTF-8" in said
    assert "fix this row, or drop it with --skip-bad" in said and "pass -o encoding" not in said
    # the bad row itself holding the file's first valid UTF-8 ("Café del Mar \xff")
    own = write(
        tmp_path / "c",
        items=b"item_id,title\na,Plain\nb," + "Café del Mar ".encode() + b"\xff\n",
        interactions=b"user_id,item_id,timestamp\n",
    )
    with pytest.raises(BadInputError, match="the file holds non-ASCII text that is valid UTF-8"):
        CsvSource().load(own, skip_bad=False)
    # a file whose first non-ASCII byte is the bad one still gets the encoding hint
    latin = write(
        tmp_path / "b", items=b"item_id,title\na,Bj\xf6rk\nc,Caf\xe9\n", interactions=b"user_id,item_id,timestamp\n"
    )
    with pytest.raises(BadInputError, match="pass -o encoding=latin-1"):
        CsvSource().load(latin, skip_bad=False)

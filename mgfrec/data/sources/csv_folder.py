"""The ``csv`` data source: a folder with ``items.csv`` and ``interactions.csv``.

``items.csv`` needs ``item_id`` and ``title``; any other column is kept as an item attribute.
``interactions.csv`` needs ``user_id``, ``item_id`` and ``timestamp`` (a number, or an ISO 8601 date or date-time,
read as its Unix seconds); ``rating`` is optional.
Every row is checked; a bad row stops the read with its file and line, or is skipped and counted.
"""

from __future__ import annotations

import codecs
import functools
import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mgfrec.data.raw import BadInputError, FileReport, RawLog, ReadReport, RowPolicy, shown
from mgfrec.data.sources.csv_rows import QUOTE_RULE, BadQuote, CutAtCarriageReturn, bad_encoding, read_rows
from mgfrec.validation import is_blank

_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only
_ISO_DATE = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII
)
MAX_TIMESTAMP = 2.0**53
"""Timestamps beyond +-2**53 are refused: float64 no longer holds every integer there, so order could be lost
(Unix seconds, milliseconds and microseconds of any real date are far below it)."""


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    items_file: str = Field("items.csv", description="the item table inside the data folder (item_id, title)")
    interactions_file: str = Field(
        "interactions.csv", description="the interaction log inside the data folder (user_id, item_id, timestamp)"
    )
    encoding: str = Field("utf-8", description="both files' text encoding (Python's codec names: latin-1, cp1252)")
    delimiter: str = Field(",", description="one character between fields (a tab for TSV)")
    # trust the quotes: a field spanning lines is taken as CSV allows, without the check for a quote left open
    # (a title whose second line begins like a row, "2, the return" beside numeric ids, was refused; review s30)
    multiline: bool = Field(
        False, description="trust quotes across lines: a quoted field may span lines without the left-open check"
    )
    # "none": a quote is a character like any other (plain TSV has no quoting, so a title may start with one:
    # `"Weird Al" Yankovic`, which strict CSV quoting refuses; review s38); a field then cannot hold the delimiter
    quoting: Literal["csv", "none"] = Field(
        "csv", description="csv: quotes as CSV defines them; none: a quote is a plain character (plain TSV)"
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (e.g. utf-8, latin-1, cp1252)") from None
        try:
            "".encode(value)  # base64, rot13, zlib, ... are codecs but not text encodings
        except LookupError:
            raise ValueError(f"{value!r} is not a text encoding (e.g. utf-8, latin-1, cp1252)") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        value = {"tab": "\t", "\\t": "\t"}.get(value, value)  # a tab is hard to type in a shell flag
        if len(value) != 1 or value in '\r\n"':
            raise ValueError(f"the delimiter must be one character other than a quote or line break, got {value!r}")
        return value


_PLAIN_DECIMAL = re.compile(r"(\d+)(?:\.(\d*))?")


def _number_key(value: str) -> str | None:
    """``value``'s number as one text (``7``, ``7.0`` and ``007`` alike), None for what is no plain decimal. By its
    digits, not through ``Decimal``: ``5e1234567`` overflowed its context (a traceback) and ids over 28 digits were
    rounded into one another."""
    match = _PLAIN_DECIMAL.fullmatch(value)
    if match is None:
        return None
    whole, fraction = match.group(1).lstrip("0") or "0", (match.group(2) or "").rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _numbers_of(ids: set[str]) -> dict[str, str]:
    """The ids that read as numbers, by :func:`_number_key` (the first in sorted order where several share one)."""
    found: dict[str, str] = {}
    for value in sorted(ids):
        key = _number_key(value)
        if key is not None:
            found.setdefault(key, value)
    return found


class CsvSource:
    """Reads the ``items.csv`` + ``interactions.csv`` folder format of ``../shared/data``."""

    Options = CsvOptions

    def __init__(self, options: CsvOptions | None = None):
        self.options = options or CsvOptions()
        self._utf8_text = False  # a row of the file read so far held non-ASCII text that decoded (see _shape_problem)

    def load(self, path: Path | None, skip_bad: bool) -> RawLog:
        if path is None:
            raise BadInputError("the csv source needs a folder holding items.csv and interactions.csv")
        path = Path(path)
        if not path.is_dir():
            raise BadInputError(f"{path}: not a folder; the csv source reads <folder>/items.csv and interactions.csv")
        policy = RowPolicy(skip_bad)
        report = ReadReport()
        dropped: dict[str, str] = {}  # item ids items.csv held on a dropped row -> why and where
        items = self._items(path / self.options.items_file, policy, report.file(self.options.items_file), dropped)
        interactions = self._interactions(
            path / self.options.interactions_file,
            set(items["item_id"]),
            policy,
            report.file(self.options.interactions_file),
            dropped,
        )
        return RawLog(
            items, interactions, report, source="csv", params={"path": str(path), **self.options.model_dump()}
        )

    def _shape_problem(self, fields: list[str], header: list[str]) -> tuple[str, str] | None:
        """(reason, detail) for a row that is not a row of this file at all, else None."""
        if isinstance(fields, BadQuote):
            return "bad_quote", f"a field has text after its closing quote; {QUOTE_RULE}"
        if isinstance(fields, CutAtCarriageReturn):
            return "carriage_return", (
                "a lone carriage return (\\r) in an unquoted field ends the row here, and the rest of its line is read "
                "as the next row (line numbers from here count it as a line break); quote the field or remove the \\r"
            )
        if len(fields) != len(header):
            # the two usual causes, named: a title's own comma, and a header written with one delimiter too many
            why = (
                "; the header ends with a delimiter"
                if header and not header[-1] and len(fields) == len(header) - 1
                else f"; a field holding the delimiter {self.options.delimiter!r} must be quoted"
                if len(fields) > len(header)
                else ""
            )
            return "wrong_field_count", f"{len(fields)} fields, header has {len(header)}{why}"
        if bad_encoding(fields):
            # skipping it drops the item and its interactions: a file in another encoding wants -o encoding (review
            # s32: only --skip-bad was suggested)
            another = (
                "; if the file is in another encoding, pass -o encoding=latin-1 (or cp1252; to the demo: --set "
                "data.options.encoding=latin-1)"
            )
            utf8 = self.options.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
            # non-ASCII text that decoded, in rows above or in this row itself: following the latin-1 hint garbled
            # every UTF-8 title (review s41)
            decoded = any(not c.isascii() and not bad_encoding([c]) for value in fields for c in value)
            if utf8 and (self._utf8_text or decoded):
                another = (
                    "; the file holds non-ASCII text that is valid UTF-8, so it is UTF-8 with a stray byte here: fix "
                    "this row, or drop it with --skip-bad (-o encoding=latin-1 would garble every UTF-8 title)"
                )
            # the field, as every other bad row's line names it (review s38)
            field = next((name for name, value in zip(header, fields, strict=False) if bad_encoding([value])), None)
            where = f"field {field} " if field else ""
            return "bad_encoding", f"{where}not valid {self.options.encoding}{another if utf8 else ''}"
        self._utf8_text = self._utf8_text or not all(value.isascii() for value in fields)
        for name, value in zip(header, fields, strict=False):
            if "\x00" in value:
                return "nul_byte", f"field {name} holds a NUL byte"
        return None

    def _items(self, path: Path, policy: RowPolicy, rep: FileReport, dropped: dict[str, str]) -> pd.DataFrame:
        header, rows = read_rows(path, ("item_id", "title"), self.options, reserved=("item_idx",))
        self._utf8_text = False
        i_id, i_title = header.index("item_id"), header.index("title")
        seen: dict[str, tuple[int, str]] = {}  # item id -> the line and title kept for it
        kept: list[list[str]] = []
        for line, fields in rows:
            rep.read += 1
            where = f"{path}:{line}"
            problem = self._shape_problem(fields, header)
            if problem is not None:
                policy.bad(rep, problem[0], where, problem[1])
                candidate = fields[i_id].strip() if len(fields) > i_id else ""
                if candidate and "\x00" not in candidate and not bad_encoding([candidate]):
                    # its interactions say why the item is gone (they said "not in the item table")
                    dropped.setdefault(candidate, f"{problem[0]}, line {line}")
                continue
            item_id, title = fields[i_id].strip(), " ".join(fields[i_title].split())
            if [f.strip().lstrip("\ufeff") for f in fields] == header:  # it was kept as an item called "title"
                policy.bad(rep, "repeated_header", where, "the header row again (two files joined into one?)")
                continue
            if not item_id:
                policy.bad(rep, "empty_item_id", where, "field item_id is empty")
                continue
            if is_blank(title):  # a lone zero-width space or control character was kept as a title (review s32)
                shows = "is empty" if not title else "shows nothing (only invisible or control characters)"
                policy.bad(rep, "empty_title", where, f"field title {shows} for item {shown(item_id)}")
                dropped.setdefault(item_id, f"empty_title, line {line}")
                continue
            if item_id in seen:
                first, kept_title = seen[item_id]
                same = "the same title" if title == kept_title else f"title {shown(kept_title)}, not {shown(title)}"
                policy.bad(
                    rep,
                    "duplicate_item_id",
                    where,
                    f"item_id {shown(item_id)} appears again (kept from line {first}, with {same})",
                )
                continue
            seen[item_id] = (line, title)
            fields[i_id], fields[i_title] = item_id, title
            kept.append(fields)
            rep.kept += 1
        return _name_unnamed(pd.DataFrame(kept, columns=header, dtype=str))

    def _interactions(
        self, path: Path, known: set[str], policy: RowPolicy, rep: FileReport, dropped: dict[str, str]
    ) -> pd.DataFrame:
        header, rows = read_rows(path, ("user_id", "item_id", "timestamp"), self.options)
        self._utf8_text = False
        i_user, i_item, i_ts = header.index("user_id"), header.index("item_id"), header.index("timestamp")
        i_rating = header.index("rating") if "rating" in header else None
        seen: set[tuple[str, str, float]] = set()
        users: list[str] = []
        item_ids: list[str] = []
        stamps: list[float] = []
        ratings: list[float] = []
        numbers: dict[str, str] | None = None  # the item ids that read as numbers, by value: built when needed
        # per row, for the check of units: 1 read as Unix seconds (an ISO date, or a number of 1973 to 5138), 2 a
        # plain number beyond them (milliseconds?), 0 neither (small numbers: a sequence, days); and its line
        units: list[int] = []
        lines: list[int] = []
        for line, fields in rows:
            rep.read += 1
            where = f"{path}:{line}"
            problem = self._shape_problem(fields, header)
            if problem is not None:
                policy.bad(rep, problem[0], where, problem[1])
                continue
            if [f.strip().lstrip("\ufeff") for f in fields] == header:  # it was "timestamp 'timestamp' not a number"
                policy.bad(rep, "repeated_header", where, "the header row again (two files joined into one?)")
                continue
            user, item = fields[i_user].strip(), fields[i_item].strip()
            if not user:
                policy.bad(rep, "empty_user_id", where, "field user_id is empty")
                continue
            ts = _number(fields[i_ts])
            dated = False
            if ts is None and not _PLAIN_NUMBER.fullmatch(fields[i_ts].strip()):
                ts = iso_seconds(fields[i_ts])  # exported logs write dates: refused, --skip-bad dropped them all
                dated = ts is not None
            if ts is None or abs(ts) > MAX_TIMESTAMP or _beyond_exact(fields[i_ts]):
                written = ts is not None or _PLAIN_NUMBER.fullmatch(fields[i_ts].strip())  # 1e400: too large
                why = (
                    "is beyond +-2**53"
                    if written
                    else "is not a number (plain digits, point and exponent) or an ISO 8601 date"
                )
                policy.bad(rep, "bad_timestamp", where, f"field timestamp {shown(fields[i_ts])} {why}")
                continue
            rating = math.nan
            if i_rating is not None and fields[i_rating].strip():
                parsed = _number(fields[i_rating])
                if parsed is None:  # 1e309 is a number, too large for a float: it was called "not a number"
                    large = _PLAIN_NUMBER.fullmatch(fields[i_rating].strip())
                    why = "is too large for a float64" if large else "is not a number"
                    policy.bad(rep, "bad_rating", where, f"field rating {shown(fields[i_rating])} {why}")
                    continue
                rating = parsed
            if item not in known and item in dropped:  # it was there: say why it is gone
                why = f"item_id {shown(item)} was dropped from {self.options.items_file} ({dropped[item]})"
                policy.bad(rep, "dropped_item", where, why)
                continue
            if item not in known:
                twin = next((f(item) for f in _NORMAL_FORMS if f(item) != item and f(item) in known), None)
                hint = f" (it differs from item_id {shown(twin)} only in Unicode normalisation)" if twin else ""
                if not twin and _number_key(item) is not None:  # 7.0 or 007 beside 7: a spreadsheet's export
                    numbers = numbers if numbers is not None else _numbers_of(known)
                    twin = numbers.get(_number_key(item))
                    hint = (
                        f" (it is item_id {shown(twin)} written as another number; ids are read as text)"
                        if twin
                        else ""
                    )
                policy.bad(rep, "unknown_item_id", where, f"item_id {shown(item)} is not in the item table{hint}")
                continue
            key = (user, item, ts)
            if key in seen:
                policy.bad(
                    rep,
                    "duplicate_row",
                    where,
                    f"user {shown(user)}, item {shown(item)} at {fields[i_ts]} already seen",
                )
                continue
            seen.add(key)
            units.append(1 if dated or SECONDS_SPAN[0] <= ts < SECONDS_SPAN[1] else 2 if ts >= SECONDS_SPAN[1] else 0)
            lines.append(line)
            users.append(user)
            item_ids.append(item)
            stamps.append(ts)
            ratings.append(rating)
            rep.kept += 1
        frame = pd.DataFrame({"user_id": users, "item_id": item_ids, "timestamp": stamps, "rating": ratings})
        _check_units(path, frame, np.asarray(units, dtype=np.int8), np.asarray(lines, dtype=np.int64))
        return frame


SECONDS_SPAN = (1e8, 1e11)
"""Unix seconds from 1973 to the year 5138: a plain number beyond it is a later unit (milliseconds from 1973 on);
see :func:`_check_units`."""


def _check_units(path: Path, frame: pd.DataFrame, units: np.ndarray, lines: np.ndarray) -> None:
    """Refuse a log merged from exports in two units: at least two users with timestamps that read as Unix seconds
    (ISO dates included) beside at least two with plain numbers beyond them (milliseconds). The split orders all
    users' samples together by time, so every user of the milliseconds part was in test without a word (review
    s38). A user wholly in one unit counts for it; a user with values in both counts for each in which it has two or
    more distinct values, when its numbers beyond seconds are at least ten times its seconds (the same users in an
    older export in milliseconds and a newer one in seconds: their later items went into the histories of earlier
    targets; review s41). So a sentinel (``9999-12-31``, ``253402300799``, even written twice) among a user's real
    dates, one user's odd value, and a milliseconds log whose users span March 1973 (1e11 ms) refuse nothing."""
    if not ((units == 1).any() and (units == 2).any()):
        return
    rows = pd.DataFrame(
        {"user": frame["user_id"].to_numpy(), "unit": units, "line": lines, "ts": frame["timestamp"].to_numpy()}
    )
    known = rows[rows["unit"] > 0]
    stats = known.groupby(["user", "unit"], sort=False)["ts"].agg(["nunique", "min", "max"]).unstack()
    n_s, n_ms = stats["nunique"].get(1), stats["nunique"].get(2)
    n_s = n_s.fillna(0) if n_s is not None else pd.Series(0, index=stats.index)
    n_ms = n_ms.fillna(0) if n_ms is not None else pd.Series(0, index=stats.index)
    apart = stats["min"].get(2) >= 10 * stats["max"].get(1)  # ms of a date beside seconds of one: ~1000x
    apart = apart.fillna(False).astype(bool)
    seconds = stats.index[((n_s >= 1) & (n_ms == 0)) | ((n_s >= 2) & apart)]
    later = stats.index[((n_ms >= 1) & (n_s == 0)) | ((n_ms >= 2) & apart)]
    if len(seconds) < 2 or len(later) < 2:
        return
    line_s = int(known.loc[(known["unit"] == 1) & known["user"].isin(seconds), "line"].min())
    line_ms = int(known.loc[(known["unit"] == 2) & known["user"].isin(later), "line"].min())
    raise BadInputError(
        f"{path}:{line_ms}: {len(later)} users have timestamps that are numbers beyond Unix seconds (milliseconds?; "
        f"the first on this line) and {len(seconds)} users have ones that read as Unix seconds or ISO dates (the first "
        f"on line {line_s}): the split orders every user's samples together by time, so the timestamps of a file "
        "must share one unit; convert them to one"
    )


def _name_unnamed(items: pd.DataFrame) -> pd.DataFrame:
    """The item table without a column whose header name is empty (the header is read whole, so at most one: two
    are refused), which a header and rows that all end with a delimiter make (spreadsheet exports): dropped when no
    kept row holds anything in it, so nothing is lost; else kept as ``column_<n>``, its place counted from 1. It
    was an attribute named "" in ``items.parquet`` (review s37)."""
    if "" not in items.columns:
        return items
    if items[""].str.strip().eq("").all():
        return items.drop(columns=[""])
    place = list(items.columns).index("") + 1
    name = next(n for n in (f"column_{place}", *(f"column_{place}_{k}" for k in range(2, 100))) if n not in items)
    return items.rename(columns={"": name})


# An id typed in one Unicode form in one file and another in the other ("é" composed, "é" decomposed) looks the same
_NORMAL_FORMS = tuple(functools.partial(unicodedata.normalize, form) for form in ("NFC", "NFD"))


def _beyond_exact(text: str) -> bool:
    """A number written beyond +-2**53 that float64 rounds back inside it (``9007199254740993``,
    ``9007199254740993.0``, ``9.007199254740993e15``): the text itself is compared, exactly."""
    try:
        return abs(Decimal(text.strip())) > MAX_TIMESTAMP
    except InvalidOperation:
        return False


def iso_seconds(text: str) -> float | None:
    """The Unix seconds of an ISO 8601 date or date-time (``2020-01-31``, ``2020-01-31T10:00:00Z``,
    ``2020-01-31 10:00:00.5+02:00``), a date or a time without a zone read as UTC; None for anything else (a
    locale's ``01/31/2020`` is not guessed at). The split orders all users' samples together by time, so numbers
    beside dates must be seconds."""
    import datetime as dt

    match = _ISO_DATE.fullmatch(text.strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:  # (Python 3.10's fromisoformat takes no "Z" and at most 6 fraction digits)
        when = dt.datetime.fromisoformat(f"{day}T{clock or '00:00'}{f'.{fraction[:6]:0<6}' if fraction else ''}{zone}")
    except ValueError:  # 2020-02-30, 25:00
        return None
    return when.timestamp()


def _number(text: str) -> float | None:
    """A finite number written plainly (``12``, ``-3.5``, ``1.7e9``); not ``nan``, ``inf`` or ``1_000``,
    which Python's float() would take."""
    text = text.strip()
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None

"""One line of the Amazon Reviews 2023 files, read as R2ec reads it: text cleaning, a review's required fields,
prices, and the calendar arithmetic of the review window (timestamps are milliseconds since the epoch, compared
as UTC dates). :mod:`mgfrec.data.sources.amazon2023` streams the files and applies these per line."""

from __future__ import annotations

import calendar
import datetime as _dt
import html
import math
import re
from typing import Any

from mgfrec.data.raw import shown
from mgfrec.data.sources.csv_folder import MAX_TIMESTAMP

_TAG = re.compile(r"<[^>]+>")
_NON_ASCII = re.compile(r"[^\x00-\x7F]")


def clean_text(text: str, ascii_only: bool = True) -> str:
    """R2ec's text cleaning: HTML entities decoded, tags removed, (optionally) non-ASCII characters
    replaced by spaces, whitespace collapsed."""
    text = _TAG.sub("", html.unescape(text))
    if ascii_only:
        text = _NON_ASCII.sub(" ", text)
    return " ".join(text.split())


def month_ms(day: str) -> int:
    # Review timestamps are milliseconds since the epoch, and R2ec compares them as UTC dates.
    moment = _dt.datetime.fromisoformat(day).replace(tzinfo=_dt.timezone.utc)
    return int(moment.timestamp() * 1000)


EARLIEST_MS = -62_135_596_800_000  # 0001-01-01T00:00Z, the first moment a date can name


def months_back(day: str, months: int) -> str:
    """``day`` moved back ``months`` calendar months (the 31st becomes the last day of a shorter month)."""
    date = _dt.date.fromisoformat(day)
    index = date.year * 12 + date.month - 1 - months
    year, month = index // 12, index % 12 + 1
    if year < 1:  # the calendar's first day: no review is older (see EARLIEST_MS)
        return _dt.date.min.isoformat()
    return _dt.date(year, month, min(date.day, calendar.monthrange(year, month)[1])).isoformat()


def check_review(obj: dict[str, Any], id_fields: tuple[str, ...]) -> tuple[str, str] | None:
    """The first problem with the fields a review needs, as (reason, detail); None when usable."""
    for name in ("user_id", *id_fields):
        value = obj.get(name)
        if value is None:
            return f"missing_{name}", f"field '{name}' is missing"
        if not isinstance(value, str) or not value.strip():
            return f"bad_{name}", f"field '{name}' must be a non-empty string, got {shown(value)}"
    stamp = obj.get("timestamp")
    if stamp is None:
        return "missing_timestamp", "field 'timestamp' is missing"
    if (
        isinstance(stamp, bool)
        or not isinstance(stamp, (int, float))
        or not math.isfinite(stamp)
        or stamp != int(stamp)
        or abs(stamp) > MAX_TIMESTAMP  # beyond it float64 loses integers (and int64 overflows far beyond)
        or stamp < EARLIEST_MS  # before year 1: no calendar date, so no month window can hold it
    ):
        return (
            "bad_timestamp",
            f"field 'timestamp' must be an integer (milliseconds since the epoch, at most 2**53 in size, not "
            f"before year 1), got {shown(stamp)}",
        )
    rating = obj.get("rating")
    if rating is None:
        return "missing_rating", "field 'rating' is missing"
    if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating):
        return "bad_rating", f"field 'rating' must be a number, got {shown(rating)}"
    return None


def numeric_price(value: Any) -> float | None:
    """A numeric price as R2ec's ``float(price)`` accepts it (numbers, numeric strings); else None."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def text_or_none(value: Any, ascii_only: bool) -> str | None:
    return (clean_text(value, ascii_only) or None) if isinstance(value, str) else None


def number_or_nan(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)

"""The ``amazon2023`` data source: the official Amazon Reviews 2023 files of one category, filtered as R2ec.

Input is a folder holding ``<Category>.jsonl[.gz]`` (reviews) and ``meta_<Category>.jsonl[.gz]`` (item
metadata), as ``mgfrec data download amazon2023`` fetches them. The filters run in R2ec's order:

1. repeated reviews of one item by one user are dropped, keeping the earliest, and the whole category is
   cut to its iterative ``k_core`` (5) - what the official ``5core/rating_only`` file that R2ec reads holds;
2. reviews of items without a usable meta line are dropped: no title, a title of more than
   ``max_title_words`` (50) words, HTML in the title, or (``require_price``) no numeric price;
3. only reviews inside ``[window_start, window_end)`` are kept, optionally cut to a ``window_k_core``
   (R2ec's ``K``, 0 by default), and while that leaves fewer than ``min_items`` items the window start moves
   back ``widen_step_months`` at a time, until it reaches the earliest review.

Files are streamed line by line; only the few fields used are kept, as integer-coded arrays. Every line of
both files is accounted for in the :class:`~mgfrec.data.raw.ReadReport`, under the first reason that
dropped it. This module reads local files only; fetching them is :mod:`mgfrec.data.download`'s job.
"""

from __future__ import annotations

import datetime as _dt
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mgfrec.data.jsonl import jsonl_lines, parse_object
from mgfrec.data.kcore import k_core
from mgfrec.data.raw import BadInputError, FileReport, RawLog, ReadReport, RowPolicy, shown
from mgfrec.data.sources.amazon2023_fields import (
    check_review,
    clean_text,
    month_ms,
    months_back,
    number_or_nan,
    numeric_price,
    text_or_none,
)
from mgfrec.validation import is_blank

_MONTH = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def _loosen(opt: Amazon2023Options) -> str:
    """The options a user could loosen when no review survives, from those in use (it suggested ``-o k_core=2``
    to a user who had given it; review s39)."""
    ways = [
        f"-o {name}"
        for name, loose in (("k_core=2", opt.k_core > 2), ("window_k_core=0", opt.window_k_core > 0))
        if loose
    ]
    if opt.require_price:
        ways.append("-o require_price=false")
    ways.append("an earlier -o window_start")
    return "loosen the options, e.g. " + (", ".join(ways[:-1]) + " or " if len(ways) > 1 else "") + ways[-1]


class Amazon2023Options(BaseModel):
    """How to read and filter one category; the defaults reproduce R2ec's preprocessing."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    category: str | None = Field(None, description="e.g. CDs_and_Vinyl; default: the one meta_<Category> file there")
    window_start: str = Field("2022-10", description="first month (YYYY-MM or YYYY-MM-DD) of the time window")
    window_end: str = Field("2023-10", description="end of the window, exclusive (YYYY-MM or YYYY-MM-DD)")
    min_items: int = Field(10_000, ge=0, description="widen the window backwards until at least this many items")
    widen_step_months: int = Field(3, ge=1, description="months the window start moves back per step")
    k_core: int = Field(5, ge=0, description="iterative k-core of the whole category (0 or 1: off)")
    window_k_core: int = Field(0, ge=0, description="k-core again inside the window (R2ec's K; 0: off)")
    max_title_words: int = Field(50, ge=1, description="longer titles (split on spaces, as R2ec) drop the item")
    require_price: bool = Field(True, description="drop items without a numeric price, as R2ec does")
    item_id_field: Literal["parent_asin", "asin"] = Field("parent_asin", description="review field naming the item")
    ascii_titles: bool = Field(True, description="replace non-ASCII characters in titles by spaces, as R2ec")

    @field_validator("window_start", "window_end", mode="before")
    @classmethod
    def _month(cls, value: Any) -> str:
        # YAML turns 2022-10-01 into a date; accept that as well as the string forms.
        if isinstance(value, _dt.date):
            return value.strftime("%Y-%m-%d")
        if isinstance(value, str):
            match = _MONTH.match(value.strip())
            if match:
                year, month, day = int(match[1]), int(match[2]), int(match[3] or 1)
                try:
                    return _dt.date(year, month, day).isoformat()
                except ValueError:
                    pass
        raise ValueError(f"expected a month YYYY-MM or a day YYYY-MM-DD, got {value!r}")

    @model_validator(mode="after")
    def _order(self) -> Amazon2023Options:
        if self.window_start >= self.window_end:
            raise ValueError(f"window_start {self.window_start} must be before window_end {self.window_end}")
        return self


@dataclass
class _Reviews:
    """The kept fields of every usable review line, integer-coded, in file order."""

    user_ids: list[str]
    item_ids: list[str]
    parent_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    parents: np.ndarray  # the meta (parent_asin) code of each review's item
    stamps: np.ndarray
    ratings: np.ndarray
    lines: np.ndarray


class Amazon2023Source:
    """Reads ``<Category>.jsonl[.gz]`` + ``meta_<Category>.jsonl[.gz]`` and filters them as R2ec does."""

    Options = Amazon2023Options

    def __init__(self, options: Amazon2023Options | None = None):
        self.options = options or Amazon2023Options()

    def load(self, path: Path | None, skip_bad: bool) -> RawLog:
        """Read, check and filter one category folder; every line is accounted for in the report."""
        if path is None:
            raise BadInputError(
                "the amazon2023 source needs a folder holding <Category>.jsonl[.gz] and meta_<Category>.jsonl[.gz]"
            )
        folder = Path(path)
        if not folder.is_dir():
            raise BadInputError(f"{folder}: not a folder; the amazon2023 source reads <folder>/<Category>.jsonl[.gz]")
        category = self.options.category or infer_category(folder)
        reviews_path = _one_file(folder, category, "")
        meta_path = _one_file(folder, category, "meta_")
        policy, report = RowPolicy(skip_bad), ReadReport()
        rev_rep, meta_rep = report.file(reviews_path.name), report.file(meta_path.name)
        opt = self.options

        data = self._read_reviews(reviews_path, policy, rev_rep)
        if rev_rep.read == 0:
            raise BadInputError(f"{reviews_path}: empty file; expected one JSON review per line")
        alive = np.ones(len(data.users), dtype=bool)
        stage = _Stages(rev_rep, reviews_path, data)

        alive = stage.drop(alive, _repeats(data), "duplicate_review")
        cored, core_rounds = k_core(data.users, data.items, alive, opt.k_core)
        alive = stage.drop(alive, alive & ~cored, "k_core")

        meta = self._read_meta(meta_path, np.unique(data.parents[alive]), data.parent_ids, policy, meta_rep)
        if meta_rep.read == 0:  # every review was then dropped as item_without_meta, "loosen the options" (s39)
            raise BadInputError(f"{meta_path}: empty file; expected one JSON item per line")
        status = meta.status[data.parents]
        for code, reason in enumerate(_META_STATUS):
            if reason != "ok":
                alive = stage.drop(alive, alive & (status == code), reason)

        in_window, kept, start, steps = self._window(data, alive)
        alive = stage.drop(alive, alive & ~in_window, "outside_window")
        alive = stage.drop(alive, alive & ~kept, "window_k_core")
        rev_rep.kept = int(alive.sum())
        if rev_rep.kept == 0:
            raise BadInputError(
                f"{folder}: no review of {reviews_path.name} survives the filters "
                f"(read {rev_rep.read}; dropped {dict(rev_rep.dropped)}); {_loosen(opt)}"
            )

        items = self._items(data, alive, meta, meta_rep)
        interactions = pd.DataFrame(
            {
                "user_id": np.asarray(data.user_ids, dtype=object)[data.users[alive]],
                "item_id": np.asarray(data.item_ids, dtype=object)[data.items[alive]],
                "timestamp": data.stamps[alive],
                "rating": data.ratings[alive],
            }
        )
        params = {
            **opt.model_dump(mode="json"),
            "path": str(folder),
            "category": category,
            "reviews_file": reviews_path.name,
            "meta_file": meta_path.name,
            "window_start_used": start,
            "widen_steps": steps,
            "k_core_rounds": core_rounds,
        }
        return RawLog(items, interactions, report, source="amazon2023", params=params)

    def _read_reviews(self, path: Path, policy: RowPolicy, rep: FileReport) -> _Reviews:
        id_field = self.options.item_id_field
        id_fields = (id_field,) if id_field == "parent_asin" else (id_field, "parent_asin")
        user_codes: dict[str, int] = {}
        item_codes: dict[str, int] = {}
        parent_codes: dict[str, int] = {}
        parent_of_item: dict[int, tuple[int, int]] = {}  # item code -> (its parent code, the line that set it)
        users, items, parents = array("i"), array("i"), array("i")
        stamps, lines, ratings = array("q"), array("q"), array("d")
        for lineno, raw in jsonl_lines(path):
            rep.read += 1
            where = f"{path}:{lineno}"
            obj = parse_object(raw, rep, policy, where)
            if obj is None:
                continue
            problem = check_review(obj, id_fields)
            if problem is not None:
                policy.bad(rep, problem[0], where, problem[1])
                continue
            item = item_codes.setdefault(obj[id_field].strip(), len(item_codes))
            parent = parent_codes.setdefault(obj["parent_asin"].strip(), len(parent_codes))
            first = parent_of_item.setdefault(item, (parent, lineno))
            if first[0] != parent:  # one item must have one catalogue entry (its meta line is its parent's)
                policy.bad(
                    rep,
                    "inconsistent_parent_asin",
                    where,
                    f"{id_field} {obj[id_field].strip()!r} has parent_asin {obj['parent_asin'].strip()!r} here but "
                    f"{list(parent_codes)[first[0]]!r} at line {first[1]}",
                )
                continue
            users.append(user_codes.setdefault(obj["user_id"].strip(), len(user_codes)))
            items.append(item)
            parents.append(parent)
            stamps.append(int(obj["timestamp"]))
            ratings.append(float(obj["rating"]))
            lines.append(lineno)
        return _Reviews(
            user_ids=list(user_codes),
            item_ids=list(item_codes),
            parent_ids=list(parent_codes),
            users=np.frombuffer(users, dtype=np.int32),
            items=np.frombuffer(items, dtype=np.int32),
            parents=np.frombuffer(parents, dtype=np.int32),
            stamps=np.frombuffer(stamps, dtype=np.int64),
            ratings=np.frombuffer(ratings, dtype=np.float64),
            lines=np.frombuffer(lines, dtype=np.int64),
        )

    def _read_meta(
        self, path: Path, wanted: np.ndarray, parent_ids: list[str], policy: RowPolicy, rep: FileReport
    ) -> _Meta:
        """Check every meta line; keep attributes only of items that still have reviews (memory)."""
        opt = self.options
        code_of = {parent_ids[c]: int(c) for c in wanted}
        meta = _Meta(path, np.zeros(len(parent_ids), dtype=np.int8))
        for lineno, raw in jsonl_lines(path):
            rep.read += 1
            where = f"{path}:{lineno}"
            obj = parse_object(raw, rep, policy, where)
            if obj is None:
                continue
            asin = obj.get("parent_asin")
            if asin is None:
                policy.bad(rep, "missing_parent_asin", where, "field 'parent_asin' is missing")
                continue
            if not isinstance(asin, str) or not asin.strip():
                policy.bad(
                    rep,
                    "bad_parent_asin",
                    where,
                    f"field 'parent_asin' must be a non-empty string, got {shown(asin)}",
                )
                continue
            title = obj.get("title")
            if title is not None and not isinstance(title, str):
                policy.bad(rep, "bad_title", where, f"field 'title' must be a string or null, got {shown(title)}")
                continue
            code = code_of.get(asin.strip())
            if code is not None and code in meta.lines:
                policy.bad(
                    rep,
                    "duplicate_parent_asin",
                    where,
                    f"parent_asin {asin!r} already described at line {meta.lines[code]}",
                )
                continue
            reason = self._reject(title, obj.get("price"))
            if reason is not None:
                rep.drop(reason, where)
                if code is not None:
                    meta.status[code] = _META_STATUS.index("item_" + reason)
                    meta.lines[code] = lineno
                continue
            meta.valid_lines += 1
            if code is None:
                meta.first_unwanted = meta.first_unwanted or lineno
                continue
            meta.status[code] = _META_STATUS.index("ok")
            meta.lines[code] = lineno
            meta.attrs[code] = (
                clean_text(title, opt.ascii_titles),
                text_or_none(obj.get("main_category"), opt.ascii_titles),
                text_or_none(obj.get("store"), opt.ascii_titles),
                numeric_price(obj.get("price")),
                number_or_nan(obj.get("average_rating")),
                number_or_nan(obj.get("rating_number")),
            )
        return meta

    def _reject(self, title: str | None, price: Any) -> str | None:
        """Why an item's meta line makes it unusable (R2ec's order of checks), or None."""
        if title is None or is_blank(clean_text(title, self.options.ascii_titles)):  # (a lone zero-width space too)
            return "no_title"
        if "<span id" in title:
            return "invalid_title"  # scraped page markup instead of a title
        if len(title.split(" ")) > self.options.max_title_words:
            return "title_too_long"
        if self.options.require_price and numeric_price(price) is None:
            return "no_price"
        return None

    def _window(self, data: _Reviews, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, int]:
        """Rows inside the (possibly widened) window, rows also inside its k-core, the start used, steps."""
        opt = self.options
        end_ms = month_ms(opt.window_end)
        earliest = int(data.stamps[alive].min()) if alive.any() else end_ms
        start, steps = opt.window_start, 0
        while True:
            in_window = alive & (data.stamps >= month_ms(start)) & (data.stamps < end_ms)
            kept, _ = k_core(data.users, data.items, in_window, opt.window_k_core)
            enough = np.count_nonzero(np.bincount(data.items[kept], minlength=1)) >= opt.min_items
            # R2ec stops widening once the start year reaches the earliest review's year; stopping at the
            # earliest review itself is the same intent without leaving that year's reviews behind.
            if enough or month_ms(start) <= earliest:
                return in_window, kept, start, steps
            start, steps = months_back(start, opt.widen_step_months), steps + 1

    def _items(self, data: _Reviews, alive: np.ndarray, meta: _Meta, rep: FileReport) -> pd.DataFrame:
        """The catalogue: items with kept reviews, in meta-file order, with their attributes."""
        kept_items = np.unique(data.items[alive])
        parent_of = np.zeros(len(data.item_ids), dtype=np.int64)
        parent_of[data.items] = data.parents
        order = sorted(kept_items.tolist(), key=lambda i: (meta.lines[int(parent_of[i])], i))
        rows = [(data.item_ids[i], *meta.attrs[int(parent_of[i])]) for i in order]
        columns = ["item_id", "title", "main_category", "store", "price", "average_rating", "rating_number"]
        items = pd.DataFrame(rows, columns=columns)
        if self.options.item_id_field != "parent_asin":
            items.insert(2, "parent_asin", [data.parent_ids[int(parent_of[i])] for i in order])
        items = items.astype({"price": "float64", "average_rating": "float64", "rating_number": "float64"})
        kept_parents = {int(parent_of[i]) for i in kept_items}
        rep.kept = len(kept_parents)
        unused = meta.valid_lines - rep.kept
        if unused:
            unused_lines = [meta.lines[c] for c in meta.attrs if c not in kept_parents]
            example = min(unused_lines + ([meta.first_unwanted] if meta.first_unwanted else []))
            rep.dropped["no_kept_reviews"] += unused
            rep.examples.setdefault("no_kept_reviews", f"{meta.path}:{example}")
        return items


# Per-item outcome of the meta file, indexed by parent code; the order is the order reviews are dropped in.
_META_STATUS = (
    "item_without_meta",
    "ok",
    "item_no_title",
    "item_invalid_title",
    "item_title_too_long",
    "item_no_price",
)


@dataclass
class _Meta:
    """What the meta file said about the items that still have reviews, by parent code."""

    path: Path
    status: np.ndarray  # index into _META_STATUS per parent code; 0 (no meta line) until one is seen
    lines: dict[int, int] = field(default_factory=dict)
    attrs: dict[int, tuple] = field(default_factory=dict)
    valid_lines: int = 0
    first_unwanted: int | None = None  # first usable line whose item had no reviews left to begin with


class _Stages:
    """Records a filter stage's dropped review lines in the report, with the first one as the example."""

    def __init__(self, rep: FileReport, path: Path, data: _Reviews):
        self.rep, self.path, self.data = rep, path, data

    def drop(self, alive: np.ndarray, dropped: np.ndarray, reason: str) -> np.ndarray:
        count = int(dropped.sum())
        if count:
            self.rep.dropped[reason] += count
            row, data = int(np.argmax(dropped)), self.data
            user, item = data.user_ids[data.users[row]], data.item_ids[data.items[row]]
            self.rep.examples.setdefault(reason, f"{self.path}:{data.lines[row]}: user {user!r}, item {item!r}")
        return alive & ~dropped


def _repeats(data: _Reviews) -> np.ndarray:
    """Reviews of an item the same user reviewed earlier (ties: the earlier line wins), as the official
    benchmark files drop them."""
    n = len(data.users)
    order = np.lexsort((data.lines, data.stamps, data.items, data.users))
    users, items = data.users[order], data.items[order]
    again = np.zeros(n, dtype=bool)
    if n > 1:
        again[1:] = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    repeated = np.zeros(n, dtype=bool)
    repeated[order[again]] = True
    return repeated


def _candidates(folder: Path, prefix: str, category: str | None) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(prefix)}({re.escape(category) if category else '.+'})\.jsonl(\.gz)?$")
    return sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))


def infer_category(folder: Path) -> str:
    """The category named by the single ``meta_<Category>.jsonl[.gz]`` in ``folder``."""
    metas = _candidates(folder, "meta_", None)
    names = sorted({re.sub(r"\.jsonl(\.gz)?$", "", p.name)[len("meta_") :] for p in metas})
    if len(names) == 1:
        return names[0]
    if not names:
        raise BadInputError(
            f"{folder}: no meta_<Category>.jsonl[.gz] file{_partial(folder, 'meta_*')}; "
            "download one with 'mgfrec data download amazon2023 --category NAME'"
        )
    raise BadInputError(f"{folder}: several categories ({', '.join(names)}); choose one with -o category=NAME")


def _partial(folder: Path, pattern: str) -> str:
    parts = sorted(p.name for p in folder.glob(f"{pattern}.jsonl*.part"))
    return f" (only the unfinished download {parts[0]}: run the download again to complete it)" if parts else ""


def _one_file(folder: Path, category: str, prefix: str) -> Path:
    found = _candidates(folder, prefix, category)
    if len(found) == 1:
        return found[0]
    wanted = f"{prefix}{category}.jsonl or {prefix}{category}.jsonl.gz"
    if not found:
        raise BadInputError(
            f"{folder}: {wanted} not found{_partial(folder, prefix + category)}; "
            f"download it with 'mgfrec data download amazon2023 --category {category}'"
        )
    raise BadInputError(f"{folder}: both {found[0].name} and {found[1].name} exist; keep one of them")

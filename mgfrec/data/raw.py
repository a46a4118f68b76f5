"""The raw interaction log every data source produces, and the account of what was read and dropped.

A source's only job is to produce a :class:`RawLog`: an item table and an interaction table with the
columns below, plus a :class:`ReadReport` in which, for every file, rows read = rows kept + rows dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

ITEM_COLUMNS = ("item_id", "title")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "rating")


def shown(value: Any, limit: int = 60) -> str:
    """A field's value quoted for a message: ``repr``, cut to ``limit`` characters (a 1 MB id stays one line)."""
    text = repr(value)
    size = len(value) if isinstance(value, str) else len(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({size:,} characters)"


class BadInputError(ValueError):
    """Input that cannot be used as it is; the message names the file, line and field."""


@dataclass
class FileReport:
    """Row accounting for one input file (or one processing stage)."""

    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, where)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def check(self, name: str) -> None:
        if self.read != self.kept + self.dropped_total:
            raise AssertionError(f"{name}: read {self.read} != kept {self.kept} + dropped {self.dropped_total}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": self.dropped_total,
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "first_example_by_reason": dict(sorted(self.examples.items())),
        }


@dataclass
class ReadReport:
    """Per-file (and per-filter-stage) row accounting, kept in the prepared manifest."""

    files: dict[str, FileReport] = field(default_factory=dict)

    def file(self, name: str) -> FileReport:
        return self.files.setdefault(name, FileReport())

    def to_dict(self) -> dict[str, Any]:
        for name, rep in self.files.items():
            rep.check(name)
        return {name: rep.to_dict() for name, rep in self.files.items()}


# `data prepare` has --skip-bad; the demo, which prepares its own data, takes the field through --set.
SKIP_HINT = "pass --skip-bad, or --set data.skip_bad=true to the demo, to skip and count such rows"


class RowPolicy:
    """Either stop at the first bad row (the default) or skip it and count it (``--skip-bad``)."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad

    def bad(self, report: FileReport, reason: str, where: str, detail: str) -> None:
        if not self.skip_bad:
            raise BadInputError(f"{where}: {detail} ({SKIP_HINT})")
        report.drop(reason, f"{where}: {detail}")


@dataclass
class RawLog:
    """Items (``item_id``, ``title``, extra attribute columns) and interactions (``user_id``, ``item_id``,
    ``timestamp``, ``rating``), with string ids, as read by a source."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    report: ReadReport
    source: str
    params: dict[str, Any] = field(default_factory=dict)


class DataSource(Protocol):
    """What a ``data_source`` component provides. ``Options`` (a pydantic model) is optional."""

    def __init__(self, options: Any) -> None: ...

    def load(self, path: Path | None, skip_bad: bool) -> RawLog: ...

"""A sweep's grid (paper Figs. 5, 7-8): dotted config fields and their values, from ``--grid`` flags and a
``--grid-file``; its cells, the cartesian product, each named by its values (secrets redacted: :func:`shown_grid`)
and turned into a validated config (:func:`cell_config`). :mod:`mgfrec.experiments.sweep` runs the cells."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mgfrec.config.load import ConfigError, load_yaml, override_value, set_path, validate
from mgfrec.config.redaction import redacted_value
from mgfrec.config.schema import MGFRecConfig

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclass(frozen=True)
class Cell:
    """One grid point: its folder name and the config values it sets (dotted field -> value); ``shown``, the
    values as they may be printed and recorded (secrets redacted: :func:`shown_grid`)."""

    name: str
    values: dict[str, Any]
    shown: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.shown is None:  # a cell built by hand: its values, redacted
            object.__setattr__(self, "shown", {k: redacted_value(k, v) for k, v in self.values.items()})


def _split_values(text: str) -> list[str]:
    """``--grid``'s values split at each comma outside brackets, braces and quotes: ``[ndcg,format],[ndcg]`` is two
    lists (a split at every comma made ``'[ndcg'`` and ``'format]'`` of them)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"" and not text[start:i].strip():  # a quoted value; an apostrophe inside one is text
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_grid_flag(text: str) -> tuple[str, list[Any]]:
    """``"agent.max_groundings=1,3,6"`` -> ``("agent.max_groundings", [1, 3, 6])``; values are YAML scalars."""
    field, sep, values = text.partition("=")
    field = field.strip()
    if not sep or not field or not values.strip():
        raise ConfigError(f"--grid {text}: must look like section.field=value1,value2,...")
    parsed = []
    for raw in _split_values(values):
        if not raw.strip():  # "64," or "1,,3" added a null cell (feedback never cut, an uncapped fit) without a word
            raise ConfigError(
                f"--grid {field}: an empty value in '{values.strip()}'; write null for a null value, or drop the comma"
            )
        # as --set reads a value (YAML 1.2's scalars: 1e-3 a number, 010 ten, yes text; "a #b" the text written,
        # where YAML cut it at the '#')
        parsed.append(override_value(raw.strip()))
    return field, parsed


def read_grid_file(path: str | Path) -> dict[str, list[Any]]:
    """A YAML mapping ``field: [values]`` (a single value counts as a one-element list)."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))  # a field written twice is refused, as in a config
    except OSError as exc:
        raise ConfigError(f"--grid-file {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--grid-file {path}: not UTF-8 text (offset {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:  # one line, file:line, as for --config (PyYAML's own is a block with a caret)
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--grid-file {path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"--grid-file {path}: must be a non-empty mapping of section.field to a list of values")
    nested = next((str(k) for k, v in raw.items() if "." not in str(k) and isinstance(v, dict)), None)
    if nested is not None:  # agent: {max_groundings: [1, 2]} became one cell named agent=__max_groundings...
        raise ConfigError(
            f"--grid-file {path}: key '{nested}' holds a mapping; the keys are dotted fields, e.g. "
            f"'{nested}.{next(iter(raw[nested]), 'field')}: [v1, v2]'"
        )
    bare = next((str(k) for k, v in raw.items() if v is None), None)
    if bare is not None:  # "field:" with nothing after it made a null cell (an uncapped fit) without a word, as an
        # empty --grid value did (review s33)
        raise ConfigError(f"--grid-file {path}: field '{bare}' has no value; write [null] for a null cell")
    return {str(k): list(v) if isinstance(v, list) else [v] for k, v in raw.items()}


def build_grid(
    flags: Sequence[str] = (), grid_file: str | Path | None = None, say: Callable[[str], None] | None = None
) -> dict[str, list[Any]]:
    """The grid from a ``--grid-file`` and repeated ``--grid`` flags (a flag replaces the file's field; ``say``
    gets a note naming the values it replaced, which went without a word; review s31)."""
    grid = read_grid_file(grid_file) if grid_file is not None else {}
    flagged: set[str] = set()
    for text in flags:
        field, values = parse_grid_flag(text)
        if field in flagged:  # the first flag's values would be lost without a word
            raise ConfigError(f"--grid {field} is given twice; give all its values in one flag: {field}=v1,v2,...")
        flagged.add(field)
        if field in grid and grid[field] != values and say is not None:
            shown = ", ".join(str(redacted_value(field, v)) for v in grid[field])
            say(f"note: --grid {field} replaces the values --grid-file {grid_file} gives it ({shown})")
        grid[field] = values
    if not grid:
        raise ConfigError("no grid: give --grid section.field=v1,v2 (repeatable) or --grid-file")
    for field in grid:  # agent and agent.max_groundings: a cell named for one value ran with the other
        inner = next((other for other in grid if other.startswith(field + ".")), None)
        if inner is not None:
            raise ConfigError(
                f"grid fields {field} and {inner}: the first sets the second too, so a cell would be named for a "
                "value it does not run with; give one of them"
            )
    for field, values in grid.items():
        if not values:
            raise ConfigError(f"grid field {field}: no values")
    return grid


def recorded_grid_text(grid: Any) -> str:
    """A grid recorded in ``sweep.json`` as one line of text, redacted: one written before grid values were
    redacted may hold a secret."""
    if not isinstance(grid, dict):
        return repr(grid)
    if all(isinstance(v, list) for v in grid.values()):
        grid = shown_grid(grid)
    return "; ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in grid.items())


def _show(value: Any) -> str:
    return (
        json.dumps(value)
        if isinstance(value, (list, dict))
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def cell_name(values: Mapping[str, Any]) -> str:
    """``{"agent.max_groundings": 3}`` -> ``agent.max_groundings=3``; characters unsafe in a folder name
    become ``_`` so that any value gives a portable path."""
    return _UNSAFE.sub("_", ",".join(f"{k}={_show(v)}" for k, v in values.items()))


def shown_grid(grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """The grid as it may be printed, recorded in ``sweep.json`` and ``summary.*`` and used in folder names: a
    secret field's values (``user_agent.api_key``), URL credentials and secret query parameters redacted
    (``config.redaction.redacted_value``). Two secrets that would read alike are told apart by their place in the grid
    (``<redacted> #2``)."""
    shown: dict[str, list[Any]] = {}
    for name, values in grid.items():
        hidden = [redacted_value(name, v) for v in values]
        shown[name] = [
            f"{h if isinstance(h, str) else '<redacted>'} #{i + 1}" if h != v and hidden.count(h) > 1 else h
            for i, (h, v) in enumerate(zip(hidden, values, strict=True))
        ]
    return shown


NAME_MAX = 255
"""The longest file name, in bytes, of the file systems mgfrec runs on (ext4, xfs, btrfs, APFS, NTFS)."""


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> list[Cell]:
    """The cartesian product of the grid, in flag order, each named by its :func:`shown_grid` values; two cells
    with one folder name are refused, and so is a field whose values are one string (``"48"`` ran the cells 4 and
    8; review s35), not a list, or an empty list (no cell at all, without a word)."""
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError(f"grid: give a mapping of at least one field to its list of values, got {grid!r:.80}")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ConfigError(
                f"grid[{name!r}]: give a list of values, not {type(values).__name__} {values!r:.60} (one string "
                "would be read character by character)"
            )
        if not values:
            raise ConfigError(f"grid[{name!r}]: no values; give at least one")
    fields = list(grid)
    shown = shown_grid(grid)
    cells = [
        Cell(
            cell_name(dict(zip(fields, seen, strict=True))),
            dict(zip(fields, combo, strict=True)),
            dict(zip(fields, seen, strict=True)),
        )
        for combo, seen in zip(itertools.product(*grid.values()), itertools.product(*shown.values()), strict=True)
    ]
    names = [c.name for c in cells]
    for name in names:
        if names.count(name) > 1:  # values that differ, both named, and why their folders do not (review s40)
            a, b = [", ".join(f"{k}={v}" for k, v in (c.shown or {}).items()) for c in cells if c.name == name][:2]
            raise ConfigError(
                f"grid: the cells {a} and {b} would share the folder '{name}' (a cell's folder keeps letters, digits "
                "and . _ = , + -, any other character becoming '_'); give values that differ in those"
            )
        if len(name.encode("utf-8")) > NAME_MAX:  # every such cell failed at run time, "run again" could not help
            raise ConfigError(
                f"grid: the cell folder '{name[:60]}...' would be {len(name.encode('utf-8'))} bytes long, above the "
                f"{NAME_MAX} a file name may have; give shorter values (a template file under a shorter path)"
            )
    return cells


def cell_config(base: MGFRecConfig, cell: Cell) -> MGFRecConfig:
    """``base`` with the cell's values set, validated: a wrong field path is refused naming that path."""
    raw = base.model_dump(mode="json")
    for field, value in cell.values.items():
        raw = set_path(raw, field, value)
    return validate(raw, f"sweep cell {cell.name}")

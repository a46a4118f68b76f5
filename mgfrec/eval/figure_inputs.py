"""The files the figures read, as training and evaluation wrote them: ``RUN/metrics.csv`` and the other CSV files
of a run folder, checked so that a damaged or emptied file is one error naming its file, line and column, never
pandas' own message or a figure drawn from it."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def read_metrics(path: str | Path) -> pd.DataFrame:
    """``RUN/metrics.csv`` (or the run folder holding it) as a frame sorted by ``step``."""
    path = Path(path)
    path = path / "metrics.csv" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics; train the run with 'mgfrec fit' first")
    frame = read_table(path, ())
    if "step" not in frame:
        raise ValueError(f"{path}: no 'step' column; not a metrics file written by 'mgfrec fit'")
    if frame.empty:
        raise ValueError(f"{path}: a header and no rows; nothing to plot (train the run with 'mgfrec fit')")
    check_numbers(frame, path, ["step"], whole=True)
    check_numbers(frame, path, [c for c in frame.columns if c != "step"])
    # inf stays: a diverged run's loss is a record worth drawing
    return frame.sort_values("step")


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV file a command wrote into a run folder, with ``columns`` checked: a damaged or emptied file is
    one error naming it, not pandas' own message."""
    try:
        frame = pd.read_csv(path)
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]}); write it again") from None
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # pandas would read the second as "<name>.1", a column of its own
        raise ValueError(f"{path}:1: column(s) {', '.join(twice)} appear more than once in the header; write it again")
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(missing)}; write it again")
    return frame


def check_numbers(
    frame: pd.DataFrame, path: Path, columns: Sequence[str], *, whole: bool = False, below: int | None = None
) -> None:
    """Refuse a damaged value in ``columns`` of a file a command wrote, naming its line: text where a number
    belongs (an empty cell is fine, except with ``whole``: a count or an index, present in every row, a whole
    number in ``[0, below)``)."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if whole:
            bad |= values.isna() | (values % 1 != 0) | (values < 0) | (values >= below if below is not None else False)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            kind = "a whole number" + (f" in [0, {below})" if below is not None else " from 0") if whole else "a number"
            value = frame[column].iat[row]
            held = "is empty" if pd.isna(value) else f"holds {value!r}" if isinstance(value, str) else f"holds {value}"
            raise ValueError(f"{path}:{row + 2}: column {column} {held}, not {kind}; write it again")
        frame[column] = values

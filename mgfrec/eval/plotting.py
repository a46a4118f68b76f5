"""How mgfrec draws: matplotlib on the Agg backend (files only), one label for each metrics column, and the line
and legend helpers every figure shares. Nothing here reads a run or a sweep; :mod:`mgfrec.eval.figures` and
:mod:`mgfrec.eval.sweep_figures` do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The figures are files, drawn with Agg whatever MPLBACKEND says; a name matplotlib does not know failed its import
# (a traceback of mgfrec figures). It is set aside for the import only: other programs started from here keep it.
_BACKEND = os.environ.pop("MPLBACKEND", None)
try:
    import matplotlib
finally:
    if _BACKEND is not None:
        os.environ["MPLBACKEND"] = _BACKEND

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLUMN_LABELS = {
    "reward/mean": "reward (mean)",
    "ndcg": "reward: ndcg part",
    "valid/ndcg_full": "N_full",
    "valid/ndcg@10": "N@10",
    "valid/format_valid": "format-valid rate",
}


def save_figure(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)  # figures are many in a sweep; free each one
    return path


def column_label(column: str) -> str:
    """One naming scheme for every legend and axis: ``reward/mean`` -> "reward (mean)", the reward's parts
    (``ndcg``, ``reward/format``, a plugin's ``reward/<name>``) -> "reward: <name> part", validation
    columns by the report's labels (N_full, N@10) or in words."""
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column]
    if column.startswith("reward/"):
        return f"reward: {column.removeprefix('reward/')} part"
    return column.removeprefix("valid/")


def integer_steps(ax: Any) -> None:
    """Training steps are whole numbers: no 1.25 on a step axis. (``min_n_ticks=1``: over a single step the locator
    fell back to 0.945, 0.960, ...; review s37.)"""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def draw_line(
    ax: Any,
    x: Sequence[Any],
    y: Sequence[float],
    lo: Any = None,
    hi: Any = None,
    **kw: Any,
) -> None:
    """A line over numeric x, or over evenly spaced labelled ticks for categorical x."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
    pos = np.asarray(x, dtype=float) if numeric else np.arange(len(x))
    line = ax.plot(pos, y, marker="o", **kw)[0]
    if lo is not None and hi is not None and not (pd.isna(lo).any() or pd.isna(hi).any()):
        low, high = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if len(pos) == 1:  # a band over one point has no width: the interval was not drawn at all (review s37)
            mid = np.asarray(y, dtype=float)
            yerr = [np.maximum(mid - low, 0), np.maximum(high - mid, 0)]
            ax.errorbar(pos, mid, yerr=yerr, fmt="none", capsize=4, color=line.get_color())
        else:
            ax.fill_between(pos, low, high, alpha=0.2)
    if not numeric:
        ax.set_xticks(pos, [shown_value(v) for v in x])
    elif all(isinstance(v, int) for v in x):  # a count (groundings, steps): whole-number ticks
        integer_steps(ax)


def shown_value(value: Any) -> str:
    """A swept value as a tick label or legend shows it: as a grid or config writes it (``null``, ``true``, a list
    as JSON), where ``str`` wrote None and True."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def lines_by_others(frame: pd.DataFrame, others: Sequence[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """One line's rows per combination of the ``others`` swept fields, with its legend tag (``field=value, ...``;
    empty when nothing else was swept). Values are grouped by their text (lists: a grid of reward lists; None)."""
    if not others:
        yield "", frame
        return
    keyed = frame.assign(**{f: frame[f].map(shown_value) for f in others})
    for key, group in keyed.groupby(list(others), sort=False):
        yield (
            ", ".join(f"{f}={v}" for f, v in zip(others, key if isinstance(key, tuple) else (key,), strict=False)),
            frame.loc[group.index],
        )

"""The figures of a sweep folder (paper section 5): a metric against each swept value (Figs. 7-8, from ``sweep.json``'s
summaries) and the mean target rank against the grounding limit (Fig. 5-like, from each cell's ``ranks_<split>.csv``:
each cell trained with its limit and ranked from its answers, where the paper limits the groundings at inference and
ranks from the last grounded title; docs/experiments.md). Only the finished cells of the sweep's current grid are
points; nothing here runs a cell."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from mgfrec.data.protocol import SPLITS
from mgfrec.eval.figure_inputs import read_table
from mgfrec.eval.plotting import draw_line, lines_by_others, plt, save_figure
from mgfrec.runs import read_json_object, read_sweep_record

SWEEP_METRICS = ("ndcg_full", "ndcg@10", "mean_rank")  # what a sweep's summary records per cell


def sweep_record(sweep_dir: Path) -> dict[str, Any]:
    """A sweep folder's ``sweep.json``, or one line saying the folder is not a sweep."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{sweep_dir}: not a sweep folder (no sweep.json); make one with 'mgfrec sweep'")
    return read_sweep_record(path)


def on_grid(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The cells of the sweep's current grid, whatever their status. A cell left from an earlier run of the sweep
    with other values (a narrower grid) is not one of its points: its values are not on the grid's axes."""
    grid = record.get("grid") or {}
    return {
        name: entry
        for name, entry in record.get("cells", {}).items()
        if set(entry.get("values", {})) == set(grid) and all(entry["values"][f] in values for f, values in grid.items())
    }


def grid_cells(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The finished cells of the sweep's current grid (:func:`on_grid`)."""
    return {name: entry for name, entry in on_grid(record).items() if entry.get("status") == "finished"}


def stored_evaluations(sweep_dir: Path, record: dict[str, Any], split: str) -> dict[str, dict[str, Any] | None]:
    """Each finished grid cell's ``eval_<split>.json`` as it is on disk now (None where there is none), each read
    once: the staleness check and Fig. 5 both ask."""
    found: dict[str, dict[str, Any] | None] = {}
    for name in grid_cells(record):
        path = sweep_dir / name / f"eval_{split}.json"
        found[name] = read_json_object(path, "evaluate the cell again") if path.is_file() else None
    return found


def check_summaries_current(
    sweep_dir: Path, record: dict[str, Any], stored_by_cell: dict[str, dict[str, Any] | None] | None = None
) -> None:
    """Refuse a sweep whose finished cells' stored evaluations are no longer the ones ``sweep.json`` summarises: a
    cell evaluated again (on another subsample, or ranked the other way) or trained again into its folder (its
    results retired, or replaced by the new policy's). Figs. 7-8 drew the summary's numbers beside a Fig. 5 drawn
    from the new ones, without a word (review s30). ``stored_by_cell``: :func:`stored_evaluations` of the summary's
    split, where the caller has read them already."""
    split = record.get("summary_split")
    if not isinstance(split, str):
        return  # a sweep of before the field: nothing to compare against
    if stored_by_cell is None:
        stored_by_cell = stored_evaluations(sweep_dir, record, split)
    stale: list[tuple[str, str]] = []  # (cell, why)
    for name, entry in grid_cells(record).items():
        summary = entry.get("summary") or {}
        if not summary:
            continue
        stored = stored_by_cell.get(name)
        if stored is None:
            stale.append((name, f"eval_{split}.json is gone"))
            continue
        differs = [
            key
            for key in ("samples", "ndcg_full", "mean_rank")
            if key in summary and isinstance(stored.get(key), (int, float)) and stored[key] != summary[key]
        ]
        if differs:
            stale.append((name, f"{differs[0]} {stored[differs[0]]} against {summary[differs[0]]}"))
    if stale:
        name, why = stale[0]
        entry = record["cells"][name]
        limit = (entry.get("settings_shown") or {}).get("eval_limit")
        cut = f" --limit {limit}" if isinstance(limit, int) else ""
        cell = sweep_dir / name
        # the cell's own config.yaml holds the eval section the sweep used (evaluate reads eval.* from --config)
        again = (
            f"mgfrec evaluate {shlex.quote(str(cell))} --split {split}{cut} --config "
            f"{shlex.quote(str(cell / 'config.yaml'))}"
        )
        more = f" (and {len(stale) - 1} more cell(s))" if len(stale) > 1 else ""
        raise ValueError(
            f"{sweep_dir}: cell {name}{more} no longer holds the {split} evaluation sweep.json summarises ({why}: "
            f"evaluated or trained again since); evaluate it as the sweep did ({again}), or run the sweep into a new "
            "folder"
        )


def sweep_points(sweep_dir: str | Path, metric: str = "ndcg_full") -> pd.DataFrame:
    """One row per finished cell of a sweep's grid: its grid values, ``metric`` and the metric's interval."""
    sweep_dir = Path(sweep_dir)
    record, rows = sweep_record(sweep_dir), []
    check_summaries_current(sweep_dir, record)
    for name, entry in grid_cells(record).items():
        summary = entry.get("summary") or {}
        if summary.get(metric) is None:
            continue
        rows.append(
            {
                "cell": name,
                **entry["values"],
                metric: summary[metric],
                "lo": summary.get(f"{metric}_lo"),
                "hi": summary.get(f"{metric}_hi"),
            }
        )
    frame = pd.DataFrame(rows)
    for field in record.get("grid") or {}:  # as given: a column of 32 and null became 32.0 and NaN, the NaN point
        if field in frame:  # left out of Figs. 7-8 without a word and the legends "=32.0", "=nan" (review s33)
            frame[field] = pd.Series([row[field] for row in rows], index=frame.index, dtype=object)
    return frame


def plot_sweep(
    sweep_dir: str | Path,
    out_dir: str | Path,
    metric: str = "ndcg_full",
    prefix: str = "",
) -> dict[str, Path]:
    """Figs. 7-8: for each swept field, ``metric`` (with its interval band) against the field's values;
    with several fields, one line per combination of the others. Returns field -> PNG path."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    points = sweep_points(sweep_dir, metric)
    if points.empty:
        raise ValueError(f"{sweep_dir}: no finished cell with '{metric}' to plot")
    record = sweep_record(sweep_dir)
    grid = record.get("grid") or {}
    split = record.get("summary_split")  # the split the summary (and so these curves) was evaluated on
    shown = f"{metric} ({split})" if isinstance(split, str) else metric
    fields = list(grid)
    written = {}
    for field in fields:
        others = [f for f in fields if f != field]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for tag, group in lines_by_others(points, others):
            group = group.iloc[_x_order(list(group[field]), list(grid[field] or []))]
            draw_line(
                ax,
                list(group[field]),
                group[metric],
                group["lo"],
                group["hi"],
                label=tag or None,
            )
        ax.set(xlabel=field, ylabel=shown, title=f"{shown} vs {field}")
        if others:
            ax.legend(fontsize="small")
        written[field] = save_figure(fig, out_dir / f"{prefix}sweep_{field}_{metric}.png".replace("/", "_"))
    return written


def _x_order(values: list[Any], grid_values: list[Any]) -> list[int]:
    """Row positions in x order: numbers by value; anything else (names, lists, mappings such as
    ``retriever.options``, which do not compare) in the order the grid lists them."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sorted(range(len(values)), key=lambda i: values[i])

    def place(v: Any) -> int:
        return next((n for n, g in enumerate(grid_values) if g == v), len(grid_values))

    return sorted(range(len(values)), key=lambda i: place(values[i]))


def mean_rank_by_limit(
    sweep_dir: str | Path, split: str = "valid", field: str = "agent.max_groundings"
) -> pd.DataFrame:
    """Fig. 5's data: per finished cell of the grid, its ``field`` value (``limit``), the values of the other swept
    fields, and the mean target rank from ``ranks_<split>.csv``. Every cell must hold the same samples: a cell
    evaluated again on fewer (``mgfrec report --limit``) is refused, as its mean is not comparable."""
    sweep_dir = Path(sweep_dir)
    rows, samples, unranked, ranked_how, lines = [], {}, [], {}, {}
    record = sweep_record(sweep_dir)
    stored_by_cell = stored_evaluations(sweep_dir, record, split)
    check_summaries_current(sweep_dir, record, stored_by_cell if record.get("summary_split") == split else None)
    for name, entry in grid_cells(record).items():
        path = sweep_dir / name / f"ranks_{split}.csv"
        stored = stored_by_cell.get(name)
        if stored is not None:  # mixed: one cell ranked with its history, one without (review s30)
            ranked_how[name] = stored.get("exclude_history")
        if field not in entry["values"]:
            continue
        if not path.is_file():
            unranked.append(name)  # left out without a word, while Figs. 7-8 drew it from sweep.json
            continue
        ranks = read_table(path, ("sample_id", "rank"))
        if not pd.api.types.is_numeric_dtype(ranks["rank"]) or ranks["rank"].isna().any():
            # a NaN rank was averaged around (the mean of the others), where report refuses the same file
            raise ValueError(f"{path}: column rank holds values that are not numbers; write it again")
        samples[name] = frozenset(ranks["sample_id"].astype(str))
        others = {f: v for f, v in entry["values"].items() if f != field}
        lines[name] = json.dumps(others, sort_keys=True, default=str)  # one line of the figure
        rows.append({"limit": entry["values"][field], **others, "mean_rank": float(ranks["rank"].mean())})
    if not rows:
        others = [s for s in SPLITS if s != split and any(sweep_dir.glob(f"*/ranks_{s}.csv"))]
        hint = f" (its cells were evaluated on {' and '.join(others)}: pass --split {others[0]})" if others else ""
        raise ValueError(f"{sweep_dir}: no finished cell that sweeps {field} and has ranks_{split}.csv{hint}")
    if unranked:
        shown = ", ".join(unranked[:3]) + (f" and {len(unranked) - 3} more" if len(unranked) > 3 else "")
        raise ValueError(
            f"{sweep_dir}: finished cell(s) {shown} hold no ranks_{split}.csv, so Fig. 5 would leave them out; "
            f"evaluate them (mgfrec evaluate CELL --split {split}) or run the sweep again"
        )
    hows = {name: how for name, how in ranked_how.items() if how is not None and name in lines}
    # within one line of the figure (the other swept fields alike): a grid over eval.exclude_history draws a line
    # for each way, each comparable in itself
    odd = next((n for n in hows for m in hows if lines[n] == lines[m] and hows[n] != hows[m]), None)
    if odd is not None:
        first = next(m for m in hows if lines[m] == lines[odd] and hows[m] != hows[odd])
        first, odd = sorted((first, odd))
        raise ValueError(
            f"{sweep_dir}: cells {first} (exclude_history {str(hows[first]).lower()}) and {odd} "
            f"({str(hows[odd]).lower()}) were ranked differently, so their mean ranks are not comparable; evaluate "
            f"them one way (mgfrec evaluate CELL --split {split} [--no-exclude-history])"
        )
    names = list(samples)
    other = next((n for n in names if samples[n] != samples[names[0]]), None)
    if other is not None:
        raise ValueError(
            f"{sweep_dir}: cells {names[0]} ({len(samples[names[0]])} samples) and {other} ({len(samples[other])}) "
            f"hold ranks_{split}.csv of different samples, so their mean ranks are not comparable; evaluate every "
            f"cell on one split and subsample (mgfrec evaluate CELL --split {split} [--limit N])"
        )
    return pd.DataFrame(rows).sort_values("limit", kind="stable").reset_index(drop=True)


def plot_mean_rank_vs_limit(sweep_dir: str | Path, out_dir: str | Path, split: str = "valid", prefix: str = "") -> Path:
    """Fig. 5-like (see the module): mean target rank (lower is better) against the grounding limit
    ``agent.max_groundings``; with other swept fields, one line per combination of their values."""
    frame = mean_rank_by_limit(sweep_dir, split)
    others = [c for c in frame.columns if c not in ("limit", "mean_rank")]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for tag, group in lines_by_others(frame, others):
        draw_line(ax, list(group["limit"]), group["mean_rank"], label=tag or None)
    if others:
        ax.legend(fontsize="small")
    ax.set(
        xlabel="grounding limit (agent.max_groundings)",
        ylabel=f"mean target rank ({split})",
        title="Mean rank vs grounding limit",
    )
    return save_figure(fig, Path(out_dir) / f"{prefix}mean_rank_vs_limit.png")

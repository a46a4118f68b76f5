"""A sweep's summary: one row per cell (metrics with their intervals, the agent's own statistics) as CSV,
markdown and a terminal table."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mgfrec.atomic import atomic_write, atomic_write_text

# Summary columns: the metric means with their bootstrap intervals, then the agent's own statistics.
SUMMARY_COLUMNS = (
    "cell",
    "status",
    "ndcg_full",
    "ndcg_full_lo",
    "ndcg_full_hi",
    "ndcg@10",
    "ndcg@10_lo",
    "ndcg@10_hi",
    "mean_rank",
    "format_valid",
    "mean_groundings",
    "error",
    "samples",  # how many samples the cell was evaluated on (added last: scripts may read columns by place)
)


def cell_summary(run_dir: str | Path, split: str = "valid") -> dict[str, Any]:
    """What the summary table shows of a finished cell: ``eval_<split>.json`` metrics with intervals and
    ``agent_<split>.json`` statistics (missing files leave the fields out)."""
    from mgfrec.runs import read_json_object

    run_dir, out = Path(run_dir), {}
    again = "delete it and run the sweep again: the cell is evaluated again"
    path = run_dir / f"eval_{split}.json"
    if path.is_file():
        payload = read_json_object(path, again)  # a damaged file was a bare JSONDecodeError naming no file
        if "samples" in payload:
            out["samples"] = payload["samples"]
        for metric in ("ndcg_full", "ndcg@10", "mean_rank"):
            if metric in payload:
                out[metric] = payload[metric]
                lo, hi = (payload.get("ci") or {}).get(metric, (None, None))
                out[f"{metric}_lo"], out[f"{metric}_hi"] = lo, hi
    path = run_dir / f"agent_{split}.json"
    if path.is_file():
        stats = read_json_object(path, again)
        out.update({k: stats[k] for k in ("format_valid", "mean_groundings") if k in stats})
    return out


def summary_rows(record: Mapping[str, Any], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One flat row per cell (``names`` order, default all recorded cells) with :data:`SUMMARY_COLUMNS`."""
    rows = []
    for name in names if names is not None else list(record["cells"]):
        entry = record["cells"].get(name, {})
        row = {
            "cell": name,
            "status": entry.get("status", "pending"),
            **entry.get("summary", {}),
        }
        row["error"] = entry.get("error", "")
        rows.append({c: row.get(c) for c in SUMMARY_COLUMNS})
    return rows


def _fmt(row: Mapping[str, Any], metric: str) -> str:
    value = row.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    return f"{value:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else "")


def samples_note(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """A warning when the finished cells were evaluated on different numbers of samples (say, an earlier run
    of the sweep with another --eval-limit): their means are then not comparable row to row."""
    sizes = sorted({int(r["samples"]) for r in rows if r.get("samples") is not None})
    if len(sizes) < 2:
        return None
    return (
        f"note: the cells were evaluated on different numbers of samples ({', '.join(map(str, sizes))}): their "
        "means are not comparable row to row; evaluate them on one split and subsample (mgfrec report --limit)"
    )


def summary_markdown(rows: Sequence[Mapping[str, Any]], split: str | None = None) -> str:
    """The summary as a markdown table (metrics with their intervals in brackets), under a line naming the split
    its numbers are of (``split``; only sweep.json said so: a sweep with ``--eval-split test`` first showed test
    numbers nothing labelled; review s38)."""
    head = ["cell", "status", "n", "N_full", "N@10", "format valid", "groundings"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if split:
        lines[:0] = [f"Each cell evaluated on the {split} split (n: its samples).", ""]
    for r in rows:
        fv, mg = r.get("format_valid"), r.get("mean_groundings")
        # a multi-line error (a hub's, CUDA's) split the row across lines, and the table with it (review s33)
        status = r["status"] + (f" ({' '.join(str(r['error']).split())})" if r.get("error") else "")
        cells = [
            f"`{r['cell']}`",
            status.replace("|", "\\|"),
            "-" if r.get("samples") is None else str(r["samples"]),
            _fmt(r, "ndcg_full"),
            _fmt(r, "ndcg@10"),
            "-" if fv is None else f"{fv:.3f}",
            "-" if mg is None else f"{mg:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = samples_note(rows)
    return "\n".join([*lines, *(["", f"- {note}"] if note else [])]) + "\n"


def write_summary(out: str | Path, rows: Sequence[Mapping[str, Any]], split: str | None = None) -> dict[str, Path]:
    """``OUT/summary.csv`` (one column per :data:`SUMMARY_COLUMNS`) and ``OUT/summary.md`` (naming ``split``)."""
    out = Path(out)
    paths = {"csv": out / "summary.csv", "md": out / "summary.md"}

    def write_csv(handle: Any) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(paths["csv"], write_csv, text=True)  # read beside a running sweep: whole or not at all
    atomic_write_text(paths["md"], summary_markdown(rows, split))
    return paths


def summary_table(rows: Sequence[Mapping[str, Any]], title: str = "sweep"):
    """The summary as a rich table for the terminal."""
    from rich.table import Table

    table = Table(title=title, caption=samples_note(rows))
    for col in ("cell", "status", "n", "N_full", "N@10", "format valid", "groundings"):
        # a cell's name wraps rather than being cut: "agent.max_…" told no two cells apart at 80 columns
        table.add_column(col, justify="left" if col in ("cell", "status") else "right", overflow="fold")
    for r in rows:
        fv, mg = r.get("format_valid"), r.get("mean_groundings")
        table.add_row(
            r["cell"],
            r["status"],
            "-" if r.get("samples") is None else str(r["samples"]),
            _fmt(r, "ndcg_full"),
            _fmt(r, "ndcg@10"),
            "-" if fv is None else f"{fv:.3f}",
            "-" if mg is None else f"{mg:.2f}",
        )
    return table

"""A report as a terminal shows it: a rich table that fits the terminal's width (the most telling metrics first,
short intervals) and the legend under it. The report files (:meth:`mgfrec.eval.report.Report.write`) hold every
metric and the full intervals; this module only draws what :class:`~mgfrec.eval.report.Report` holds."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mgfrec.ranking.results import label
from mgfrec.ranking.stats import bootstrap_can_reject
from mgfrec.text.terminal import terminal_safe

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from mgfrec.eval.report import Report, ReportRow

BETTER, WORSE = "▲", "▼"
TERMINAL_ORDER = ("ndcg@10", "ndcg_full", "hit@10")  # the metrics a narrow terminal shows first


def short(value: float) -> str:
    """``0.438`` -> ``.438``, ``1.0`` -> ``1.00``: an interval bound in few characters."""
    if value >= 1.0 or value < 0:
        return f"{value:.2f}"
    return f"{value:.3f}".lstrip("0") or ".000"


def plain_cell(report: Report, r: ReportRow, m: str) -> str:
    """One cell as plain text, for measuring how wide it is."""
    v = r.result.metrics[m]
    lo, hi = r.result.ci.get(m, (math.nan, math.nan))
    interval = "" if math.isnan(lo) else f" [{short(lo)},{short(hi)}]"
    return f"{v:.3f}{r.mark(m)}{interval}"


def styled_cell(report: Report, r: ReportRow, m: str) -> Text:
    """One mean as styled text: bold when best, the significance mark, the interval dimmed."""
    from rich.text import Text

    v = r.result.metrics[m]
    lo, hi = r.result.ci.get(m, (math.nan, math.nan))
    cell = Text(f"{v:.3f}", style="bold" if report.is_best(r, m) else "")
    cell.append(r.mark(m))
    if not math.isnan(lo):
        cell.append(f" [{short(lo)},{short(hi)}]", style="dim")
    return cell


def terminal_table(report: Report, width: int | None = None, files: bool = True) -> Table:
    """A rich table for a terminal ``width`` columns wide (default: the terminal's): one row per run, names
    whole, each mean with its significance mark and a short interval (``[.438,.620]``), and as many
    metrics as fit, most telling first (N@10, N_full, H@10, then the other K); every metric and the
    full intervals are in the report files (``files``: written; without them the caption says how to get
    them). :func:`legend` says how to read it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    width = width or Console().width
    rows = report.rows
    names = [f"{r.name} (ref)" if r.is_reference else r.name for r in rows]
    one_n = len({r.result.samples for r in rows}) == 1
    used = max(len(n) for n in names) + 2 + (0 if one_n else 8)
    shown: list[str] = []
    for m in [m for m in TERMINAL_ORDER if m in report.columns] + [
        m for m in report.columns if m not in TERMINAL_ORDER
    ]:
        cell = max(len(label(m)), max(len(plain_cell(report, r, m)) for r in rows)) + 2
        if shown and used + cell > width:
            break
        shown.append(m)
        used += cell
    shown = [m for m in report.columns if m in shown]  # in the files' order
    title = f"{report.split}" + (f", n = {rows[0].result.samples:,}" if one_n else "")
    hidden = [label(m) for m in report.columns if m not in shown]
    where = "in the report files" if files else "not shown; --out DIR or --json gives every metric"
    caption = Text(f"{', '.join(hidden)}: {where}", style="dim") if hidden else None
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("run", no_wrap=True)
    if not one_n:
        table.add_column("n", justify="right")
    for m in shown:
        table.add_column(label(m), justify="right", no_wrap=True)
    for name, r in zip(names, rows, strict=False):
        cells = [*([] if one_n else [f"{r.result.samples:,}"]), *(styled_cell(report, r, m) for m in shown)]
        table.add_row(Text(terminal_safe(name)), *cells)  # a run folder's name is text: shown, never acted on
    return table


def bold_meaning(report: Report) -> str:
    """What bold means in the terminal legend: the report file's qualifier where some rows are on other
    samples."""
    if not report.bolds():  # the report file says "Nothing is bold"; the terminal described a bold none had (s40)
        return "none (no row besides the reference was compared on its samples)"
    return "best of the rows compared on the same samples" if report.uncompared() else "best"


def legend(report: Report) -> list[str]:
    """The lines under :func:`terminal_table`: what the marks, the brackets, N_full and "(ref)" mean, and, where
    the bootstrap has too few resamples to reject, that nothing can be marked."""
    pct = f"{report.confidence:.0%}"
    marks = f"(ref): the reference run; {BETTER}/{WORSE}: significantly better/worse than it"
    if report.bootstrap_samples > 0:
        lines = [
            f"{marks} (alpha {report.alpha:g}; each cell tested alone, no correction across metrics or runs)",
            f"[lo,hi]: {pct} bootstrap interval; bold: {bold_meaning(report)}; N_full: NDCG without cut-off",
        ]
        if not bootstrap_can_reject(report.bootstrap_samples, report.alpha):  # said only in the report file
            lines.append(
                f"with {report.bootstrap_samples} resamples no difference can be marked and each [lo,hi] rests on "
                f"{report.bootstrap_samples} resampled means; give at least "
                f"{math.floor(2 / report.alpha)} (--bootstrap)"
            )
        return lines
    return [  # eval.bootstrap_samples: 0: no interval is shown, and the sign test alone decides
        f"{marks} by the exact sign test alone (alpha {report.alpha:g})",
        f"no intervals (eval.bootstrap_samples: 0); bold: {bold_meaning(report)}; N_full: NDCG without cut-off",
    ]

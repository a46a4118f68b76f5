"""Tables in the style of the paper's Table 4, built from run folders, with intervals and paired tests.

One row per run; columns H@5 N@5 H@10 N@10 H@20 N@20 N_full, each a mean with its bootstrap interval.
Every row is compared with a reference run (the first, or the one named) on the same samples by
:func:`mgfrec.ranking.stats.paired_test`; only differences both tests call significant are marked
(▲ better, ▼ worse than the reference). The best mean of each metric is bold, as in the paper, whether or
not it is significantly better.

This module reads stored results (evaluating runs that lack one) and formats them; it computes no scores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mgfrec.atomic import atomic_write, atomic_write_text
from mgfrec.config.schema import EvalConfig
from mgfrec.data.protocol import check_limit, subsample_ids
from mgfrec.eval.report_table import (  # noqa: F401 - TERMINAL_ORDER: moved to report_table.py, still here
    BETTER,
    TERMINAL_ORDER,
    WORSE,
    legend,
    terminal_table,
)
from mgfrec.eval.runs import result_for_run
from mgfrec.ranking.metrics import LOWER_IS_BETTER, metric_names
from mgfrec.ranking.results import EvalResult, label
from mgfrec.ranking.stats import MismatchedSamplesError, PairedComparison, bootstrap_can_reject
from mgfrec.registry import Registry, with_registry
from mgfrec.runs import json_ready, read_json_object, read_run_info

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class ReportRow:
    """One run in the table and how it compares with the reference run."""

    name: str
    path: str
    result: EvalResult
    is_reference: bool
    comparison: dict[str, PairedComparison] | None  # None for the reference, or when not comparable
    comparison_error: str | None = None
    stopped: str | None = None  # run.json extra.stopped: "user" for a training a signal ended early

    def stopped_note(self) -> str | None:
        """The line for a row whose training a signal ended before it finished (its best epoch so far)."""
        if self.stopped != "user":
            return None
        return (
            f"{self.name}: its training was stopped (Ctrl-C or SIGTERM) before it ended; the row is its best "
            "epoch so far"
        )

    def mark(self, metric: str) -> str:
        """▲ / ▼ when significantly better / worse than the reference on ``metric``, else ''."""
        comp = (self.comparison or {}).get(metric)
        if comp is None or not comp.significant:
            return ""
        return BETTER if comp.better == "a" else WORSE


@dataclass(frozen=True)
class Report:
    """Rows of runs evaluated on one split, and the settings of the comparison."""

    split: str
    reference: str
    rows: list[ReportRow]
    ks: tuple[int, ...]
    alpha: float
    confidence: float
    bootstrap_samples: int

    @property
    def columns(self) -> list[str]:
        """The Table-4 columns: hit@k, ndcg@k per k, then ndcg_full (mean rank is in JSON and CSV only)."""
        return [m for m in metric_names(self.ks) if m != "mean_rank"]

    @property
    def metrics(self) -> list[str]:
        return metric_names(self.ks)

    def best(self, metric: str) -> float:
        """The best mean of ``metric`` among the rows on the reference's samples (a row that could not be compared,
        e.g. on a subsample, covers other samples: its mean is no rival of theirs, and it is never bold)."""
        values = [r.result.metrics[metric] for r in self.rows if r.comparison_error is None]
        return min(values) if metric in LOWER_IS_BETTER else max(values)

    def is_best(self, row: ReportRow, metric: str) -> bool:
        """Whether ``row``'s mean is shown bold: the best of the rows on the reference's samples, and one of them,
        when there are two such rows at least (the reference alone was bold in every column, above rows on other
        samples that beat it: "best" of nothing; review s34)."""
        return self.bolds() and row.comparison_error is None and row.result.metrics[metric] == self.best(metric)

    def bolds(self) -> bool:
        """Whether any mean is bold: two rows at least are on the reference's samples (it among them)."""
        return len(self.rows) - len(self.uncompared()) >= 2

    def exclude_history(self) -> bool | None:
        """How the rows were ranked (``eval.exclude_history``): True or False when every row that records it agrees,
        None when none records it or they differ (such rows are not compared, and each says why)."""
        seen = {r.result.exclude_history for r in self.rows if r.result.exclude_history is not None}
        return seen.pop() if len(seen) == 1 else None

    def convention(self) -> str | None:
        """The line that says how items were ranked: the numbers move by ~30% with it, and docs/evaluation.md asks
        that it be stated with every number; the tables said nothing of it (review s32)."""
        excluded = self.exclude_history()
        if excluded is None:
            return None
        if excluded:
            return (
                "Ranking: each sample's history items (its last history_length) left out, never the target "
                "(eval.exclude_history: true)."
            )
        return "Ranking: every item ranked, history items too (eval.exclude_history: false)."

    def uncompared(self) -> list[str]:
        """The rows that could not be compared with the reference (their ``comparison_error``)."""
        return [r.name for r in self.rows if r.comparison_error is not None]

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            rows.append(
                {
                    "run": r.name,
                    "path": r.path,
                    "reference": r.is_reference,
                    **r.result.to_dict(),
                    "vs_reference": {m: c.to_dict() for m, c in r.comparison.items()} if r.comparison else None,
                    "comparison_error": r.comparison_error,
                    "stopped": r.stopped,
                }
            )
        return json_ready(
            {
                "split": self.split,
                "reference": self.reference,
                "alpha": self.alpha,
                "confidence": self.confidence,
                "bootstrap_samples": self.bootstrap_samples,
                "exclude_history": self.exclude_history(),
                "metrics": self.metrics,
                "rows": rows,
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """One CSV row per run: mean, interval, difference to the reference, both p-values, the verdict."""
        records = []
        for r in self.rows:
            rec: dict[str, Any] = {"run": r.name, "method": r.result.method, "split": r.result.split}
            rec.update({"samples": r.result.samples, "reference": r.is_reference})
            for m in self.metrics:
                lo, hi = r.result.ci.get(m, (math.nan, math.nan))
                comp = (r.comparison or {}).get(m)
                rec.update({m: r.result.metrics[m], f"{m}_lo": lo, f"{m}_hi": hi})
                rec[f"{m}_diff"] = comp.diff if comp else math.nan
                rec[f"{m}_p_bootstrap"] = comp.p_bootstrap if comp else math.nan
                rec[f"{m}_p_sign"] = comp.sign.p_value if comp else math.nan
                rec[f"{m}_vs_reference"] = {BETTER: "better", WORSE: "worse"}.get(r.mark(m), "")
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def to_markdown(self) -> str:
        """The table as GitHub markdown with a legend that says how to read the marks."""
        head = ["Run", "Method", "n", *(label(m) for m in self.columns)]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(self.columns)) + "|"]
        for r in self.rows:
            name = f"{r.name} (ref)" if r.is_reference else r.name
            cells = [name, r.result.method, str(r.result.samples)]
            for m in self.columns:
                v = r.result.metrics[m]
                mean = f"**{v:.4f}**" if self.is_best(r, m) else f"{v:.4f}"
                lo, hi = r.result.ci.get(m, (math.nan, math.nan))
                interval = "" if math.isnan(lo) else f" [{lo:.4f}, {hi:.4f}]"
                cells.append(f"{mean}{r.mark(m)}{interval}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.extend(f"- {note}" for note in self.notes())
        return "\n".join(lines) + "\n"

    def notes(self) -> list[str]:
        """The legend: what the intervals are, what the marks mean, which rows could not be compared."""
        if self.bootstrap_samples > 0:
            brackets = (
                f"Brackets: {self.confidence:.0%} percentile bootstrap intervals over samples "
                f"({self.bootstrap_samples} resamples)."
            )
            rule = "paired bootstrap and exact sign test both reject, in the same direction"
        else:  # eval.bootstrap_samples: 0 skips the bootstrap; the sign test alone decides
            brackets = "No intervals (eval.bootstrap_samples: 0)."
            rule = "exact sign test rejects, the mean difference in the same direction; no bootstrap was run"
        notes = [
            f"Split '{self.split}'. {brackets} "
            + (
                "Nothing is bold: no row besides the reference was compared on its samples."
                if not self.bolds()
                else "Bold: the best mean of each metric"
                + (" among the rows compared on the same samples." if self.uncompared() else ".")
            ),
            f"{BETTER}/{WORSE}: significantly better/worse than {self.reference} at alpha={self.alpha:g} "
            f"({rule}); an unmarked difference is not significant. Each cell is tested alone (no correction across "
            "metrics or runs).",
        ]
        if 0 < self.bootstrap_samples and not bootstrap_can_reject(self.bootstrap_samples, self.alpha):
            notes.append(
                f"With {self.bootstrap_samples} resamples the bootstrap p-value cannot fall below alpha={self.alpha:g} "
                f"(its least is 2/{self.bootstrap_samples + 1}): no difference can be marked, and each interval rests "
                f"on {self.bootstrap_samples} resampled means; give at least "
                f"{math.floor(2 / self.alpha)} (eval.bootstrap_samples, --bootstrap)."
            )
        return notes + self._run_notes()

    def _run_notes(self) -> list[str]:
        """The lines both legends end with: how items were ranked and the agents decoded, then each run that could
        not be compared and each whose training was stopped."""
        how = [line for line in (self.convention(), self.decoding()) if line]
        errors = [
            f"{r.name}: not compared with {self.reference}: {r.comparison_error}"
            for r in self.rows
            if r.comparison_error
        ]
        return how + errors + [note for r in self.rows if (note := r.stopped_note())]

    def decoding(self) -> str | None:
        """How the agent rows were rolled out, read from each agent run's ``agent_<split>.json`` (greedy,
        or sampled at a temperature); None when the table holds no agent run."""
        settings = {}
        for r in self.rows:
            path = Path(r.path) / f"agent_{self.split}.json"
            if path.is_file():
                stats = read_json_object(path, "evaluate the run again")
                greedy, temperature = stats.get("greedy"), stats.get("temperature")
                if greedy:
                    settings[r.name] = "decoded greedily (eval.greedy: true)"
                elif isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
                    settings[r.name] = f"sampled at temperature {temperature:g} (eval.greedy: false)"
                else:
                    settings[r.name] = "sampled (eval.greedy: false)"
        if not settings:
            return None
        if len(set(settings.values())) == 1:
            return f"Agent rows: {next(iter(settings.values()))}."
        return "Agent rows: " + "; ".join(f"{name} {how}" for name, how in settings.items()) + "."

    def table(self, width: int | None = None, files: bool = True) -> Table:
        """The report as a rich table for a terminal ``width`` columns wide (:func:`.report_table.terminal_table`);
        :meth:`legend` says how to read it."""
        return terminal_table(self, width, files)

    def legend(self) -> list[str]:
        """The lines under :meth:`table` (:func:`.report_table.legend`)."""
        return legend(self)

    def terminal_notes(self) -> list[str]:
        """:meth:`legend`, then how items were ranked and the agents decoded, and each run that could not be
        compared (:meth:`_run_notes`, as the report file's :meth:`notes` end)."""
        return self.legend() + self._run_notes()

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report_<split>.md, .csv and .json into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {ext: out_dir / f"report_{self.split}.{ext}" for ext in ("md", "csv", "json")}
        atomic_write_text(paths["md"], self.to_markdown())
        atomic_write(paths["csv"], lambda handle: self.to_frame().to_csv(handle, index=False), text=True)
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2) + "\n")
        return paths


@with_registry
def build_report(
    runs: Sequence[str | Path],
    split: str = "test",
    baseline: str | Path | None = None,
    config: EvalConfig | None = None,
    *,
    evaluate_missing: bool = True,
    batch_size: int | None = None,
    exclude_history: bool | None = None,
    reg: Registry | None = None,
    limit: int | None = None,
    secret_sets: Sequence[str] = (),
) -> Report:
    """Collect each run's result on ``split`` (evaluating runs that lack one) and compare every run with
    the reference: ``baseline`` if given (added as the first row when not among ``runs``), else the first.

    Paired tests use ``config``'s bootstrap settings and alpha = 1 - ``config.confidence``. A run that
    cannot be paired with the reference (other samples or data set) stays in the table, unmarked, with the
    reason in its row's ``comparison_error``.

    ``limit``: compare every run on the same seeded subsample of ``limit`` samples of ``split`` (the rule of
    :func:`~mgfrec.data.protocol.subsample_rows` with ``config.seed``): agent runs are rolled out on just
    those, baselines are ranked on the whole split and cut to them. ``secret_sets``: secrets a run's
    ``config.yaml`` does not record, given again for the agent runs evaluated here (:func:`evaluate_run`).
    """
    if isinstance(runs, (str, Path)):
        raise TypeError("runs: give a list of run folders, not one path (it would be read letter by letter)")
    check_limit(limit)
    config = config or EvalConfig()
    paths = [Path(r) for r in runs]
    if not paths:
        raise ValueError("report: name at least one run folder")
    ref_path = Path(baseline) if baseline is not None else paths[0]
    if all(p.resolve() != ref_path.resolve() for p in paths):
        paths.insert(0, ref_path)
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("report: a run folder is named twice")
    names = _names(paths)
    for path in paths:  # found after every run before it was rolled out, and no table printed (review s37)
        _check_final_ranking(path, reg)
    results = [
        _summarise(
            result_for_run(
                p,
                split,
                config,
                evaluate_missing=evaluate_missing,
                batch_size=batch_size,
                exclude_history=exclude_history,
                reg=reg,
                limit=limit,
                secret_sets=secret_sets,
            ),
            config,
            limit,
        )
        for p in paths
    ]
    ks = tuple(config.ks)
    ref_index = next(i for i, p in enumerate(paths) if p.resolve() == ref_path.resolve())
    reference = results[ref_index]
    alpha = round(1.0 - config.confidence, 12)  # 0.05, not 0.050000000000000044
    rows = []
    for i, (path, name, result) in enumerate(zip(paths, names, results, strict=False)):
        comparison, error = None, None
        if i != ref_index:
            try:
                comparison = result.compare(
                    reference,
                    alpha=alpha,
                    samples=config.bootstrap_samples,
                    seed=config.seed,
                    names=(name, names[ref_index]),
                )
            except MismatchedSamplesError as exc:
                error = str(exc)
        rows.append(ReportRow(name, str(path), result, i == ref_index, comparison, error, _stopped(path)))
    return Report(split, names[ref_index], rows, ks, alpha, config.confidence, config.bootstrap_samples)


def _check_final_ranking(path: Path, reg: Registry | None) -> None:
    """An agent run's ``agent.final_ranking`` against its recall run (:func:`check_final_ranking`), before any run
    is evaluated; a run that cannot be read is left for its evaluation to name."""
    from mgfrec.agent.final_ranking import check_final_ranking
    from mgfrec.agent.run_config import load_run_config
    from mgfrec.runs import recall_run_of

    try:
        info = read_run_info(path)
        if info.kind != "agent":
            return
        agent, recall_run = load_run_config(path).agent, recall_run_of(path, info)
    except (OSError, ValueError):
        return
    check_final_ranking(agent, str(path), recall_run=recall_run, reg=reg)


def _stopped(path: Path) -> str | None:
    """``run.json``'s ``extra.stopped`` (``"user"``: a signal ended the training early; it was shown as a finished
    run's row); None when there is none or it cannot be read (the result was read without it)."""
    try:
        stopped = read_run_info(path).extra.get("stopped")
    except (OSError, ValueError):
        return None
    return stopped if isinstance(stopped, str) else None


def _summarise(result: EvalResult, config: EvalConfig, limit: int | None = None) -> EvalResult:
    """Recompute means and intervals from the stored ranks, so that every row of one table uses the same
    ks and bootstrap settings whatever settings each run was evaluated with; with ``limit``, on the
    seeded subsample only."""
    keep = np.arange(len(result.ranks))
    if limit is not None:
        wanted = subsample_ids(result.sample_ids, limit, config.seed)
        keep = np.flatnonzero(np.isin(result.sample_ids, wanted))
    return EvalResult.from_ranks(
        result.ranks[keep],
        result.sample_ids[keep],
        split=result.split,
        method=result.method,
        config=config,
        targets=result.targets[keep] if result.targets is not None else None,
        num_items=result.num_items,
        exclude_history=result.exclude_history,
        data_checksum=result.data_checksum,
    )


def _names(paths: list[Path]) -> list[str]:
    """Folder names; where two folders share a name, the shortest tail of their paths that tells them apart
    (``one/sasrec-run``, ``two/sasrec-run``): the whole paths, long, were cut alike in a terminal, "(ref)" with
    them (review s40). The path as given when no tail does."""
    names = []
    for path in paths:
        parts = path.parts or (str(path),)
        name = str(path)
        for depth in range(1, len(parts) + 1):
            tail = parts[-depth:]
            if sum(1 for other in paths if other.parts[-depth:] == tail) == 1:
                name = str(Path(*tail))
                break
        names.append(name)
    return names

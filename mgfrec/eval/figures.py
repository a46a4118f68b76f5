"""The paper's section-5 figures from run and sweep folders, as PNG files (matplotlib, Agg backend).

* :func:`plot_training_curves`: reward and response length per training step (Fig. 6) from ``RUN/metrics.csv``;
* :func:`plot_sweep`: a metric against each swept value (Figs. 7-8) from a sweep folder's ``sweep.json``;
* :func:`plot_mean_rank_vs_limit`: mean target rank against ``agent.max_groundings`` (Fig. 5-like: trained limits);
* :func:`plot_difficulty_bands`: mean difficulty (1 / popularity of the target: its interactions in the log) per band of
  grounding counts (Fig. 3) from ``RUN/agent_<split>_samples.csv``;
* Fig. 4's case study, a trajectory as markdown, is :mod:`mgfrec.eval.case_study` (re-exported here).

The sweep figures live in :mod:`mgfrec.eval.sweep_figures` and how they are drawn in :mod:`mgfrec.eval.plotting`;
both are importable from here as before.

Everything reads files that training and evaluation already wrote (checked by :mod:`mgfrec.eval.figure_inputs`);
nothing here trains or evaluates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgfrec.data.protocol import SPLITS
from mgfrec.eval.case_study import trajectory_markdown, write_trajectory_markdown  # noqa: F401 (re-exported)
from mgfrec.eval.figure_inputs import check_numbers, read_metrics, read_table  # noqa: F401 (re-exported)
from mgfrec.eval.plotting import COLUMN_LABELS, column_label, integer_steps, plt, save_figure  # noqa: F401
from mgfrec.eval.sweep_figures import (  # noqa: F401 (the sweep figures are figures' too, as before)
    SWEEP_METRICS,
    grid_cells,
    mean_rank_by_limit,
    on_grid,
    plot_mean_rank_vs_limit,
    plot_sweep,
    sweep_points,
    sweep_record,
)
from mgfrec.retrievers.fit import open_data
from mgfrec.runs import RUN_FILE, read_run_info
from mgfrec.staleness import check_agent_current

# Fig. 3's bands of grounding counts (inclusive bounds).
GROUNDING_BANDS: tuple[tuple[int, int], ...] = ((0, 1), (2, 4), (5, 6))
REWARD_COLUMNS = (
    "reward/mean",
    "ndcg",
    "reward/format",
)  # written by mgfrec.rl.module.GRPOModule
LENGTH_COLUMN = "response_length"
# Validation columns (step 0 is the starting policy), plotted only at the steps that validated.
VALID_COLUMNS = ("valid/ndcg_full", "valid/ndcg@10", "valid/format_valid")
SAMPLE_COLUMNS = ("target", "groundings")  # what Fig. 3 reads of agent_<split>_samples.csv
FEW_VALIDATIONS = 3  # up to this many validations are drawn as grouped bars, more as lines


def plot_training_curves(metrics: str | Path, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """Fig. 6: ``reward.png`` (mean reward and its parts) and ``response_length.png`` per training step, and
    ``valid.png`` (the validation metrics at the steps that validated, step 0 being the starting policy:
    lines when there are more than :data:`FEW_VALIDATIONS` validations, else grouped bars, one per step)."""
    frame, out_dir, written = read_metrics(metrics), Path(out_dir), {}
    parts = [c for c in frame if c.startswith("reward/") and c not in ("reward/mean", "reward/std")]
    # columns with a value: a fit stopped in its first step wrote the step-0 validation row alone, and blank
    # reward and length figures were written with exit code 0 (review s37; unfinished_notes says why they are missing)
    present = [c for c in (*REWARD_COLUMNS, *parts) if c in frame and frame[c].notna().any()]
    present = list(dict.fromkeys(present))
    if present:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        few = len(frame) < 30
        for n, column in enumerate(present):
            # The mean solid and wide, each part dashed with its own marker: a part equal to the mean (a
            # policy that only ever fails the format) stays visible on top of it.
            mean = column == "reward/mean"
            ax.plot(
                frame["step"],
                frame[column],
                label=column_label(column),
                linewidth=3.0 if mean else 1.3,
                linestyle="-" if mean else "--",
                marker=("o" if mean else "sx^vd"[n % 5]) if few else None,
                markersize=6 if mean else 5,
                alpha=0.6 if mean else 1.0,
                zorder=1 if mean else 2,
            )
        ax.set(xlabel="training step", ylabel="reward", title="Training reward per step")
        integer_steps(ax)
        ax.legend(fontsize="small")
        written["reward"] = save_figure(fig, out_dir / f"{prefix}reward.png")
    if LENGTH_COLUMN in frame and frame[LENGTH_COLUMN].notna().any():
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(
            frame["step"],
            frame[LENGTH_COLUMN],
            color="tab:orange",
            marker="." if len(frame) < 30 else None,
        )
        ax.set(xlabel="training step", ylabel="response tokens (mean)", title="Response length per step")
        integer_steps(ax)
        written["response_length"] = save_figure(fig, out_dir / f"{prefix}response_length.png")
    valid = [c for c in VALID_COLUMNS if c in frame and frame[c].notna().any()]
    if valid:
        points = frame[["step", *valid]].dropna(how="all", subset=valid)
        if len(points) <= FEW_VALIDATIONS:
            written["valid"] = save_figure(_valid_bars(points, valid), out_dir / f"{prefix}valid.png")
        else:
            fig, axes = plt.subplots(1, len(valid), figsize=(4 * len(valid), 3.5), squeeze=False)
            for ax, column in zip(axes[0], valid, strict=True):
                line = points[["step", column]].dropna()
                ax.plot(line["step"], line[column], marker="o", color="tab:green")
                ax.set(xlabel="training step", ylabel=column_label(column), title=f"valid {column_label(column)}")
                integer_steps(ax)
            written["valid"] = save_figure(fig, out_dir / f"{prefix}valid.png")
    if not written:
        raise ValueError(
            f"{metrics}: none of the columns {', '.join((*REWARD_COLUMNS, LENGTH_COLUMN, *VALID_COLUMNS))} to plot"
        )
    return written


def _valid_bars(points: pd.DataFrame, columns: list[str]) -> Any:
    """A few validations (the start and the end of a short fit): one group of bars per metric, one bar per
    validated step, each labelled with its value (a line through two points says less)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    steps = [int(s) for s in points["step"]]
    width = 0.8 / max(len(steps), 1)
    x = np.arange(len(columns))
    for n, (step, (_, row)) in enumerate(zip(steps, points.iterrows(), strict=False)):
        values = [float(row[c]) if pd.notna(row[c]) else 0.0 for c in columns]
        label = "step 0 (start)" if step == 0 else f"step {step}"
        bars = ax.bar(x + (n - (len(steps) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize="x-small", padding=2)
    ax.set_xticks(x, [column_label(c) for c in columns])
    ax.set(ylabel="valid value", title="Validation before and after training")
    ax.margins(y=0.2)  # room for the value labels inside the frame
    ax.legend(fontsize="small")
    return fig


def train_popularity(ds: Any) -> np.ndarray:
    """Per item, how often it is a target in the train split (each train sample is one training interaction)."""
    counts = np.bincount(ds.split("train")["target"].to_numpy(dtype=np.int64), minlength=ds.num_items)
    return counts.astype(np.float64)


def item_popularity(ds: Any) -> np.ndarray:
    """Per item, its interactions in the prepared log, every user's (the paper's popularity, section 5.3.1: "the
    number of user interactions with that item"). Fig. 3 counted train-split targets only, so an item first seen
    after training counted 1, the hardest (351 of 490 CDs valid targets; review s42)."""
    counts = np.bincount(ds.interactions["item_idx"].to_numpy(dtype=np.int64), minlength=ds.num_items)
    return counts.astype(np.float64)


def difficulty_by_band(
    samples: pd.DataFrame, popularity: np.ndarray, bands: Sequence[tuple[int, int]] = GROUNDING_BANDS
) -> pd.DataFrame:
    """Fig. 3's data: per band of grounding counts, the number of samples and their mean difficulty
    1 / popularity of the target (:func:`item_popularity`; an item of no interaction counts as popularity 1). Runs with
    ``agent.max_groundings`` above the last band get one more band up to their largest count, so that every
    trajectory is counted."""
    difficulty = 1.0 / np.maximum(np.asarray(popularity, dtype=np.float64)[samples["target"].to_numpy()], 1.0)
    groundings = samples["groundings"].to_numpy()
    top = max(hi for _, hi in bands)
    if len(groundings) and groundings.max() > top:
        bands = [*bands, (top + 1, int(groundings.max()))]
    rows = []
    for lo, hi in bands:
        mask = (groundings >= lo) & (groundings <= hi)
        rows.append(
            {
                "band": f"[{lo},{hi}]",
                "samples": int(mask.sum()),
                "mean_difficulty": float(difficulty[mask].mean()) if mask.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def plot_difficulty_bands(
    run_dir: str | Path,
    out_dir: str | Path,
    split: str = "valid",
    ds: Any = None,
    prefix: str = "",
) -> Path:
    """Fig. 3 for an evaluated agent run: mean difficulty per grounding band from ``agent_<split>_samples.csv``
    (``ds`` defaults to the run's own data set, for the popularity)."""
    run_dir = Path(run_dir)
    path = run_dir / f"agent_{split}_samples.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; evaluate the agent run with 'mgfrec evaluate {run_dir} --split {split}'"
        )
    if ds is None:
        ds = open_data(run_dir, read_run_info(run_dir))
    samples, popularity = read_table(path, SAMPLE_COLUMNS), item_popularity(ds)
    check_numbers(samples, path, ["groundings"], whole=True)
    check_numbers(samples, path, ["target"], whole=True, below=len(popularity))
    bands = difficulty_by_band(samples, popularity)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bars = ax.bar(bands["band"], bands["mean_difficulty"].fillna(0.0), color="tab:green")
    ax.bar_label(bars, labels=[f"n={n}" for n in bands["samples"]], fontsize="small", padding=2)
    ax.margins(y=0.2)  # the n= labels stay inside the frame
    ax.set(
        xlabel="groundings per trajectory",
        ylabel="mean difficulty (1 / popularity)",
        title=f"Difficulty by grounding band ({split})",
    )
    filled = bands[bands["samples"] > 0]
    if len(filled) == 1:  # one band holds every trajectory: the figure compares nothing, and says so
        ax.text(
            0.5,
            0.5,
            f"only band {filled['band'].iloc[0]} has trajectories:\nnothing to compare yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "tab:gray"},
        )
    return save_figure(fig, Path(out_dir) / f"{prefix}difficulty_bands_{split}.png")


def nonempty_bands(run_dir: str | Path, split: str, ds: Any) -> int:
    """How many grounding bands of :func:`plot_difficulty_bands` hold at least one trajectory."""
    samples = read_table(Path(run_dir) / f"agent_{split}_samples.csv", SAMPLE_COLUMNS)
    return int((difficulty_by_band(samples, item_popularity(ds))["samples"] > 0).sum())


def check_figure_args(paths: Sequence[str | Path], split: str, metric: str) -> None:
    """Everything :func:`figures_for` can tell before drawing, for every folder: the split, the metric, and each
    folder being a run or a sweep an agent's figures are drawn for (not a baseline run). Run first, no figure
    is written for one folder before another is found wrong."""
    if split not in SPLITS:
        raise ValueError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    if metric not in SWEEP_METRICS:
        raise ValueError(f"--metric {metric!r}: choose one of {', '.join(SWEEP_METRICS)} (what a sweep records)")
    for path in map(Path, paths):
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such folder; give a run folder or a sweep folder")
        info = read_run_info(path) if (path / RUN_FILE).is_file() else None
        if info is not None and info.kind == "baseline":
            raise ValueError(
                f"{path}: a baseline run (mgfrec baseline fit); the figures are drawn for agent runs (mgfrec sft, "
                "mgfrec fit) and sweeps"
            )
        if info is not None:  # results report and evaluate refuse (another policy's, another recall model's)
            check_agent_current(path, info)
        if (path / "sweep.json").is_file():  # a sweep's inputs are read now, so that its errors come first too
            if sweep_points(path, metric).empty:
                raise ValueError(f"{path}: no finished cell with '{metric}' to plot")
            record = sweep_record(path)
            for name in grid_cells(record):
                if (path / name / RUN_FILE).is_file():
                    check_agent_current(path / name, read_run_info(path / name))
            if "agent.max_groundings" in (record.get("grid") or {}):
                mean_rank_by_limit(path, split)
        elif (path / "demo.json").is_file() and not (path / "metrics.csv").is_file():
            # "nothing to plot" for a demo's folder, which report names the runs of (review s33)
            drawn = f"its figures are in {path / 'figures'}; " if (path / "figures").is_dir() else ""
            agent = path / "mgfrec" if (path / "mgfrec" / RUN_FILE).is_file() else None
            give = (
                f"give its agent run ({agent})"
                if agent
                else "give an agent run (the demo makes one, mgfrec, unless given --no-agent)"
            )
            raise ValueError(f"{path}: a demo's output folder (demo.json); {drawn}{give}")
        elif not (path / "metrics.csv").is_file() and not (path / f"agent_{split}_samples.csv").is_file():
            # found only once the folders before it had been drawn into --out
            found, other = other_split_samples(path)
            hint = f"; {found} found: --split {other} draws its difficulty figure" if other else ""
            raise ValueError(f"{path}: nothing to plot (no sweep.json, metrics.csv or agent_{split}_samples.csv){hint}")


def unfinished_notes(path: str | Path) -> list[str]:
    """What a folder's figures leave out, or draw before it is done: a sweep's grid cells not finished (their points
    are missing from the curves), or a fit without ``run.json`` (running, stopped or killed: its curves end where it
    stopped). Both were drawn with exit code 0 and no word."""
    path = Path(path)
    if (path / "sweep.json").is_file():
        record = sweep_record(path)
        grid = record.get("grid") or {}
        total = math.prod(len(values) for values in grid.values()) if grid else 0
        finished = grid_cells(record)
        if total and len(finished) < total:
            # an earlier grid's cells stay on disk: not this grid's, not named
            left = [
                f"{name}: {entry.get('status', 'unknown')}"
                for name, entry in on_grid(record).items()
                if name not in finished
            ]
            shown = "; ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
            return [
                f"{path}: {len(finished)} of {total} cells of its grid finished ({shown or 'the rest not started'}); "
                "the others are missing from its curves: run the sweep again to finish them"
            ]
        return []
    notes = []
    if (path / "metrics.csv").is_file() and not (path / RUN_FILE).is_file():
        notes.append(f"{path}: an unfinished fit (no {RUN_FILE} yet): its training curves end where it stopped")
    if (path / "metrics.csv").is_file() and not _trained_steps(path / "metrics.csv"):
        notes.append(
            f"{path}: no training step recorded in metrics.csv (only the starting policy's validation), so no reward "
            "or response-length figure"
        )
    return notes


def _trained_steps(metrics: Path) -> bool:
    """Whether ``metrics`` holds a training step's reward or response length (a damaged file: True, for
    :func:`read_metrics` to name when the figures read it)."""
    try:
        frame = read_metrics(metrics)
    except (OSError, ValueError):
        return True
    return any(c in frame and frame[c].notna().any() for c in (*REWARD_COLUMNS, LENGTH_COLUMN))


def other_split_samples(path: str | Path) -> tuple[str, str | None]:
    """The ``agent_<split>_samples.csv`` files an agent run holds (named, comma-separated) and the first one's
    split, None when there is none: what a note or an error suggests as ``--split`` for the difficulty figure."""
    names = sorted(f.name for f in Path(path).glob("agent_*_samples.csv"))
    first = names[0].removeprefix("agent_").removesuffix("_samples.csv") if names else None
    return ", ".join(names), first


def is_agent_run(path: str | Path) -> bool:
    """Whether ``path`` holds an agent run (``run.json`` of kind ``agent``); False for anything unreadable."""
    try:
        return read_run_info(path).kind == "agent"
    except (OSError, ValueError):
        return False


def figures_for(
    path: str | Path,
    out_dir: str | Path,
    split: str = "valid",
    metric: str = "ndcg_full",
) -> list[Path]:
    """Every figure a folder supports: a sweep's curves (and Fig. 5 when it sweeps ``agent.max_groundings``),
    a run's training curves and its difficulty bands. Files are prefixed with the folder's name."""
    path, written = Path(path), []
    check_figure_args([path], split, metric)
    prefix = f"{path.resolve().name}_"
    if (path / "sweep.json").is_file():
        written += plot_sweep(path, out_dir, metric, prefix).values()
        if "agent.max_groundings" in (sweep_record(path).get("grid") or {}):
            written.append(plot_mean_rank_vs_limit(path, out_dir, split, prefix))
        return written
    if (path / "metrics.csv").is_file():
        written += plot_training_curves(path, out_dir, prefix).values()
    if (path / f"agent_{split}_samples.csv").is_file():
        written.append(plot_difficulty_bands(path, out_dir, split, prefix=prefix))
    return written  # check_figure_args refused a folder with nothing to plot

"""Hyperparameter sweeps (paper Figs. 5, 7-8): one run folder per cell of a grid of config values.

A grid (:mod:`mgfrec.experiments.grid`) maps dotted config fields to lists of values; its cells are the cartesian
product. Each cell is a run folder ``OUT/<field>=<value>[,<field>=<value>]`` made by a *cell runner*
``run_cell(cfg, out) -> dict`` (by default :func:`fit_and_evaluate`: ``run_fit`` then ``evaluate_run``).
``OUT/sweep.json`` records every cell's values, status (``finished`` or ``failed`` with the error) and summary
after each cell, so a sweep that is run again skips finished cells and retries the rest. A failing cell never
stops the sweep.

This module orchestrates; it must not know how a run is trained, beyond calling the runner.
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from mgfrec.atomic import atomic_write_text
from mgfrec.config.load import ConfigError
from mgfrec.config.schema import MGFRecConfig
from mgfrec.experiments.grid import (  # noqa: F401 (the grid's names are sweep's too, as before)
    Cell,
    build_grid,
    cell_config,
    cell_name,
    grid_cells,
    parse_grid_flag,
    read_grid_file,
    recorded_grid_text,
    shown_grid,
)
from mgfrec.experiments.reuse import (  # noqa: F401 (reuse's public names are sweep's too, as before)
    FROM_INIT,
    INPUT_CHANGED,
    KEPT_FROM_CELL,
    SETTING_FLAGS,
    SWEEP_FILE,
    config_digest,
    digest,
    refuse_stale,
    same_config,
    same_config_key,
    same_start,
    shown_settings,
)
from mgfrec.experiments.summary import (  # noqa: F401 (the summary's names are sweep's too, as before)
    SUMMARY_COLUMNS,
    cell_summary,
    samples_note,
    summary_markdown,
    summary_rows,
    summary_table,
    write_summary,
)
from mgfrec.locks import only_one_in
from mgfrec.runs import RUN_FILE, read_sweep_record

RunCell = Callable[[MGFRecConfig, Path], dict[str, Any]]


# ---- the default cell: fit, then evaluate ---------------------------------------------------------------
def fit_and_evaluate(
    data: str | Path,
    fit_options: Any = None,
    eval_splits: Sequence[str] = ("valid",),
    eval_limit: int | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> RunCell:
    """The real cell runner: ``run_fit`` (resumed when the cell has a checkpoint but no ``run.json``), then
    ``evaluate_run`` on every split that has no result yet; returns the first split's :func:`cell_summary`."""
    from mgfrec.eval.runs import evaluate_run  # late: both pull in the training stack
    from mgfrec.rl.distributed import require_one_process
    from mgfrec.rl.fit import FitOptions, run_fit
    from mgfrec.runs import RUN_FILE, read_run_info

    options = fit_options or FitOptions()

    @functools.cache
    def dataset() -> Any:  # opened once for every cell's check
        from mgfrec.data.prepared import PreparedDataset

        return PreparedDataset(data)

    def check(cfg: MGFRecConfig) -> None:  # every cell's values, before the first cell trains
        from mgfrec.registry import registry
        from mgfrec.rl.fit import check_fit_config

        check_fit_config(cfg, options, registry(), dataset())
        # a grid over trainer.devices (or the paper config's 8) failed at each cell it reached, after the cells
        # before it had trained (review s33)
        require_one_process(cfg.trainer.devices, cfg.trainer.num_nodes, "mgfrec sweep")

    def run_cell(cfg: MGFRecConfig, out: Path) -> dict[str, Any]:
        from mgfrec.data.prepared import PreparedDataset

        require_one_process(cfg.trainer.devices, cfg.trainer.num_nodes, "mgfrec sweep")
        ds = PreparedDataset(data)
        if not (out / RUN_FILE).is_file():  # run.json is written last: without it the fit did not finish
            resume = (out / "checkpoints" / "last.ckpt").exists()  # a file, or a DeepSpeed folder
            run_fit(data, out, cfg, replace(options, resume=resume), say=say)
        else:
            # a damaged run.json (was taken as a finished fit) or a derived run (mgfrec derive: another cell's
            # policy under an eval-time change, was reported as this cell's) is named, not reused
            info = read_run_info(out)
            if "trained_run" in info.extra:
                raise ValueError(
                    f"{out}: holds a derived run (mgfrec derive of {info.extra['trained_run']}), not a fit of this "
                    "cell; move it elsewhere to train the cell here"
                )
            # a finished fit is reused for the evaluations only if it is this cell's: its config (with --init, the
            # recall model is --init's, written into config.yaml), its data set and its start (fit_start.json). The
            # sweep record compares them too, but a cell folder taken back after sweep.json was deleted has none
            same_config(out, cfg, ignore=FROM_INIT if options.init is not None else ())
            same_start(out, info, cfg, options, ds)
        for split in eval_splits:
            total = int(ds.counts["samples"][split])
            expected = total if eval_limit is None else min(eval_limit, total)
            if not _stored(out / f"eval_{split}.json", say, expected):
                # the cell's config in memory: a user_agent.base_url's password its config.yaml does not record
                evaluate_run(out, split, cfg.eval, limit=eval_limit, secrets_from=cfg)
        return cell_summary(out, eval_splits[0])

    run_cell.check = check  # type: ignore[attr-defined]
    return run_cell


def _stored(path: Path, say: Callable[[str], None], samples: int | None = None) -> bool:
    """Whether a cell's stored evaluation ``path`` is there, readable and of ``samples`` samples (this sweep's
    ``--eval-limit``); a damaged one (a kill mid-write of an older mgfrec, an edit), or one of another subsample
    size (a cell taken back after sweep.json was deleted), is evaluated again, with a note."""
    if not path.is_file():
        return False
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        payload = None
    if not isinstance(payload, dict):
        say(f"note: {path} cannot be read; the cell is evaluated again")
        return False
    if samples is not None and payload.get("samples") != samples:
        say(f"note: {path} holds {payload.get('samples')} samples, not this sweep's {samples}; evaluated again")
        return False
    return True


# ---- the sweep ------------------------------------------------------------------------------------------


def read_sweep(out: str | Path) -> dict[str, Any]:
    """``OUT/sweep.json`` (an empty record when the sweep has not started)."""
    path = Path(out) / SWEEP_FILE
    if not path.is_file():
        return {"grid": {}, "cells": {}}
    return read_sweep_record(path)


def _write_sweep(out: Path, record: dict[str, Any]) -> None:
    # a kill mid-write keeps the previous record
    atomic_write_text(out / SWEEP_FILE, json.dumps(record, indent=2, default=str) + "\n")


def check_sweep_output(out: Path, data: str | Path | None = None, cells: Sequence[str] = ()) -> None:
    """Refuse an ``--out`` that holds something other than a sweep, before anything is written into it: the data
    set given as ``--data``, a prepared data set, a run, a demo's folder, or a folder holding other folders but no
    ``sweep.json`` (a user's loose files, a grid file or notes, are fine). It wrote ``sweep.json`` and the cells'
    folders beside a data set's files or into a finished run. Folders named as ``cells`` (this grid's) that hold a
    fit's ``config.yaml`` are the sweep's own, its ``sweep.json`` deleted (as a damaged one's error says to do):
    each is checked against its cell's config before it is reused."""
    from mgfrec.config.load import entries_besides_config
    from mgfrec.output_folders import NOT_A_RUN, refuse_held
    from mgfrec.runs import RUN_FILE

    out = Path(out)
    if not out.is_dir() or (out / SWEEP_FILE).is_file():
        return  # a new sweep, or a rerun of this one (a data set, --data's too, holds no sweep.json)
    refuse_held(out, "the sweep", {RUN_FILE: "a run", **NOT_A_RUN}, data=data)
    # a user's grid file, notes or dotfiles beside the cells are fine (nothing of theirs is touched); folders of
    # runs, data sets or anything else that is not the sweep's are not
    own = {n for n in cells if (out / n / "config.yaml").is_file()}
    folders = sorted(
        n for n in entries_besides_config(out) if (out / n).is_dir() and not n.startswith(".") and n not in own
    )
    if folders:
        shown = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
        raise ValueError(
            f"--out {out}: holds folders that are not a sweep's cells ({shown}; no {SWEEP_FILE}); give a new or "
            "empty folder"
        )


def run_sweep(
    base: MGFRecConfig,
    grid: Mapping[str, Sequence[Any]],
    out: str | Path,
    run_cell: RunCell,
    *,
    settings: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Run every cell of ``grid`` into ``out/<cell>`` with ``run_cell``; record it in ``out/sweep.json``.

    All cell configs are validated before the first cell runs, so a bad field fails at once. Finished cells
    (from an earlier call) are skipped; failed and unfinished ones run again. ``settings`` are the runner's own
    options that change a cell's result (``mgfrec sweep`` passes the fit options, the evaluated splits and the
    subsample size): like the config, they are recorded per cell, and a rerun that would skip or continue a
    cell made under other ones is refused. Returns the summary rows (also written to ``out/summary.csv`` and
    ``out/summary.md``).
    """
    from mgfrec.config.components import check_components

    out = Path(out)
    cells = grid_cells(grid)
    configs = {cell.name: cell_config(base, cell) for cell in cells}
    for name, cfg in configs.items():  # a component typo in the grid fails once, not in every cell at run time
        check_components(cfg, source=f"sweep cell {name}")
    check = getattr(run_cell, "check", None)  # the runner's own checks of a cell's values (fit_and_evaluate's)
    for name, cfg in configs.items() if check is not None else ():
        try:
            check(cfg)
        except ValueError as exc:  # the cell named: "give at least 2" of which value?
            raise ConfigError(f"sweep cell {name}: {exc}") from None
    check_sweep_output(out, (settings or {}).get("data"), list(configs))
    digests = {name: config_digest(cfg) for name, cfg in configs.items()}
    twins: dict[str, str] = {}
    for name, cfg in configs.items():  # "1" and "1.0" are two names but one config: it would train twice
        whole = same_config_key(cfg)  # secrets too: held, not kept; a template by its text
        if whole in twins:
            raise ConfigError(f"grid: cells {twins[whole]} and {name} give the same config; drop one of the values")
        twins[whole] = name
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _only_sweep_in(out):
            return _run_cells(out, grid, cells, configs, digests, dict(settings or {}), run_cell, say)
    finally:
        if made and not any(out.iterdir()):
            out.rmdir()  # refused before anything was written: no empty folder left behind


def _refuse_renamed(
    out: Path, record: Mapping[str, Any], digests: Mapping[str, str], settings_digest: str, fields: set[str]
) -> None:
    """Refuse a cell that is another name for a cell this sweep finished earlier over the same ``fields`` (the same
    config and settings): a rerun whose grid wrote a value otherwise (``1.0`` for ``1``) or its fields in another
    order trained every cell again under new folder names, and the figures then drew each cell twice (review
    s33). A cell of an earlier grid over other fields is never drawn with this grid's, so it is no twin."""
    finished: dict[tuple[Any, Any], list[str]] = {}
    for name, entry in (record.get("cells") or {}).items():
        if not isinstance(entry, Mapping) or set(entry.get("values") or {}) != fields:
            continue
        if entry.get("status") == "finished" and (out / name / RUN_FILE).is_file():
            finished.setdefault((entry.get("config"), entry.get("settings")), []).append(name)
    for name, config in digests.items():
        earlier = finished.get((config, settings_digest), [])
        # (cells the digest cannot tell apart, told apart by a secret alone, are all on this grid: not renamed)
        if earlier and not set(earlier) & set(digests):
            raise ConfigError(
                f"grid: cell {name} is cell {earlier[0]}, finished earlier in {out}, under another name (a value "
                "written otherwise, 1.0 for 1, or the fields in another order): write the grid as before "
                f"({recorded_grid_text(record.get('grid') or {})}), or run the sweep into a new folder"
            )


def _only_sweep_in(out: Path) -> AbstractContextManager[None]:
    """Hold an exclusive lock on the folder ``out`` for the whole sweep (:func:`mgfrec.locks.only_one_in`): a
    second ``mgfrec sweep`` into it (a job submitted twice, a second terminal) trained the same cells into the
    same folders at once, and both reported the mixed numbers as results."""
    return only_one_in(out, "mgfrec sweep")


def _run_cells(
    out: Path,
    grid: Mapping[str, Sequence[Any]],
    cells: Sequence[Any],
    configs: Mapping[str, MGFRecConfig],
    digests: Mapping[str, str],
    settings: dict[str, Any],
    run_cell: RunCell,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """:func:`run_sweep`'s cells, run under the folder's lock."""
    # what the runner reads besides its settings (the data set's checksum, --init's training): recorded per cell
    # and compared where recorded, outside the settings' digest (a sweep of before recorded none of it)
    inputs = dict(settings.get("inputs") or {})
    settings_digest = digest({k: v for k, v in settings.items() if k != "inputs"})
    record = read_sweep(out)
    shown = shown_settings(settings)
    fit = settings.get("fit")
    derived = FROM_INIT if isinstance(fit, Mapping) and fit.get("init") is not None else ()
    refuse_stale(out, record, digests, settings_digest, dict(configs), inputs, shown, derived)
    _refuse_renamed(out, record, digests, settings_digest, set(grid))
    new_grid = shown_grid(grid)  # no secret reaches sweep.json
    if record.get("grid") not in (None, {}, new_grid):  # (a new sweep's record has an empty grid: no note)
        say(
            f"note: {out / SWEEP_FILE} held another grid ({recorded_grid_text(record['grid'])}); it now holds "
            "this one. "
            "Cells outside it stay on disk and are left out of the summary and the figures"
        )
    record["grid"] = new_grid
    if settings.get("eval_splits"):  # the summary's split, in plain text: the figures' curves say which split
        record["summary_split"] = str(settings["eval_splits"][0])
    record.setdefault("cells", {})
    for n, cell in enumerate(cells, 1):
        entry = record["cells"].get(cell.name, {})
        if entry.get("status") == "finished" and (out / cell.name / RUN_FILE).is_file():
            say(f"[{n}/{len(cells)}] {cell.name}: finished earlier, skipped")
            continue
        if entry.get("status") == "finished" and (out / cell.name).is_dir():
            # its run retired (a fit into the cell, stopped), yet the summary kept its numbers and every rerun
            # skipped it while `figures` said to run the sweep again
            say(f"[{n}/{len(cells)}] {cell.name}: finished earlier, but its folder holds no finished run; run again")
        elif entry.get("status") == "finished":  # its folder deleted, as a refusal says to do to train it again
            say(f"[{n}/{len(cells)}] {cell.name}: finished earlier, but its folder is gone; trained again")
        say(f"[{n}/{len(cells)}] {cell.name}: running")
        made_with = {
            "config": digests[cell.name],
            "settings": settings_digest,
            "settings_shown": shown,  # which flag changed, when a rerun is refused
            **({"inputs": inputs} if inputs else {}),
        }
        record["cells"][cell.name] = {"values": cell.shown, "status": "running", **made_with}
        # a killed sweep shows which cell it was in and what it was made with, and its summary no longer shows that
        # cell's numbers of before as finished ones
        _write_sweep(out, record)
        write_summary(out, summary_rows(record, [c.name for c in cells]), record.get("summary_split"))
        try:
            summary = run_cell(configs[cell.name], out / cell.name)
            record["cells"][cell.name] = {
                "values": cell.shown,
                "status": "finished",
                **made_with,
                "summary": dict(summary or {}),
            }
        except Exception as exc:  # noqa: BLE001 - one cell's failure must not end the sweep; it is recorded
            # a URL's password, a key from the environment: written raw before (review s33)
            from mgfrec.config.redaction import scrub_secrets

            error = scrub_secrets(f"{type(exc).__name__}: {exc}")
            record["cells"][cell.name] = {
                "values": cell.shown,
                "status": "failed",
                **made_with,
                "error": error,
                "traceback": scrub_secrets(traceback.format_exc(limit=8)),
            }
            # one line: a hub's or CUDA's error spans several (sweep.json keeps it whole)
            say(f"[{n}/{len(cells)}] {cell.name}: failed: {' '.join(error.split())}")
        _write_sweep(out, record)
    rows = summary_rows(record, [c.name for c in cells])
    write_summary(out, rows, record.get("summary_split"))
    return rows

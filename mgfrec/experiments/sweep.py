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

import hashlib
import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mgfrec.atomic import atomic_write_text
from mgfrec.config.load import ConfigError, flat_fields, load_config
from mgfrec.config.redaction import scrubbed
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

SWEEP_FILE = "sweep.json"
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
            _same_config(out, cfg, ignore=FROM_INIT if options.init is not None else ())
            _same_start(out, info, cfg, options, ds)
        for split in eval_splits:
            total = int(ds.counts["samples"][split])
            expected = total if eval_limit is None else min(eval_limit, total)
            if not _stored(out / f"eval_{split}.json", say, expected):
                # the cell's config in memory: a user_agent.base_url's password its config.yaml does not record
                evaluate_run(out, split, cfg.eval, limit=eval_limit, secrets_from=cfg)
        return cell_summary(out, eval_splits[0])

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


def _same_start(out: Path, info: Any, cfg: MGFRecConfig, options: Any, ds: Any) -> None:
    """Refuse to reuse a finished fit in ``out`` made on another data set than ``ds`` (``run.json``
    ``data_checksum``) or from another start (``fit_start.json``: ``--init``, the recall model, the sample counts)
    than this sweep's."""
    from mgfrec.rl.resume import START_FILE, start_options
    from mgfrec.runs import read_json_object

    again = "delete the folder to train this cell again"
    if info.data_checksum and info.data_checksum != ds.checksum:
        raise ValueError(
            f"{out}: holds a fit made on another data set than --data {ds.root} (prepared again since?); {again}"
        )
    path = out / START_FILE
    if not path.is_file():
        return  # a fit from before fit_start.json: nothing to compare
    started = read_json_object(path, again)
    given = start_options(replace(options, recall_model=options.recall_model or cfg.retriever.model))
    differ = [k for k in given if k in started and started[k] != given[k]]
    if differ:
        shown = "; ".join(f"{k}: {started[k]!r} -> {given[k]!r}" for k in differ)
        raise ValueError(f"{out}: holds a fit started with other settings ({shown}); {again}")


def _same_config(run_dir: Path, cfg: MGFRecConfig, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to reuse a finished fit in ``run_dir`` whose ``config.yaml`` is not ``cfg`` (compared as
    :func:`_changes` does), naming the fields that differ; ``ignore``: fields the fit derives itself (with
    ``--init``, ``retriever.model`` is the init's recall model)."""
    path = run_dir / "config.yaml"
    try:
        written = load_config(path)  # a field added since it was written: its value of before (WRITTEN_BEFORE)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the finished fit's config ({exc}); delete {run_dir}") from None
    changed = _changes(written, cfg, ignore)
    if changed:
        raise ValueError(
            f"{run_dir}: holds a finished fit made with another config ({_differences(changed)}); delete the "
            "folder to train this cell again"
        )


def _comparable(cfg: MGFRecConfig) -> dict[str, Any]:
    """A cell's config as its run folder's ``config.yaml`` must match it: secrets removed, and each template file
    (:data:`~mgfrec.text.prompts.PROMPT_FILES`) by its text, since the run records its own copy's path."""
    from mgfrec.config.redaction import redacted
    from mgfrec.text.prompts import PROMPT_FILES

    dump = redacted(cfg)
    for dotted in PROMPT_FILES:
        section, _, name = dotted.partition(".")
        path = (dump.get(section) or {}).get(name)
        if isinstance(path, str) and Path(path).expanduser().is_file():
            dump[section][name] = "text:" + hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    return dump


def _changes(before: MGFRecConfig, now: MGFRecConfig, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` for the fields in which two cell configs differ, compared as :func:`_comparable`
    writes them, ``ignore`` left out; empty when they are the same config."""
    a, b = flat_fields(_comparable(before)), flat_fields(_comparable(now))

    def ignored(key: str) -> bool:  # an entry ending with "." is a prefix (FROM_INIT)
        hit = any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore)
        return hit and key not in KEPT_FROM_CELL

    keys = sorted(k for k in a.keys() | b.keys() if not ignored(k))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def _differences(changed: Mapping[str, tuple[Any, Any]], shown: int = 4) -> str:
    """``field: old -> new; ...`` of :func:`_changes` (not empty), the first ``shown`` of them."""

    def one(k: str, old: Any, new: Any) -> str:
        if isinstance(old, str) and isinstance(new, str) and old.startswith("text:") and new.startswith("text:"):
            return f"{k} (its text changed)"  # two template files by their digests: 140 characters of hex
        return f"{k}: {old!r} -> {new!r}"

    text = "; ".join(one(k, old, new) for k, (old, new) in list(changed.items())[:shown])
    return text + (f"; and {len(changed) - shown} more" if len(changed) > shown else "")


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


def config_digest(cfg: MGFRecConfig) -> str:
    """A short digest of a cell's resolved config (secrets removed, each template file by its text): ``sweep.json``
    records it for each finished cell, so a rerun can tell whether the cell it would skip was made with the same
    config. It held a template's path: a template edited in place left finished cells reused, trained on the old
    text. A digest of before differs; the cell's own ``config.yaml`` then decides (:func:`_refuse_stale`)."""
    return _digest(_comparable(cfg))


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def check_sweep_output(out: Path, data: str | Path | None = None, cells: Sequence[str] = ()) -> None:
    """Refuse an ``--out`` that holds something other than a sweep, before anything is written into it: the data
    set given as ``--data``, a prepared data set, a run, a demo's folder, or a folder holding other folders but no
    ``sweep.json`` (a user's loose files, a grid file or notes, are fine). It wrote ``sweep.json`` and the cells'
    folders beside a data set's files or into a finished run. Folders named as ``cells`` (this grid's) that hold a
    fit's ``config.yaml`` are the sweep's own, its ``sweep.json`` deleted (as a damaged one's error says to do):
    each is checked against its cell's config before it is reused."""
    from mgfrec.config.load import entries_besides_config
    from mgfrec.runs import NOT_A_RUN, RUN_FILE, refuse_held

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


def _cell_config(cell_dir: Path) -> MGFRecConfig | None:
    """A cell folder's own ``config.yaml``, loaded (a field added since: its value of before), or None."""
    try:
        return load_config(cell_dir / "config.yaml") if (cell_dir / "config.yaml").is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _why_config(changed: Mapping[str, tuple[Any, Any]] | None) -> str:
    """Why a stale cell's config is not this run's: its fields that differ (:func:`_changes` of the cell's own
    ``config.yaml``), or the general reason when the folder holds none."""
    from mgfrec.config.load import WRITTEN_BEFORE

    if not changed:
        return "the base --config or --set changed"
    if set(changed) <= set(WRITTEN_BEFORE):  # only fields this mgfrec added: the cell was made by an earlier one
        sets = " ".join(f"--set {k}={'null' if old is None else old}" for k, (old, _) in changed.items())
        return f"by an earlier mgfrec, without {', '.join(changed)}; {sets} reuses it"
    return f"the base --config or --set changed: {_differences(changed)}"


FROM_INIT = ("retriever.",)
"""The fields a fit with ``--init`` takes from the init run (its recall run's model, settings and options: the
run's ``config.yaml`` records them), whatever the cell's config says: left out where a cell's written
``config.yaml`` is compared with its config. A prefix; ``retriever.recall_size``, the agent's own setting, stays
compared (:data:`KEPT_FROM_CELL`)."""
KEPT_FROM_CELL = ("retriever.recall_size",)


SETTING_FLAGS = {
    "data": "--data",
    "fit.init": "--init",
    "fit.recall_model": "--recall-model",
    "fit.max_train_samples": "--max-train-samples",
    "fit.valid_samples": "--valid-samples",
    "eval_splits": "--eval-split",
    "eval_limit": "--eval-limit",
}
"""The runner's settings (``mgfrec sweep``'s flags, recorded per cell as ``settings_shown``) by the flag that sets
them: a stale cell's message names the flags that changed, not all of them."""


def shown_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's settings as a cell records them (``settings_shown``): flat, secrets and URL credentials
    redacted; the inputs (checksums, compared on their own) left out."""
    return scrubbed(flat_fields({k: v for k, v in settings.items() if k != "inputs"}))


def _why_settings(was: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """Which runner flags changed since a cell was made, with their values; every flag the cell could have been
    made with when it recorded no ``settings_shown`` (a sweep of before)."""
    if not isinstance(was, Mapping):
        return f"{', '.join(dict.fromkeys(SETTING_FLAGS.values()))} changed"
    changed = [k for k in dict.fromkeys([*was, *now]) if was.get(k) != now.get(k)]
    if not changed:  # the digest differs but the shown values agree (a secret, redacted in both)
        return "the runner's settings changed"
    return "; ".join(f"{SETTING_FLAGS.get(k, k)}: {was.get(k)!r} -> {now.get(k)!r}" for k in changed)


INPUT_CHANGED = {
    "data_checksum": "--data was prepared again since",
    "init_created": "--init was trained again since",
}
"""How a stale cell's message says which of the runner's inputs (``settings["inputs"]``) changed under it."""


def _refuse_stale(
    out: Path,
    record: Mapping[str, Any],
    digests: Mapping[str, str],
    settings: str,
    configs: Mapping[str, MGFRecConfig] | None = None,
    inputs: Mapping[str, Any] | None = None,
    shown: Mapping[str, Any] | None = None,
    ignore: tuple[str, ...] = (),
) -> None:
    """Refuse a rerun that would skip a finished cell, or continue a failed or killed one from its folder, made
    under another config or other runner settings: its numbers would be reported as this sweep's. An entry
    without a recorded digest (an older sweep.json) is not compared on it. ``ignore``: fields a cell's fit derives
    itself, left out where its ``config.yaml`` decides (with ``--init``, ``retriever.model`` is the init's)."""
    stale: dict[str, list[str]] = {"config": [], "settings": [], "inputs": []}
    changes: dict[str, dict[str, tuple[Any, Any]] | None] = {}  # a stale cell's fields that differ, where known
    for name, entry in record.get("cells", {}).items():
        if name not in digests:
            continue
        if entry.get("status") != "finished" and not (out / name).is_dir():
            continue  # nothing of it is reused
        if entry.get("config", digests[name]) != digests[name]:
            # an earlier mgfrec's digest (its config had fewer fields): the cell's own config.yaml decides
            written = _cell_config(out / name) if configs and name in configs else None
            changes[name] = None if written is None else _changes(written, configs[name], ignore)
            if changes[name] != {}:
                stale["config"].append(name)
        elif entry.get("settings", settings) != settings:
            stale["settings"].append(name)
        elif inputs and any(entry.get("inputs", {}).get(k, v) != v for k, v in inputs.items()):
            stale["inputs"].append(name)
    for what, names in stale.items():
        if names:
            if what == "config":
                why = _why_config(changes[names[0]])
            elif what == "inputs":
                was = record["cells"][names[0]].get("inputs", {})
                why = "; ".join(
                    INPUT_CHANGED.get(k, f"{k} changed") for k, v in (inputs or {}).items() if was.get(k, v) != v
                )
            else:
                why = _why_settings(record["cells"][names[0]].get("settings_shown"), shown or {})
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise ValueError(
                f"{out}: cell {names[0]}{more} was made with other settings ({why}); give another --out, or "
                f"delete those cells' folders and their entries in {SWEEP_FILE}"
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
    check_sweep_output(out, (settings or {}).get("data"), list(configs))
    digests = {name: config_digest(cfg) for name, cfg in configs.items()}
    twins: dict[str, str] = {}
    for name, cfg in configs.items():  # "1" and "1.0" are two names but one config: it would train twice
        whole = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str)  # secrets too: held, not kept
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
    settings_digest = _digest({k: v for k, v in settings.items() if k != "inputs"})
    record = read_sweep(out)
    shown = shown_settings(settings)
    fit = settings.get("fit")
    derived = FROM_INIT if isinstance(fit, Mapping) and fit.get("init") is not None else ()
    _refuse_stale(out, record, digests, settings_digest, dict(configs), inputs, shown, derived)
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
        write_summary(out, summary_rows(record, [c.name for c in cells]))
        try:
            summary = run_cell(configs[cell.name], out / cell.name)
            record["cells"][cell.name] = {
                "values": cell.shown,
                "status": "finished",
                **made_with,
                "summary": dict(summary or {}),
            }
        except Exception as exc:  # noqa: BLE001 - one cell's failure must not end the sweep; it is recorded
            record["cells"][cell.name] = {
                "values": cell.shown,
                "status": "failed",
                **made_with,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
            }
            say(f"[{n}/{len(cells)}] {cell.name}: failed: {type(exc).__name__}: {exc}")
        _write_sweep(out, record)
    rows = summary_rows(record, [c.name for c in cells])
    write_summary(out, rows)
    return rows

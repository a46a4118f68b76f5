"""Run folders: what every command that produces a model leaves behind, and how later commands find it.

``RUN/run.json`` says what the run is (``kind``: ``baseline`` or ``agent``; ``model``: the component name;
``data``: the prepared data folder it was trained on, as given and as an absolute path). ``RUN/config.yaml``
is the resolved config. ``mgfrec evaluate`` and ``mgfrec report`` start from here. Training runs log one row
per step or epoch to a CSV file (``RUN/metrics.csv``, ``RUN/sft_metrics.csv``): :func:`write_metrics`,
:func:`read_metrics`. Which folder a command may write its run into, and what it replaces there, is
:mod:`mgfrec.output_folders`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from mgfrec import __version__
from mgfrec.atomic import atomic_write, atomic_write_text

RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunInfo:
    kind: str  # "baseline" | "agent"
    model: str  # registry name (retriever) or "mgfrec"
    data: str  # prepared data folder, absolute
    data_checksum: str
    created: str = ""
    mgfrec_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)


def json_ready(node: Any) -> Any:
    """``node`` with every non-finite float (NaN, inf) as None: JSON has no NaN, and strict parsers (JavaScript,
    ``jq``) refuse the ``NaN`` Python's ``json`` writes by default. Dump the result with ``allow_nan=False``."""
    if isinstance(node, float) and not math.isfinite(node):
        return None
    if isinstance(node, dict):
        return {k: json_ready(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [json_ready(v) for v in node]
    return node


def write_run_info(run_dir: str | Path, info: RunInfo) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = asdict(info)
    payload["created"] = payload["created"] or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
    relative = _relative_paths(run_dir, payload)
    if relative:
        payload["extra"] = {**payload["extra"], RELATIVE_PATHS: relative}
    # whole or absent: another process may be waiting to read it
    return atomic_write_text(run_dir / RUN_FILE, json.dumps(json_ready(payload), indent=2, allow_nan=False))


@contextmanager
def plugins_of_run(run_dir: str | Path, _recall: bool = True) -> Iterator[None]:
    """Inside the ``with`` block, a component the run's ``run.json`` records as a plugin's, and that is not
    installed here, is named with its package (:func:`~mgfrec.registry.recorded_plugins`). A run folder that
    cannot be read records nothing: the command reading it says why."""
    from mgfrec.config.components import PLUGINS
    from mgfrec.registry import recorded_plugins

    try:
        payload = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
        plugins = payload.get("extra", {}).get(PLUGINS, []) if isinstance(payload, dict) else []
        recall = payload.get("extra", {}).get("recall_run") if isinstance(payload, dict) else None
    except (OSError, ValueError, AttributeError):
        plugins, recall = [], None
    if _recall and isinstance(recall, str) and recall:
        # an agent run over a recall run made with a plugin retriever (fit --init, sft --recall-run): that run
        # records it, this one may not (review s37)
        with plugins_of_run(recall, _recall=False), recorded_plugins(str(run_dir), plugins):
            yield
        return
    with recorded_plugins(str(run_dir), plugins):
        yield


F = TypeVar("F", bound=Callable[..., Any])


def with_run_plugins(fn: F) -> F:
    """Run ``fn`` under :func:`plugins_of_run` of its ``run_dir`` argument: whatever it builds from the run's
    config, a plugin that is missing is named with its package."""
    from mgfrec.registry import within

    return within(plugins_of_run, "run_dir", "with_run_plugins")(fn)


def wait_until(
    ready: Callable[[], bool], what: str, path: Path, timeout_s: float = 3600.0, poll_s: float = 1.0
) -> None:
    """Block until ``ready()`` (another process is writing ``path``); a TimeoutError naming it otherwise."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what} at {path}, written by the first process")
        time.sleep(poll_s)


def _first_run_in(folder: Path) -> str:
    """The first run folder inside ``folder`` (by name), for an error's example; ``FOLDER/<run>`` when none is."""
    runs = sorted(p for p in folder.iterdir() if (p / RUN_FILE).is_file()) if folder.is_dir() else []
    return str(runs[0]) if runs else f"{folder}/<run>"


def check_same_run(run_dir: str | Path, info: RunInfo) -> None:
    """Raise ``ValueError`` when ``RUN/run.json`` is gone or names another run than ``info`` (read when the
    command began): a fit, SFT or baseline fit made a new run in the folder meanwhile, and the earlier run's results
    written into it now would be read as the new run's (``report`` showed them; review s33). Called just before a
    command writes its results."""
    try:
        now = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
        created = now.get("created", "") if isinstance(now, dict) else None
    except (OSError, ValueError):
        created = None
    if created == info.created:
        return
    why = f"{RUN_FILE} is gone: a run is being made in it" if created is None else "another run was made in it"
    raise ValueError(
        f"{run_dir}: {why} while it was evaluated; nothing written (the results were the earlier run's): evaluate "
        "it again once that command has ended"
    )


def read_run_info(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        from mgfrec.locks import held_by_another

        folder = Path(run_dir)
        # a fit or SFT in progress was called unfinished, with advice to --resume it or start it again beside it;
        # a folder that holds another thing's mark (a data set, a sweep, a demo: their commands lock it too) is
        # named for what it is below, and a baseline fit's set-aside run has its own line (review s32)
        marked = ("manifest.json", "sweep.json", "demo.json", f"{PREVIOUS_FIT}/{RUN_FILE}")
        if not any((folder / mark).is_file() for mark in marked) and held_by_another(folder):
            raise FileNotFoundError(
                f"{run_dir}: a run is being made in it now (no {RUN_FILE} yet); wait for the command making it to end"
            )
        if (folder / "fit_start.json").is_file():  # written once GRPO's parts have loaded; run.json last
            held = [folder / "checkpoints" / name for name in ("last.ckpt", "last.ckpt.old")]
            if any(p.exists() for p in held):  # an empty checkpoints/ (it failed before one): --resume cannot
                how = (
                    " (its checkpoint is there); finish it with the command that started it and --resume, or start "
                    "it again"
                )
            else:
                how = " and no checkpoint yet; start it again with the command that started it"
            raise FileNotFoundError(f"{run_dir}: an unfinished fit (no {RUN_FILE} yet){how}")
        if (folder / PREVIOUS_FIT / RUN_FILE).is_file():  # "not a run folder (... train one)" hid the earlier run
            if held_by_another(folder):  # it was called killed, and its advice was refused as "running" (review s30)
                raise FileNotFoundError(
                    f"{run_dir}: a baseline fit is running in it now (its earlier run is kept in {PREVIOUS_FIT} until "
                    "it ends); wait for it to end"
                )
            raise FileNotFoundError(
                f"{run_dir}: a baseline fit that did not finish (killed); its earlier run is kept in {PREVIOUS_FIT}: "
                "run 'mgfrec baseline fit' into it again, which puts the earlier run back and fits anew"
            )
        if (folder / "sft_metrics.csv").is_file() or (folder / "recall" / RUN_FILE).is_file():
            # an SFT stopped before it saved its policy (a re-run retires the earlier run once its parts have
            # loaded), or an agent run stopped after its recall fit: "train one" did not say what was left
            stage = "an SFT" if (folder / "sft_metrics.csv").is_file() else "an agent run"
            raise FileNotFoundError(
                f"{run_dir}: {stage} that did not finish (no {RUN_FILE}: it stopped before its policy was saved, "
                "and anything left of an earlier run there was retired); run its command again"
            )
        if not folder.exists():  # a typo: "no run.json" sent the user looking inside a folder that is not there
            why = "no such file or folder"
        elif folder.is_file():
            why = f"a file; give the run folder it is in ({folder.parent})" if folder.name == RUN_FILE else "a file"
        elif (folder / "manifest.json").is_file():
            why = "a prepared data set (manifest.json); give a run made on it"
        elif (folder / "sweep.json").is_file():  # "train one" of a folder of finished runs
            why = "a sweep (sweep.json); give its cell folders, e.g. " + _first_run_in(folder)
        elif (folder / "demo.json").is_file():
            why = "a demo's output folder (demo.json); give the run folders in it, e.g. " + _first_run_in(folder)
        else:
            why = f"no {RUN_FILE}; train one with 'mgfrec baseline fit' or 'mgfrec fit'"
        raise FileNotFoundError(f"{run_dir}: not a run folder ({why})")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid run file: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a valid run file: expected a JSON object, got {type(payload).__name__}")
    for name, kind in _RUN_FIELDS.items():  # a field of the wrong type failed later, deep in a command
        if name in payload and not isinstance(payload[name], kind):
            what = "an object" if kind is dict else "text"
            raise ValueError(
                f"{path}: field '{name}' must be {what}, got {type(payload[name]).__name__}; not a valid run file"
            )
    try:
        info = RunInfo(**payload)
    except TypeError as exc:
        raise ValueError(f"{path}: not a valid run file: {exc}") from None
    return _relocated(Path(run_dir), info)


def created_stamp(run_dir: str | Path) -> str | None:
    """``run_dir``'s ``run.json`` ``created`` stamp: what tells one run from another made later in the same folder
    (an agent run records its recall run's as ``extra.recall_created``, a fit its ``--init``'s as ``init_created``);
    None where ``run_dir`` holds no readable run or the run has no stamp."""
    try:
        return read_run_info(run_dir).created or None
    except (OSError, ValueError):
        return None


RELATIVE_PATHS = "relative_paths"
"""``run.json`` ``extra`` key: each path field (``data``, ``extra.recall_run`` ...) relative to the run folder, so
that a run moved together with them (a whole demo folder) still finds them."""
# ``extra``'s path fields beside RunInfo's ``data`` (a derived run's ``policy`` is its trained run's, by path)
_EXTRA_PATHS = ("recall_run", "trained_run", "init", "policy", "best_policy")


def _relative_paths(run_dir: Path, payload: dict[str, Any]) -> dict[str, str]:
    here = run_dir.resolve()
    recorded = {"data": payload["data"], **{k: payload["extra"].get(k) for k in _EXTRA_PATHS}}
    return {
        name: os.path.relpath(value, here)
        for name, value in recorded.items()
        if isinstance(value, str) and value and Path(value).is_absolute()
    }


def _relocated(run_dir: Path, info: RunInfo) -> RunInfo:
    """``info`` with each recorded path that no longer exists replaced by its place relative to the run folder,
    when something is there (a demo folder moved whole). What is found there is checked as before (the data set
    by its checksum, a recall or trained run by its own ``run.json``)."""
    relative = info.extra.get(RELATIVE_PATHS)
    if not isinstance(relative, dict):
        return info
    moved: dict[str, str] = {}
    for name, rel in relative.items():
        value = info.data if name == "data" else info.extra.get(name)
        if not (isinstance(rel, str) and isinstance(value, str)) or not value:
            continue
        # a path inside the run folder when it was written (its recall run) is the run's own: a copy made with
        # `cp -r` read the original's, and was refused once the original's recall model was fitted again (s33)
        inside = not os.path.isabs(rel) and Path(rel).parts[:1] != ("..",)
        if Path(value).exists() and not inside:
            continue
        candidate = (run_dir / rel).resolve()
        if candidate.exists() and candidate != Path(value).resolve():
            moved[name] = str(candidate)
    if not moved:
        return info
    extra = {**info.extra, **{k: v for k, v in moved.items() if k != "data"}}
    return replace(info, data=moved.get("data", info.data), extra=extra)


_RUN_FIELDS = {
    "kind": str,
    "model": str,
    "data": str,
    "data_checksum": str,
    "created": str,
    "mgfrec_version": str,
    "extra": dict,
}


PREVIOUS_FIT = ".previous-fit"
"""Where ``baseline fit`` sets an earlier run in its ``--out`` aside until the new one is written (a fit killed
before it cleaned up leaves it: the next fit there restores or replaces it)."""


def recall_run_of(run_dir: str | Path, info: RunInfo) -> str | None:
    """An agent run's recall run (``run.json`` ``extra.recall_run``), None when it has none; a recall run that
    is no longer a run folder (moved, deleted) is refused in one line that says where the path came from."""
    recall = info.extra.get("recall_run")
    if recall and not (Path(recall) / RUN_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir}: its recall run {recall} ({RUN_FILE} extra.recall_run) is not a run folder (no {RUN_FILE}); "
            f"restore that folder, or edit extra.recall_run to point at the baseline run the agent was trained with"
        )
    return recall


def policy_folder(run_dir: str | Path, info: RunInfo) -> Path:
    """An agent run's policy folder (``run.json`` ``extra.policy``, default ``policy``); one that holds no policy
    (deleted, never written) is refused in one line, where loading it was read as a hub id and refused as one."""
    folder = Path(run_dir) / str(info.extra.get("policy", "policy"))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no policy in this agent run; make one with 'mgfrec sft' or 'mgfrec fit'")
    return folder


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    """All rows with the union of their columns (valid columns appear only on validation steps); the step a whole
    number (``3``, not ``3.0``)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({**r, "step": int(r["step"])} if "step" in r else r for r in rows)

    atomic_write(path, write, text=True)  # a kill mid-write leaves the previous file whole


def read_metrics(path: Path, *, before: int) -> list[dict[str, float]]:
    """Rows of an earlier run up to step ``before`` (a resumed run drops those after its checkpoint)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    return [r for r in rows if r.get("step", 0) <= before]


def read_json_object(path: Path, remedy: str) -> dict[str, Any]:
    """A JSON object a command wrote into a folder; a damaged file (not JSON, or not an object) is a
    ``ValueError`` naming it and saying ``remedy``."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); {remedy}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}; {remedy}")
    return value


def read_sweep_record(path: Path) -> dict[str, Any]:
    """A sweep's ``sweep.json``, its shape checked: a damaged one is one error naming it (``mgfrec sweep`` and
    ``mgfrec figures`` read it)."""
    again = "delete it to start the sweep record again"
    record = read_json_object(path, again)
    cells = record.get("cells", {})
    if not isinstance(cells, dict):
        raise ValueError(f"{path}: 'cells' must be an object; {again}")
    grid = record.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise ValueError(f"{path}: 'grid' must be an object of field -> list of values; {again}")
    for name, entry in cells.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: cell {name!r} must be an object; {again}")
        for key, kind in (("summary", dict), ("status", str), ("values", dict)):
            if key in entry and entry[key] is not None and not isinstance(entry[key], kind):
                raise ValueError(
                    f"{path}: cell {name!r}: {key!r} must be {'an object' if kind is dict else 'text'}; {again}"
                )
        if entry.get("status") == "finished" and not isinstance(entry.get("values"), dict):
            raise ValueError(f"{path}: cell {name!r} is finished but has no 'values'; {again}")
        for metric, value in (entry.get("summary") or {}).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{path}: cell {name!r}: summary {metric!r} must be a number, got {value!r}; {again}")
    return record


def shown_path(path: str | Path) -> str:
    """``path`` as a log line shows it: relative to the working folder when it lies under it, else absolute, so
    one run is named the same way whether a command was given it relative or read it from a run.json."""
    full = Path(path).resolve()
    try:
        return str(full.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(full)


# Names that moved to mgfrec.output_folders (the output-folder checks), importable from here as before
_MOVED = (
    "NOT_A_RUN",
    "RESULT_PATTERNS",
    "check_not_own_subrun",
    "check_output_run",
    "clear_results",
    "is_run_output",
    "producer_of",
    "refuse_held",
    "removed_if_left_empty",
    "retire_if_recall_inside",
    "retire_run",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:  # late: output_folders imports this module
        from mgfrec import output_folders

        return getattr(output_folders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

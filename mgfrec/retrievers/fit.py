"""Train any registered retriever into a run folder, load one back, and rank a split with it.

:func:`load_scorer` is the one loader of baseline run folders (``mgfrec evaluate``, recall lists and the
agent's recall all go through it); :func:`open_data` refuses a data set the run was not trained on.

These functions dispatch by registry name only (``retriever.model``), so built-in and plugin retrievers
(pop, sasrec, gru4rec, caser, last-title, hybrid, ...) take the same path. ``mgfrec baseline fit`` is a thin
wrapper over :func:`fit_baseline`.

The ranking here is the one rule of :mod:`mgfrec.ranking.metrics` (full catalogue, history excluded,
pessimistic ties); the evaluator with intervals lives in :mod:`mgfrec.eval`, not here.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgfrec.config.components import plugins_named
from mgfrec.config.load import is_user_config, keep_user_config, write_resolved
from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.dataset_folder import PREVIOUS as PREPARE_PREVIOUS
from mgfrec.data.prepared import PreparedDataset
from mgfrec.locks import held_by_another, only_one_in, refuse_if_held
from mgfrec.output_folders import check_output_run, is_run_output, removed_if_left_empty
from mgfrec.ranking.evaluator import rank_targets
from mgfrec.ranking.metrics import per_sample
from mgfrec.registry import Registry, registry, with_registry
from mgfrec.registry.blame import call_component
from mgfrec.retrievers.damage import damaged_run_files
from mgfrec.runs import PREVIOUS_FIT, RUN_FILE, RunInfo, read_run_info, write_run_info
from mgfrec.seeding import kept_global_rng


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_baseline` produced."""

    retriever: Any
    run_dir: Path
    valid_ndcg10: float  # of the saved model (the best epoch, for models that early-stop)
    seconds: float  # wall time of the fit itself
    # a finished earlier fit of ``run_dir`` kept in ``run_dir/.previous-fit`` because this one was stopped by the user
    # (Ctrl-C, SIGTERM): a refit cut short after one batch deleted hours of work (the next fit there deletes it)
    previous: Path | None = None


@with_registry
@kept_global_rng()  # it seeds itself; the caller's generators and PL_ variables are theirs again after it (s35)
def fit_baseline(ds: PreparedDataset, config: MGFRecConfig, out: str | Path, reg: Registry | None = None) -> FitResult:
    """Fit the retriever named by ``config.retriever.model`` on ``ds`` and write the run folder ``out``.

    Writes ``out/config.yaml``, whatever the model saves, and finally ``out/run.json`` (whose presence marks
    a finished fit) with the valid NDCG@10 and the fit time in ``extra``.
    """
    reg = registry()  # ``reg`` when given (with_registry)
    if not isinstance(ds, PreparedDataset):  # a path was "'str' object has no attribute 'root'" (review s35)
        raise TypeError(f"ds: give a PreparedDataset (PreparedDataset(path)), got {type(ds).__name__}")
    name = config.retriever.model
    out = Path(out)
    cls = reg.load("retriever", name)
    missing = [m for m in ("fit", "load") if not callable(getattr(cls, m, None))]
    if missing:  # without load: a fit of hours wrote a run that no command could read back (review s34)
        raise ValueError(
            f"{reg.get('retriever', name).describe()} has no {' or '.join(missing)} classmethod: a retriever provides "
            "fit(ds, config, out) and load(run_dir, ds), which reads its run back; see docs/plugins.md"
        )
    if getattr(cls, "reads_training_settings", True):
        from mgfrec.retrievers.training import lightning_device  # Lightning loads only for models that train

        lightning_device(config.retriever.device)  # an unusable device is refused before out is touched
    refuse_if_held(out)  # "another mgfrec baseline fit is running" named the wrong command when a fit held it
    check_output_run(out, "baseline", data=ds.root)  # nothing of another kind is set aside, then deleted
    if ds.split("train").empty:
        # every model, a counting one too (pop wrote a model of zeros): refused before out is touched
        raise ValueError(f"{ds.root}: the train split is empty; nothing to fit")
    own = tuple(getattr(cls, "run_files", ()))  # what a plugin saves besides mgfrec's own files
    with removed_if_left_empty(out):  # a fit that fails or is stopped into a new folder leaves no empty folder
        return _fit_into(ds, config, out, reg, name, own)


def _fit_into(
    ds: PreparedDataset, config: MGFRecConfig, out: Path, reg: Registry, name: str, own: tuple[str, ...]
) -> FitResult:
    """:func:`fit_baseline` after its checks: set an earlier fit aside, fit, write the run (or put it back)."""
    out.mkdir(parents=True, exist_ok=True)
    # two fits into one folder at once set each other's files aside: one failed, or both said "finished" over
    # the other's model
    with only_one_in(out, "mgfrec baseline fit"):
        check_output_run(out, "baseline", data=ds.root)  # again, holding OUT: a run made there meanwhile (s33)
        return _fit_locked(ds, config, out, reg, name, own)


def _fit_locked(
    ds: PreparedDataset, config: MGFRecConfig, out: Path, reg: Registry, name: str, own: tuple[str, ...]
) -> FitResult:
    keep_user_config(out)  # a --config given as OUT/config.yaml stays, as config.user.yaml
    # An earlier fit's files (its run.json, model, evaluation) are set aside, not deleted: none can be mistaken
    # for this fit's, and a fit that fails puts them back (a failed command loses nothing).
    aside = _set_aside(out, own)
    try:
        config = ds.recorded_in(config)
        write_resolved(config, out)
        start = time.perf_counter()
        retriever = reg.build("retriever", name, config.retriever.options, ds, config, out, method="fit")
        seconds = time.perf_counter() - start
        if not callable(getattr(retriever, "scores", None)):  # None: "'NoneType' object has no attribute 'scores'"
            cls = reg.load("retriever", name)
            raise ValueError(
                f"retriever '{name}' ({cls.__module__}.{cls.__qualname__}): its fit() returned "
                f"{type(retriever).__name__}, not a fitted retriever with scores(); see docs/plugins.md"
            )
        valid = valid_ndcg10(retriever, ds)
    except BaseException:
        _put_back(out, aside, own)
        raise
    extra: dict = {"valid_ndcg@10": valid, "fit_seconds": round(seconds, 3)}
    extra.update(plugins_named(config, reg))  # a run given where a package is missing names it
    if getattr(retriever, "best_epoch", None) is not None:
        extra["best_epoch"] = retriever.best_epoch
    if getattr(retriever, "stopped", None) is not None:  # why training ended (see retrievers.training.Budget)
        extra["stopped"] = retriever.stopped
    write_run_info(
        out,
        RunInfo(kind="baseline", model=name, data=str(ds.root.resolve()), data_checksum=ds.checksum, extra=extra),
    )
    previous = None
    if aside is not None and extra.get("stopped") == "user" and (aside / RUN_FILE).is_file():
        previous = aside  # kept: the stop may have been meant for the refit itself (see FitResult.previous)
    elif aside is not None:
        shutil.rmtree(aside, ignore_errors=True)  # after run.json: see _set_aside
    return FitResult(retriever, out, valid, seconds, previous)


def valid_ndcg10(retriever: Any, ds: PreparedDataset) -> float:
    """Mean NDCG@10 over the valid split; ``nan`` when it has no sample (a model that needs none, like pop, fits
    anyway; numpy's "mean of empty slice" warnings are not the way to say so: the CLI says "no valid samples")."""
    if ds.split("valid").empty:
        return float("nan")
    return float(per_sample(split_ranks(retriever, ds, "valid"), [10])["ndcg@10"].mean())


PREVIOUS = PREVIOUS_FIT


_ASIDE_WHOLE = ".whole"
"""Written into ``.previous-fit`` once every file of the earlier run is in it: without it, a fit stopped between two
renames left the earlier run half in OUT, half set aside, and the next fit deleted one half (review s33)."""


def _set_aside(out: Path, own: tuple[str, ...] = ()) -> Path | None:
    """Move what a run wrote in ``out`` (:func:`~mgfrec.output_folders.is_run_output`, ``own``: the retriever's
    ``run_files``) into ``out/.previous-fit`` (renames: cheap); None when there was nothing. Anything else, a
    user's notes or analysis beside the run, stays where it is and is never deleted."""
    aside = out / PREVIOUS
    if aside.is_dir():  # a fit killed before it cleaned up
        if not (aside / _ASIDE_WHOLE).exists() and not (out / RUN_FILE).is_file():
            _move_back(out, aside)  # stopped while setting the earlier run aside: the moved files go back
        elif (out / RUN_FILE).is_file():
            shutil.rmtree(aside)  # it finished (run.json is written last): its predecessor goes
        else:
            _put_back(out, aside, own)  # it did not: its predecessor comes back
    entries = [e for e in out.iterdir() if not is_user_config(e.name) and is_run_output(e.name, own)]
    if not entries:
        return None
    aside.mkdir()
    # run.json first: a run without it is never taken for finished, whatever else is still in OUT
    for entry in sorted(entries, key=lambda e: e.name != RUN_FILE):
        try:
            entry.rename(aside / entry.name)
        except OSError as exc:
            # a folder OUT cannot move (no write permission on it: another user's checkpoints/) left the run split
            # in two, then taken for a killed fit by every reader, and each rerun split it again (review s42)
            _move_back(out, aside)
            raise OSError(
                f"{out}: cannot set the earlier run aside before fitting again: {entry.name} cannot be moved into "
                f"{PREVIOUS}/ ({exc.strerror or exc}); the earlier run is left as it was"
            ) from None
    (aside / _ASIDE_WHOLE).touch()
    return aside


def _move_back(out: Path, aside: Path) -> None:
    """Move what ``aside`` holds back into ``out``: a :func:`_set_aside` stopped half-way undone (nothing in OUT is
    the new fit's), and the end of :func:`_put_back`."""
    (aside / _ASIDE_WHOLE).unlink(missing_ok=True)
    # run.json last: back in OUT, it says the whole run is (a stop half-way lost the rest at the next fit)
    for entry in sorted(aside.iterdir(), key=lambda e: e.name == RUN_FILE):
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():  # (only an earlier version's folder, without the mark)
            shutil.rmtree(target)
        entry.replace(target)
    aside.rmdir()


def _put_back(out: Path, aside: Path | None, own: tuple[str, ...] = ()) -> None:
    """Undo :func:`_set_aside` after a failed fit: the failed fit's files go, the earlier run's come back (a
    user's own files, never set aside, are not touched)."""
    for entry in out.iterdir():
        if entry.name != PREVIOUS and not is_user_config(entry.name) and is_run_output(entry.name, own):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if aside is not None:
        _move_back(out, aside)


def restore_previous(out: str | Path, reg: Registry | None = None) -> RunInfo:
    """Put back the earlier fit that a refit stopped by the user kept in ``out/.previous-fit``
    (:attr:`FitResult.previous`): the stopped fit's files go, the earlier run's come back (a user's own files are not
    touched). Returns the restored run's info. ``mgfrec baseline restore`` is a thin wrapper over it."""
    out = Path(out)
    aside = out / PREVIOUS
    if not (aside / RUN_FILE).is_file() or not (aside / _ASIDE_WHOLE).is_file():
        raise FileNotFoundError(
            f"{out}: holds no earlier fit to restore (no {PREVIOUS}/{RUN_FILE}); one is kept only when a refit into "
            "it was stopped by Ctrl-C or SIGTERM, until the next fit there"
        )
    if held_by_another(out):  # only_one_in's line would name the wrong command, and "--out"
        raise ValueError(f"{out}: another mgfrec command is writing it now; wait for it to end")
    with only_one_in(out, "mgfrec command"):
        if not (out / RUN_FILE).is_file():  # a fit killed half-way: the next fit there sorts it out, not this
            raise FileNotFoundError(
                f"{out}: its fit did not finish (no {RUN_FILE}); run 'mgfrec baseline fit' into it again, which puts "
                f"the earlier run back first"
            )
        info = read_run_info(aside)
        models = {read_run_info(out).model, info.model}
        reg = reg or registry()
        own: tuple[str, ...] = ()
        for model in sorted(models):  # both runs' own files (a refit may have been of another model)
            try:
                own += tuple(getattr(reg.load("retriever", model), "run_files", ()))
            except Exception:  # noqa: BLE001 - a plugin since uninstalled: mgfrec's own files still swap
                pass
        _put_back(out, aside, own)
    return info


class AgentEvaluationUnavailable(ValueError):
    """An agent run has no item scorer: it is evaluated by rolling it out (``evaluate_run``)."""


@dataclass(frozen=True)
class LoadedRun:
    """A baseline run ready to evaluate: what it is, its data set, and its model as a scorer."""

    run_dir: Path
    info: RunInfo
    ds: PreparedDataset
    scorer: Any


def open_data(
    run_dir: Path, info: RunInfo, data: str | Path | None = None, *, data_from: str = "--data"
) -> PreparedDataset:
    """The run's prepared data set (or ``data`` instead), refused if it is not the one the run used. ``data_from``
    says where ``data`` came from, for the message: the ``--data`` flag, or (for a recall run loaded beside an
    agent run) the agent run's own data set."""
    killed = (Path(info.data) / PREPARE_PREVIOUS / "manifest.json").is_file()  # PreparedDataset says what to do
    if data is None and not (Path(info.data) / "manifest.json").is_file() and not killed:
        # it was "DATA: not a prepared data set ... create one", naming neither the run nor where the path came from
        raise FileNotFoundError(
            f"{run_dir}: its data set {info.data} ({RUN_FILE} field 'data') is not a prepared data set any more "
            "(moved or deleted); put it back, or point at its copy with --data where the command has it"
        )
    ds = PreparedDataset(Path(data) if data is not None else Path(info.data))
    if info.data_checksum and ds.checksum != info.data_checksum:
        if data is None:
            where, remedy = f"{run_dir / RUN_FILE} field 'data' ({info.data})", "was the data set prepared again?"
        elif data_from == "--data":
            where, remedy = f"--data {data}", "pass --data with the right folder"
        else:
            where, remedy = f"{data_from} {data}", f"refit {run_dir} on it, or use the data set it was trained on"
        raise ValueError(
            f"{where}: this data set (checksum {ds.checksum}) is not the one the run was trained on "
            f"(data_checksum {info.data_checksum} in {run_dir / RUN_FILE}); {remedy}"
        )
    return ds


@with_registry
def load_scorer(
    run_dir: str | Path, data: str | Path | None = None, reg: Registry | None = None, *, data_from: str = "--data"
) -> LoadedRun:
    """Load a baseline run's retriever through the registry; ``data`` overrides the run's data folder (see
    :func:`open_data` for ``data_from``)."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info.kind == "agent":
        raise AgentEvaluationUnavailable(
            f"{run_dir}: an agent run ranks items from its answers, not from a scorer; "
            f"evaluate it with 'mgfrec evaluate {run_dir}'"
        )
    if info.kind != "baseline":
        raise ValueError(f"{run_dir / RUN_FILE}: field 'kind' is '{info.kind}'; expected 'baseline' or 'agent'")
    ds = open_data(run_dir, info, data, data_from=data_from)
    reg = reg or registry()
    cls = reg.load("retriever", info.model)
    if not callable(getattr(cls, "load", None)):  # a plugin's: an AttributeError traceback naming no component
        raise ValueError(
            f"{reg.get('retriever', info.model).describe()} has no load(run_dir, ds) classmethod, which reads "
            f"{run_dir} back; see what a retriever provides in docs/plugins.md"
        )
    with damaged_run_files(run_dir, info.model):
        return LoadedRun(run_dir, info, ds, call_component(cls, "load", run_dir, ds))


def check_retriever_current(run_dir: str | Path, model: str, reg: Registry | None = None) -> None:
    """The baseline run's retriever's own ``check_current(run_dir)``, where it has one (a hybrid whose reused
    collaborative run was fitted again refuses); a model nobody registered is left to loading to name. Called
    before a stored result or cached recall list of the run is read."""
    from mgfrec.registry import RegistryError

    try:
        cls = (reg or registry()).load("retriever", model)
    except RegistryError:
        return
    check = getattr(cls, "check_current", None)
    if check is not None:
        check(run_dir)


@with_registry
def load_retriever(run_dir: str | Path, ds: PreparedDataset | None = None, reg: Registry | None = None) -> Any:
    """The retriever a ``baseline`` run folder holds, on the data it was trained on (or ``ds``, if the same: the
    data set of the agent run it is the recall model of)."""
    data_from = "the agent run's data set"
    return load_scorer(run_dir, ds.root if ds is not None else None, reg, data_from=data_from).scorer


def split_ranks(retriever: Any, ds: PreparedDataset, split: str, batch_size: int = 1024) -> np.ndarray:
    """Pessimistic 1-based rank of every sample's target in the full catalogue, history excluded."""
    frame = ds.split(split)
    return rank_targets(
        retriever, list(frame["history"]), frame["target"].to_numpy(), num_items=ds.num_items, batch_size=batch_size
    )

"""Output folders: which folder a command may write its run into, and what it replaces or retires there.

Every command that makes a run checks its ``--out`` before it touches anything (:func:`check_output_run`: not a
data set, a sweep, a demo's folder, another command's run or a user's folder), replaces only what runs write
(:func:`is_run_output`), and retires an earlier run's results once the new run's parts have loaded
(:func:`retire_run`). What a run folder holds, and how it is read, is :mod:`mgfrec.runs`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mgfrec.runs import PREVIOUS_FIT, RUN_FILE, RunInfo, read_run_info

# What marks a folder as something other than a run (the names mgfrec.data.prepared, mgfrec.experiments.sweep and
# mgfrec.demo write; spelled out here so that this module stays below them)
NOT_A_RUN = {"manifest.json": "a prepared data set", "sweep.json": "a sweep", "demo.json": "a demo's output folder"}
# What an unfinished run leaves before its run.json (written last): fit's start record, the set-aside earlier fit
# of `baseline fit`, a trained model's checkpoints and metrics, the recall run and SFT's metrics (sft writes its
# config.yaml last)
_RUN_MARKS = ("fit_start.json", PREVIOUS_FIT, "checkpoints", "metrics.csv", "recall", "sft_metrics.csv")
# Runs a run keeps inside its own folder: an agent's recall run, a hybrid's collaborative model
_OWN_SUBRUNS = ("recall", "collaborative")
# Everything mgfrec's own commands write into a run folder, by name or pattern (fnmatch): what `baseline fit`
# sets aside and replaces (a retriever plugin adds the names it saves as `run_files`); anything else in the
# folder, a user's notes or analysis, is left where it is
_RUN_OUTPUTS = (
    *_RUN_MARKS,
    *_OWN_SUBRUNS,
    RUN_FILE,
    "config.yaml",
    "config.user.yaml",
    "policy",
    "best_policy",
    "prompts",
    "tensorboard",
    "user_agent_cache.sqlite*",
    "model.pt",
    "popularity.npy",
    "last_title.json",
    "hybrid.json",
    "bigrec.json",
    "bigrec_metrics.csv",
    "recall_*.npz",
    "eval_*",
    "ranks_*",
    "agent_*",
    "*.tmp",
)


def producer_of(info: RunInfo) -> str:
    """What made a run, as :func:`check_output_run` compares it: ``baseline``, ``mgfrec-sft``, ``mgfrec`` or
    ``derived`` (an evaluation-only run of ``mgfrec derive``)."""
    if info.kind == "baseline":
        return "baseline"
    return "derived" if "trained_run" in info.extra else info.model


_WRITERS = {
    "baseline": "a baseline run (mgfrec baseline fit)",
    "mgfrec-sft": "an SFT run (mgfrec sft)",
    "mgfrec": "a GRPO run (mgfrec fit)",
    "derived": "a derived run (mgfrec derive)",
}


def is_run_output(name: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a run folder's entry ``name`` is something mgfrec's runs write (``_RUN_OUTPUTS``) or one of
    ``extra`` (a retriever's ``run_files``): what a new fit replaces; anything else is the user's."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in (*_RUN_OUTPUTS, *extra))


def refuse_held(out: Path, owner: str, kinds: Mapping[str, str], *, data: str | Path | None = None) -> None:
    """Refuse an output folder that is the ``data`` set given as ``--data``, or holds one of ``kinds``' files (file
    name -> what it marks: :data:`NOT_A_RUN`, a run's ``run.json``), in one line saying ``owner`` needs a folder of
    its own. The shared start of :func:`check_output_run`, the sweep's and the demo's checks."""
    if data is not None and out.resolve() == Path(data).resolve():
        raise ValueError(f"--out {out} is the data set given as --data; give {owner} a folder of its own")
    for name, what in kinds.items():
        if (out / name).is_file():
            raise ValueError(f"--out {out}: holds {what} ({name}); give {owner} a folder of its own")


def check_output_run(out: str | Path, producer: str, *, data: str | Path | None = None) -> None:
    """Refuse an ``--out`` that holds something else, before anything in it is touched: the data set given as
    ``--data``, a prepared data set, a sweep, a demo's folder or any folder holding other runs or data sets, a run
    another command made (a baseline for ``sft``, an SFT run for ``fit``...), or a non-empty folder mgfrec did not
    write. A new or empty folder, a finished run of the same command (replaced), an unfinished one (resumed or
    replaced: it has one of ``_RUN_MARKS`` or a resolved ``config.yaml``), or a folder holding only a user's
    ``config.yaml`` is fine. Each command then replaces only what runs write (:func:`is_run_output`): a user's
    notes beside a run stay."""
    from mgfrec.config.load import entries_besides_config, is_resolved_config

    out = Path(out)
    refuse_held(out, "the run", NOT_A_RUN, data=data)
    if not out.is_dir():
        return  # a new folder (a path under a file is refused where it is made)
    if (out / RUN_FILE).is_file():
        theirs = producer_of(read_run_info(out))
        if theirs != producer:
            raise ValueError(
                f"--out {out}: holds {_WRITERS.get(theirs, theirs)}; {_WRITERS[producer]} needs a folder of its own"
            )
        return
    others = entries_besides_config(out)  # a user's config.yaml is kept (keep_user_config)
    nested = sorted(  # a folder of runs or data sets (a project's, or a demo's without its demo.json) is not one run
        name
        for name in others - {*_OWN_SUBRUNS, PREVIOUS_FIT}  # a killed baseline fit's earlier run: its own
        if (out / name).is_dir() and any((out / name / f).is_file() for f in (RUN_FILE, *NOT_A_RUN))
    )
    if nested:
        raise ValueError(
            f"--out {out}: holds other runs or data sets ({', '.join(nested[:3])}); give the run a folder of its own"
        )
    marked = any(mark in others for mark in _RUN_MARKS) or is_resolved_config(out / "config.yaml")
    # an agent run's marks: GRPO's start record, or the recall run SFT and GRPO fit first (a run stopped in its
    # recall fit or while its policy loaded has nothing else yet)
    if marked and producer == "baseline" and ({"fit_start.json", "recall"} & others):
        raise ValueError(f"--out {out}: holds an unfinished agent run; a baseline run needs a folder of its own")
    if producer != "baseline" and PREVIOUS_FIT in others:
        raise ValueError(
            f"--out {out}: holds a baseline fit that did not finish (its earlier run is kept in {PREVIOUS_FIT}); "
            f"{_WRITERS[producer]} needs a folder of its own"
        )
    # an unfinished run of the other agent command: a stopped GRPO fit (its checkpoints resume it) taken over by sft,
    # or a stopped SFT by fit, lost its policy and config.yaml and was labelled the other kind (review s30)
    fit_marks = {"fit_start.json", "checkpoints", "metrics.csv"} & others
    if producer == "mgfrec-sft" and fit_marks:
        kind = (  # GRPO writes fit_start.json before anything else; a baseline's fit never does
            "a GRPO fit that did not finish (mgfrec fit --resume goes on with it)"
            if "fit_start.json" in fit_marks
            else "a baseline fit that did not finish"
        )
        raise ValueError(
            f"--out {out}: holds {kind} ({', '.join(sorted(fit_marks))}); {_WRITERS[producer]} needs a folder of "
            "its own"
        )
    if producer == "mgfrec" and "sft_metrics.csv" in others:
        raise ValueError(
            f"--out {out}: holds an SFT run that did not finish (sft_metrics.csv); {_WRITERS[producer]} needs a "
            "folder of its own"
        )
    if not others or marked:
        return
    shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
    raise ValueError(f"--out {out}: not empty ({shown}) and not a run folder; give a new or empty folder")


def check_not_own_subrun(out: str | Path) -> None:
    """Refuse a command's ``--out`` that is a run's own recall run or a hybrid's own collaborative model
    (``RUN/recall``, ``RUN/collaborative``): ``baseline fit`` into one replaced the model the run was trained or
    tuned with, and the run's stored results were reported as its own (review s30). The run's own commands fit
    them (``fit``/``sft`` with ``--recall-model``, ``baseline fit --model hybrid``)."""
    out = Path(out)
    parent = out.resolve().parent
    # the parent's own marks: "recall" (a run mark) is the --out itself, or a sibling in a folder of runs (review s30)
    marks = [m for m in _RUN_MARKS if m not in _OWN_SUBRUNS]
    if out.name in _OWN_SUBRUNS and ((parent / RUN_FILE).is_file() or any((parent / m).exists() for m in marks)):
        what = "recall run" if out.name == "recall" else "collaborative model"
        raise ValueError(
            f"--out {out}: the {what} of the run in {parent}, which was fitted or tuned with it; fit that run again "
            "to replace it, or give this model a folder of its own"
        )


RESULT_PATTERNS = ("eval_*", "ranks_*", "agent_*")
"""What evaluating a run leaves in its folder (metrics, ranks, agent stats and per-sample rows)."""


def clear_results(run_dir: str | Path) -> None:
    """Remove a run folder's evaluation results (:data:`RESULT_PATTERNS`): a model fitted, trained or derived
    into the folder again makes them another model's, and ``mgfrec report`` would reuse them."""
    for pattern in RESULT_PATTERNS:
        for path in Path(run_dir).glob(pattern):
            if path.is_file():
                path.unlink()


def retire_run(run_dir: str | Path) -> None:
    """Mark a run folder's earlier run as no longer finished: its ``run.json`` and evaluation results go (a model
    trained into the folder again makes them another model's). SFT and GRPO call it once everything the new
    run needs has loaded, so that a typo in the re-run's config leaves the earlier run whole."""
    (Path(run_dir) / RUN_FILE).unlink(missing_ok=True)
    clear_results(run_dir)


def retire_if_recall_inside(run_dir: str | Path) -> None:
    """:func:`retire_run`, when the earlier run in ``run_dir`` ranks with ``run_dir/recall`` (its ``run.json``
    ``extra.recall_run``): that recall model was just fitted anew, and the run no longer matches it."""
    path = Path(run_dir) / RUN_FILE
    try:
        recall = json.loads(path.read_text(encoding="utf-8")).get("extra", {}).get("recall_run")
    except (OSError, ValueError, AttributeError):
        return  # no run (or none that can be read) to retire
    if recall and Path(recall).resolve() == (Path(run_dir) / "recall").resolve():
        retire_run(run_dir)


@contextmanager
def removed_if_left_empty(folder: str | Path) -> Iterator[None]:
    """Run the block; when it fails and ``folder``, which did not exist before it, is still empty, remove it: a
    command refused half-way (an unknown recall model) left an empty run folder behind."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            _remove_unless_held(folder)
        raise


def _remove_unless_held(folder: Path) -> None:
    """Remove the empty ``folder`` unless another process holds its lock: two commands starting into one new
    folder both saw it missing, and the one refused by the other's lock removed the folder the other was about to
    write in: both failed, "No such file or directory" for the one that held it (review s42). The lock is taken
    for the removal, so no command can take it in between."""
    from mgfrec.locks import exclusive_now

    with exclusive_now(folder) as taken:
        if taken and not any(folder.iterdir()):  # again, under the lock: a holder may have written in between
            with contextlib.suppress(OSError):  # the command's own error is the one to show, not rmdir's
                folder.rmdir()

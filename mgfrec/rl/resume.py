"""What a resumed ``mgfrec fit`` must repeat, and where it starts.

A fit records its start flags in ``OUT/fit_start.json`` (:data:`START_FILE`) and its settings in
``OUT/config.yaml``; ``--resume`` is refused in one line when either differs (:func:`check_resume_options`,
:func:`check_resume_config`; :data:`RESUMABLE` lists the settings it may change). :func:`starting_config` is the
config a fit starts from, and :func:`steps_done` the training steps its last checkpoint holds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgfrec.atomic import atomic_write_text
from mgfrec.config.load import flat_fields, load_config
from mgfrec.config.schema import AGENT_RETRIEVER_FIELDS, RECALL_RUN_FIELDS, MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.runs import created_stamp, read_json_object, read_run_info
from mgfrec.text.prompts import PROMPT_FILES, run_prompts, same_prompt

if TYPE_CHECKING:
    from mgfrec.rl.fit import FitOptions

CHECKPOINT_STEPS = "last.json"  # beside last.ckpt: the training steps it holds


def resume_checkpoint(out: Path) -> Path:
    """The checkpoint ``--resume`` continues from: ``OUT/checkpoints/last.ckpt`` (a file, or DeepSpeed's folder of
    shards), or ``last.ckpt.old`` where a fit was killed while one DeepSpeed folder replaced another; checked to
    load before anything in OUT changes (:func:`check_checkpoint_file` on the file or on each of the folder's
    shards). A damaged DeepSpeed folder was a hundred lines of traceback from inside ``trainer.fit``, after a
    finished run's ``run.json`` and results had been retired (review s37)."""
    ckpt = out / "checkpoints" / "last.ckpt"
    if not ckpt.exists() and (out / "checkpoints" / "last.ckpt.old").exists():
        ckpt = out / "checkpoints" / "last.ckpt.old"
    if not ckpt.exists():
        raise FileNotFoundError(f"--resume: {ckpt} does not exist; run without --resume to start")
    if ckpt.is_file():
        check_checkpoint_file(ckpt)
        return ckpt
    latest = ckpt / "latest"  # DeepSpeed's: the tag (a subfolder) of the shards it loads
    tag = latest.read_text(encoding="utf-8", errors="replace").strip() if latest.is_file() else ""
    shards = sorted((ckpt / tag).glob("*.pt")) if tag and (ckpt / tag).is_dir() else []
    if not shards:
        why = f"no {latest.name} file" if not tag else f"no shards (*.pt) in {ckpt / tag}"
        raise ValueError(f"--resume: {ckpt} is damaged ({why}); start a new fit without --resume")
    for shard in shards:
        check_checkpoint_file(shard)
    return ckpt


START_FILE = "fit_start.json"
"""``OUT/fit_start.json``: the flags outside ``config.yaml`` that decide a fit's start and samples; ``--resume``
must be given the same."""


def start_options(options: FitOptions) -> dict[str, Any]:
    """The flags of ``options`` that a resumed run must repeat: the starting policy and recall run (``--init``,
    else ``--recall-model``) and the sample counts."""
    init = str(Path(options.init).resolve()) if options.init is not None else None
    return {
        "init": init,
        "recall_model": None if init is not None else options.recall_model,  # with --init, the init's recall run
        "max_train_samples": options.max_train_samples,
        "valid_samples": options.valid_samples,
    }


def check_resume_options(out: Path, options: FitOptions, ds: PreparedDataset | None = None) -> None:
    """Refuse, in one line, a ``--resume`` whose start flags differ from those the run started with (a run
    resumed without its ``--init`` would start from the config's policy and KL-regularise towards it), or whose
    ``--data`` is another data set than the one it started on (``ds``; the start file's ``data_checksum``): its
    recall run was fitted again on that data and its last steps trained there, while run.json named it alone."""
    path = out / START_FILE
    if not path.is_file():  # a run from before this file: nothing to compare
        return
    started = read_json_object(path, "put the file back as the fit wrote it, or start a new fit in another folder")
    given = start_options(options)
    init_created = started.pop("init_created", None) or None  # "" (a run without a stamp): nothing to compare
    if init_created is not None and given["init"] is not None and given["init"] != started.get("init"):
        # the same run moved (another disk): the resume was refused unless it was moved back (review s33)
        if created_stamp(given["init"]) == init_created:
            started["init"] = given["init"]
    if init_created is not None and given["init"] is not None and given["init"] == started.get("init"):
        now = read_run_info(options.init).created
        if now != init_created:  # trained again: the resumed steps would regularise towards another policy
            raise ValueError(
                f"--resume: --init {options.init} was trained again after {out} started from it ({START_FILE} "
                f"init_created {init_created}, its run.json now {now}); the resumed steps would start from and "
                "regularise towards another policy: start a new fit, or put the earlier --init run back"
            )
    if ds is not None and started.get("data_checksum") not in (None, ds.checksum):
        raise ValueError(
            f"--resume: {out} started on another data set than --data {ds.root} ({START_FILE} data_checksum); "
            "resume it with the data set it started on"
        )
    started.pop("data_checksum", None)
    flags = {k: "--" + k.replace("_", "-") for k in given}  # each recorded option is the flag of its name
    differ = [k for k in flags if started.get(k) != given[k]]
    if differ:

        def show(values: dict[str, Any]) -> str:
            return " ".join(f"{flags[k]} {values.get(k) if values.get(k) is not None else '(none)'}" for k in differ)

        raise ValueError(
            f"--resume: {out} started with {show(started)} ({START_FILE}); resume it with the same, not {show(given)}"
        )


# Settings a resume may change: how long and how often (max_steps extends a run), how a step is split into micro
# batches, evaluation, logging, and where the user agent and the embedding cache live; fields the run derives at
# its start (retriever.model from the recall run, user_agent.cache_path). Any other change would continue the run
# under settings its first steps did not have, while config.yaml claimed them for the whole run.
RESUMABLE = (
    "trainer.max_steps",
    "trainer.epochs",
    "trainer.val_check_interval",
    "trainer.log_every_n_steps",
    "trainer.tensorboard",
    "trainer.micro_batch_size",
    "eval.",
    "retriever.model",
    "user_agent.base_url",
    "user_agent.api_key_env",
    "user_agent.timeout_s",
    "user_agent.max_retries",
    "user_agent.max_concurrency",
    "user_agent.cache_path",
    "embedding.cache_dir",
    "embedding.batch_size",
    # how the data set was prepared: the run records the data set's own section (review s36); which data set it is,
    # its checksum (fit_start.json) decides
    "data.",
)
# Within a resumable prefix, what the training itself reads: the GRPO reward ranks the target with or without the
# history (a resume with another value trained its last steps on another reward, and config.yaml claimed it for all);
# validation decodes greedily or not by eval.greedy, and best_policy is chosen by comparing validations (greedy and
# sampled numbers were compared, and config.yaml claimed the new value for every step; review s37)
NOT_RESUMABLE = ("eval.exclude_history", "eval.greedy")


def _fixed(field: str) -> bool:
    """Whether a resume must keep ``field`` (a dotted config field) as the run started with it."""
    return field in NOT_RESUMABLE or not any(field == r or (r.endswith(".") and field.startswith(r)) for r in RESUMABLE)


def started_settings(out: Path) -> dict[str, Any]:
    """What ``fit_start.json`` records of the settings a fit started with, once ``OUT/config.yaml`` and
    ``OUT/prompts/`` are written: ``settings``, the config's fields a resume must keep (as written: secrets
    redacted; the template fields aside, whose path a moved run records anew), and ``prompts``, a digest of each
    template copy. A resume compared its settings with ``config.yaml`` alone, so an edit of that file or of a
    copy in ``prompts/`` went on into the resumed steps without a word (review s33)."""
    import hashlib

    from mgfrec.text.prompts import RUN_PROMPTS

    flat = flat_fields(load_config(out / "config.yaml").model_dump(mode="json"))
    return {
        "settings": {k: v for k, v in flat.items() if _fixed(k) and k not in PROMPT_FILES},
        "prompts": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / RUN_PROMPTS).glob("*.txt"))
        },
    }


def write_start_record(out: Path, options: FitOptions, ds: PreparedDataset) -> None:
    """Write ``OUT/fit_start.json`` once a new fit's ``config.yaml`` and template copies are written: what a
    ``--resume`` must repeat (:func:`start_options`), the data set's checksum, the ``--init`` run's ``created``
    stamp (a resume after it was trained again is refused) and :func:`started_settings`."""
    record = {**start_options(options), "data_checksum": ds.checksum}
    if options.init is not None:
        record["init_created"] = created_stamp(options.init)
    atomic_write_text(out / START_FILE, json.dumps({**record, **started_settings(out)}, indent=2))


def _changes(fields: list[str], before: dict[str, Any], after: dict[str, Any]) -> str:
    """``field: before -> after`` for the first six ``fields``, and how many more."""
    shown = "; ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in fields[:6])
    return shown + (f" (and {len(fields) - 6} more)" if len(fields) > 6 else "")


def check_started_settings(out: Path) -> None:
    """Refuse, in one line, a ``--resume`` of a run whose ``config.yaml`` or template copies were edited since it
    started (:func:`started_settings`, recorded in ``fit_start.json``; a run from before that record: nothing to
    compare)."""
    path = out / START_FILE
    if not path.is_file() or not (out / "config.yaml").is_file():
        return
    started = read_json_object(path, "put the file back as the fit wrote it, or start a new fit in another folder")
    if not isinstance(started.get("settings"), dict) or not isinstance(started.get("prompts"), dict):
        return
    now = started_settings(out)
    then, edited = started["settings"], now["settings"]
    # fields both know: one added to mgfrec since the run started (or dropped) is no edit, and check_resume_config
    # reads a field written before with its value of before
    differ = [k for k in sorted(then.keys() & edited.keys()) if then[k] != edited[k]]
    if differ:
        raise ValueError(
            f"--resume: {out / 'config.yaml'} was edited since the run started ({_changes(differ, then, edited)}; "
            f"{START_FILE} holds what it started with); put those values back, or start a new fit in another folder"
        )
    changed = [
        n
        for n in sorted(started["prompts"].keys() | now["prompts"].keys())
        if started["prompts"].get(n) != now["prompts"].get(n)
    ]
    if changed:
        raise ValueError(
            f"--resume: {out / 'prompts' / changed[0]} was edited since the run started ({START_FILE} holds a digest "
            "of what it started with); put it back, or start a new fit in another folder"
        )


def check_resume_config(out: Path, cfg: MGFRecConfig, *, from_recall_run: bool = False) -> None:
    """Refuse, in one line, a ``--resume`` whose settings differ from ``OUT/config.yaml`` outside
    :data:`RESUMABLE` (naming each field with both values). ``from_recall_run``: the recall lists come from a
    recall run (``--init``'s), so ``retriever.*`` is that run's whatever the config says, and only
    ``retriever.recall_size`` (the agent's own) is compared; a run made before mgfrec recorded the recall run's
    section (its ``retriever.options: {}``) could not be resumed."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return
    check_started_settings(out)
    # as a run reads it: a run moved (or copied) names its own template copies, not the old folder's (review s33)
    saved = flat_fields(run_prompts(load_config(saved_path), out).model_dump(mode="json"))
    given = flat_fields(cfg.model_dump(mode="json"))
    differ = [
        k
        for k in sorted(saved.keys() | given.keys())
        if saved.get(k) != given.get(k)
        and _fixed(k)
        and not (from_recall_run and k.startswith(RECALL_RUN_FIELDS) and k not in AGENT_RETRIEVER_FIELDS)
        # the run's copy of a template file (OUT/prompts/) and the user's file it was copied from, unchanged
        and not (k in PROMPT_FILES and same_prompt(saved.get(k), given.get(k)))
    ]
    if differ:
        raise ValueError(
            f"--resume: {out} was started with other settings ({_changes(differ, saved, given)}; {saved_path}); "
            "resume with its settings (only max_steps, evaluation, logging and user agent connection settings may "
            "change), or start a new fit in another folder"
        )


def starting_config(out: str | Path, resume: bool, config: str | Path | None = None) -> str | None:
    """The config file a fit starts from: ``config`` when given, else ``OUT/config.yaml`` when resuming a run
    that wrote one (the resumed run keeps the settings it started with), else None (the defaults)."""
    if config is not None:
        return str(config)
    saved = Path(out) / "config.yaml"
    if resume and not saved.is_file() and (Path(out) / "checkpoints").exists():
        # it continued under the defaults, and rewrote config.yaml claiming them for the whole run
        raise ValueError(
            f"--resume: {saved} is gone, so the settings the run started with are unknown; put it back, or give "
            "--config with those settings"
        )
    return str(saved) if resume and saved.is_file() else None


def steps_done(out: Path) -> int | None:
    """The training steps ``OUT``'s last checkpoint holds (``checkpoints/last.json``): where a resume starts;
    None when that file is missing or damaged (the checkpoint itself is not loaded to find out). ``metrics.csv``
    may run ahead of it (checkpoints every ``--checkpoint-every`` steps)."""
    try:
        steps = json.loads((out / "checkpoints" / CHECKPOINT_STEPS).read_text(encoding="utf-8"))["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else None


def check_checkpoint_file(ckpt: Path) -> None:
    """A checkpoint file ``--resume`` can load, tried before anything in the run folder changes: a damaged one
    (not a zip, or a zip whose pickle is garbage) was an error from inside ``trainer.fit`` ("'utf-8' codec can't
    decode byte ...", naming no file) after the finished run's ``run.json`` and results had been retired. Its
    tensors are mapped, not read."""
    import torch

    damaged = f"--resume: {ckpt} is damaged (not a checkpoint torch can read); start a new fit without --resume"
    if not zipfile.is_zipfile(ckpt):  # torch.save writes a zip archive
        raise ValueError(damaged)
    try:
        torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # noqa: BLE001 - whatever unpickling a damaged file raises, the file is what to name
        raise ValueError(f"{damaged} ({type(exc).__name__})") from None

"""Whether a sweep's rerun may reuse a cell's folder: a finished cell is skipped, and a failed or killed one continued
from its folder, only when it was made with this cell's config, the runner's settings and the same inputs. Each
cell records digests of them in ``sweep.json`` (:func:`config_digest`, :func:`digest`); a cell's own
``config.yaml`` and ``fit_start.json`` decide where the record cannot (an older sweep, a deleted ``sweep.json``).
Everything here reads and refuses; nothing runs a cell or writes a file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mgfrec.config.load import flat_fields, load_config
from mgfrec.config.redaction import scrubbed
from mgfrec.config.schema import AGENT_RETRIEVER_FIELDS, RECALL_RUN_FIELDS, MGFRecConfig

SWEEP_FILE = "sweep.json"


def same_start(out: Path, info: Any, cfg: MGFRecConfig, options: Any, ds: Any) -> None:
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


def same_config(run_dir: Path, cfg: MGFRecConfig, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to reuse a finished fit in ``run_dir`` whose ``config.yaml`` is not ``cfg`` (compared as
    :func:`config_changes` does), naming the fields that differ; ``ignore``: fields the fit derives itself (with
    ``--init``, ``retriever.model`` is the init's recall model)."""
    path = run_dir / "config.yaml"
    try:
        written = load_config(path)  # a field added since it was written: its value of before (WRITTEN_BEFORE)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the finished fit's config ({exc}); delete {run_dir}") from None
    changed = config_changes(written, cfg, ignore)
    if changed:
        raise ValueError(
            f"{run_dir}: holds a finished fit made with another config ({_differences(changed)}); delete the "
            "folder to train this cell again"
        )


def _comparable(cfg: MGFRecConfig) -> dict[str, Any]:
    """A cell's config as its run folder's ``config.yaml`` must match it: secrets removed, the ``data`` section left
    out, and each template file (:data:`~mgfrec.text.prompts.PROMPT_FILES`) by its text, since the run records its
    own copy's path."""
    from mgfrec.config.redaction import redacted

    dump = redacted(cfg)
    # a run records its data set's own section (review s36), not the sweep's; which data set it was trained on,
    # its checksum decides (same_start)
    dump.pop("data", None)
    return _templates_by_text(dump)


def _templates_by_text(dump: dict[str, Any]) -> dict[str, Any]:
    """``dump`` (a config's, as plain data) with each template file (:data:`~mgfrec.text.prompts.PROMPT_FILES`)
    that exists given by a digest of its text instead of its path."""
    from mgfrec.text.prompts import PROMPT_FILES

    for dotted in PROMPT_FILES:
        section, _, name = dotted.partition(".")
        path = (dump.get(section) or {}).get(name)
        if isinstance(path, str) and Path(path).expanduser().is_file():
            dump[section][name] = "text:" + hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    return dump


def same_config_key(cfg: MGFRecConfig) -> str:
    """What two cells of one grid share exactly when they would train the same run: the whole config, secrets
    included (held in memory, never written), each template by its text: a template named two ways
    (``t.txt``, ``./t.txt``, a copy) trained twice and was drawn as two points (review s40)."""
    return json.dumps(_templates_by_text(cfg.model_dump(mode="json")), sort_keys=True, default=str)


def config_changes(before: MGFRecConfig, now: MGFRecConfig, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` for the fields in which two cell configs differ, compared as :func:`_comparable`
    writes them, ``ignore`` left out; empty when they are the same config."""
    a, b = flat_fields(_comparable(before)), flat_fields(_comparable(now))

    def ignored(key: str) -> bool:  # an entry ending with "." is a prefix (FROM_INIT)
        hit = any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore)
        return hit and key not in KEPT_FROM_CELL

    keys = sorted(k for k in a.keys() | b.keys() if not ignored(k))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def _differences(changed: Mapping[str, tuple[Any, Any]], shown: int = 4) -> str:
    """``field: old -> new; ...`` of :func:`config_changes` (not empty), the first ``shown`` of them."""

    def one(k: str, old: Any, new: Any) -> str:
        if isinstance(old, str) and isinstance(new, str) and old.startswith("text:") and new.startswith("text:"):
            return f"{k} (its text changed)"  # two template files by their digests: 140 characters of hex
        return f"{k}: {old!r} -> {new!r}"

    text = "; ".join(one(k, old, new) for k, (old, new) in list(changed.items())[:shown])
    return text + (f"; and {len(changed) - shown} more" if len(changed) > shown else "")


def config_digest(cfg: MGFRecConfig) -> str:
    """A short digest of a cell's resolved config (secrets removed, each template file by its text): ``sweep.json``
    records it for each finished cell, so a rerun can tell whether the cell it would skip was made with the same
    config. It held a template's path: a template edited in place left finished cells reused, trained on the old
    text. A digest of before differs; the cell's own ``config.yaml`` then decides (:func:`refuse_stale`)."""
    return digest(_comparable(cfg))


def digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _cell_config(cell_dir: Path) -> MGFRecConfig | None:
    """A cell folder's own ``config.yaml``, loaded (a field added since: its value of before), or None."""
    try:
        return load_config(cell_dir / "config.yaml") if (cell_dir / "config.yaml").is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _why_config(changed: Mapping[str, tuple[Any, Any]] | None) -> str:
    """Why a stale cell's config is not this run's: its fields that differ (:func:`config_changes` of the cell's own
    ``config.yaml``), or the general reason when the folder holds none."""
    from mgfrec.config.load import WRITTEN_BEFORE

    if not changed:
        return "the base --config or --set changed"
    if set(changed) <= set(WRITTEN_BEFORE):  # only fields this mgfrec added: the cell was made by an earlier one
        sets = " ".join(f"--set {k}={'null' if old is None else old}" for k, (old, _) in changed.items())
        return f"by an earlier mgfrec, without {', '.join(changed)}; {sets} reuses it"
    return f"the base --config or --set changed: {_differences(changed)}"


FROM_INIT = RECALL_RUN_FIELDS
"""The fields a fit with ``--init`` takes from the init run (its recall run's model, settings and options: the
run's ``config.yaml`` records them), whatever the cell's config says: left out where a cell's written
``config.yaml`` is compared with its config. A prefix; ``retriever.recall_size``, the agent's own setting, stays
compared (:data:`KEPT_FROM_CELL`)."""


KEPT_FROM_CELL = AGENT_RETRIEVER_FIELDS


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


def _same_read_settings(was: Any, now: Mapping[str, Any] | None) -> bool:
    """Whether two cells' runner settings (``settings_shown``) differ only in what the cells do not read: with
    ``--init``, the recall model (the init's recall run ranks). A sweep of before recorded ``--recall-model`` (or
    the config's ``retriever.model``) beside ``--init``, and its finished cells were refused when it was run again
    without it."""
    if not isinstance(was, Mapping) or not isinstance(now, Mapping) or now.get("fit.init") is None:
        return False
    unread = {"fit.recall_model"}
    keys = (set(was) | set(now)) - unread
    return all(was.get(k) == now.get(k) for k in keys)


INPUT_CHANGED = {
    "data_checksum": "--data was prepared again since",
    "init_created": "--init was trained again since",
}
"""How a stale cell's message says which of the runner's inputs (``settings["inputs"]``) changed under it."""


def refuse_stale(
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
            changes[name] = None if written is None else config_changes(written, configs[name], ignore)
            if changes[name] != {}:
                stale["config"].append(name)
        # each on its own: a digest that differed while config.yaml agreed (with --init, retriever.* is the init's)
        # skipped these two, and a cell made with other runner flags was reused
        if entry.get("settings", settings) != settings and not _same_read_settings(entry.get("settings_shown"), shown):
            stale["settings"].append(name)
        if inputs and any(entry.get("inputs", {}).get(k, v) != v for k, v in inputs.items()):
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

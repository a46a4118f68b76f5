"""Checks of a loaded config against the installed components, run when any command loads its config.

The schema refuses unknown fields and wrong types, but not a component name nobody registered
(``--grounder nope``), options the named component does not take (``user_agent.options.temprature``) or a
device nobody has (``--device quantum``). Those used to surface only when a command reached the component,
after fitting a recall model or embedding every title; :func:`check_components` finds them all at load
time, whatever the command, so a typo costs nothing.

A component is imported only when its ``options`` are non-empty or it comes from a plugin package (to
validate them, required options included); a component whose module cannot be imported (a missing optional
extra, a broken plugin) is left for the command that uses it to report. A component class may define
``check_config(options, cfg) -> list[str]``: problems of its options that another section rules out, each
naming its fields (the vllm engine: ``multiprocessing`` with constrained turns).
This module must not import torch, Lightning or any component module at import time.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from mgfrec.config.schema import MGFRecConfig
from mgfrec.registry import OptionsValidatorError, Registry, RegistryError, component_options, registry

_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|hpu|npu|meta)(:[0-9]+)?|auto")  # ASCII digits (\d matched any script's)
RETRIEVER_DEVICE = re.compile(r"cpu|mps|auto|cuda(:[0-9]+)?")  # what the retrievers' Lightning trainer can be given
_ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "hpu", "xpu", "auto")
# Lightning's precision names and their short aliases (lightning.fabric.connector), checked without importing it
_PRECISIONS = (
    *("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"),
    *("transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64"),
)

# (config path of the name, component kind, config path of its options)
_NAMED = (
    ("data.source", "data_source", "data.options"),
    ("embedding.embedder", "embedder", "embedding.options"),
    ("grounding.grounder", "grounder", "grounding.options"),
    ("retriever.model", "retriever", "retriever.options"),
    ("user_agent.backend", "user_agent", "user_agent.options"),
    ("rollout.engine", "rollout_engine", "rollout.options"),
)


def config_value(cfg: MGFRecConfig, dotted: str) -> Any:
    """The value of the dotted field ``section.field`` of ``cfg``."""
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def check_components(
    cfg: MGFRecConfig,
    reg: Registry | None = None,
    source: str = "<config>",
    rewards: bool = True,
    data: bool = True,
) -> None:
    """Raise ``ValueError`` naming the field for an unknown component name, options its component does not
    take, or an unknown device or accelerator. ``rewards=False`` leaves ``grpo.rewards`` alone, for a command
    that never computes one (``recommend``: a run trained with a reward plugin is served without it); ``data=False``
    leaves ``data.*`` alone, for one that reads a prepared data set, never its source (a run records how its data
    set was prepared: a data-source plugin it names is not needed to serve, fit or derive it)."""
    reg = reg or registry()
    problems: list[str] = []
    for name_path, kind, options_path in [n for n in _NAMED if data or n[1] != "data_source"]:
        problems += _check_one(
            reg, kind, config_value(cfg, name_path), name_path, config_value(cfg, options_path), options_path, cfg=cfg
        )
    specs = cfg.grpo.rewards if rewards else ()
    for spec in specs:  # each reward's options sit beside its name (grpo.rewards[i].options)
        problems += _check_one(
            reg, "reward", spec.name, "grpo.rewards", spec.options, f"grpo.rewards.{spec.name}.options", hint=False
        )
    problems += _check_constraints(reg, cfg)
    for path in ("embedding.device", "retriever.device"):
        device = str(config_value(cfg, path))
        known = _DEVICE if path == "embedding.device" else RETRIEVER_DEVICE
        if not known.fullmatch(device):
            # `cpu:1` or `xpu` passed here and the retriever then trained on the CPU, or failed at fit (review s40)
            why = " (only cuda takes an index)" if ":" in device and not device.startswith("cuda:") else ""
            problems.append(f"{path}: unknown device {device!r}{why}; use cpu, cuda, cuda:N, mps or auto")
        elif path == "embedding.device" and device.startswith("meta"):  # torch's traceback when the model loaded
            problems.append(f"{path}: the meta device holds no data, so it cannot embed; use cpu, cuda, mps or auto")
    if cfg.trainer.accelerator not in _ACCELERATORS:
        known = ", ".join(_ACCELERATORS)
        problems.append(f"trainer.accelerator: unknown accelerator {cfg.trainer.accelerator!r}; use one of {known}")
    if str(cfg.trainer.precision) not in _PRECISIONS:
        problems.append(
            f"trainer.precision: unknown precision {cfg.trainer.precision!r}; use one of {', '.join(_PRECISIONS)}"
        )
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))  # one line, every problem


def check_importable(cfg: MGFRecConfig, reg: Registry | None = None) -> None:
    """Import the embedder and grounder ``cfg`` names, and a plugin's user agent or rollout engine, naming the first
    that cannot be imported (a plugin module failing on import, a built-in's missing extra) in one line: for a
    command about to train, which met them only after its recall fit (minutes of SASRec; a sweep's earlier cells;
    review s37). :func:`check_components` leaves a broken component to the command that uses it, so that a
    command which never builds it is not refused; a built-in rollout engine is left to ``check_engine`` (vLLM's
    import is slow)."""
    reg = reg or registry()
    problems = []
    for path, kind, _ in _NAMED:
        if kind not in ("embedder", "grounder", "user_agent", "rollout_engine"):
            continue
        try:
            entry = reg.get(kind, str(config_value(cfg, path)))
            if entry.third_party or kind in ("embedder", "grounder"):
                entry.load()
        except RegistryError as exc:
            problems.append(f"{path}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))


PLUGINS = "plugins"
"""``run.json`` ``extra`` key: the plugin components the run was made with (:func:`plugins_named`), so a command
given the run where a package is missing says which (:func:`mgfrec.runs.plugins_of_run`)."""


def plugins_named(cfg: MGFRecConfig, reg: Registry | None = None) -> dict[str, list[dict]]:
    """The third-party components ``cfg`` names, as a run's ``run.json`` ``extra`` records them:
    ``{"plugins": [{kind, name, target, package}, ...]}``, or ``{}`` when there are none, so a command given the
    run where a package is missing names the package to install (``extra.update(plugins_named(cfg))``). Names
    nobody registered are left out (the config check reports them)."""
    reg = reg or registry()
    # not the data source: no command builds it once the data set is prepared (the run records how it was)
    wanted = [(kind, str(config_value(cfg, path))) for path, kind, _ in _NAMED if kind != "data_source"]
    wanted += [("reward", spec.name) for spec in cfg.grpo.rewards]
    wanted += _nested(reg, "retriever", cfg.retriever.model, cfg.retriever.options)
    found: list[dict] = []
    for kind, name in wanted:
        try:
            entry = reg.get(kind, name)
        except RegistryError:
            continue
        record = {"kind": kind, "name": name, "target": entry.target, "package": entry.origin}
        if entry.third_party and record not in found:
            found.append(record)
    return {PLUGINS: found} if found else {}


def _nested(reg: Registry, kind: str, name: str, options: Any) -> list[tuple[str, str]]:
    """The components a component builds from its options (the hybrid's ``collaborative`` retriever), as its class
    declares them: ``nested_components = {option field: kind}``. A hybrid over a plugin's retriever recorded no
    plugin, so another package's retriever of that name scored the run without a word (review s37)."""
    try:
        cls = reg.load(kind, name)
    except RegistryError:
        return []
    given = dict(options or {})
    return [
        (nested_kind, str(given[field]))
        for field, nested_kind in (getattr(cls, "nested_components", None) or {}).items()
        if isinstance(given.get(field), str)
    ]


def _check_constraints(reg: Registry, cfg: MGFRecConfig) -> list[str]:
    """A plugin rollout engine that cannot sample constrained turns, under ``agent.decoding: constrained`` (the
    default): it was refused only when the first rollout began, after the recall fit, named by its class. Refused
    when its class does not declare ``supports_constraints = True`` and its ``generate`` takes no ``constraints``
    keyword (one that sets the flag per instance takes the keyword, and is left to the rollout's own check).
    mgfrec's own engines all support constraints and are not imported here (vLLM's import is slow)."""
    if cfg.agent.decoding != "constrained":
        return []
    try:
        entry = reg.get("rollout_engine", cfg.rollout.engine)
        if not entry.third_party:
            return []
        cls = entry.load()
    except RegistryError:
        return []  # an unknown name is reported above; a broken plugin by the command that builds it
    if getattr(cls, "supports_constraints", None) is True:
        return []
    try:
        parameters = inspect.signature(cls.generate).parameters.values()
    except (AttributeError, TypeError, ValueError):
        return []  # no generate to read: the rollout says what is missing
    if any(p.name == "constraints" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []  # it may set the flag per instance: the rollout's own check decides
    return [
        f"rollout.engine: {entry.describe()} does not support agent.decoding: constrained (the default); set "
        "--set agent.decoding=free, or give the engine supports_constraints = True and a constraints= keyword of "
        "generate (docs/plugins.md)"
    ]


def _check_one(
    reg: Registry,
    kind: str,
    name: str,
    name_path: str,
    options: Any,
    options_path: str,
    hint: bool = True,
    cfg: MGFRecConfig | None = None,
) -> list[str]:
    try:
        entry = reg.get(kind, name)
    except RegistryError as exc:
        return [f"{name_path}: {exc}"]
    if not options and entry.origin.split(" ")[0] == "mgfrec":
        return []  # a built-in takes its defaults (tests/config check that each one does); no import needed
    try:
        cls = entry.load()
    except RegistryError:
        return []  # a missing extra or a broken plugin: the command that uses the component says which
    try:
        checked = component_options(cls, dict(options), options_path)
    except ValueError as exc:
        text = str(exc).removeprefix("invalid options: ")
        if isinstance(exc, OptionsValidatorError):  # a bug of the component: say which one, from which package
            text = f"{kind} '{name}' ({entry.target}, from {entry.origin}): {text}"
        if options and ("Extra inputs" in text or "takes no options" in text):
            # the path alone did not say whose options these are, nor which ones it takes (review s42)
            model_fields = getattr(getattr(cls, "Options", None), "model_fields", {})
            fields = sorted(f.alias or n for n, f in model_fields.items())  # as `plugins show` names them
            who = f"{kind.replace('_', ' ')} '{name}'"
            notes = [f"{who} takes {', '.join(fields)}: mgfrec plugins show {kind} {name}"] if fields else []
            if hint:  # often options written for the component a file named before a flag switched it
                clear = f"--set {options_path}={{}} clears options set for another one"
                notes.append(clear if fields else f"{who}; {clear}")
            text += f" ({'; '.join(notes)})" if notes else ""
        return [text]
    # options that another section of the config rules out (a component's own ``check_config``)
    check = getattr(cls, "check_config", None)
    if not callable(check) or cfg is None or checked is None:
        return []
    try:
        found = check(checked, cfg)
    except Exception as exc:  # noqa: BLE001 - the component's bug: named, as an Options validator's is
        who = f"{kind} '{name}' ({entry.target}, from {entry.origin})"
        return [f"{who}: check_config failed: {type(exc).__name__}: {exc} (a bug of the component)"]
    if found is None or isinstance(found, str):
        return [found] if found else []
    if isinstance(found, (list, tuple)):
        return [str(p) for p in found]
    who = f"{kind} '{name}' ({entry.target}, from {entry.origin})"  # True: "'bool' object is not iterable" (s37)
    return [
        f"{who}: check_config returned {type(found).__name__}, not None or a list of messages (a bug of the component)"
    ]

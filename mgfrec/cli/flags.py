"""Typed flags and ``--set``: how a command's config is built from them, each flag's value checked against the
field it sets, and two of them giving one field two values refused naming both (``--set`` won silently before).
Nothing here runs a command: it only reads the running command's click context."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from mgfrec.cli.common import typer_click
from mgfrec.validation import shown_name


def load(config: str | None, sets: list[str] | None, values: Mapping[str, Any] | None = None):
    """The config from --config, typed flags and --set, with every component name and option checked against
    the registry now, whatever the command (so a typo fails before any work)."""
    from mgfrec.config.components import check_components
    from mgfrec.config.load import config_source, load_config

    _check_flag_values(values or {})
    _check_flag_conflicts(values or {}, sets or ())
    cfg = load_config(config, sets or (), values)
    check_components(cfg, source=config_source(config, sets or (), values))
    return cfg


def _command_flags() -> tuple[Any, dict[str, Any]] | None:
    """The running command's click context and its options by parameter name; None outside a command (a library
    caller of :func:`load`)."""
    ctx = typer_click("globals").get_current_context(silent=True)
    if ctx is None:
        return None
    return ctx, {p.name: p for p in ctx.command.params if getattr(p, "opts", None)}


def _check_flag_values(values: Mapping[str, Any]) -> None:
    """Each typed flag's value against its config field, named by the flag the user typed (``--batch-size 0:
    ...``): the config's own error named the field ("<defaults> with overrides: invalid config:
    embedding.batch_size: ..."). A flag is found by its parameter's name, the field's last part; one that is not
    (``--items-per-grounding`` sets grounding.top_k) is left to the config's check."""
    from pydantic import TypeAdapter, ValidationError

    from mgfrec.config.schema import MGFRecConfig

    command = _command_flags()
    if command is None:
        return
    ctx, params = command
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        param = params.get(name)
        model = MGFRecConfig.model_fields.get(section)
        field = getattr(model.annotation, "model_fields", {}).get(name) if model is not None else None
        if value is None or param is None or field is None or ctx.get_parameter_source(name).name == "DEFAULT":
            continue
        try:
            annotated = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            TypeAdapter(annotated).validate_python(value)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise ValueError(f"{param.opts[-1]} {value}: {reason[0].lower()}{reason[1:]} ({dotted})") from None


def _flag_of(dotted: str, ctx: Any, params: Mapping[str, Any]) -> Any:
    """The flag the user typed for config field ``dotted``: the parameter named as the field's last part
    (``--max-steps``: trainer.max_steps), else one given on the command line whose help names the field
    (``--policy``: "policy.model ...", ``--no-recall``: "... (agent.use_recall=false)"); None if none was given."""
    named = params.get(dotted.rpartition(".")[2])
    candidates = [named] if named is not None else []
    field = re.compile(rf"(?<![\w.]){re.escape(dotted)}(?![\w])")
    candidates += [
        p
        for p in params.values()
        if p is not named and p.name not in _NOT_A_FIELDS_FLAG and field.search(getattr(p, "help", None) or "")
    ]
    for param in candidates:
        if ctx.get_parameter_source(param.name).name in ("COMMANDLINE", "ENVIRONMENT"):
            return param
    return None


_NOT_A_FIELDS_FLAG = frozenset({"config", "set_"})  # their help names fields (the demo's --config), setting none


def _check_flag_conflicts(values: Mapping[str, Any], sets: Sequence[str]) -> None:
    """A typed flag and a ``--set`` of the same field with other values, refused naming both: ``--set`` won
    silently (``baseline fit --model pop --set retriever.model=sasrec`` trained SASRec). A ``--set`` of a whole
    section or mapping (``--set 'trainer={max_steps: 5}'``) is compared at the flag's field inside it."""
    command = _command_flags()
    if command is None:
        return
    ctx, params = command
    for text in sets:
        for dotted, flag in values.items():
            node = given_by_set(text, dotted) if flag is not None else ABSENT
            param = _flag_of(dotted, ctx, params) if node is not ABSENT else None
            if param is None or node == flag or str(node) == str(flag):
                continue
            from mgfrec.config.load import redacted_override

            how = " (an empty mapping puts what it names back to its defaults)" if node is RESET else ""
            raise ValueError(  # the --set redacted: a key inside a mapping given whole was printed
                f"{_as_typed(param, ctx)} and --set {redacted_override(text)} set {dotted} to two values{how}; "
                "give one of them"
            )


ABSENT = object()  # given_by_set: the override sets neither the field nor a section or mapping holding it
RESET = object()  # an empty mapping on the way to the field: it replaces, so the field goes back to its default


def given_by_set(override: str, dotted: str) -> Any:
    """What ``section.field=value`` ``override`` gives field ``dotted``: its value, the field's value inside a
    section or mapping it sets whole (``trainer={max_steps: 5}``), or ``ABSENT`` when it sets neither."""
    from mgfrec.config.load import parse_override, sets_field

    if not sets_field(override, dotted):
        return ABSENT
    node: Any = parse_override(override)
    for part in dotted.split("."):
        if isinstance(node, Mapping) and not node:  # --set 'data={}' wiped a typed flag (and SOURCE) silently
            return RESET
        node = node.get(part, ABSENT) if isinstance(node, Mapping) else ABSENT
    return node


def _as_typed(param: Any, ctx: Any) -> str:
    """A flag as the user typed it: ``--no-recall``, ``--max-steps 2``, ``--reward ndcg format``."""
    given = ctx.params.get(param.name)
    given = " ".join(map(shown_name, given)) if isinstance(given, (list, tuple)) else shown_name(given)
    if getattr(param, "param_type_name", "") == "argument":  # a positional one (data prepare's SOURCE): no is_flag
        return f"{param.name.upper()} {given}"
    return param.opts[-1] if param.is_flag else f"{param.opts[-1]} {given}"


def check_ablation(name: str, values: Mapping[str, Any], sets: Sequence[str], grid: Sequence[str] = ()) -> None:
    """``--ablation NAME`` applies after the flags and ``--set``: a flag, a ``--set`` or a sweep's ``--grid`` giving
    one of the preset's fields another value lost to it without a word (``--ablation no-recall --set
    agent.use_recall=true`` trained without the recall list; a grid over it trained one setting in every cell).
    Refused naming both; the same value is no clash."""
    from mgfrec.experiments.ablations import ablation_overrides

    command = _command_flags()
    for preset in ablation_overrides(name):
        dotted = preset.partition("=")[0]
        wanted = given_by_set(preset, dotted)
        clash = None
        if dotted in grid:  # whatever its values: every cell would run with the preset's
            raise ValueError(
                f"--ablation {name} sets {preset} in every cell, so --grid {dotted} would not vary it; give one of them"
            )
        flag = values.get(dotted)
        param = _flag_of(dotted, *command) if command is not None and flag is not None else None
        if param is not None and flag != wanted:
            clash = _as_typed(param, command[0])
        for text in sets:
            node = given_by_set(text, dotted)
            if node is not ABSENT and node is not RESET and node != wanted:  # a reset: the preset applies after it
                from mgfrec.config.load import redacted_override

                clash = f"--set {redacted_override(text)}"
        if clash is not None:
            raise ValueError(f"--ablation {name} sets {preset}, and {clash} gives it another value; give one of them")

"""Loading configs: YAML files, dotted overrides from flags, and writing the resolved config of a run.

A config file may name a parent with ``base: <relative path>``; the child's keys are merged over it.
Overrides such as ``agent.max_groundings=3`` are parsed as YAML scalars and merged last. Errors name the
file and the dotted path of the field that is wrong.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mgfrec.atomic import atomic_write_text
from mgfrec.config.overrides import (  # noqa: F401 - moved to overrides.py, still importable from here
    override_value,
    parse_override,
    redacted_override,
    set_path,
    sets_field,
)
from mgfrec.config.redaction import is_secret_field, redacted
from mgfrec.config.reward_overrides import keep_options, named_reward_options, with_reward_options
from mgfrec.config.schema import MGFRecConfig
from mgfrec.config.section import ConfigDeprecationWarning
from mgfrec.config.yaml_io import (  # noqa: F401 - moved to yaml_io.py, still importable from here
    MAX_VALUES,
    ConfigDumper,
    ConfigError,
    ConfigLoader,
    TooLargeError,
    load_yaml,
)
from mgfrec.config.yaml_io import merge as _merge
from mgfrec.validation import KEY_PREFIXES, holds_key, shown_name, validation_text


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file, following ``base:`` parents, into a plain nested dict."""
    return _read_chain(path)[0]


def _read_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """:func:`read_yaml`'s dict, and the ``base:`` files under ``path``, nearest first, as each file names its
    own."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        raw = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a control character: two lines and no line number (s40)
            where = f":{text.count(chr(10), 0, exc.position) + 1}"
            code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
            problem = f"{exc.reason} (U+{code:04X}); remove it"
        raise ConfigError(f"{path}{where}: not valid YAML: {problem or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    parent = raw.pop("base", None)
    if parent is not None and not isinstance(parent, str):
        raise ConfigError(f"{path}: base must be the path of one parent config file, got {type(parent).__name__}")
    if parent is None:
        return raw, []
    if not parent.strip() or not (path.parent / parent).is_file():  # it was "cannot read config .../nope.yaml"
        why = "is empty" if not parent.strip() else f"{parent!r}: no such file ({path.parent / parent})"
        raise ConfigError(f"{path}: base {why}; give the path of the parent config, relative to this file")
    inherited, bases = _read_chain(path.parent / str(parent), (*_seen, path))
    try:
        return _merge(inherited, raw), [parent, *bases]
    except ConfigError as exc:
        raise ConfigError(f"{path} over its base {parent}: {exc}") from None


def flat_fields(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping (a config's dump) as ``{prefix + "section.field": value}``; an empty mapping is a value of
    its own. What a comparison of two configs names its fields by."""
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in flat_fields(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def validate(raw: Mapping[str, Any], source: str = "<config>") -> MGFRecConfig:
    """Validate a nested dict; the error lists every wrong field by its dotted path. A key that is still read
    but has a newer spelling gives a :class:`ConfigDeprecationWarning` naming ``source``."""
    empty = [k for k, v in raw.items() if v is None and k in MGFRecConfig.model_fields]
    if empty:  # "Input should be a valid dictionary or instance of AgentConfig (got None)" named a class (s40)
        raise ConfigError(
            f"{source}: invalid config: {empty[0]}: the section is given no value (`{empty[0]}:` with nothing under it "
            f"in a file, its fields commented out?, or --set {empty[0]}= with nothing after it); give its fields, "
            f"`{empty[0]}: {{}}` for its defaults, or leave it out"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigDeprecationWarning)
            config = MGFRecConfig.model_validate(dict(raw))
        for w in caught:
            if issubclass(w.category, ConfigDeprecationWarning):
                warnings.warn(f"{source}: {w.message}", ConfigDeprecationWarning, stacklevel=2)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return config
    except ValidationError as exc:  # one line, every field
        shown = validation_text(exc, show_input=lambda err: not _hide_input(err))
        raise ConfigError(f"{source}: invalid config: {shown}{_options_hint(exc)}") from None


def _options_hint(exc: ValidationError) -> str:
    """For a field a section does not have: the section's own field it may be a typo of, or, where the section's
    component takes ``options``, where a component's own option goes (``--set retriever.collaborative_run=RUN`` said
    only "Extra inputs are not permitted"; review s34). One hint per such key, each naming its key when the line
    lists several errors (one hint ended the line, after another key's error; review s40)."""
    import difflib

    errors = exc.errors()
    hints = []
    for err in errors:
        loc = err["loc"]
        given = err.get("input")
        if err["type"] in ("tuple_type", "list_type") and isinstance(given, Mapping) and given:
            # `--set eval.ks.1=20` without a file that lists eval.ks: "Input should be a valid tuple" (review s40)
            dotted = ".".join(str(part) for part in loc)
            which = f"{dotted}: " if len(errors) > 1 else ""
            hints.append(f" ({which}a list is given whole, not item by item: --set '{dotted}=[...]')")
            continue
        if err["type"] != "extra_forbidden" or len(loc) != 2:
            continue
        section = MGFRecConfig.model_fields.get(str(loc[0]))
        model = section.annotation if section is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        which = f"{loc[0]}.{shown_name(loc[1])}: " if len(errors) > 1 else ""
        # a typo of the section's own field first: `retriever.max_epoch` was sent to retriever.options (review s34)
        close = difflib.get_close_matches(str(loc[1]), [f for f in model.model_fields if f != "options"], n=1)
        if close:
            hints.append(f" ({which}did you mean {loc[0]}.{close[0]}?)")
        elif "options" in model.model_fields:
            hints.append(
                f" ({which}if it is an option of the chosen component, it goes under {loc[0]}.options: --set "
                f"{loc[0]}.options.{shown_name(loc[1])}=VALUE, or under `options:` in a config file)"
            )
    return "".join(hints)


def _hide_input(err: Mapping[str, Any]) -> bool:
    """Whether an error must not echo its input: a structure (noise), a key nobody reads (often a secret put
    in the wrong field: ``user_agent.api_key``), anything under a secret-named field or in ``user_agent`` (its
    model hides inputs too), or a string that looks like an API key."""
    got, loc = err.get("input"), [str(p) for p in err.get("loc", ())]
    return (
        isinstance(got, (dict, list))
        or err.get("type") == "extra_forbidden"
        or (bool(loc) and loc[0] == "user_agent")
        or any(is_secret_field(p) for p in loc)
        or (isinstance(got, str) and (got.startswith(KEY_PREFIXES) or holds_key(got)))  # Mistral's: no prefix (s40)
    )


WRITTEN_BEFORE: dict[str, Any] = {"agent.max_feedback_tokens": None}
"""Fields added after runs were first written, and the value that reproduces a run whose ``config.yaml`` predates
them when it differs from the new default (feedback was never cut before ``agent.max_feedback_tokens``)."""


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> MGFRecConfig:
    """File (or the defaults), then ``values`` (dotted path -> value from typed flags), then ``overrides``. A run's
    resolved config written before a field of :data:`WRITTEN_BEFORE` existed (:func:`resolved_by`: "old") gets
    that field's value of before, so the run is evaluated and resumed as it was trained; a user's file, even one
    that names every section (a copy of ``configs/default.yaml``), gets the defaults."""
    if isinstance(overrides, (str, bytes)):  # "grpo.kl_beta=0.1" was "override 'g' must look like ..." (s35)
        raise TypeError(f"overrides: give a list of 'section.field=value' strings, not one string: [{overrides!r:.60}]")
    raw, bases = _read_chain(path) if path else ({}, [])
    if path and resolved_by(path) == "old":
        for dotted, before in WRITTEN_BEFORE.items():
            section, _, name = dotted.partition(".")
            if isinstance(raw.get(section), dict) and name not in raw[section]:
                raw = set_path(raw, dotted, before)
    overrides = list(overrides)
    try:
        for dotted, value in (values or {}).items():
            if value is not None:
                if dotted == "grpo.rewards" and isinstance(value, list):  # --reward: the file's options kept
                    value = keep_options(raw, value)
                raw = set_path(raw, dotted, value)
        for text in overrides:
            over = parse_override(text)
            named = named_reward_options(over)  # --set grpo.rewards.<name>.options.<field>=...: into the list
            merged = with_reward_options(raw, named, redacted_override(text)) if named else None
            raw = merged if merged is not None else _merge(raw, over)
    except ConfigError as exc:  # a field given inside what the file holds as a value
        raise ConfigError(f"{config_source(path, overrides, values)}: {exc}") from None
    source = config_source(path, overrides, values)
    if bases:  # a field a base file set was searched for in the file named alone (review s36)
        source += f" (over its base {' over '.join(bases)})"
    return validate(raw, source)


def config_source(
    path: str | Path | None, overrides: Iterable[str] = (), values: Mapping[str, Any] | None = None
) -> str:
    """How errors name where a config came from: the file (or ``the default config``), ``with flags or --set``
    when a flag or ``--set`` changed it (a flag left unset is not an override). It was ``<defaults> with
    overrides``, which read like a placeholder left in the message."""
    source = str(path) if path else "the default config"
    if list(overrides) or any(v is not None for v in (values or {}).values()):
        source += " with flags or --set"
    return source


class ConfigKeptWarning(UserWarning):
    """A config file of the user's in a run folder was kept under another name before the run's own was written."""


def write_resolved(config: MGFRecConfig, run_dir: str | Path) -> Path:
    """Write ``<run_dir>/config.yaml``: the fully resolved config, secrets removed.

    A ``config.yaml`` already there that mgfrec did not write (not a whole resolved config: the user's own file,
    given as ``--config RUN/config.yaml --out RUN``) is first renamed to ``config.user.yaml`` (or
    ``config.user.N.yaml``), with a warning, so that its comments and any key it held are not lost."""
    out = Path(run_dir) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    resolved = redacted(config)
    keep_user_config(run_dir)
    text = yaml.dump(resolved, Dumper=ConfigDumper, sort_keys=False, allow_unicode=False)
    atomic_write_text(out, RESOLVED_MARK + "\n" + text)  # whole or not at all: another process may read it
    return out


def is_user_config(name: str) -> bool:
    """Whether a file name in a run folder is a user's config kept there by :func:`keep_user_config`."""
    return re.fullmatch(r"config\.user(\.\d+)?\.yaml", name) is not None


RESOLVED_MARK = "# the resolved config of an mgfrec run: written by mgfrec, replaced when the run is written again"
"""The first line of every ``config.yaml`` :func:`write_resolved` writes: what tells it from a user's own file."""


def resolved_by(path: str | Path) -> str | None:
    """Who wrote the config file at ``path``: "mgfrec" (:data:`RESOLVED_MARK` is its first line), "old" (mgfrec
    before the mark: every top-level section of :class:`MGFRecConfig`, none empty, in ``yaml.safe_dump``'s text
    exactly), or None (a user's own file: a copy of ``configs/default.yaml`` names every section too, with its
    comments)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith(RESOLVED_MARK):
        return "mgfrec"
    try:
        existing = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    sections = set(MGFRecConfig.model_fields)
    if not (isinstance(existing, dict) and sections <= set(existing) and all(existing[s] for s in sections)):
        return None
    # what mgfrec wrote before the mark is yaml.safe_dump's text exactly: a user's file (comments, its own layout)
    # is not, while a multi-line value with a line that starts with '#' still is
    return "old" if yaml.safe_dump(existing, sort_keys=False) == text else None


def is_resolved_config(path: str | Path) -> bool:
    """Whether ``path`` is a config mgfrec resolved and wrote (:func:`resolved_by`), not a user's own file."""
    return resolved_by(path) is not None


def entries_besides_config(folder: str | Path, *also: str) -> set[str]:
    """The names in ``folder`` other than its ``config.yaml`` (and the ``.tmp`` written beside it), a user's
    configs kept there (:func:`is_user_config`) and ``also``: what says a folder holds something else."""
    names = {p.name for p in Path(folder).iterdir() if not is_user_config(p.name)}
    return names - {"config.yaml", "config.yaml.tmp", *also}


def keep_user_config(run_dir: str | Path) -> None:
    """Rename ``<run_dir>/config.yaml`` to ``config.user[.N].yaml`` (with a warning) unless it is a config mgfrec
    resolved (:func:`resolved_by`): see :func:`write_resolved`. Commands that
    clear a run folder before writing call it first and leave the kept file in place (:func:`is_user_config`)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists() or is_resolved_config(path):
        return  # none, or a resolved config (this run's earlier one): replacing it loses nothing
    n = 0
    while (aside := path.with_name("config.user.yaml" if n == 0 else f"config.user.{n}.yaml")).exists():
        n += 1
    path.replace(aside)
    warnings.warn(
        f"{path}: this file was not a run's resolved config (your own --config?); kept as {aside.name}, and the "
        "run's resolved config written in its place",
        ConfigKeptWarning,
        stacklevel=3,
    )

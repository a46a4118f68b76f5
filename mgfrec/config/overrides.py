"""Dotted overrides (``--set section.field=value``, ``-o key=value``): how one is parsed, which field it sets, how
its value is read (YAML, except text YAML would read as nothing), and how it may be shown or recorded without a
secret in it."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from mgfrec.config.redaction import is_secret_field, scrub_urls, scrubbed
from mgfrec.config.yaml_io import ConfigError, TooLargeError, load_yaml, merge
from mgfrec.validation import REDACTED, holds_key


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b.c=value"`` -> ``{"a": {"b": {"c": value}}}`` with ``value`` parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():  # echoed up to its first ':' or space: "api_key: sk-..." was shown whole (s40)
        raise ConfigError(f"override '{_shown_head(text)}' must look like section.field=value")
    try:
        node: Any = override_value(value, strict=True)
    except yaml.YAMLError as exc:  # the value is not echoed: it may hold a key
        mark = getattr(exc, "problem_mark", None)
        at = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(
            f"--set {key.strip()}: its mapping is not valid YAML: {getattr(exc, 'problem', exc)}{at}"
        ) from None
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def _shown_head(text: str) -> str:
    """An override without ``=`` as an error may show it: the text up to its first ``:`` or space (the rest may
    be a key: ``api_key: sk-...``), and nothing of it that holds a key."""
    stripped = text.strip()
    head = re.split(r"[:\s]", stripped, maxsplit=1)[0]
    more = "" if head == stripped else " ..."
    return (REDACTED if holds_key(head) else head) + more


def sets_field(override: str, dotted: str) -> bool:
    """Whether ``section.field=value`` ``override`` sets field ``dotted``: the field itself, or a section or mapping
    holding it, given whole (``trainer={max_steps: 5}``)."""
    key = override.partition("=")[0].strip()
    return dotted == key or dotted.startswith(key + ".")


def _names_secret(text: str) -> bool:
    """Whether ``text`` names a secret field as a mapping key would (``password:``, ``"api_key" :``)."""
    return any(is_secret_field(word) for word in re.findall(r"([\w.-]+)[\"']?\s*:", text))


def redacted_override(text: str) -> str:
    """A ``section.field=value`` override as it may be shown or recorded: the value of a secret field
    (:func:`is_secret_field`) and the credentials inside a URL value replaced by ``<redacted>``."""
    key, sep, value = text.partition("=")
    if not sep:
        return scrub_urls(text)
    if value.strip() and (is_secret_field(key.strip().split(".")[-1]) or holds_key(value)):
        return f"{key}={REDACTED}"
    parsed = override_value(value)
    if isinstance(parsed, str) and value.lstrip().startswith(("{", "[")) and _names_secret(value):
        # a mapping YAML kept as text (a ' #' in it, a syntax error): its secret fields cannot be found one by one
        return f"{key}={REDACTED}"
    if isinstance(parsed, (dict, list)) and (clean := scrubbed(parsed)) != parsed:  # a mapping given whole ({api_key:
        return f"{key}={json.dumps(clean, ensure_ascii=False, default=str)}"  # ...}); one without a secret as typed
    return f"{key}={scrub_urls(value)}"


_YAML_NULLS = {"", "~", "null", "Null", "NULL"}


def override_value(value: str, strict: bool = False) -> Any:
    """An override's value parsed as YAML, except text that YAML reads as nothing or as an empty structure
    (``|``, ``>``, ``#``, ``-``, ``?``, a tab, ...): that stays the string given, so ``-o delimiter='|'`` and a
    tab delimiter reach the field as written. An explicit ``null`` (or nothing after ``=``) is None. ``strict``
    (:func:`parse_override`): a mapping YAML refuses for a key written twice or for its size raises."""
    if value.strip() in _YAML_NULLS and not (value and value.isspace()):
        return None
    if value.isspace() or (len(value) == 1 and not value.isalnum()):
        return value
    if _COMMENT.search(value):  # YAML would cut "/tmp/a #b" at the '#': nobody writes a comment into --set
        return value
    try:
        parsed = load_yaml(value)
    except yaml.YAMLError as exc:
        # ``strict``: a mapping YAML refused for a key written twice, or for its size, was kept as text and refused
        # later as "Input should be a valid dictionary", the reason lost; a syntax error keeps text that starts
        # with '{' (a template) as it is
        if (
            strict
            and value.lstrip().startswith("{")
            and isinstance(exc, (yaml.constructor.ConstructorError, TooLargeError))
        ):
            raise
        return value
    if parsed == "" and value.strip() in ("''", '""'):
        return ""  # quoted empty: the empty string, as in a YAML file (it was the two characters; review s40)
    if parsed is None or parsed == "" or parsed == [None] or parsed == {None: None}:
        return value
    if isinstance(parsed, dict) and not value.lstrip().startswith("{"):
        return value  # "Query: x" is text with a colon; a mapping is written {key: value}
    return parsed


_COMMENT = re.compile(r"(?:^|\s)#")


def set_path(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``dotted`` set to ``value`` (used for typed CLI flags)."""
    node: Any = value
    for part in reversed(dotted.split(".")):
        node = {part: node}
    return merge(raw, node)

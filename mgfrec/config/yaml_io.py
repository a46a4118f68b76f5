"""The YAML a config is read from: the loader (YAML 1.2's core scalars, a key written twice refused, a size cap
against alias bombs), the dumper that writes a run's ``config.yaml`` so it reads back as written, the error every
config problem is raised as, and the merge of one config mapping over another."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config that cannot be read or does not validate; the message names file and field."""


def merge(base: dict[str, Any], over: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``over`` merged into ``base``, mappings key by key; an empty mapping replaces (so ``options: {}`` in a
    child file or ``--set grounding.options={}`` clears the options a parent set for another component). Fields
    given inside what ``base`` holds as a value (``embedding: some/model``, a list) are refused: merged, they
    replaced it, and the section was read as its defaults without a word (review s36). ``where``: the dotted
    path of ``base``, for the message."""
    out = dict(base)
    for key, value in over.items():
        here = f"{where}{key}"
        if isinstance(value, Mapping) and value and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value, f"{here}.")
        elif isinstance(value, Mapping) and value and out.get(key) is not None:
            given = ", ".join(f"{here}.{k}" for k in list(value)[:3])
            # a list is given whole: "write eval.ks as a mapping" was said of `--set eval.ks.1=20` (review s40)
            fix = (
                f"give it whole (--set '{here}=[...]')"
                if isinstance(out[key], (list, tuple))
                else f"write {here} as a mapping ({here}: {{field: value}})"
            )
            raise ConfigError(
                f"{here}: holds a value ({type(out[key]).__name__}), not a section of fields, and {given} was given "
                f"inside it; {fix}"
            )
        else:
            out[key] = value
    return out


MAX_VALUES = 100_000
"""Values one config document may expand to. Each alias (``*name``) becomes a full copy once the config is
written out: six nested levels of ten aliases in 436 bytes made a 22 MB ``config.yaml`` ("billion laughs")."""


class TooLargeError(yaml.YAMLError):
    """A YAML document that expands to more than :data:`MAX_VALUES` values."""


def _too_large(node: Any, budget: int = MAX_VALUES) -> bool:
    """Whether ``node`` (plain data, aliases expanded) holds more than ``budget`` values; stops counting there."""
    stack, seen = [node], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping: plain YAML keeps the last and drops
    the first, so a section written twice would lose settings without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *anchor' merges; a key written after it overrides by design
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the constructor below names it
                if first is not None:  # on another line, or on the same one ({model: a, model: b})
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"the key '{key}' is written twice in one mapping (first on line {first})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))


class ConfigLoader(_UniqueKeyLoader):
    """The loader of config files, ``--set`` values and sweep grids: YAML 1.2's core schema for plain scalars,
    where PyYAML follows YAML 1.1, which silently read ``010`` as 8 (octal), ``1:30`` as 90 (base 60), ``yes``,
    ``on`` and ``n`` as booleans and ``1e-3`` as a string. Here ``010`` is 10, ``0o10`` 8, ``0x10`` 16, ``1e-3`` a
    number, only ``true`` and ``false`` (any case) are booleans, and ``1:30`` or ``yes`` stay text (a number or a
    switch field then refuses it by name). A key written twice is refused (:class:`_UniqueKeyLoader`)."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


ConfigLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
ConfigLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text[:2] in ("0o", "0x"):
        return int(text, 0)
    return int(text, 10)  # a leading zero is not octal


ConfigLoader.add_constructor(_INT, _construct_int)


class ConfigDumper(yaml.SafeDumper):
    """What writes a run's ``config.yaml``: a string that either YAML 1.1 or :class:`ConfigLoader` would read as
    something else (``08``, ``1e5``, ``0o17``, ``yes``) is quoted, so the file reads back as written, by mgfrec and
    by any YAML reader."""


for _first, _resolvers in ConfigLoader.yaml_implicit_resolvers.items():
    for _tag, _rx in _resolvers:
        if _tag in (_BOOL, _INT, _FLOAT):
            ConfigDumper.add_implicit_resolver(_tag, _rx, [_first])


def load_yaml(text: str) -> Any:
    """``text`` read as a config reads it (:class:`ConfigLoader`); one that expands to more than
    :data:`MAX_VALUES` values (aliases of aliases) is refused."""
    data = yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    if _too_large(data):
        raise TooLargeError(f"it expands to more than {MAX_VALUES:,} values (aliases, *name: each copies its value)")
    return data

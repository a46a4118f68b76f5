"""Write docs/config-fields.md, every config field with its type, default, bounds and meaning, from the schema
itself (so it cannot drift from the code).

    python tools/config_reference.py            # rewrite docs/config-fields.md
    python tools/config_reference.py --check    # exit 1 if docs/config-fields.md is not what the schema gives

tests/config/test_config_reference.py runs the check.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import generated_doc  # tools/generated_doc.py, beside this script
from pydantic_core import PydanticUndefined, to_jsonable_python

DOC = Path(__file__).resolve().parents[1] / "docs" / "config-fields.md"
HEADER = """# Config fields

Every field of the config, section by section, generated from `mgfrec/config/schema.py` (`grpo` and `trainer`:
`training.py`) by `python tools/config_reference.py` (a test fails when this page is out of date). A field is set
in a YAML file (`--config`, whose `base:` names a parent file), with a command's flag, or with `--set
section.field=value`; how they combine, what a run's `config.yaml` records and how secrets are kept out of it is in
[configs.md](configs.md). `configs/default.yaml` holds these defaults (a test keeps the two equal);
`configs/paper/*.yaml` the paper's GPU settings. A component's own options (`*.options`) are its `Options` model's:
`mgfrec plugins list` names each component, and [plugins.md](plugins.md) says how they are read.
"""

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _type(annotation: Any) -> str:
    """A field's type as a reader writes it: ``int``, ``float | null``, ``[int, ...]``, ``'float32' | 'float16'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin in (tuple, list):
        inner = [a for a in args if a is not Ellipsis]
        if Ellipsis in args or origin is list:
            return f"[{_type(inner[0])}, ...]" if inner else "[...]"
        return "[" + ", ".join(_type(a) for a in inner) + "]"
    if origin is dict:
        return "mapping"
    if getattr(annotation, "__name__", "") == "RewardSpec":
        return "reward"  # a name, or {name, options}
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: Any) -> str:
    found = []
    for meta in field.metadata:
        for name, sign in _BOUNDS:
            value = getattr(meta, name, None)
            if value is not None:
                found.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
    return ", ".join(found)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    return "`" + json.dumps(to_jsonable_python(value), default=str).replace("|", "\\|") + "`"


def _cell(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip().replace("|", "\\|")


def render() -> str:
    from mgfrec.config.schema import MGFRecConfig

    parts = [HEADER]
    for section, holder in MGFRecConfig.model_fields.items():
        model = holder.annotation
        parts.append(f"\n## `{section}`\n\n{_cell(model.__doc__)}\n")
        parts.append("| field | type | default | bounds | meaning |\n|---|---|---|---|---|")
        for name, field in model.model_fields.items():
            parts.append(
                f"| `{section}.{name}` | {_type(field.annotation)} | {_default(field)} | {_bounds(field)} "
                f"| {_cell(field.description)} |"
            )
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    return generated_doc.main(DOC, render, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())

"""A pydantic model's fields as a reader sees them: name, type, default, bounds and meaning, as plain text.

One description serves the generated config reference (``tools/config_reference.py``, ``docs/config-fields.md``)
and ``mgfrec plugins show``, which prints a component's ``Options`` the same way.
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >="))


@dataclass(frozen=True)
class FieldDoc:
    """One field: ``type`` as a reader writes it (``float | null``), ``default`` as JSON (``(required)`` when there
    is none), ``bounds`` such as ``>= 1, <= 1000``, and the field's description."""

    name: str
    type: str
    default: str
    bounds: str
    meaning: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "default": self.default, "bounds": self.bounds,
                "meaning": self.meaning}  # fmt: skip


def type_text(annotation: Any) -> str:
    """A type as a reader writes it: ``int``, ``float | null``, ``[int, ...]``, ``"float32" | "float16"``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin in (tuple, list):
        inner = [a for a in args if a is not Ellipsis]
        if Ellipsis in args or origin is list:
            return f"[{type_text(inner[0])}, ...]" if inner else "[...]"
        return "[" + ", ".join(type_text(a) for a in inner) + "]"
    if origin is dict or annotation is dict:
        return "mapping"
    if getattr(annotation, "__name__", "") == "RewardSpec":
        return "reward"  # a name, or {name, options}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"  # a nested model (hybrid's content options): its keys are its fields
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
    """The default as JSON; a factory that reads the other fields' values says so, and a value JSON cannot hold is
    shown as its ``repr`` (a plugin's own class: ``plugins show`` refused, and such a factory was a traceback;
    review s42)."""
    if field.default_factory is not None:
        if getattr(field, "default_factory_takes_validated_data", False):
            return "(computed from the other options)"
        try:
            value = field.default_factory()
        except Exception as exc:  # noqa: BLE001 - a plugin's factory failing alone: said, not a traceback
            return f"(its factory failed: {type(exc).__name__})"
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    return json.dumps(to_jsonable_python(value, fallback=repr), default=str)


def field_docs(model: type[BaseModel]) -> list[FieldDoc]:
    """Every field of ``model``, in its declared order (a field given by alias is listed by its alias)."""
    return [
        FieldDoc(
            name=field.alias or name,
            type=type_text(field.annotation),
            default=_default(field),
            bounds=_bounds(field),
            meaning=re.sub(r"\s+", " ", field.description or "").strip(),
        )
        for name, field in model.model_fields.items()
    ]

"""One component described for a reader (``mgfrec plugins show``): where it comes from, what it is, and each
option it takes, from its ``Options`` model (:mod:`mgfrec.config.fields`)."""

from __future__ import annotations

import inspect
from typing import Any

from mgfrec.config.fields import field_docs
from mgfrec.registry import KIND_SPECS, check_kind, options_model_of, registry


def component_card(kind: str, name: str) -> dict[str, Any]:
    """``kind``/``name``'s card: ``target``, ``origin`` (the package), ``summary`` (its docstring's first
    paragraph), ``options_at`` (the config path of its options) and ``options``: one mapping per field (name, type,
    default, bounds, meaning), or None when it takes none. Imports the component: an unknown kind or name, a
    plugin that fails to import, or ``Options`` that is not a pydantic model is a one-line error."""
    check_kind(kind)
    entry = registry().get(kind, name)
    component = entry.load()  # once: its options model and its docstring
    model = options_model_of(component, f"{kind} '{name}'")
    doc = inspect.getdoc(component) or ""
    return {
        "kind": kind,
        "name": name,
        "target": entry.target,
        "origin": entry.origin,
        "summary": " ".join(doc.split("\n\n")[0].split()),
        "options_at": KIND_SPECS[kind].options_at.format(name=name),
        "options": None if model is None else [row.as_dict() for row in field_docs(model)],
    }

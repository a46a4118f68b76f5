"""A pydantic ``ValidationError`` as one line a user can act on: ``field.path: problem; other.field: problem``;
and the one test of a whole-number argument (:func:`is_whole_number`).

Configs, component options, saved run files and saved model settings are all validated by pydantic; every
one of them reports its errors through :func:`validation_text`, so a user reads the same shape everywhere.
The offending input is left out unless the caller's ``show_input`` says it is safe to echo (a key pasted
into the wrong field must not be printed back).

This module must not import anything of mgfrec: every package may use it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError


def is_whole_number(value: Any) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), not a bool: what a count, a limit or an id given to
    the library must be (``2.5`` and ``"5"`` are not, and ``True`` only looks like one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validation_text(
    exc: ValidationError,
    where: Sequence[str] = (),
    whole: str = "(top level)",
    show_input: Callable[[Mapping[str, Any]], bool] | None = None,
    limit: int | None = None,
) -> str:
    """Every error of ``exc`` as ``path: message``, joined by ``; `` on one line.

    ``where`` is put before each error's own location (a config section, a component's ``options``); an error
    of the whole model (a validator across fields, a value that is not a mapping) is named by ``where`` alone,
    or by ``whole`` when there is no ``where``. ``show_input(error)`` decides whether ``(got ...)`` follows the
    message; ``limit`` keeps the first errors and says how many more there were."""
    errors = exc.errors()
    shown = errors if limit is None else errors[:limit]
    lines = []
    for err in shown:
        path = ".".join([*where, *(str(p) for p in err["loc"])]) or whole
        got = f" (got {err.get('input')!r})" if show_input is not None and show_input(err) else ""
        lines.append(f"{path}: {err['msg']}{got}")
    if len(errors) > len(shown):
        lines.append(f"and {len(errors) - len(shown)} more")
    return "; ".join(lines)

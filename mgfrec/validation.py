"""A pydantic ``ValidationError`` as one line a user can act on: ``field.path: problem; other.field: problem``;
the one test of a whole-number argument (:func:`is_whole_number`); and the check that keeps pydantic's lax mode
from turning ``true`` into 1 or ``1`` into true (:func:`strict_scalar`).

Configs, component options, saved run files and saved model settings are all validated by pydantic; every
one of them reports its errors through :func:`validation_text`, so a user reads the same shape everywhere.
The offending input is left out unless the caller's ``show_input`` says it is safe to echo (a key pasted
into the wrong field must not be printed back).

This module must not import anything of mgfrec: every package may use it.
"""

from __future__ import annotations

import numbers
import re
import types
import typing
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace, format characters (Unicode Cf: a zero-width space, a BOM),
    control characters (Cc: NUL) and marks with no character to mark (Mn, Me: a variation selector U+FE0F, the
    grapheme joiner U+034F, a lone combining accent). ``str.strip`` keeps them all, so a title of a lone zero-width
    space was grounded to an arbitrary catalogue item as a user's history (review s30), and one of a variation
    selector, which the embedding model reads as the empty string, still was (review s41)."""
    return all(c.isspace() or c in _BLANK_LETTERS or unicodedata.category(c) in _SHOWS_NOTHING for c in text)


_SHOWS_NOTHING = frozenset({"Cf", "Cc", "Mn", "Me"})


_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Characters Unicode files as letters or symbols that show nothing: the Hangul fillers and the braille blank."""


def not_utf8_at(text: str) -> int | None:
    """The 1-based position of the first character of ``text`` UTF-8 cannot encode (a lone surrogate: bytes a
    Latin-1 terminal sent, or JSON's ``"\\ud800"``), or None when there is none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start + 1
    return None


def refuse_one_string(value: Any, name: str, what: str = "strings") -> None:
    """Refuse one string where a list of them is wanted: Python iterates it character by character, so
    ``stop="</answer>"`` stopped at every ``a`` and a history ``"Abbey Road"`` was ten titles of one letter, each
    without an error (review s35). ``name`` is the argument, ``what`` its items."""
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"{name}: give a list of {what}, not one string (it would be read character by character): [{value!r:.60}]"
        )


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
        value = err.get("input")
        if err.get("type") == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
            # `--set data.path=2024`: YAML read a name of digits as a number (review s40); a component's option
            # (`-o items_file=2023`) said only "Input should be a valid string" (review s41)
            quoted = f"'{value}'" if got else "'...'"
            got += f"; YAML reads digits as a number: quote them ({quoted}; on a command line --set "
            got += f'"{path}={quoted}")'
        elif err.get("type") == "string_type" and value is None:  # `-o delimiter=~`: YAML's null (review s41)
            got += f"; YAML reads ~, null and nothing as null: quote the text you meant (--set \"{path}='...'\")"
        lines.append(f"{path}: {err['msg']}{got}")
    if len(errors) > len(shown):
        lines.append(f"and {len(errors) - len(shown)} more")
    return "; ".join(lines)


def _without_none(annotation: Any) -> Any:
    """``X`` for a field annotated ``X | None`` (``Optional[X]``); any other annotation as it is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _scalar_kind(annotation: Any) -> type | None:
    """``bool``, ``int`` or ``float`` for a field annotated as that type (or that type or None); else None."""
    annotation = _without_none(annotation)
    return annotation if annotation in (bool, int, float) else None


def strict_scalar(model: type[BaseModel], name: str, value: Any) -> Any:
    """``value`` for field ``name`` of ``model``, refusing what pydantic's lax mode would silently convert between
    booleans and numbers: ``true`` given to a number field (it became 1), a number or a word given to a switch
    (``1`` and ``"yes"`` became true). A ValueError says what to write."""
    field = model.model_fields.get(name)
    if field is not None and isinstance(value, str) and value.lower() in _SWITCH_WORDS and _text_or_switch(field):
        # user_agent.cache_path: off turned the cache off under YAML 1.1; read as text, it named a file "off"
        raise ValueError(f"{value!r} is a switch word: write false (or true), or a path such as ./{value}")
    kind = _scalar_kind(field.annotation) if field is not None else None
    if kind is not None and value is not None:
        _check_scalar(kind, value, bounded=_has_upper_bound(field))
    items = _item_kind(field.annotation) if field is not None else None
    if items is not None and isinstance(value, (list, tuple)):
        # eval.ks=[true, 5] was (1, 5), and [5, 3000000000] was taken (review s36): each item as a field is
        for n, item in enumerate(value):
            try:
                _check_scalar(items, item, bounded=False)
            except ValueError as exc:
                raise ValueError(f"item {n + 1}: {exc}") from None
    return value


def _check_scalar(kind: type, value: Any, *, bounded: bool) -> None:
    if kind is bool and not isinstance(value, bool):
        raise ValueError("a switch: write true or false")
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError("a number, not true or false")
    if kind is int and is_whole_number(value) and value > MAX_COUNT and not bounded:
        raise ValueError(f"at most {MAX_COUNT:,}: larger than any run can use")


def _item_kind(annotation: Any) -> type | None:
    """The scalar kind of every item of a ``tuple[int, ...]``, ``tuple[float, float, float]`` or ``list[int]``
    field (``| None`` allowed), else None."""
    annotation = _without_none(annotation)
    if typing.get_origin(annotation) not in (tuple, list):
        return None
    kinds = {
        typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a  # tuple[Annotated[int, ...], ...]
        for a in typing.get_args(annotation)
        if a is not Ellipsis
    }
    return next(iter(kinds)) if len(kinds) == 1 and next(iter(kinds)) in (bool, int, float) else None


_SWITCH_WORDS = frozenset({"yes", "no", "on", "off", "y", "n"})  # YAML 1.1's booleans beyond true and false


def _text_or_switch(field: Any) -> bool:
    """Whether a field takes text and a switch (``str | Literal[False] | None``, ``str | bool``)."""
    args = typing.get_args(field.annotation)
    switch = bool in args or any(
        typing.get_origin(a) is typing.Literal and any(isinstance(v, bool) for v in typing.get_args(a)) for a in args
    )
    return str in args and switch


MAX_COUNT = 2**31 - 1
"""The largest value an integer field without a bound of its own takes (``agent.max_groundings: 1e29`` was taken)."""


def _has_upper_bound(field: Any) -> bool:
    return any(hasattr(m, "le") or hasattr(m, "lt") for m in getattr(field, "metadata", ()))


KEY_PREFIXES = ("sk-", "sk_", "AIza", "gsk_", "xai-", "hf_")
"""How API keys of common providers begin: an ``api_key_env`` that does is a key, not a variable's name."""

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def looks_like_key(text: object) -> bool:
    """Whether ``text``, given where a name is expected (a backend, a model, a flag's value), may be an API key put
    in the wrong place: one word (letters, digits, ``-_.``) holding a random-looking run, a piece between those
    separators of 12+ characters mixing letters and digits after a provider's key prefix (:data:`KEY_PREFIXES`:
    ``sk-proj-...``, ``hf_...``; hexadecimal from 32 characters: ``sk-or-v1-...``), or of 20+ characters
    anywhere, not hexadecimal (a commit, a checksum). Model and
    component names (``gpt-4o-search-preview-2025-03-11``, a GGUF file name, a UUID, ``hf_inference``) are made of
    short pieces and pass. Such a value is not echoed, and not taken as a backend or model name."""
    if not isinstance(text, str) or not text or not set(text) <= _KEY_CHARS:
        return False
    prefixed = text.startswith(KEY_PREFIXES)  # then a long hexadecimal run is a key too (OpenRouter's sk-or-v1-<hex>)
    return any(_random_run(piece, 12 if prefixed else 20, prefixed) for piece in re.split(r"[-_.]", text))


KEY_WORD = re.compile(r"[A-Za-z0-9_.-]+")
"""A word of the characters a key is made of: what :func:`holds_key` looks at in a longer text."""


def holds_key(text: str) -> bool:
    """Whether a word of ``text`` (:data:`KEY_WORD`) :func:`looks_like_key`: a key beside other characters
    (``apikey=sk-...``, ``Bearer sk-...``), which ``looks_like_key`` of the whole text does not catch."""
    return any(looks_like_key(word) for word in KEY_WORD.findall(text))


def _random_run(piece: str, shortest: int, hex_too: bool = False) -> bool:
    """``hex_too``: a hexadecimal run counts from 32 characters (``hf_ckpt_3f9a2b1c4d5e`` is a name, not a key)."""
    hexadecimal = set(piece.lower()) <= set("0123456789abcdef")
    return (
        len(piece) >= shortest
        and any(c.isdigit() for c in piece)
        and any(c.isalpha() for c in piece)
        and (not hexadecimal or (hex_too and len(piece) >= 32))
    )


def shown_name(text: object) -> str:
    """``text`` as a message may echo it: :data:`REDACTED` when it :func:`looks_like_key`."""
    return REDACTED if looks_like_key(text) else str(text)


REDACTED = "<redacted>"
"""What a written ``config.yaml`` (and every printed setting) holds in place of a secret: a URL's password, a
secret-named option's value."""


def refuse_redacted(node: Any, where: str) -> None:
    """Raise ``ValueError`` naming the first setting under ``where`` whose text holds :data:`REDACTED`: a run's
    ``config.yaml`` recorded it without its secret, and sending the placeholder to a server would fail far from
    its cause (a 401 naming nothing), or worse, work against a server that takes any key."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            refuse_redacted(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            refuse_redacted(value, f"{where}[{index}]")
    elif isinstance(node, str) and REDACTED in node:
        raise ValueError(
            f"{where} holds {REDACTED}: it was read from a run's config.yaml, which records settings without their "
            f"secrets; give the value again (--set {where}=... to evaluate, report, recommend, serve, chat or fit "
            "--resume; to evaluate or report, with everything else as recorded), or keep a key in the environment "
            "variable that user_agent.api_key_env names"
        )

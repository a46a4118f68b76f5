"""Make untrusted text safe to print on a terminal or into a log a terminal will show.

Catalogue titles, the policy's text, a user agent's feedback, a server's error message and even a run folder's
name are untrusted, and rich (like ``print`` and ``logging``) writes a string's escape sequences as they are: a
title holding ``ESC ] 52 ; ...`` could write the terminal's clipboard, and an unclosed U+202E reverses the rest
of the line. :func:`terminal_safe` writes every such character as its escape (``\\x1b``, ``\\u202e``).

This module must not import anything of mgfrec: every package that prints may use it.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

# What a terminal would act on rather than show: C0 controls but newline and tab (ESC starts colour, title,
# clipboard (OSC 52) and cursor sequences), DEL, C1 controls, and the bidirectional embeddings, overrides and
# isolates (an unclosed U+202E reverses the rest of the line). Each is shown as its escape, ``\x1b``.
_TERMINAL_CONTROLS = str.maketrans(
    {c: f"\\x{c:02x}" for c in (*range(32), 0x7F, *range(0x80, 0xA0)) if chr(c) not in "\n\t"}
    | {c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)


def terminal_safe(value: T) -> T:
    """``value`` (a string, or every string inside a dict, list or tuple) with the characters a terminal would
    act on written as escapes."""
    if isinstance(value, str):
        return value.translate(_TERMINAL_CONTROLS)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: terminal_safe(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, (list, tuple)):
        return type(value)(terminal_safe(v) for v in value)  # type: ignore[return-value]
    return value

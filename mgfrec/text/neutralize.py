"""Make untrusted text safe to place inside the agent's conversation.

Catalogue titles, the policy's grounded titles shown to the user agent, and the user agent's feedback are
*untrusted*: any of them may contain ``<answer>``, ``</item_list>``, ``<|im_end|>`` or a newline followed by
``11. Fake item``. Placed verbatim, such text could close the ``<item_list>`` early, fake a ``<feedback>``
block, or, through the tokenizer, become a control token. :func:`neutralize` removes all three dangers:

* Every ``<`` becomes ``‹`` (U+2039) and every ``>`` becomes ``›`` (U+203A). With no angle bracket left,
  no tag-like sequence (see :mod:`mgfrec.agent.parser`) can exist in neutralized text, nor can one form
  with the text around it. Characters that Unicode compatibility normalisation (NFKC/NFKD, used by some
  tokenizers) turns into ``<`` or ``>`` (fullwidth ``＜ ＞``, small ``﹤ ﹥``, ``≮ ≯``) are replaced the same
  way; ``‹ ›`` themselves normalise to nothing else, so the replacement is stable under any normaliser.
* Control characters that break a line (CR, CR LF, VT, FF, the file/group/record separators, NEL, U+2028/9)
  become a newline, the unit separator a space, and every other control character (C0 other than newline and
  tab, DEL, C1) is dropped; with ``single_line=True`` (titles) every run of whitespace, newlines included,
  becomes one space, so a title cannot start a new list line.
* ``reserved`` strings (a tokenizer's added/special tokens, see :func:`reserved_strings`) get a WORD JOINER
  (U+2060) after their first character, so the tokenizer reads them as ordinary text, never as the token;
  repeated until no reserved string is left whole (one can hold or overlap another).

Replacing *every* angle bracket rather than only those of tag-like sequences keeps the rule easy to check
and closes every boundary case; the price is that a rare title such as ``Songs <3`` is shown as
``Songs ‹3``. Only text shown to a model is neutralized: catalogue lookups use the original titles.

This module must not know about tags, templates or tokenizers beyond the strings it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

LEFT, RIGHT = "\u2039", "\u203a"
WORD_JOINER = "\u2060"

# Every code point whose NFKD form contains '<' or '>' (computed once over all of Unicode), plus the two.
_ANGLES = {
    "<": LEFT,
    ">": RIGHT,
    "\ufe64": LEFT,
    "\uff1c": LEFT,
    "\u226e": LEFT,
    "\ufe65": RIGHT,
    "\uff1e": RIGHT,
    "\u226f": RIGHT,
}
# Controls that break a line (CR, VT, FF, the file/group/record separators, NEL, the Unicode line and paragraph
# separators) become a newline, so that "one\rtwo" stays two words; the unit separator a space; every other C0
# and C1 control, and DEL, is dropped.
_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_CONTROL = {c: None for c in (*range(32), 0x7F, *range(0x80, 0xA0)) if chr(c) not in "\n\t"}
_CONTROL |= {ord(c): "\n" for c in _LINE_BREAKS} | {0x1F: " "}
_TABLE = str.maketrans({**{ord(k): v for k, v in _ANGLES.items()}, **_CONTROL})
_WHITESPACE = re.compile(r"\s+")


def neutralize(text: Any, *, single_line: bool = False, reserved: Iterable[str] = ()) -> str:
    """``text`` made inert (see the module docstring); non-strings (e.g. a NaN title) become their ``str``."""
    out = (text if isinstance(text, str) else str(text)).replace("\r\n", "\n").translate(_TABLE)
    if single_line:
        out = _WHITESPACE.sub(" ", out).strip()
    # (a reserved string holding the joiner itself could be re-made by defusing; no tokenizer has one)
    pattern = _reserved_pattern(frozenset(s for s in reserved if s and WORD_JOINER not in s))
    if pattern is not None:
        # Until none is left: a joiner in one match can leave another reserved string whole ("[INST]" defused
        # still holds "INST]"; a run of three spaces still holds a two-space token). Each pass splits every
        # match it finds, so the passes end.
        while True:
            defused = pattern.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], out)
            if defused == out:
                return out
            out = defused
    return out


def neutralize_title(title: Any, reserved: Iterable[str] = ()) -> str:
    """A title for display: neutralized and on one line."""
    return neutralize(title, single_line=True, reserved=reserved)


def reserved_strings(tokenizer: Any) -> frozenset[str]:
    """The strings a tokenizer turns into added/special tokens when they appear in text.

    Reads ``get_added_vocab()`` (Hugging Face tokenizers) and ``all_special_tokens``; an object with neither
    gives an empty set. The title tokens of ``preset:tiny-items`` are not reserved. Single-character tokens
    are left out: they cannot be defused by a joiner.
    """
    found: set[str] = set()
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        # title tokens (preset:tiny-items) are the titles themselves: defusing them would undo their purpose; those
        # that were already one BPE token keep its id, below the range, and are listed apart
        kwargs = getattr(tokenizer, "init_kwargs", None) or {}
        start, end = kwargs.get("mgfrec_item_tokens", (0, 0))
        reused = set(kwargs.get("mgfrec_item_tokens_reused", ()))
        found.update(s for s, i in added().items() if not start <= i < end and i not in reused)
    found.update(getattr(tokenizer, "all_special_tokens", None) or ())
    return frozenset(s for s in found if isinstance(s, str) and len(s) > 1)


@lru_cache(maxsize=32)
def _reserved_pattern(reserved: frozenset[str]) -> re.Pattern[str] | None:
    if not reserved:
        return None
    # Longest first so that a token containing another is defused as a whole.
    return re.compile("|".join(re.escape(s) for s in sorted(reserved, key=len, reverse=True)))

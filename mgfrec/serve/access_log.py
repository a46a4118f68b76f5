"""The access log of ``mgfrec serve``: uvicorn's lines with the query string cut and any path segment word that
looks like a key shown as ``<redacted>``, so that a key put in a URL never reaches the log."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

from mgfrec.validation import KEY_WORD, REDACTED, holds_key, looks_like_key

_QUERY_START = re.compile(r"[?;]|%3f|%3b", re.IGNORECASE)


def path_only(record: logging.LogRecord) -> bool:
    """An access-log record with its query string cut: ``?api_key=...`` put in a URL never reaches the log, nor
    does one behind an encoded ``?`` (``%3F``) or a ``;`` parameter; a path segment that looks like a key is
    shown as ``<redacted>``."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):  # uvicorn's: client, method, path..
        path = _QUERY_START.split(args[2], maxsplit=1)[0]
        record.args = (*args[:2], "/".join(_segment_shown(p) for p in path.split("/")), *args[3:])
    return True


def _segment_shown(segment: str) -> str:
    """A path segment as the access log shows it: as sent, or, when a word in it looks like a key, decoded with
    each such word as ``<redacted>``. A key beside other characters in one segment (``items&api_key=sk-...``, a
    ``&`` typed for ``?``; ``Bearer%20sk-...``) was logged whole: only a segment that was a key alone was caught
    (review s30)."""
    text = unquote(segment)
    if not holds_key(text):
        return segment
    shown = KEY_WORD.sub(lambda m: REDACTED if looks_like_key(m.group()) else m.group(), text)
    # encoded again: decoded, a %0A or an escape sequence in the request forged log lines and drove the operator's
    # terminal (review s30)
    return quote(shown, safe="/:@&=+$,;~!*'()<>")

"""Streaming JSON-lines input: one line in memory at a time, every bad line counted or reported."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mgfrec.data.raw import BadInputError, FileReport, RowPolicy

_GZIP_MAGIC = b"\x1f\x8b"


def jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw bytes)`` of a .jsonl or .jsonl.gz file, one line in memory at a time. A file whose bytes
    are not what its name says (a plain file named ``.gz``, gzip data named ``.jsonl``) is refused in one line saying
    so: the first was called a truncated download to delete, the second "not valid UTF-8" on every line (s39)."""
    named_gzip = path.name.endswith(".gz")
    try:
        with open(path, "rb") as probe:
            is_gzip = probe.read(2) == _GZIP_MAGIC
    except OSError:
        is_gzip = named_gzip  # left to the open below to name
    if named_gzip and not is_gzip and path.stat().st_size > 0:
        plain = path.name[: -len(".gz")]
        raise BadInputError(f"{path}: not gzip data, though its name ends in .gz (plain JSON lines? name it {plain})")
    if is_gzip and not named_gzip:
        raise BadInputError(f"{path}: gzip data, though its name does not end in .gz; name it {path.name}.gz")
    opener = gzip.open if named_gzip else open
    lineno = 0
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                yield lineno, raw
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInputError(
            f"{path}: unreadable after line {lineno} ({exc}); a truncated download looks like this - "
            "delete it and fetch it again with 'mgfrec data download' (which keeps a file that is already there)"
        ) from None


def parse_object(raw: bytes, rep: FileReport, policy: RowPolicy, where: str) -> dict[str, Any] | None:
    """One JSON object, or None when the line is blank or bad (then counted, or raised by ``policy``)."""
    if not raw.strip():
        rep.drop("blank_line", where)  # not a record, so never an error
        return None
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError:
        policy.bad(rep, "bad_json", where, "not valid UTF-8")
        return None
    except json.JSONDecodeError as exc:
        policy.bad(rep, "bad_json", where, f"not valid JSON ({exc.msg} at column {exc.colno})")
        return None
    except ValueError as exc:  # json's own limits, e.g. an integer of more than 4300 digits
        policy.bad(rep, "bad_json", where, f"not valid JSON ({str(exc).split(';')[0]})")
        return None
    except RecursionError:
        policy.bad(rep, "bad_json", where, "not valid JSON (nested too deeply)")
        return None
    if not isinstance(obj, dict):
        policy.bad(rep, "not_an_object", where, f"expected a JSON object, got {type(obj).__name__}")
        return None
    if _ESCAPED_SURROGATE.search(raw) and _lone_surrogate(obj):
        policy.bad(rep, "bad_json", where, "a \\udXXX escape outside a surrogate pair: not valid Unicode text")
        return None
    return obj


_ESCAPED_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")  # only such lines can decode to a lone surrogate


def _lone_surrogate(obj: Any) -> bool:
    """Whether a decoded object holds a lone surrogate (JSON allows ``"\\udc00"``; no file can store it)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False

"""Files written whole or not at all: the one way mgfrec replaces a file another process may be reading.

A writer fills a new, hidden file beside the target and renames it over the target. A reader (a resumed run, a
second process of the same run, ``mgfrec report`` beside a running sweep) sees either the earlier file or the new
one, never half of one; a kill, a full disk or a file size limit mid-write leaves the earlier file as it was and
the hidden file removed. This module must not know what it writes: callers pass the bytes or a function that
writes them.

Files are not fsynced: a kill of the process never leaves half a file, but a crash of the machine itself (power,
the kernel) may lose the newest files' contents, as the checkpoints Lightning writes may (review s42).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object], *, text: bool = False) -> Path:
    """Call ``write`` with an open file beside ``path`` (binary, or UTF-8 text with no newline translation when
    ``text``), then put that file in ``path``'s place. The new file takes the permissions an ordinary ``open``
    gives (the umask's), so others sharing a data folder can read it. An ``OSError`` is raised again naming
    ``path`` (not the hidden file); any error removes the hidden file."""
    path = Path(path)
    # a name of its own per writer: two processes replacing the same file never write into one hidden file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with tmp.open("x", encoding="utf-8", newline="") if text else tmp.open("xb") as handle:
            write(handle)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, short_write_reason(exc) or exc.strerror or str(exc), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def short_write_reason(exc: OSError) -> str | None:
    """Why numpy's write stopped short, said (its ``OSError("576000 requested and 25568 written")`` carries no errno
    and no cause), or None for any other error."""
    if exc.errno is not None or re.fullmatch(r"\d+ requested and \d+ written", str(exc)) is None:
        return None
    # numpy's counts are of its last buffer, not of the file: not repeated (review s42)
    return "the disk is full or a file size limit was reached (a write stopped short)"


def atomic_write_text(path: str | Path, content: str) -> Path:
    """``content`` as ``path``'s whole UTF-8 text, written as :func:`atomic_write` writes."""
    return atomic_write(path, lambda handle: handle.write(content), text=True)


def atomic_write_bytes(path: str | Path, content: bytes) -> Path:
    """``content`` as ``path``'s whole bytes, written as :func:`atomic_write` writes."""
    return atomic_write(path, lambda handle: handle.write(content))

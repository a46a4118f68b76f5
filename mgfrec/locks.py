"""One command at a time in a folder: an exclusive, non-blocking lock the system drops when the process ends,
however it ends. ``mgfrec sweep`` holds it on its ``--out`` for the whole sweep, ``mgfrec data prepare`` on its
``--out`` while it writes."""

from __future__ import annotations

import errno
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)  # another process holds it
PROBE_WAIT_S = 1.0
"""How long :func:`only_one_in` tries again before refusing: far longer than a reader's probe holds the lock, far
shorter than any command that holds it to work."""


class NoLockTaken(UserWarning):
    """The folder's file system takes no lock: the command runs unguarded (shown by the CLI as one line)."""


def _try_flock(fd: int, operation: int) -> OSError | None:
    """Take ``operation`` (``fcntl.LOCK_EX`` or ``LOCK_SH``) on ``fd`` without waiting: None when taken, else the
    error (its errno in ``_BUSY`` when another process holds the lock; anything else: the file system takes none)."""
    import fcntl

    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        return exc
    return None


@contextmanager
def only_one_in(folder: str | Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (which must exist) for the block; another process holding it is refused
    in one line naming ``command``. A file system without locks (some NFS, FUSE or Lustre mounts) gets a warning
    instead: refusing there would refuse every run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock to take
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        failed = _try_flock(fd, fcntl.LOCK_EX)
        deadline = time.monotonic() + PROBE_WAIT_S
        while failed is not None and failed.errno in _BUSY and time.monotonic() < deadline:
            # a reader's probe (:func:`held_by_another`) holds a shared lock for an instant: a writer starting then
            # was refused as if a command were running in the folder (review s42)
            time.sleep(0.05)
            failed = _try_flock(fd, fcntl.LOCK_EX)
        if failed is not None and failed.errno in _BUSY:
            raise ValueError(
                f"--out {folder}: another {command} is running in it; wait for it to end, or give another --out"
            )
        if failed is not None:
            warnings.warn(
                f"--out {folder}: its file system takes no lock ({failed.strerror}); run one {command} at a time in it",
                NoLockTaken,
                stacklevel=3,
            )
        yield
    finally:
        os.close(fd)


@contextmanager
def exclusive_now(folder: str | Path) -> Iterator[bool]:
    """Try :func:`only_one_in`'s lock on ``folder`` without waiting: yields whether it was taken (True too where
    the file system takes no lock; False when another process holds it or the folder cannot be opened), and holds
    it for the block."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        failed = _try_flock(fd, fcntl.LOCK_EX)
        yield failed is None or failed.errno not in _BUSY
    finally:
        os.close(fd)


def held_by_another(folder: str | Path) -> bool:
    """Whether another process holds :func:`only_one_in`'s lock on ``folder`` now (False where locks cannot be
    taken, or the folder cannot be opened): a command reading a run can tell a fit in progress from one killed."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        failed = _try_flock(fd, fcntl.LOCK_SH)
        if failed is None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return failed is not None and failed.errno in _BUSY
    finally:
        os.close(fd)


def refuse_if_held(folder: str | Path) -> None:
    """Refuse, in one line, an ``--out`` another process holds :func:`only_one_in`'s lock on: a command's checks of
    what the folder holds ran first, and a second ``sft`` into a folder a running ``fit`` held was told the fit
    "did not finish" and that ``--resume`` would continue it, a second ``fit`` that it "replaces" it (review s32)."""
    if Path(folder).is_dir() and held_by_another(folder):
        raise ValueError(
            f"--out {folder}: another mgfrec command is writing it now; wait for it to end, or give another --out"
        )

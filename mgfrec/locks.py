"""One command at a time in a folder: an exclusive, non-blocking lock the system drops when the process ends,
however it ends. ``mgfrec sweep`` holds it on its ``--out`` for the whole sweep, ``mgfrec data prepare`` on its
``--out`` while it writes."""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                warnings.warn(
                    f"--out {folder}: its file system takes no lock ({exc.strerror}); run one {command} at a time "
                    "in it",
                    stacklevel=3,
                )
                yield
                return
            raise ValueError(
                f"--out {folder}: another {command} is running in it; wait for it to end, or give another --out"
            ) from None
        yield
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
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)

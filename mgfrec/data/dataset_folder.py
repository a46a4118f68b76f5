"""Writing a prepared data set's folder so that a reader never sees half of one.

A prepare writes every file into ``DIR/.prepare-staging`` first and moves them into place only when all are
written, the manifest last. The earlier data set's files wait in ``DIR/.prepare-previous`` while the new ones move
in and come back if that is cut short; a prepare killed outright (SIGKILL) leaves them there, and the next
prepare puts them back before it starts. :class:`mgfrec.data.prepared.PreparedDataset` reads what this writes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from mgfrec.config.load import entries_besides_config
from mgfrec.data.raw import BadInputError

MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


STAGING = ".prepare-staging"
PREVIOUS = ".prepare-previous"  # the earlier data set's files while the new ones move in


def check_output_folder(out: str | Path) -> None:
    """Refuse to write a data set into a folder that holds something else (a run, a sweep, the raw files):
    its ``config.yaml`` would be replaced and the data set's files mixed in. A new or empty folder, or a
    prepared data set (``manifest.json``, replaced as a whole), is fine; a user's ``config.yaml`` is kept."""
    out = Path(out)
    if not out.is_dir() or (out / MANIFEST).is_file() or (out / PREVIOUS / MANIFEST).is_file():
        return  # (the last: a data set whose replacing was killed half-way; the next prepare puts it back first)
    others = entries_besides_config(out, STAGING, PREVIOUS)
    if others:
        shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
        raise BadInputError(
            f"--out {out}: not empty ({shown}) and not a prepared data set (no {MANIFEST}); give a new or empty "
            "folder, or a data set to replace"
        )


def write_folder(out: Path, files: dict[str, pd.DataFrame], manifest: dict[str, Any]) -> None:
    """Write the data set's files into ``out/.prepare-staging`` first and move them into place only when all
    are written, the manifest last: a write that fails (a full disk, a file size limit, Ctrl-C) leaves a data
    set already in ``out`` as it was, and the error names the file. The earlier data set's files are moved into
    ``out/.prepare-previous`` before the new ones come in, and put back if that is cut short (Ctrl-C, SIGTERM):
    the staged files that had not been moved were deleted, leaving a mix of the two data sets."""
    out.mkdir(parents=True, exist_ok=True)
    staging, previous = out / STAGING, out / PREVIOUS
    if (previous / MANIFEST).is_file() and not (out / MANIFEST).is_file():
        # an earlier prepare was killed (SIGKILL) while moving files: its finally never put the earlier data
        # set back, and every later command refused the folder. It comes back whole first (this prepare replaces
        # it, or, cut short, leaves it as it was)
        for moved in previous.iterdir():
            moved.replace(out / moved.name)
    for folder in (staging, previous):
        shutil.rmtree(folder, ignore_errors=True)
    staging.mkdir()
    names = [*files, MANIFEST]
    done = moving_in = False
    try:
        for name, frame in files.items():
            with _named(out / name):
                frame.to_parquet(staging / name, index=False)
        manifest["checksums"] = {name: sha256(staging / name) for name in files}
        with _named(out / MANIFEST):
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        previous.mkdir()
        for name in [MANIFEST, *files]:  # the manifest first: a data set half moved is never read as whole
            if (out / name).exists():
                (out / name).replace(previous / name)
        moving_in = True
        for name in names:
            (staging / name).replace(out / name)
        done = True
    finally:
        if not done and previous.is_dir():  # cut short while moving: the earlier data set comes back whole
            for name in names:
                if (previous / name).exists():
                    (previous / name).replace(out / name)
                elif moving_in and not (staging / name).exists():
                    (out / name).unlink(missing_ok=True)  # a new file where the earlier set had none
        for folder in (staging, previous):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """An OSError raised while writing ``path`` names it (pyarrow's write errors name no file)."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None

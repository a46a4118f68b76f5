"""mgfrec.atomic: a file is replaced whole or not at all, and a failed write leaves the earlier file and no litter."""

from __future__ import annotations

import csv
import errno
import os

import pytest

from mgfrec.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from mgfrec.runs import write_metrics

pytestmark = pytest.mark.reliability


class Unprintable:
    """A value that fails while being written: the writer dies after part of the file is out."""

    def __str__(self) -> str:
        raise RuntimeError("cannot print this value")


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "first")
    assert atomic_write_text(path, "second\r\nline") == path
    assert path.read_bytes() == b"second\r\nline"  # text as given: no newline translation
    atomic_write_bytes(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_write_that_fails_midway_keeps_the_earlier_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("earlier", encoding="utf-8")

    def write(handle):
        handle.write("half of the new ")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, write, text=True)
    assert path.read_text(encoding="utf-8") == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_an_os_error_names_the_target_not_the_hidden_file(tmp_path):
    path = tmp_path / "missing-folder" / "out.txt"
    with pytest.raises(FileNotFoundError) as caught:  # the errno's own subclass, as a caller catches it
        atomic_write_text(path, "x")
    assert caught.value.filename == str(path) and caught.value.errno == errno.ENOENT
    assert ".tmp" not in str(caught.value)


def test_the_new_file_is_readable_by_others_as_the_umask_says(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_metrics_whose_write_fails_keep_the_earlier_file_and_no_litter(tmp_path):
    path = tmp_path / "metrics.csv"
    write_metrics(path, [{"step": 1, "loss": 0.5}])
    with pytest.raises(RuntimeError, match="cannot print"):
        write_metrics(path, [{"step": 1, "loss": 0.5}, {"step": 2, "loss": Unprintable()}])
    with path.open(encoding="utf-8", newline="") as f:
        assert list(csv.DictReader(f)) == [{"step": "1", "loss": "0.5"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # a metrics.tmp was left before


def test_a_short_write_is_named_with_its_cause(tmp_path):
    """numpy's write into a full disk or past a file size limit raised "576000 requested and 25568 written", with
    no errno and no cause; Lightning's checkpoint write a bare "[Errno 27] File too large" (review s42)."""
    from mgfrec.registry import error_message

    target = tmp_path / "counts.npy"
    target.write_bytes(b"earlier")

    def short(handle):
        handle.write(b"part")
        raise OSError("1500 requested and 624 written")

    with pytest.raises(OSError) as err:
        atomic_write(target, short)
    assert error_message(err.value) == (
        f"{target}: the disk is full or a file size limit was reached (a write stopped short)"
    )
    assert target.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["counts.npy"]
    said = error_message(OSError(errno.EFBIG, "File too large"))
    assert said.startswith("File too large: a write stopped at a file size limit or a full disk"), said
    assert error_message(OSError(errno.ENOENT, "No such file or directory")) == "[Errno 2] No such file or directory"

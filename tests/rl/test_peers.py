"""``rl.peers``: how the processes of a multi-process fit learn that one of them failed (the end-to-end runs are
in ``tests/rl/test_distributed.py``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mgfrec.rl.peers import ChildWatch, PeerFailed, failed_child, peer_failure

pytestmark = pytest.mark.reliability


def raised_in(filename: str, exc: type[BaseException] = RuntimeError) -> BaseException:
    try:
        exec(compile(f"raise {exc.__name__}('Connection closed by peer')", filename, "exec"))
    except BaseException as caught:  # noqa: BLE001 - the test's own raise
        return caught
    raise AssertionError("nothing raised")


def test_a_collectives_error_is_told_from_any_other():
    assert peer_failure(raised_in("/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py"))
    assert not peer_failure(raised_in("/work/mgfrec/rl/module.py"))  # a bug of ours stays a traceback
    assert not peer_failure(raised_in("/venv/site-packages/torch/distributed/x.py", ValueError))
    assert not peer_failure(PeerFailed(1))


def test_the_line_names_the_process_and_its_code():
    assert str(PeerFailed(0, 2, 1)) == (
        "process 0: process 1 of this fit failed with exit code 2 (its error is above); this one stops too"
    )
    unknown = PeerFailed(1)
    assert unknown.exit_code == 1 and str(unknown).startswith("process 1: another process of this fit failed (")


class Launcher:
    def __init__(self, *codes: str) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for code in codes]


def test_the_first_failed_process_and_its_code():
    ok = Launcher("pass")
    ok.procs[0].wait()
    assert failed_child(ok) is None and failed_child(object()) is None
    launcher = Launcher("import time; time.sleep(30)", "raise SystemExit(3)")
    try:
        assert failed_child(launcher, wait_s=30) == (2, 3)
        launcher.procs[0].kill()
        launcher.procs[0].wait()
        assert failed_child(Launcher(), wait_s=0) is None
        assert failed_child(type("L", (), {"procs": launcher.procs[:1]})()) == (1, 137)  # SIGKILL: 128 + 9
    finally:
        for proc in launcher.procs:
            proc.kill()


def test_one_reporter_only():
    watch = ChildWatch(Launcher())
    assert watch.claim() and not watch.claim()

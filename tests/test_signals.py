"""``mgfrec.signals``: SIGTERM stops a command as Ctrl-C does (an exception, so clean-ups run), for the command's
duration only, in the main thread only, and never over a handler the caller put in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from mgfrec.signals import Terminated, raise_terminated, sigterm_stops, stop_exception, stopped_by, stops_at_once


@pytest.fixture
def default_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, before)


def test_inside_the_block_sigterm_raises_terminated_and_the_default_comes_back_after(default_sigterm):
    with pytest.raises(Terminated) as caught, sigterm_stops():
        assert signal.getsignal(signal.SIGTERM) is raise_terminated
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM raised nothing")
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_handler_of_the_callers_own_or_an_ignored_sigterm_is_left_alone(default_sigterm):
    def own(signum, frame):
        pass

    for handler in (own, signal.SIG_IGN):
        signal.signal(signal.SIGTERM, handler)
        with sigterm_stops():
            assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.getsignal(signal.SIGTERM) is handler


def test_outside_the_main_thread_nothing_is_installed(default_sigterm):
    seen = []

    def body():
        with sigterm_stops():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.SIG_DFL]


def test_the_stop_of_each_signal():
    assert type(stop_exception(signal.SIGTERM)) is Terminated
    assert type(stop_exception(signal.SIGINT)) is KeyboardInterrupt and type(stop_exception(None)) is KeyboardInterrupt
    assert stopped_by(signal.SIGTERM) == "SIGTERM" and stopped_by(signal.SIGINT) == stopped_by(None) == "the user"
    assert stops_at_once(signal.SIG_DFL) and stops_at_once(raise_terminated) and not stops_at_once(print)


@pytest.mark.reliability
def test_a_command_sent_sigterm_runs_its_clean_ups_says_so_and_exits_143(tmp_path):
    """Before: SIGTERM ended a command where it stood, with no word and no ``finally`` run (a half-written run
    folder stayed, a rollout engine's worker was not shut down)."""
    marker = tmp_path / "cleaned"
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        import typer
        from mgfrec.cli.common import run

        def work():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            finally:
                open({str(marker)!r}, "w").close()

        try:
            run(work)
        except typer.Exit as stop:  # what the mgfrec app turns into its exit code
            sys.exit(stop.exit_code)
        """
    )
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    assert "stopped by SIGTERM" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert marker.exists()

"""When one process of a multi-process fit fails, the others stop with one line each, never a hang.

The failing process prints its own error. The others learnt of it as a collective's error: gloo's "Connection
closed by peer", a ~125-line traceback that looked like a bug of mgfrec. :func:`peer_failure` recognises it
and :class:`PeerFailed` is the one line that replaces it. A process that failed before the processes first met
(loading its policy, starting its engine) left the first process waiting in Lightning's rendezvous for good:
:class:`ChildWatch` watches the processes Lightning's launcher started and ends the first one when one of them
fails.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

GRACE_S = 3.0  # after another process failed: how long the first may take to begin stopping on its own


class PeerFailed(RuntimeError):
    """Another process of this fit failed; ``exit_code`` is its code where this process knows it, else 1."""

    def __init__(self, rank: int, exit_code: int | None = None, who: int | None = None) -> None:
        self.exit_code = exit_code if exit_code else 1
        other = f"process {who}" if who is not None else "another process"
        code = f" with exit code {exit_code}" if exit_code else ""
        super().__init__(f"process {rank}: {other} of this fit failed{code} (its error is above); this one stops too")


def peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is how a collective reports that another process is gone: a ``RuntimeError`` raised from
    inside ``torch.distributed`` (gloo: "Connection closed by peer"; NCCL: a timeout or an abort)."""
    if not isinstance(exc, RuntimeError) or isinstance(exc, PeerFailed):
        return False
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and "/torch/distributed/" in last.tb_frame.f_code.co_filename.replace("\\", "/")


def failed_child(launcher: Any, wait_s: float = 0.0) -> tuple[int, int] | None:
    """``(process number, exit code)`` of the first process that ``launcher`` (Lightning's subprocess launcher, in
    the first process) started and that exited with an error, waiting up to ``wait_s`` for one; None if none."""
    procs = list(getattr(launcher, "procs", None) or [])
    deadline = time.monotonic() + wait_s
    while True:
        for number, proc in enumerate(procs, start=1):
            code = proc.poll()
            if code not in (None, 0):
                return number, code if code > 0 else 128 - code  # killed by a signal: 128 + its number
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def as_peer_failure(
    exc: BaseException, rank: int, size: int, launcher: Any, watch: ChildWatch | None
) -> PeerFailed | None:
    """The one line that replaces ``exc`` in process ``rank`` of ``size`` when it is another process's failure
    (None when it is not: a bug of this process keeps its traceback). The first process under Lightning's launcher
    names the failed process and its exit code, and leaves the report to ``watch`` when it reports already."""
    if size == 1 or not peer_failure(exc):
        return None
    if watch is not None and not watch.claim():
        time.sleep(2 * GRACE_S)  # the watch reports it and ends this process
    failed = failed_child(launcher, wait_s=2 * GRACE_S)  # its exit code, where this process started it
    who, code = failed if failed else (None, None)
    return PeerFailed(rank, code, who)


class ChildWatch:
    """In the first process of a run under Lightning's launcher: a daemon thread that polls the other processes.
    When one failed and this process has not begun to stop within ``grace_s`` (it waits in a rendezvous or a
    collective that never returns), it prints one line and ends this process with the failed one's exit code.
    Whichever reports first (this thread, or the main thread through :meth:`claim`) reports alone.

    It replaces Lightning's own observer, which ends this process with SIGKILL and says nothing (exit 137 for
    any failure of another process); that one is retired by emptying its list of processes."""

    def __init__(self, launcher: Any, poll_s: float = 0.1, grace_s: float = GRACE_S) -> None:
        self.launcher, self.poll_s, self.grace_s = launcher, poll_s, grace_s
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._claimed = False
        self._thread = threading.Thread(target=self._run, name="mgfrec-child-watch", daemon=True)

    def start(self) -> ChildWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def claim(self) -> bool:
        """The caller reports the failure: True unless this thread reports it already (and ends the process)."""
        with self._lock:
            first, self._claimed = not self._claimed, True
            return first

    def _retire_lightnings_observer(self) -> None:
        for thread in threading.enumerate():
            if thread.name == "child-process-observer" and hasattr(thread, "_child_processes"):
                thread._child_processes = []  # type: ignore[attr-defined]  # its next check finds all done

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_s):
            self._retire_lightnings_observer()  # it starts with the other processes, after this thread
            failed = failed_child(self.launcher)
            if failed is None:
                continue
            if self._stopped.wait(self.grace_s) or not self.claim():
                return
            number, code = failed
            text = f"error: {PeerFailed(0, code, number)}\n"
            os.write(2, text.encode())
            for proc in getattr(self.launcher, "procs", None) or []:
                if proc.poll() is None:
                    proc.kill()
            os._exit(code)

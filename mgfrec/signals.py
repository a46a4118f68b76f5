"""Stopping a command on a signal: SIGTERM (``kill``, ``timeout``, ``docker stop``, systemd, a scheduler's
preemption) stops a command as Ctrl-C does, rather than ending the process where it stands.

Python's default SIGTERM ends the process at once: no ``finally`` block runs, so a half-written folder is not
removed or put back, a rollout engine's worker is not shut down, and nothing says why the command ended.
:func:`sigterm_stops` makes SIGTERM raise :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread for
a command's duration; the CLI reports it as "stopped by SIGTERM", exit 143. Stages that stop gracefully (a
retriever's fit, a GRPO fit: :mod:`mgfrec.rl.stop`) put their own handler in its place while they run and tell
the two signals apart with :func:`stop_exception`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """A command stopped by SIGTERM: reported as such, exit 143 (128 + SIGTERM)."""

    signal_name = "SIGTERM"
    exit_code = 128 + signal.SIGTERM


def stop_exception(signum: int | None) -> KeyboardInterrupt:
    """What a stop by ``signum`` raises (Ctrl-C, or a signal not known: a plain ``KeyboardInterrupt``)."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def stopped_by(signum: int | None) -> str:
    """Who or what a stop by ``signum`` came from, as messages say it: "SIGTERM", else "the user"."""
    return "SIGTERM" if signum == signal.SIGTERM else "the user"


def raise_terminated(signum: int, frame: Any) -> None:
    """The SIGTERM handler :func:`sigterm_stops` installs."""
    raise Terminated


def stops_at_once(handler: Any) -> bool:
    """Whether ``handler`` (a SIGTERM handler found in place) is one that just ends the command: the default,
    or :func:`raise_terminated`. A handler of the caller's own is neither, and is called on."""
    return handler in (signal.SIG_DFL, None, raise_terminated)


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` inside the block (main thread only). A handler already in place (a
    caller's own, or SIGTERM ignored by the parent process) is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class FirstSignalStop:
    """A training loop's first Ctrl-C or SIGTERM, recorded (``signal``) instead of stopping the process: the loop
    stops at its next batch boundary and finishes from its best checkpoint. The handlers in place before
    :meth:`install_signals` are put back at the first signal, so a second one acts as usual (Ctrl-C twice: stop at
    once, without saving). Installed only from the main thread (a signal handler cannot be set elsewhere)."""

    def __init__(self) -> None:
        self.signal: int | None = None  # the first signal received, SIGINT or SIGTERM
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        import sys

        self.signal = signum
        sys.stderr.write(
            f"\n{signal.Signals(signum).name}: stopping after this batch; the fit ends from its best checkpoint "
            "(send it again to abort without saving)\n"
        )
        self.restore_signals()

    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

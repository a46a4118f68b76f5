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

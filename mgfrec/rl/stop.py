"""Stopping a GRPO fit on a signal: Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, ``docker stop``,
systemd, a scheduler's preemption, torchrun passing on its own signal).

* One process, Ctrl-C: the fit stops at once (``KeyboardInterrupt``), keeping the last checkpoint.
* Otherwise (SIGTERM, or Ctrl-C with several processes) the handler only records the signal. At the next
  training step's start the processes agree on it (one ``all_max``: a signal sent to one process stops them
  all), the step just done is checkpointed if it was not yet, and every process raises the stop together.
  Nothing runs a collective inside a signal handler: Lightning's own SIGTERM handler broadcasts there, and a
  process caught inside a checkpoint's barrier then waited for the other forever.
* The same signal a second time (a second or more later) stops at once, without the checkpoint.

A SIGTERM stop is :class:`Terminated`, a ``KeyboardInterrupt`` that the CLI reports as "stopped by SIGTERM",
exit 143. Handlers are installed in the main thread only, and only over the defaults: a handler of the
caller's own is left in place.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import lightning as L

from mgfrec.rl.distributed import all_max, world

REPEAT_S = 1.0  # the same signal again within this: one stop sent twice (a launcher relaying it), not a second


class Terminated(KeyboardInterrupt):
    """A fit stopped by SIGTERM: reported as such, exit 143 (128 + SIGTERM)."""

    signal_name = "SIGTERM"
    exit_code = 128 + signal.SIGTERM


def stop_exception(signum: int) -> KeyboardInterrupt:
    """What a stop by ``signum`` raises."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class StopOnSignal(L.Callback):
    """Installs the handlers at ``on_train_start`` (after Lightning registered its own, which this replaces
    for SIGTERM) and checks for a stop at every step boundary. ``checkpoint`` (a
    :class:`~mgfrec.rl.fit.LastCheckpoint`) saves the last step before a deferred stop; ``own_sigterm``: no
    SIGTERM handler was set before the trainer's (the caller's own is kept)."""

    def __init__(self, checkpoint: Any = None, own_sigterm: bool = True) -> None:
        self.checkpoint, self.own_sigterm = checkpoint, own_sigterm
        self.requested: int | None = None  # the signal that asked for a stop
        self.announced = False
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}
        self._rank, self._size = 0, 1

    # --- the handlers -------------------------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        """One process, Ctrl-C: at once. Recorded too: a ``KeyboardInterrupt`` that Python dropped (raised inside
        a finaliser or a callback from C code, printed as "Exception ignored") is raised again at the next step
        boundary; without that, a fit in CI ran on to its end with exit 0."""
        self.requested = signum
        raise KeyboardInterrupt

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Deferred: record the signal; the next step boundary stops. The same signal again: at once."""
        now = time.monotonic()
        if self.requested is None:
            self.requested, self._first_at = signum, now
            if self._rank == 0:
                self._announce(signum)
            return
        # torchrun passes a terminal's Ctrl-C on to its workers, which got it from the terminal too, and a SIGINT
        # or SIGTERM of its own: the same stop, not a second press
        if signum != self.requested or now - self._first_at < REPEAT_S:
            return
        previous = self._previous.pop(signum, signal.SIG_DFL)
        signal.signal(signum, previous)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)  # the default action: the process ends now

    def _announce(self, signum: int) -> None:
        self.announced = True
        name = signal.Signals(signum).name
        text = f"\n{name}: the fit stops after this step and keeps its checkpoint (send {name} again to stop at once)\n"
        os.write(2, text.encode())  # not sys.stderr: a buffered write may be under way where the signal came in

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._rank, self._size = world()
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            handler = self._on_sigint if self._size == 1 else self._on_signal
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
        if self.own_sigterm:
            signal.signal(signal.SIGTERM, self._on_signal)
            self._previous[signal.SIGTERM] = signal.SIG_DFL

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.install()

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if self._size > 1:  # every process takes part, every step: a signal to any one stops them all
            agreed = int(all_max([float(self.requested or 0)])[0])
            self.requested = agreed or None
        if self.requested is None:
            return
        signum = self.requested
        deferred = signum != signal.SIGINT or self._size > 1  # else a dropped Ctrl-C: stop as it would have
        if deferred and self._rank == 0 and not self.announced:
            self._announce(signum)
        if deferred and self.checkpoint is not None and module is not None:
            self.checkpoint.save_unless_saved(trainer, module.batches_done)
        raise stop_exception(signum)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        """One process, Ctrl-C: a ``KeyboardInterrupt`` that was dropped is raised here, before the step is
        checkpointed (as a Ctrl-C that was not dropped would have stopped it)."""
        if self._size == 1 and self.requested == signal.SIGINT:
            raise KeyboardInterrupt

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.restore()

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.restore()

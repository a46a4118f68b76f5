"""Stopping a GRPO fit on a signal: Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, ``docker stop``,
systemd, a scheduler's preemption, torchrun passing on its own signal).

* One process, Ctrl-C: the fit stops at once (``KeyboardInterrupt``), keeping the last checkpoint.
* Otherwise (SIGTERM, or Ctrl-C with several processes) the handler only records the signal. At the next
  training step's start the processes agree on it (one ``all_max``: a signal sent to one process stops them
  all), the step just done is checkpointed if it was not yet, and every process raises the stop together.
  Nothing runs a collective inside a signal handler: Lightning's own SIGTERM handler broadcasts there, and a
  process caught inside a checkpoint's barrier then waited for the other forever.
* The same signal a second time (a second or more later) stops at once, without the checkpoint.

A SIGTERM stop is :class:`~mgfrec.signals.Terminated`, a ``KeyboardInterrupt`` that the CLI reports as "stopped
by SIGTERM", exit 143. Handlers are installed in the main thread only. A SIGINT handler of the caller's own is
left in place; a SIGTERM handler of the caller's is called after the stop is recorded (the CLI's own, which only
stops the command at once, is not: it is put back after the fit); an ignored SIGTERM stays ignored.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import lightning as L

from mgfrec.rl.distributed import all_max, world
from mgfrec.signals import Terminated, stop_exception, stops_at_once

__all__ = ["REPEAT_S", "StopOnSignal", "Terminated", "stop_exception"]

REPEAT_S = 1.0  # the same signal again within this: one stop sent twice (a launcher relaying it), not a second


class StopOnSignal(L.Callback):
    """Installs the handlers at ``setup`` and again at ``on_train_start`` (Lightning registers its own between
    the two; this replaces it for SIGTERM) and checks for a stop at every step boundary. They stay until
    :meth:`restore` (after ``fit``), so a signal during the final checkpoint's save is recorded rather than ending
    the process half-way (the run then finishes). ``checkpoint`` (a
    :class:`~mgfrec.rl.callbacks.LastCheckpoint`) saves the last step before a deferred stop. ``sigterm_before``:
    the SIGTERM handler before the trainer's; a caller's own is called after the stop is recorded (as Lightning
    called it), and an ignored SIGTERM stays ignored."""

    def __init__(self, checkpoint: Any = None, sigterm_before: Any = signal.SIG_DFL) -> None:
        self.checkpoint, self.sigterm_before = checkpoint, sigterm_before
        self.requested: int | None = None  # the signal that asked for a stop
        self.announced = False
        self._module: Any = None  # the fit's module (setup): a stop before its first step keeps no checkpoint
        self._began = False  # a step has begun: the stop comes after it, which is checkpointed
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
            if signum == signal.SIGTERM and callable(self.sigterm_before) and not stops_at_once(self.sigterm_before):
                self.sigterm_before(signum, frame)  # the caller's own handler, as Lightning called it
            return
        # torchrun passes a terminal's Ctrl-C on to its workers, which got it from the terminal too, and a SIGINT
        # or SIGTERM of its own: the same stop, not a second press
        if signum != self.requested or now - self._first_at < REPEAT_S:
            return
        previous = self._previous.pop(signum, signal.SIG_DFL)
        signal.signal(signum, previous)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)  # the handler of before: the process ends, or the command stops, now

    def _announce(self, signum: int) -> None:
        self.announced = True
        name = signal.Signals(signum).name
        if self._began or self._module is None or getattr(self._module, "batches_done", 1) > 0:  # (or resumed)
            text = f"\n{name}: the fit stops after this step and keeps its checkpoint (send {name} again to stop"
            text += " at once)\n"
        else:  # before the first step (the engine starting, the step-0 validation): no checkpoint was promised (s39)
            text = (
                f"\n{name}: the fit stops before its first step, with nothing to checkpoint (run it again without "
                f"--resume; send {name} again to stop at once)\n"
            )
        os.write(2, text.encode())  # not sys.stderr: a buffered write may be under way where the signal came in

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._rank, self._size = world()
        sigint = self._on_sigint if self._size == 1 else self._on_signal
        if signal.SIGINT in self._previous or signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous.setdefault(signal.SIGINT, signal.getsignal(signal.SIGINT))
            signal.signal(signal.SIGINT, sigint)
        if self.sigterm_before is not signal.SIG_IGN:
            self._previous.setdefault(signal.SIGTERM, self.sigterm_before or signal.SIG_DFL)
            signal.signal(signal.SIGTERM, self._on_signal)

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self._module = module
        self.install()  # a signal while the engine starts waits for the first step too

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Lightning registers its SIGTERM handler after ``setup`` (calling this one's from it): this one alone,
        again, and a SIGTERM Lightning recorded meanwhile is this one's to act on (Lightning would stop after the
        step, unsaved, as if it were Ctrl-C)."""
        self.install()
        connector = getattr(trainer, "_signal_connector", None)
        if getattr(connector, "received_sigterm", False):
            connector.received_sigterm = False
            self.requested = self.requested or signal.SIGTERM

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if self._size > 1:  # every process takes part, every step: a signal to any one stops them all
            agreed = int(all_max([float(self.requested or 0)])[0])
            self.requested = agreed or None
        if self.requested is None:
            self._began = True
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

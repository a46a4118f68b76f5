"""``rl.stop.StopOnSignal``: how a GRPO fit stops on Ctrl-C and SIGTERM.

One process, Ctrl-C: at once, and a ``KeyboardInterrupt`` that Python dropped (raised inside a finaliser,
printed as "Exception ignored") is raised again at the next step boundary (the fit ran on to its end with exit
0). SIGTERM, or Ctrl-C with several processes: recorded by the handler, agreed on and raised at the next step's
start, after the step just done is checkpointed (Lightning's handler ran a collective inside the signal handler
and deadlocked two processes)."""

from __future__ import annotations

import signal

import pytest

from mgfrec.rl import stop as stop_module
from mgfrec.rl.stop import REPEAT_S, StopOnSignal, Terminated

pytestmark = pytest.mark.reliability


class Module:
    batches_done = 3


class Checkpoint:
    def __init__(self) -> None:
        self.saved: list[int] = []

    def save_unless_saved(self, trainer, steps: int) -> None:
        self.saved.append(steps)


@pytest.fixture
def handlers():
    """Python's default handlers for the test, and whatever was there put back after it."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


def test_a_dropped_ctrl_c_is_raised_again_at_the_next_step(handlers):
    stop = StopOnSignal()
    stop.on_train_batch_start(None, None, None, 0)  # nothing asked: nothing raised
    stop.setup(None, None, "fit")
    assert signal.getsignal(signal.SIGINT) == stop._on_sigint
    try:  # where Python drops it: a finaliser, a callback from C code
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass
    assert stop.requested == signal.SIGINT
    with pytest.raises(KeyboardInterrupt) as raised:
        stop.on_train_batch_end(None, None, None, None, 0)
    assert not isinstance(raised.value, Terminated)


def test_sigterm_waits_for_the_step_boundary_saves_the_step_and_raises_terminated(handlers, capfd):
    checkpoint = Checkpoint()
    stop = StopOnSignal(checkpoint)
    stop.setup(None, None, "fit")
    signal.raise_signal(signal.SIGTERM)  # nothing raised in the middle of a step
    assert stop.requested == signal.SIGTERM and checkpoint.saved == []
    assert "SIGTERM: the fit stops after this step and keeps its checkpoint" in capfd.readouterr().err
    with pytest.raises(Terminated) as raised:
        stop.on_train_batch_start(None, Module(), None, 0)
    assert checkpoint.saved == [3]
    assert raised.value.exit_code == 143 and raised.value.signal_name == "SIGTERM"
    assert isinstance(raised.value, KeyboardInterrupt)  # Lightning's graceful shutdown, as for Ctrl-C
    stop.restore()  # run_fit does, after fit
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_with_several_processes_ctrl_c_waits_and_a_second_press_stops_at_once(handlers, monkeypatch):
    monkeypatch.setattr(stop_module, "world", lambda: (0, 2))
    agreed: list[float] = []
    monkeypatch.setattr(stop_module, "all_max", lambda values: agreed.append(values[0]) or [max(values[0], 0.0)])
    checkpoint = Checkpoint()
    stop = StopOnSignal(checkpoint)
    stop.setup(None, None, "fit")
    stop.on_train_batch_start(None, Module(), None, 0)  # every step asks the others, even with nothing to say
    assert agreed == [0.0]
    signal.raise_signal(signal.SIGINT)  # recorded, not raised
    signal.raise_signal(signal.SIGINT)  # a launcher passing the same Ctrl-C on: the same stop
    signal.raise_signal(signal.SIGTERM)  # torchrun's SIGTERM after the terminal's SIGINT: the same stop
    assert stop.requested == signal.SIGINT
    stop._first_at -= REPEAT_S  # a second press, later: at once
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as raised:
        stop.on_train_batch_start(None, Module(), None, 0)
    assert not isinstance(raised.value, Terminated) and checkpoint.saved == [3] and agreed[-1] == signal.SIGINT


def test_a_signal_to_another_process_stops_this_one_too(handlers, monkeypatch):
    monkeypatch.setattr(stop_module, "world", lambda: (1, 2))
    monkeypatch.setattr(stop_module, "all_max", lambda values: [float(signal.SIGTERM)])  # rank 0 got SIGTERM
    stop = StopOnSignal(Checkpoint())
    stop.setup(None, None, "fit")
    with pytest.raises(Terminated):
        stop.on_train_batch_start(None, Module(), None, 0)


def test_a_callers_sigint_handler_is_left_in_place_and_its_sigterm_handler_called(handlers):
    """A caller's SIGTERM handler kept Lightning's in place (its broadcast inside the handler included), and the
    stop was reported as Ctrl-C without a checkpoint; now the stop is recorded and the caller's handler called."""
    calls: list[int] = []

    def mine(signum, frame):
        calls.append(signum)

    signal.signal(signal.SIGINT, mine)
    signal.signal(signal.SIGTERM, mine)
    stop = StopOnSignal(Checkpoint(), sigterm_before=mine)
    stop.setup(None, None, "fit")
    assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) == stop._on_signal
    signal.raise_signal(signal.SIGTERM)
    assert calls == [signal.SIGTERM] and stop.requested == signal.SIGTERM
    with pytest.raises(Terminated):
        stop.on_train_batch_start(None, Module(), None, 0)
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) is mine


def test_an_ignored_sigterm_stays_ignored(handlers):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    StopOnSignal(sigterm_before=signal.SIG_IGN).setup(None, None, "fit")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_a_sigterm_lightning_recorded_before_training_is_this_ones_and_its_handler_replaced(handlers):
    """Lightning registers its SIGTERM handler after ``setup``: a SIGTERM in between stopped the fit one step
    later, unsaved, reported as Ctrl-C (exit 130)."""

    class Connector:
        received_sigterm = True

    class Trainer:
        _signal_connector = Connector()

    stop = StopOnSignal(Checkpoint())
    stop.setup(None, None, "fit")
    signal.signal(signal.SIGTERM, lambda *a: None)  # Lightning's, registered after setup
    stop.on_train_start(Trainer(), None)
    assert signal.getsignal(signal.SIGTERM) == stop._on_signal and stop.requested == signal.SIGTERM
    assert Trainer._signal_connector.received_sigterm is False  # Lightning will not stop it on its own
    with pytest.raises(Terminated):
        stop.on_train_batch_start(None, Module(), None, 0)
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # what was there before the trainer's


def test_a_stop_before_the_first_step_promises_no_checkpoint(handlers, capfd):
    """A SIGTERM while the engine started (before step 1) said the fit "keeps its checkpoint"; none was written,
    and --resume was then refused (review s39)."""

    class Fresh:
        batches_done = 0

    stop = StopOnSignal(Checkpoint())
    stop.setup(None, Fresh(), "fit")
    signal.raise_signal(signal.SIGTERM)
    said = capfd.readouterr().err
    assert "SIGTERM: the fit stops before its first step, with nothing to checkpoint" in said, said
    stop.restore()
    during = StopOnSignal(Checkpoint())  # during the first step: that step is checkpointed
    during.setup(None, Fresh(), "fit")
    during.on_train_batch_start(None, Fresh(), None, 0)
    signal.raise_signal(signal.SIGTERM)
    assert "the fit stops after this step and keeps its checkpoint" in capfd.readouterr().err
    during.restore()

"""``rl.fit.CtrlC``: a Ctrl-C whose KeyboardInterrupt Python dropped (raised inside a finaliser, printed as
"Exception ignored") still stops the fit at the next step boundary; the fit ran on to its end with exit 0."""

from __future__ import annotations

import signal

import pytest

from mgfrec.rl.fit import CtrlC

pytestmark = pytest.mark.reliability


def test_a_dropped_ctrl_c_is_raised_again_at_the_next_step():
    stop = CtrlC()
    stop.on_train_batch_start(None, None, None, 0)  # nothing asked: nothing raised
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stop.on_train_start(None, None)
        assert signal.getsignal(signal.SIGINT) == stop._on_sigint
        try:  # where Python drops it: a finaliser, a callback from C code
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGINT, before)
    assert stop.requested
    with pytest.raises(KeyboardInterrupt):
        stop.on_train_batch_end(None, None, None, None, 0)


def test_a_handler_of_the_users_is_left_in_place():
    def mine(signum, frame):
        return None

    before = signal.signal(signal.SIGINT, mine)
    try:
        CtrlC().on_train_start(None, None)
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)

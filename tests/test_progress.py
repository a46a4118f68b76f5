"""mgfrec.progress: nothing outside ``reporting``; plain lines with an estimate in a log; a bar on a
terminal that keeps the stage's label."""

from __future__ import annotations

import io

import pytest

from mgfrec import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_unless_reporting(capsys):
    with progress.task("sasrec") as task:
        task.update(0.5, "epoch 1/2")
    assert capsys.readouterr() == ("", "")


def test_plain_lines_say_what_is_done_and_what_is_left():
    stream = io.StringIO()
    with progress.reporting(stream, interval=0.0), progress.task("sasrec") as task:
        task.update(0.5, "epoch 1/2, step 10")
        task.update(None, "waiting")
    first, second = stream.getvalue().splitlines()
    assert first.startswith("[sasrec] epoch 1/2, step 10, 50%, ") and first.endswith(" left")
    assert second.startswith("[sasrec] waiting, ") and "left" not in second  # no fraction, no estimate


def test_a_resumed_task_estimates_what_is_left_from_its_own_work(monkeypatch):
    """A fit resumed at step 10 of 14 said "~12 s left" at 31 s with two minutes to go: the estimate divided this
    session's time by all the steps done, those of before the resume too (review s36)."""
    clock = iter([100.0, 130.0])  # the task starts at 100 s; the line is made 30 s later
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock, 130.0))
    with progress.task("grpo") as task:
        task.resumed_at(10 / 14)
        line = task.line(11 / 14, "step 11/14")
    assert "step 11/14, 79%, 30 s elapsed, ~1 min 30 s left" in line, line  # 1 step in 30 s, 3 to go
    clock = iter([100.0, 130.0])
    with progress.task("grpo") as task:  # not resumed: the same step over all the time
        assert "~8 s left" in task.line(11 / 14, "step 11/14")


def test_plain_lines_are_spaced_by_the_interval():
    stream = io.StringIO()
    with progress.reporting(stream, interval=3600.0), progress.task("sft") as task:
        for step in range(100):
            task.update(step / 100, f"step {step}")
    assert stream.getvalue() == ""  # nothing before the first interval has passed


def test_a_terminal_gets_a_bar_with_the_label():
    stream = Terminal()
    with progress.reporting(stream), progress.task("sasrec") as task:
        task.update(0.5, "epoch 1/2 [x]")
    assert "[sasrec]" in stream.getvalue() and "epoch 1/2 [x]" in stream.getvalue()


def test_format_seconds():
    assert [progress.format_seconds(s) for s in (4.2, 65, 3725)] == [
        "4 s",
        "1 min 05 s",
        "1 h 02 min",
    ]


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "inf"])
def test_a_bad_interval_variable_is_named(monkeypatch, value):
    # "could not convert string to float: 'abc'" named no variable; nan silenced every progress line
    monkeypatch.setenv("MGFREC_PROGRESS_SECONDS", value)
    with pytest.raises(ValueError, match=rf"MGFREC_PROGRESS_SECONDS='{value}': give a number of seconds"):
        with progress.reporting(io.StringIO()):
            pass
    monkeypatch.setenv("MGFREC_PROGRESS_SECONDS", "0.5")
    with progress.reporting(io.StringIO()):
        pass


def test_an_empty_interval_variable_is_the_default(monkeypatch):
    """``MGFREC_PROGRESS_SECONDS=`` (a script's ``${X:-}``) failed every command that shows progress (review s31)."""
    monkeypatch.setenv("MGFREC_PROGRESS_SECONDS", "")
    assert progress._interval_from_environment() == progress.DEFAULT_SECONDS

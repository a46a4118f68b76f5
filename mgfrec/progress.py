"""Live progress of long stages: a rich bar on a terminal, a plain line every few seconds otherwise.

Library code opens a :func:`task` and updates it; nothing is shown unless a caller turned reporting on
with :func:`reporting` (the CLI does, for every command), so library users and tests see no output they
did not ask for. When stderr is a terminal the task is a rich progress bar; when it is a file or a pipe
(a log, CI, ``mgfrec demo > demo.log 2>&1``) it is one plain line every ``MGFREC_PROGRESS_SECONDS``
seconds (default 5) saying what is done, the time spent and an estimate of the time left.

This module must not import anything of mgfrec: every package may use it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TextIO

DEFAULT_SECONDS = 5.0


@dataclass(frozen=True)
class _Settings:
    stream: TextIO | None  # None: sys.stderr at the time of writing
    interval: float
    force_plain: bool


_SETTINGS: ContextVar[_Settings | None] = ContextVar("mgfrec_progress", default=None)


def _interval_from_environment() -> float:
    """``MGFREC_PROGRESS_SECONDS`` (default 5): a finite number of seconds, at least 0; set but empty is unset (a
    script's ``VAR=${X:-}`` failed every command that shows progress; review s31)."""
    text = os.environ.get("MGFREC_PROGRESS_SECONDS")
    if text is None or not text.strip():
        return float(DEFAULT_SECONDS)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"MGFREC_PROGRESS_SECONDS={text!r}: give a number of seconds, 0 or more (default 5)")
    return value


@contextmanager
def reporting(stream: TextIO | None = None, *, interval: float | None = None, plain: bool = False) -> Iterator[None]:
    """Show the progress of every :func:`task` opened inside this block (on ``stream``, default stderr).

    ``interval``: seconds between plain lines (default ``MGFREC_PROGRESS_SECONDS`` or 5); ``plain``: plain
    lines even on a terminal."""
    if interval is None:
        interval = _interval_from_environment()
    token = _SETTINGS.set(_Settings(stream, interval, plain))
    try:
        yield
    finally:
        _SETTINGS.reset(token)


def enabled() -> bool:
    return _SETTINGS.get() is not None


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Task:
    """One stage's progress. ``update(fraction, text)``: ``fraction`` of the stage's work is done (0..1,
    None when unknown), ``text`` says what, e.g. ``"epoch 3/20, step 120"``."""

    def __init__(self, label: str, settings: _Settings | None):
        self.label = label
        self._settings = settings
        self._start = time.perf_counter()
        self._last_line = self._start
        self._bar = None
        self._bar_task = None
        self._last: tuple[float | None, str] = (None, "")
        self._base = 0.0  # the fraction done before this task started (a resumed run's earlier steps)
        if settings is None:
            return
        stream = settings.stream or sys.stderr
        if not settings.force_plain and getattr(stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn(f"[{label}]", markup=False),
                BarColumn(bar_width=20),
                TextColumn("{task.fields[text]}", markup=False),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=True,
            )
            self._bar.__enter__()
            self._bar_task = self._bar.add_task(label, total=1.0, text="")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def resumed_at(self, fraction: float) -> None:
        """``fraction`` of the work was done before this task started (a resumed fit's earlier steps): the time left
        is estimated from the work done since. It came from all of it over this session's time: a fit resumed at
        71% said "~12 s left" with two minutes to go (review s36)."""
        self._base = min(max(fraction, 0.0), 1.0)
        if self._bar is not None:  # rich's own estimate: its speed samples start here, at the fraction resumed
            self._bar.reset(self._bar_task, completed=self._base)

    def line(self, fraction: float | None, text: str) -> str:
        """The plain line for this state of the task."""
        parts = [f"[{self.label}]"]
        if text:
            parts.append(text)
        if fraction is not None:
            parts.append(f"{min(max(fraction, 0.0), 1.0):.0%}")
        parts.append(f"{format_seconds(self.elapsed)} elapsed")
        done = None if fraction is None else min(fraction, 1.0) - self._base  # in this task's own time
        if done is not None and done > 0.02 * (1 - self._base):
            parts.append(f"~{format_seconds(self.elapsed * (1 - min(fraction, 1.0)) / done)} left")
        return " ".join(parts[:1]) + " " + ", ".join(parts[1:])

    def update(self, fraction: float | None, text: str = "") -> None:
        self._last = (fraction, text)
        if self._settings is None:
            return
        if self._bar is not None:
            self._bar.update(self._bar_task, completed=fraction or 0.0, text=text)
            return
        now = time.perf_counter()
        if now - self._last_line >= self._settings.interval:
            self._last_line = now
            stream = self._settings.stream or sys.stderr
            stream.write(self.line(fraction, text) + "\n")
            stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@contextmanager
def task(label: str) -> Iterator[Task]:
    """A :class:`Task` shown only inside :func:`reporting`; closed (its bar removed) on leaving."""
    current = Task(label, _SETTINGS.get())
    try:
        yield current
    finally:
        current.close()

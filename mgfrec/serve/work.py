"""The server's work behind the HTTP layer: a bounded queue that batches requests, and conversations.

:class:`Batcher` runs automatic requests (simulated feedback or none) in one worker thread: everything that
arrived while the previous batch ran, up to ``max_batch`` requests that share feedback mode and sampling,
goes to **one** :meth:`Recommender.recommend_many <mgfrec.recommend.Recommender.recommend_many>` call, so the
agent loop makes one engine call per turn for all of them. The queue is bounded: a full queue refuses
(:class:`Busy`) instead of growing.

A :class:`Conversation` is one streamed recommendation: its events (turns, observations, a request for
feedback, the result) go to an ``emit`` callback. With ``feedback="human"`` it runs in its own thread with a
``human`` user agent, so a person can take minutes to type without holding the engine (the engine is locked
per call, not per conversation); otherwise it rides the batcher like any request.

This module knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from mgfrec.config.schema import UserAgentConfig
from mgfrec.recommend import Recommender
from mgfrec.recommendation import Query, Recommendation
from mgfrec.text.terminal import terminal_safe
from mgfrec.user_agents.base import FeedbackRequest, UserAgentContext, UserAgentError, load_user_agent

Emit = Callable[[dict[str, Any]], None]


class Busy(RuntimeError):
    """The queue is full, or too many conversations are open."""


@dataclass(frozen=True)
class Mode:
    """What a batch must share: the feedback mode and the sampling settings."""

    feedback: str = "simulated"  # "simulated" (the run's user agent) or "none"
    sample: bool = False
    seed: int = 0


@dataclass
class Job:
    query: Query
    mode: Mode
    listener: Emit | None = None
    future: Future = field(default_factory=Future)
    counted: bool = True  # still counted against the queue bound (not yet in a batch, not given up on)


class Batcher:
    """A bounded queue and one worker thread that answers requests in batches; see the module docstring."""

    def __init__(self, recommender: Recommender, *, max_batch: int = 8, queue_size: int = 64):
        if max_batch < 1 or queue_size < 1:
            raise ValueError(f"max_batch and queue_size must be >= 1, got {max_batch} and {queue_size}")
        self.recommender = recommender
        self.max_batch = max_batch
        self._capacity = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._held: list[Job] = []  # taken from the queue but of another mode than the batch being built
        # requests submitted and not yet in a running batch, wherever they wait (the queue or _held): the bound
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0, "failed": 0}
        self._thread = threading.Thread(target=self._loop, name="mgfrec-batcher", daemon=True)
        self._thread.start()

    @property
    def capacity(self) -> int:
        return self._capacity

    def queued(self) -> int:
        """Requests waiting for a batch (never more than :attr:`capacity`)."""
        with self._waiting_lock:
            return self._waiting

    def submit(self, query: Query, mode: Mode, listener: Emit | None = None) -> Future:
        """Queue one request; its future gets a :class:`Recommendation`. Raises :class:`Busy` when
        :attr:`capacity` requests already wait (those the worker has taken aside for a later batch included)."""
        job = Job(query, mode, listener)
        with self._waiting_lock:
            if self._waiting >= self._capacity:
                raise Busy(f"the request queue is full ({self.capacity} waiting); try again shortly")
            self._waiting += 1
        # a request its client gave up on (a timeout, a closed connection) leaves the bound at once, not when the
        # worker reaches it: dead requests must not fill the queue and turn live ones away
        job.future.add_done_callback(lambda f: self._uncount(job) if f.cancelled() else None)
        self._queue.put_nowait(job)
        return job.future

    def _uncount(self, *jobs: Job) -> None:
        with self._waiting_lock:
            for job in jobs:
                if job.counted:
                    job.counted = False
                    self._waiting -= 1

    def close(self) -> None:
        """Stop the worker after the batch it is running; queued requests fail."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            if not self._held:
                job = self._queue.get()
                if job is None:
                    break
                self._held.append(job)
            stop = False
            while True:  # everything that arrived meanwhile
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                self._held.append(job)
            mode = self._held[0].mode
            batch = [j for j in self._held if j.mode == mode][: self.max_batch]
            self._held = [j for j in self._held if j not in batch]
            self._uncount(*batch)
            self._run(batch)
            if stop:
                break
        while True:  # what still waits, taken aside or queued behind the stop, is answered too
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._held.append(job)
        for job in self._held:
            if job.future.set_running_or_notify_cancel():  # False: the client already gave up on it
                job.future.set_exception(Busy("the server is stopping"))

    def _run(self, batch: list[Job]) -> None:
        jobs = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        with self._stats_lock:
            self.stats["batches"] += 1
            self.stats["requests"] += len(jobs)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        listeners = [j.listener for j in jobs]
        heard = [False] * len(jobs)  # whether job n's stream has already received an event of this attempt

        def route(n: int, event: dict[str, Any]) -> None:
            if listeners[n] is not None:
                heard[n] = True
                listeners[n](event)

        mode = jobs[0].mode
        try:
            recs = self.recommender.recommend_many(
                [j.query for j in jobs],
                user_agent="run" if mode.feedback == "simulated" else None,
                sample=mode.sample,
                seed=mode.seed,
                listener=route,
            )
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            if len(jobs) > 1 and not _batch_wide(exc):
                # one bad request must not fail the others: answer them one by one, except those whose stream
                # already showed turns of this attempt (a rerun would show them twice): they end here
                for job, streamed in zip(jobs, heard, strict=True):
                    if streamed:
                        self._fail(job, exc)
                    else:
                        self._run_one(job)
                return
            for job in jobs:
                self._fail(job, exc)
            return
        for job, rec in zip(jobs, recs, strict=True):
            job.future.set_result(rec)

    def _fail(self, job: Job, error: BaseException) -> None:
        with self._stats_lock:
            self.stats["failed"] += 1
        job.future.set_exception(error)

    def _run_one(self, job: Job) -> None:
        try:
            rec = self.recommender.recommend_many(
                [job.query],
                user_agent="run" if job.mode.feedback == "simulated" else None,
                sample=job.mode.sample,
                seed=job.mode.seed,
                listener=lambda n, e: job.listener(e) if job.listener is not None else None,
            )[0]
        except Exception as exc:  # noqa: BLE001
            self._fail(job, exc)
        else:
            job.future.set_result(rec)


def _batch_wide(error: BaseException) -> bool:
    """Whether ``error`` is the run's user agent failing for every request of the batch (its server down or
    refusing, after its own retries): answering the requests one by one would only repeat that wait per request."""
    if not isinstance(error, UserAgentError):
        return False
    sent = getattr(error, "sent", None)  # PartialFeedbackError: None where a request its server got failed
    return sent is None or all(a is None for a in sent)


class Conversation:
    """One streamed recommendation; see the module docstring. ``emit`` receives every event, from any thread."""

    def __init__(self, recommender: Recommender, query: Query, mode: Mode, emit: Emit, *, feedback_timeout_s: float):
        self.id = uuid.uuid4().hex
        self.recommender, self.query, self.mode, self.emit = recommender, query, mode, emit
        self.created = time.monotonic()
        self.done = threading.Event()
        self.human: Any = None
        self._future: Future | None = None  # the batcher's job (simulated / none feedback)
        self._cancelled: str | None = None  # why the client cancelled: no event but the end goes out after it
        self._end_lock = threading.Lock()
        self._ended = False  # the stream's last event went out (once: at a cancel, or when the rollout ended)
        if mode.feedback == "human":
            self.human = load_user_agent(
                UserAgentConfig(backend="human", options={"timeout_s": feedback_timeout_s}),
                UserAgentContext(ask=self._ask, fallback=recommender.run_user_agent),
            )

    def start(self, batcher: Batcher) -> None:
        """Run it: in its own thread with a person, else through the batcher."""
        if self.human is None:
            self._future = batcher.submit(self.query, self.mode, self._forward)
            self._future.add_done_callback(self._batch_done)
            return
        threading.Thread(target=self._run_human, name=f"mgfrec-conversation-{self.id[:8]}", daemon=True).start()

    def _run_human(self) -> None:
        if self._cancelled is not None:  # cancelled before its thread ran: no model turn for nobody
            self._finish(None, None)
            return
        try:
            rec = self.recommender.recommend_many(
                [self.query],
                user_agent=self.human,
                sample=self.mode.sample,
                seed=self.mode.seed,
                listener=lambda n, e: self._forward(e),
            )[0]
        except Exception as exc:  # noqa: BLE001 - reported as the conversation's last event
            self._finish(None, exc)
        else:
            self._finish(lambda: rec, None)

    def _forward(self, event: dict[str, Any]) -> None:
        """An event of the rollout (a batch's or a person's), unless the conversation was cancelled."""
        if self._cancelled is None:
            self.emit(event)

    def _batch_done(self, future: Future) -> None:
        if future.cancelled():  # cancelled while it waited in the queue: it never ran
            self._finish(None, None)
            return
        error = future.exception()
        self._finish(future.result if error is None else None, error)

    def _ask(self, request: FeedbackRequest) -> None:
        note = self.human.take_note() if self.human is not None else None  # asked again: the automatic user failed
        if note:  # it names the user agent's server and model: for the server's log, as client_error_text does
            _LOG.error("conversation %s: %s", self.id, terminal_safe(note))
            note = FALLBACK_FAILED
        self._forward(
            {
                "type": "feedback_wanted",
                "title": request.grounded_title,
                "items": list(request.item_titles),
                **({"note": note} if note else {}),
            }
        )

    def _finish(self, result: Callable[[], Recommendation] | None, error: BaseException | None) -> None:
        if self._cancelled is not None:
            self._end({"type": "error", "error": f"the conversation was cancelled ({self._cancelled})"})
        elif error is None and result is not None:
            rec = result()
            self._end({"type": "done", "result": rec.to_dict(self.recommender.ds)})
        else:
            self._end({"type": "error", "error": client_error_text(error)})
        self.done.set()

    def _end(self, event: dict[str, Any]) -> None:
        """The stream's last event, sent once."""
        with self._end_lock:
            if self._ended:
                return
            self._ended = True
        self.emit(event)

    @property
    def cancelled(self) -> bool:
        """Whether the client cancelled it: an event it emitted before that, not yet read, is not sent."""
        return self._cancelled is not None

    @property
    def running_unseen(self) -> bool:
        """Its stream has ended (cancelled) while its batch still runs: it holds its slot until the batch ends."""
        return self._ended and not self.done.is_set()

    def reply(self, text: str | None = None, *, answer_now: bool = False) -> None:
        """The person's feedback (``None``: leave it to the simulated user; ``answer_now``: ask for the answer)."""
        if self.human is None:
            raise ValueError("this conversation has no human user (start it with feedback 'human')")
        if answer_now:
            self.human.answer_now()
        else:
            self.human.reply(text)

    def cancel(self, reason: str = "the conversation was cancelled") -> None:
        """End the conversation: a person waiting to type is released at once; a request still queued is taken
        out of the queue; one already in a running batch finishes that batch unseen (a batch cannot stop for one
        of its rows), its stream ended at once. Either way no event but the end follows, an ``error`` event that
        says it was cancelled."""
        if self._cancelled is None and not self.done.is_set():
            self._cancelled = reason
            if self.human is not None:
                self.human.cancel(reason)  # releases a wait for the person; _finish then ends it as cancelled
            elif self._future is not None and not self._future.cancel() and not self._future.done():
                # in a running batch: its end event went out only when the batch ended, so a stopping server's
                # grace period cut the stream first, with a traceback in the log and no event (review s36)
                self._end({"type": "error", "error": f"the conversation was cancelled ({reason})"})


_LOG = logging.getLogger("mgfrec.serve")
INTERNAL_ERROR = "the recommendation failed on the server; the server's log says why"
FALLBACK_FAILED = "the automatic feedback failed (the server's log says why); type the feedback, or answer now"


def client_error_text(error: BaseException | None) -> str:
    """What a client may read of a failed recommendation: the message of an error about its request (a bad
    value, an unknown user or item) or of a human conversation's end (timeout, cancel); for anything else (a
    remote user agent's HTTP failure names its server, model and key variable) a fixed line, the message going
    to the server's log (logger ``mgfrec.serve``) instead."""
    from mgfrec.user_agents.human import FeedbackCancelled, FeedbackTimeout

    if isinstance(error, (ValueError, KeyError, LookupError, FeedbackTimeout, FeedbackCancelled)):
        return error_text(error)
    _LOG.error("the recommendation failed: %s", terminal_safe(failure_text(error)))  # a server's message is untrusted
    return INTERNAL_ERROR


_API_FIELDS = {"--sample-id ": "sample_id ", "--user ": "user_id ", "--split ": "split "}
"""The library's messages name the command's flags; an HTTP client knows the request's fields."""


def error_text(error: BaseException | None) -> str:
    """One line for an error event or an HTTP error body: the message, never a traceback, naming the request's
    field where the library's message names the command's flag (``--sample-id 3: ...`` is ``sample_id 3: ...``)."""
    if error is None:
        return "unknown error"
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error) or type(error).__name__
    for flag, field_name in _API_FIELDS.items():
        if text.startswith(flag):
            return field_name + text[len(flag) :]
    return text


def failure_text(error: BaseException | None) -> str:
    """:func:`error_text`, or the plugin named whose code raised it (``registry.plugin_failure``), for the server's
    log and ``mgfrec chat``: a plugin's bare message (or its ``TypeError``) does not say which package failed. Keys
    the environment holds and URL credentials are redacted: the log is a file, and a server's reply may echo a key."""
    from mgfrec.config.redaction import scrub_secrets
    from mgfrec.registry import plugin_failure

    return scrub_secrets((plugin_failure(error) if error is not None else None) or error_text(error))

"""The ``human`` user agent: a person types the feedback (the paper's next step, a real user in the loop).

For each grounding, :meth:`HumanUserAgent.feedback` calls the ``ask`` callback of its
:class:`~mgfrec.user_agents.base.UserAgentContext` to show the person the grounded title and the listed items
(the web page of ``mgfrec serve`` gets an event, ``mgfrec chat`` prints a prompt), then waits for one of

* :meth:`~HumanUserAgent.reply` with text: that text is the feedback;
* :meth:`~HumanUserAgent.reply` with ``None`` (or only blanks): the ``fallback`` user agent of the context
  (the run's own, normally ``simulated``) answers this grounding instead; when it fails (a remote server down),
  the person is asked again, with :meth:`~HumanUserAgent.take_note` saying why;
* :meth:`~HumanUserAgent.answer_now`: the feedback asks the agent to give its final answer now
  (:data:`ANSWER_NOW`; the agent is *asked*, the loop is not overruled);
* one reply per grounding: a reply when none is asked for (or a second one) raises ``LookupError``;
* :meth:`~HumanUserAgent.cancel`, or nothing within ``timeout_s``: :class:`FeedbackCancelled` /
  :class:`FeedbackTimeout` is raised, which ends the rollout; nothing is left waiting.

It needs a person, so it can never be chosen where no one answers: it declares ``needs_person = True``, which
:func:`~mgfrec.user_agents.base.require_automatic` refuses for training, SFT and evaluation, and it refuses to
be built without an ``ask`` callback. Requests of one batch are asked one after the other.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.redaction import scrub_secrets
from mgfrec.config.schema import UserAgentConfig
from mgfrec.user_agents.base import FeedbackRequest, UsageStats, UserAgentContext, UserAgentError
from mgfrec.validation import is_blank, not_utf8_at

ANSWER_NOW = "I have seen enough. Please stop searching and give your final answer now."
"""The feedback sent for ``answer_now`` (``/answer`` in the chat, "Answer now" on the page)."""


class FeedbackTimeout(UserAgentError):
    """Nobody replied within ``timeout_s``."""


class FeedbackCancelled(UserAgentError):
    """The conversation was cancelled (the page closed, Ctrl-C, the server stopping)."""


MAX_TIMEOUT_S = 7 * 24 * 3600.0
"""The longest ``--feedback-timeout``: a week (a queue wait beyond the platform's time limit fails at once)."""


class HumanOptions(BaseModel):
    """``user_agent.options`` for ``human``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout_s: float = Field(
        600.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="longest wait for the person's reply to one grounding (--feedback-timeout; at most a week)",
    )
    max_chars: int = Field(2000, ge=1, description="longest feedback accepted; longer text is refused")


_FALLBACK = object()
_ANSWER = object()


class HumanUserAgent:
    """Feedback typed by a person through a callback; see the module docstring."""

    Options = HumanOptions
    needs_person = True

    def __init__(self, cfg: UserAgentConfig | None, options: HumanOptions | None, context: UserAgentContext | None):
        if context is None or context.ask is None:
            raise UserAgentError(
                "user agent 'human' needs a person: it is built by 'mgfrec serve' and 'mgfrec chat' with a callback "
                "that shows each grounding; it cannot be used for training or evaluation"
            )
        self.options = options or HumanOptions()
        self._ask = context.ask
        self._fallback = context.fallback
        self._replies: queue.Queue[Any] = queue.Queue()
        self._cancelled: str | None = None
        self._lock = threading.Lock()
        self._open = False  # a grounding waits for its one reply
        self.note: str | None = None  # why the person is asked again: the fallback failed (see take_note)
        self.waiting: FeedbackRequest | None = None  # the request the person is asked about now, if any
        self.usage = UsageStats()

    # --- the person's side (any thread) ------------------------------------------------------------------

    def reply(self, text: str | None) -> None:
        """The person's feedback on the grounding shown last; ``None`` or blanks leave it to the fallback."""
        if text is not None and len(text) > self.options.max_chars:
            raise ValueError(f"feedback: {len(text)} characters; at most {self.options.max_chars} are accepted")
        if text is not None and (at := not_utf8_at(text)) is not None:  # the tokenizer failed, the talk ended
            raise ValueError(f"feedback: not valid UTF-8 text (character {at})")
        # is_blank: a zero-width space alone reached the agent as feedback, where a history refused it (review s36)
        self._deliver(_FALLBACK if text is None or is_blank(text) else text.strip())

    def answer_now(self) -> None:
        """Ask the agent to give its final answer now (the feedback is :data:`ANSWER_NOW`)."""
        self._deliver(_ANSWER)

    def _deliver(self, item: Any) -> None:
        # One reply per grounding: a second click must not become the answer to the next grounding.
        with self._lock:
            if self._cancelled is not None:  # it said "none was asked, or it was answered" (review s32)
                raise LookupError(f"no grounding is waiting for feedback: the conversation ended ({self._cancelled})")
            if not self._open:
                raise LookupError("no grounding is waiting for feedback now (none was asked, or it was answered)")
            self._open = False
            self._replies.put(item)

    def take_note(self) -> str | None:
        """Why the person is asked about the same grounding again (the fallback user agent failed: its server down),
        once: the ``ask`` callback shows it with the prompt."""
        note, self.note = self.note, None
        return note

    def cancel(self, reason: str = "the conversation was cancelled") -> None:
        """End the conversation: a waiting :meth:`feedback` raises :class:`FeedbackCancelled`, as will later calls."""
        self._cancelled = reason
        self._replies.put(None)

    # --- the agent loop's side ---------------------------------------------------------------------------

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        return [self._one(r) for r in requests]

    def _one(self, request: FeedbackRequest) -> str:
        started = time.monotonic()
        while True:  # the person is asked again for as long as the automatic user they turn to fails
            got = self._wait_for_reply(request)
            if got is _ANSWER:
                text = ANSWER_NOW
            elif got is _FALLBACK and self._fallback is None:
                text = ""  # no automatic user to ask: no feedback block, as with backend 'none'
            elif got is _FALLBACK:
                try:
                    text = self._fallback.feedback([request])[0]
                except UserAgentError as exc:  # the run's own user agent failed (its server down, after retries):
                    # the conversation is kept, and the person is asked again, told why
                    self.usage.add(errors=1)
                    # its message may quote a key (a plugin's, a server's echo): chat prints it, serve logs it
                    why = scrub_secrets(str(exc))
                    self.note = f"the automatic feedback failed ({why}); type the feedback, or answer now"
                    continue
            else:
                text = got
            self.usage.add(calls=1, latency_s_total=time.monotonic() - started)
            return text

    def _wait_for_reply(self, request: FeedbackRequest) -> Any:
        """Show ``request`` through ``ask`` and wait for the person's one reply (text, or what to do instead)."""
        if self._cancelled is not None:
            raise FeedbackCancelled(f"user agent 'human': {self._cancelled}")
        with self._lock:
            self.waiting, self._open = request, True
        try:
            self._ask(request)
            try:
                got = self._replies.get(timeout=self.options.timeout_s)
            except queue.Empty:
                self.usage.add(errors=1)
                raise FeedbackTimeout(
                    f"user agent 'human': no feedback within {self.options.timeout_s:g} s "
                    "(--feedback-timeout); the conversation was ended"
                ) from None
        finally:
            with self._lock:
                self.waiting, self._open = None, False
        if got is None or self._cancelled is not None:
            raise FeedbackCancelled(f"user agent 'human': {self._cancelled or 'the conversation was cancelled'}")
        return got

    def stats(self) -> dict[str, Any]:
        return self.usage.snapshot()

    def close(self) -> None:
        self.cancel("the user agent was closed")

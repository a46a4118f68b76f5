"""The agent's state machine: applies the trajectory-level format rule turn by turn during a rollout.

One :class:`AgentState` per trajectory. The loop asks :meth:`AgentState.next_budget` how many tokens the
next generation call may produce, hands each parsed turn to :meth:`AgentState.on_turn`, and, when the answer
is ``"ground"``, performs the grounding and reports it with :meth:`AgentState.on_observation`. The end
reasons and when each applies are the format rule's rule 4 (:mod:`mgfrec.agent.parser`).

Token caps count *policy* tokens only (``agent.max_new_tokens_per_turn`` per call,
``agent.max_new_tokens_total`` per trajectory): observations are the environment's and cost no budget. The
model's context length is the engine's concern; it can stop a trajectory with :meth:`AgentState.stop`.

Misuse by the calling loop (a turn while an observation is owed, more tokens than the budget allowed) raises
``RuntimeError``/``ValueError``: that is a bug in the loop, never something the policy can cause.
"""

from __future__ import annotations

from typing import Literal, get_args

from mgfrec.agent.parser import Turn
from mgfrec.config.schema import AgentConfig

EndReason = Literal["answered", "grounding_limit", "length_limit", "format_error"]
END_REASONS: tuple[str, ...] = get_args(EndReason)
Next = Literal["ground", "end"]


class AgentState:
    """Groundings used, tokens per turn and in total, and the end reason once the trajectory is over."""

    def __init__(self, config: AgentConfig | None = None):
        self.config = config or AgentConfig()
        self.groundings = 0
        self.turn_tokens: list[int] = []
        self.end_reason: EndReason | None = None
        self.awaiting_observation = False
        self.error: str | None = None  # why a non-answered trajectory ended, for logs

    @property
    def total_tokens(self) -> int:
        return sum(self.turn_tokens)

    @property
    def done(self) -> bool:
        return self.end_reason is not None

    @property
    def format_ok(self) -> bool:
        """True only for an ``answered`` trajectory: every other ending breaks the format rule."""
        return self.end_reason == "answered"

    def next_budget(self) -> int:
        """Most tokens the next turn may generate: the per-turn cap, or what is left of the total if less."""
        if self.done or self.awaiting_observation:
            return 0
        left = self.config.max_new_tokens_total - self.total_tokens
        return max(0, min(self.config.max_new_tokens_per_turn, left))

    def on_turn(self, turn: Turn, num_tokens: int, *, stopped: bool = False) -> Next:
        """Account one generated turn; ``"ground"`` means: ground ``turn.title``, then :meth:`on_observation`."""
        if self.done:
            raise RuntimeError(f"the trajectory already ended ({self.end_reason}); no further turn can be added")
        if self.awaiting_observation:
            raise RuntimeError("a grounding observation is owed before the next turn (call on_observation)")
        budget = self.next_budget()
        if num_tokens < 0 or num_tokens > budget:
            raise ValueError(
                f"a turn of {num_tokens} tokens exceeds its budget of {budget}; "
                "generate with max_new_tokens=next_budget()"
            )
        self.turn_tokens.append(num_tokens)
        if turn.kind == "answer":
            return self._end("answered")
        if turn.kind == "error":
            # an unfinished turn at its budget ran out of tokens, unless the engine stopped it there itself (an eos
            # sampled as the last token allowed: more tokens could not have finished it; review s41)
            if turn.incomplete and num_tokens >= budget and not stopped:
                return self._end(
                    "length_limit", f"turn {len(self.turn_tokens)} used its {budget}-token budget: {turn.error}"
                )
            return self._end("format_error", f"turn {len(self.turn_tokens)}: {turn.error}")
        if self.groundings >= self.config.max_groundings:
            return self._end("grounding_limit", f"a grounding beyond max_groundings={self.config.max_groundings}")
        if self.total_tokens >= self.config.max_new_tokens_total:
            return self._end(
                "length_limit", f"max_new_tokens_total={self.config.max_new_tokens_total} spent before an answer"
            )
        self.awaiting_observation = True
        return "ground"

    def on_observation(self) -> None:
        """The grounding asked for by the last turn was done and its observation appended."""
        if not self.awaiting_observation:
            raise RuntimeError(
                "no grounding was asked for: on_observation must follow an on_turn that returned 'ground'"
            )
        self.awaiting_observation = False
        self.groundings += 1

    def stop(self, reason: EndReason, why: str = "") -> None:
        """End the trajectory from outside (e.g. the engine's context is full: ``length_limit``)."""
        if reason not in END_REASONS:
            raise ValueError(f"end reason must be one of {', '.join(END_REASONS)}, got {reason!r}")
        if reason == "answered":
            raise ValueError("'answered' comes only from an <answer> turn")
        if not self.done:
            self.awaiting_observation = False
            self._end(reason, why or None)

    def _end(self, reason: EndReason, why: str | None = None) -> Next:
        self.end_reason, self.error = reason, why
        return "end"

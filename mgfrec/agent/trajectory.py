"""Token-exact multi-turn trajectories: who wrote each token, and the per-token masks the GRPO loss needs.

A :class:`Trajectory` is the prompt's token ids followed by segments, each either

* a :class:`PolicySegment`: token ids exactly as the engine sampled them, the engine's log-prob of each,
  and the engine's decoded text (which the parser reads), or
* an :class:`EnvironmentSegment`: an observation's token ids, tokenized once, when it was appended.

Nothing is ever re-tokenized: :meth:`Trajectory.token_ids` is the concatenation of the stored ids, so the
sequence the loss scores is the sequence the policy saw while sampling, token for token. (Decoding a
sampled turn and encoding it again can give other ids: BPE merges differ at turn boundaries and a model
can sample a non-canonical split.)

Per-token views, all of length ``len(token_ids())``:

* :meth:`action_mask`: 1 exactly on policy-sampled tokens; 0 on the prompt and on every observation token
  (the paper masks ``<item_list>`` and ``<feedback>`` blocks; verl calls this the response mask).
* :meth:`logprobs`: the sampling log-prob of each policy token; **0.0 where the mask is 0** (not NaN, so
  that ``logprobs * mask`` stays finite). ``logprobs()[i]`` is the log-prob of ``token_ids()[i]`` given
  the tokens before it: a causal LM's logits at position ``i - 1`` predict it.

This module does not generate, ground or tokenize; the rollout loop and the environment feed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mgfrec.agent.constraints import AllowedSet
from mgfrec.agent.parser import Turn, parse_turn
from mgfrec.agent.state import AgentState, EndReason, Next
from mgfrec.config.schema import AgentConfig
from mgfrec.validation import refuse_one_string


@dataclass(frozen=True)
class PolicySegment:
    """One generated turn: sampled ids, their log-probs, the decoded text and its parse."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    turn: Turn
    allowed: tuple[AllowedSet, ...] | None = None
    """Under constrained decoding, the tokens that were allowed before each sampled token (the sampler
    renormalised over them; the loss must too); None for free decoding."""


@dataclass(frozen=True)
class EnvironmentSegment:
    """One observation, tokenized once when appended."""

    token_ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class GroundingStep:
    """One grounding: the policy's title, the items returned (indices and titles) and the feedback."""

    title: str
    item_indices: tuple[int, ...]
    item_titles: tuple[str, ...]
    feedback: str | None


@dataclass
class Trajectory:
    """One rollout: prompt ids, then policy and environment segments; see the module docstring.

    ``history_titles`` is what the user agent may see of the user; the target is deliberately absent.
    ``sample_id`` and ``extras`` are carried through for the caller (logs, rewards).
    """

    prompt_ids: tuple[int, ...]
    history_titles: tuple[str, ...] = ()
    config: AgentConfig = field(default_factory=AgentConfig)
    sample_id: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    segments: list[PolicySegment | EnvironmentSegment] = field(default_factory=list)
    steps: list[GroundingStep] = field(default_factory=list)
    state: AgentState = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.prompt_ids = tuple(int(t) for t in self.prompt_ids)
        refuse_one_string(self.history_titles, "Trajectory.history_titles", "titles")
        self.history_titles = tuple(self.history_titles)
        self.state = AgentState(self.config)

    # --- building, as the loop runs ----------------------------------------------------------------------

    def next_budget(self) -> int:
        """Tokens the next generation call may produce (0 once done or while an observation is owed)."""
        return self.state.next_budget()

    def add_turn(
        self,
        token_ids: Sequence[int],
        logprobs: Sequence[float],
        text: str,
        allowed: Sequence[AllowedSet] | None = None,
        *,
        stopped: bool = False,
    ) -> Next:
        """Append one sampled turn (ids and log-probs exactly as the engine gave them); parse and account it.

        ``allowed``: under constrained decoding, the allowed set before each token (see :class:`PolicySegment`).
        ``stopped``: the engine ended the turn itself (an eos, a stop string; ``finish_reason == "stop"``), so an
        unfinished turn that filled its budget is a format error, not the budget's end (:meth:`AgentState.on_turn`).
        Returns ``"ground"`` (the environment must ground :attr:`pending_title`) or ``"end"``.
        """
        ids = tuple(int(t) for t in token_ids)
        lps = tuple(float(x) for x in logprobs)
        if len(ids) != len(lps):
            raise ValueError(f"{len(ids)} sampled tokens but {len(lps)} log-probs: the engine must give one per token")
        if allowed is not None and len(allowed) != len(ids):
            raise ValueError(f"{len(ids)} sampled tokens but {len(allowed)} allowed sets: one per token")
        if any(math.isnan(x) or x > 1e-6 for x in lps):
            raise ValueError("log-probs must be <= 0 and not NaN; pass the engine's log-prob of each sampled token")
        turn = parse_turn(text)
        nxt = self.state.on_turn(turn, len(ids), stopped=stopped)  # validates order and budget before storing
        self.segments.append(PolicySegment(ids, lps, text, turn, tuple(allowed) if allowed is not None else None))
        return nxt

    @property
    def pending_title(self) -> str | None:
        """The title the last turn asked to ground, while that observation is owed; else None."""
        if not self.state.awaiting_observation:
            return None
        return self.turns[-1].title

    def add_observation(self, step: GroundingStep, token_ids: Sequence[int], text: str) -> None:
        """Append the observation for the pending grounding; ``token_ids`` is ``text`` tokenized once."""
        if self.pending_title is None:
            raise RuntimeError("no grounding is pending: add_observation must follow add_turn() == 'ground'")
        self.state.on_observation()
        self.steps.append(step)
        self.segments.append(EnvironmentSegment(tuple(int(t) for t in token_ids), text))

    def stop(self, reason: EndReason, why: str = "") -> None:
        """End from outside the format rule, e.g. ``length_limit`` when the model's context is full."""
        self.state.stop(reason, why)

    # --- views -------------------------------------------------------------------------------------------

    def token_ids(self) -> list[int]:
        """Prompt ids then every segment's ids, concatenated as stored."""
        out = list(self.prompt_ids)
        for seg in self.segments:
            out.extend(seg.token_ids)
        return out

    def action_mask(self) -> list[int]:
        """1 on policy-sampled tokens, 0 on prompt and observation tokens."""
        out = [0] * len(self.prompt_ids)
        for seg in self.segments:
            out.extend([1 if isinstance(seg, PolicySegment) else 0] * len(seg.token_ids))
        return out

    def logprobs(self) -> list[float]:
        """Sampling log-prob per token; 0.0 where :meth:`action_mask` is 0."""
        out = [0.0] * len(self.prompt_ids)
        for seg in self.segments:
            out.extend(seg.logprobs if isinstance(seg, PolicySegment) else [0.0] * len(seg.token_ids))
        return out

    def allowed_sets(self) -> list[AllowedSet | None]:
        """Per token: the allowed set it was sampled under, or None (free decoding, prompt, observations)."""
        out: list[AllowedSet | None] = [None] * len(self.prompt_ids)
        for seg in self.segments:
            if isinstance(seg, PolicySegment) and seg.allowed is not None:
                out.extend(seg.allowed)
            else:
                out.extend([None] * len(seg.token_ids))
        return out

    @property
    def constrained(self) -> bool:
        """Whether any turn was sampled under constraints."""
        return any(isinstance(s, PolicySegment) and s.allowed is not None for s in self.segments)

    def shown_titles(self) -> list[str]:
        """Titles of every item list the environment returned, in order (as grounded, not neutralized)."""
        return [t for step in self.steps for t in step.item_titles]

    def response_text(self) -> str:
        """Everything after the prompt as text (the engine's turn texts and the observations)."""
        return "".join(seg.text for seg in self.segments)

    @property
    def turns(self) -> list[Turn]:
        return [seg.turn for seg in self.segments if isinstance(seg, PolicySegment)]

    @property
    def answer(self) -> str | None:
        """The answered title, or None when the trajectory did not end with a well-formed answer."""
        return self.turns[-1].title if self.state.end_reason == "answered" else None

    @property
    def done(self) -> bool:
        return self.state.done

    @property
    def end_reason(self) -> EndReason | None:
        return self.state.end_reason

    @property
    def format_ok(self) -> bool:
        return self.state.format_ok

    @property
    def num_groundings(self) -> int:
        return len(self.steps)

    @property
    def response_length(self) -> int:
        """Policy-sampled tokens in the whole trajectory."""
        return sum(len(seg.token_ids) for seg in self.segments if isinstance(seg, PolicySegment))

    def __len__(self) -> int:
        return len(self.prompt_ids) + sum(len(seg.token_ids) for seg in self.segments)

"""The environment step: ground every pending ``<ground>`` of a batch, ask the user agent, append observations.

After the loop has added one generated turn to each live :class:`~mgfrec.agent.trajectory.Trajectory`,
:meth:`Environment.step` serves all those that asked to ground (``pending_title``), with

* **one** batched :meth:`Grounding.ground <mgfrec.grounding.engine.Grounding.ground>` call for all their
  titles (``grounding.top_k`` items each, 10 in the paper), and
* **one** :meth:`UserAgent.feedback <mgfrec.user_agents.base.UserAgent.feedback>` call with a
  :class:`~mgfrec.user_agents.base.FeedbackRequest` per grounding: the user's history titles, the grounded
  title and the returned titles. The target is not in a trajectory, so it cannot reach the user agent.

Each observation (:func:`~mgfrec.agent.observation.render_observation`) is neutralized against the
tokenizer's added/special tokens as well as tags, tokenized once with the policy's tokenizer and appended
as an environment segment (action mask 0). ``user_agent=None`` shows no ``<feedback>`` block at all. Feedback
longer than ``agent.max_feedback_tokens`` of the policy's tokens is cut there and marked ``" [...]"``: a user agent
that wrote far past its own ``max_tokens`` ran the trajectory out of context before it could answer.

The environment never generates, never parses and never decides an end reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from mgfrec.agent.observation import render_observation, shown_feedback
from mgfrec.agent.trajectory import GroundingStep, Trajectory
from mgfrec.config.schema import MGFRecConfig
from mgfrec.grounding.engine import Grounding, check_top_k
from mgfrec.registry import Registry, call_component, method_named, with_registry
from mgfrec.text.neutralize import reserved_strings
from mgfrec.user_agents.base import FeedbackRequest, UserAgent, UserAgentContext, load_user_agent, require_automatic

FEEDBACK_CUT = " [...]"
"""The end of a feedback cut to ``agent.max_feedback_tokens``."""


def _behind(agent: Any) -> Any:
    """The user agent a wrapper (:class:`~mgfrec.user_agents.cache.CachedUserAgent`'s ``inner``, recommend's lock's
    ``_inner``) stands for, for messages that must name the plugin, not mgfrec's wrapper."""
    for _ in range(8):
        own = getattr(agent, "__dict__", {})  # not getattr: a wrapper passes unknown names through
        inner = own.get("inner", own.get("_inner"))
        if inner is None:
            return agent
        agent = inner
    return agent


FEEDBACK_CHARS_PER_TOKEN = 64
"""Characters of a reply read per token of ``agent.max_feedback_tokens`` when it is cut: far above any real text's."""
FEEDBACK_WINDOW_MARGIN = 16
"""Tokens the window must hold beyond the limit for its first ``limit`` to be the whole reply's: only the last few
tokens of a window can differ from the reply's (a word cut at the window's end)."""


class UserAgentCloseWarning(UserWarning):
    """A user agent's ``close()`` failed after the work it served had ended (:meth:`Environment.close`)."""


class Environment:
    """Grounding engine + user agent + the policy's tokenizer: turns pending groundings into observations."""

    def __init__(
        self,
        grounding: Grounding,
        tokenizer: Any,
        user_agent: UserAgent | None = None,
        *,
        top_k: int | None = None,
        max_feedback_tokens: int | None = None,
    ):
        self.grounding = grounding
        self.tokenizer = tokenizer
        self.user_agent = user_agent
        self.top_k = top_k
        self.max_feedback_tokens = max_feedback_tokens
        self.reserved = reserved_strings(tokenizer)

    def close(self) -> None:
        """Close the user agent, once the work it served (a fit, an SFT, an evaluation) has ended, however it ended:
        only ``recommend`` closed its agent, so a plugin's ``close()`` (a flush, the end of a session) was never
        called, and the built-in agents' thread pools, HTTP clients, SQLite connections and hf models stayed with an
        in-process caller (review s41). A ``close()`` that fails is a warning naming it: the work is done."""
        if self.user_agent is None:
            return
        try:
            self.user_agent.close()
        except Exception as exc:  # noqa: BLE001 - a plugin's failure, named; it must not hide the work's own end
            from mgfrec.registry import plugin_failure

            said = plugin_failure(exc) or f"the user agent's close() failed: {type(exc).__name__}: {exc}"
            warnings.warn(f"{said} (the work it served is done)", UserAgentCloseWarning, stacklevel=2)

    def cut_feedback(self, feedback: str | None) -> str | None:
        """``feedback`` cut to ``max_feedback_tokens`` of the policy's tokens and marked `` [...]``; as it is when
        shorter (or no limit). What the policy sees, and what the trajectory records."""
        limit = self.max_feedback_tokens
        if feedback is None or limit is None:
            return feedback
        # A reply of megabytes (a server ignoring max_tokens) was tokenized whole: 5 MB per answer made a 1-step
        # fit 13x slower. The first `limit` tokens lie well inside this window unless tokens are extremely long.
        window = feedback[: limit * FEEDBACK_CHARS_PER_TOKEN]
        ids = self.tokenizer.encode(window, add_special_tokens=False)
        if len(window) < len(feedback) and len(ids) <= limit + FEEDBACK_WINDOW_MARGIN:
            # too few tokens in the window to be sure of the first `limit` (a word split at its end, a tokenizer
            # that drops blank lines): the whole reply decides, as it always did
            ids = self.tokenizer.encode(feedback, add_special_tokens=False)
        if len(ids) <= limit:
            return feedback
        head = self.tokenizer.decode(ids[:limit], skip_special_tokens=False).rstrip("\ufffd")  # no half character
        return head.rstrip() + FEEDBACK_CUT

    def _cut_as_shown(self, feedback: str | None) -> str | None:
        """``feedback`` as the trajectory records it: as given when what the policy is shown of it (neutralized)
        fits ``max_feedback_tokens``, else that shown text cut. The raw reply was cut, then neutralized ("<" to
        several byte tokens of "‹", control characters dropped): the block held up to twice the limit (review s39).
        Kept as given when it fits, so ``chat`` echoes a person's words as typed."""
        shown = shown_feedback(feedback, self.reserved)
        if shown is None:
            return feedback  # no block: blank or none
        cut = self.cut_feedback(shown)
        return feedback if cut == shown else cut

    def step(self, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
        """Serve every trajectory with a pending grounding; returns those served, in order."""
        pending = [t for t in trajectories if t.pending_title is not None]
        if not pending:
            return []
        titles = [t.pending_title for t in pending]
        found = self.grounding.ground(titles, self.top_k)
        item_titles = [self.grounding.item_titles(row) for row in found]
        feedback = [self._cut_as_shown(fb) for fb in self._feedback(pending, titles, item_titles)]
        for traj, title, row, names, fb in zip(pending, titles, found, item_titles, feedback, strict=True):
            text = render_observation(names, fb, reserved=self.reserved)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            traj.add_observation(GroundingStep(title, tuple(int(i) for i in row), tuple(names), fb), ids, text)
        return pending

    def _feedback(self, pending: list[Trajectory], titles: list[str], item_titles: list[list[str]]) -> list[str | None]:
        if self.user_agent is None:
            return [None] * len(pending)
        requests = [
            FeedbackRequest(t.history_titles, title, tuple(names))
            for t, title, names in zip(pending, titles, item_titles, strict=True)
        ]
        answers = call_component(self.user_agent, "feedback", requests)

        def who() -> str:  # named only for an error: the registry is not searched on every turn
            # the backend behind a response cache or recommend's lock: its registry name and package, or its class
            # and module (which names a plugin's package)
            return method_named(_behind(self.user_agent), "feedback", "user_agent")

        if not isinstance(answers, list) or len(answers) != len(requests):
            got = len(answers) if isinstance(answers, list) else type(answers).__name__
            raise ValueError(
                f"{who()} returned {got} answers for {len(requests)} requests; one str per request is needed"
            )
        for n, answer in enumerate(answers):
            if not isinstance(answer, str):
                raise ValueError(f"{who()} answer {n} is a {type(answer).__name__}; feedback must be str")
        return answers


@with_registry
def build_environment(
    grounding: Grounding, tokenizer: Any, cfg: MGFRecConfig, reg: Registry | None = None
) -> Environment:
    """Grounding + the configured user agent over the policy's tokenizer, as a GRPO rollout would use.

    The user agent embeds catalogue titles from the cached vectors and anything else with the embedder. A
    backend that needs a person (``human``) is refused: nobody answers an automatic rollout.
    """
    check_top_k(cfg.grounding.top_k, len(grounding.titles), cfg.agent.max_groundings)  # evaluate, recommend, serve
    row = {t: i for i, t in enumerate(grounding.titles)}

    def embed(titles: Sequence[str]) -> np.ndarray:
        titles = list(titles)
        out = np.empty((len(titles), grounding.item_embeddings.shape[1]), dtype=np.float32)
        missing = [n for n, t in enumerate(titles) if t not in row]
        for n, t in enumerate(titles):
            if t in row:
                out[n] = grounding.item_embeddings[row[t]]
        if missing:
            out[missing] = grounding.embedder.encode([titles[n] for n in missing])
        return out

    require_automatic(cfg.user_agent, "an automatic rollout (training, evaluation, the run's own user agent)", reg)
    user = load_user_agent(cfg.user_agent, UserAgentContext(embed=embed), reg)
    return Environment(
        grounding, tokenizer, user, top_k=cfg.grounding.top_k, max_feedback_tokens=cfg.agent.max_feedback_tokens
    )

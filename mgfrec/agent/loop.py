"""The multi-turn rollout loop: prompts -> token-exact trajectories (ids, action masks, log-probs).

For a batch of samples and ``group_size`` trajectories each (GRPO's G):

1. the first prompt of every sample: :func:`mgfrec.text.prompts.build_messages` (history, recall),
   rendered with the tokenizer's chat template and tokenized once (:func:`~mgfrec.text.prompts.encode_prompt`);
2. then, turn by turn: **one** engine call samples the next turn of every live trajectory (the first turn
   asks ``n = group_size`` samples of each prompt; later turns continue each trajectory's own context),
   stopping at ``</ground>`` / ``</answer>``; each turn is appended to its
   :class:`~mgfrec.agent.trajectory.Trajectory`, which parses it and applies the format rule; **one**
   :meth:`Environment.step <mgfrec.agent.environment.Environment.step>` grounds every pending title
   (one grounding call, one user-agent call) and appends the observations;
3. until every trajectory has an end reason (answered, grounding/length limit, format error).

Turn budgets differ per trajectory (the total cap). The engine is called once with the largest budget and
each turn is then cut to its own: a prefix of a sample is exactly what sampling with the smaller cap would
have produced, token for token, since every later token depends only on the ones before it.

Constrained decoding (``agent.decoding: constrained``, :mod:`mgfrec.agent.constraints`): each live
trajectory's turn is sampled under its own :class:`~mgfrec.agent.constraints.TurnConstraint` (the tag grammar;
answers among the titles it was shown); the allowed set before every sampled token is recomputed from the
turn's own tokens and stored with the turn, so the trainer applies the same restriction. The engine must
declare ``supports_constraints``; one that does not is refused with a clear message.

Sampling is reproducible: turn ``t`` is sampled with a seed derived from ``(seed, t)``; the engine derives
each row's randomness from that and the row's position. The loop never computes rewards or losses.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mgfrec.agent.constraints import TurnConstraint, TurnGrammar
from mgfrec.agent.environment import Environment
from mgfrec.agent.parser import STOP_STRINGS
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.schema import AgentConfig
from mgfrec.registry.blame import call_component
from mgfrec.rollout.base import Generation, RolloutEngine
from mgfrec.text.neutralize import neutralize_title, reserved_strings
from mgfrec.text.prompts import AgentPrompts, build_messages, encode_prompt
from mgfrec.validation import refuse_one_string


@dataclass(frozen=True)
class RolloutSample:
    """What the agent is told about one user: history titles (oldest first) and the recall list.

    ``recall_titles=None`` (or empty) leaves the recall paragraph out of the prompt. The target is not
    here: nothing in a rollout may see it. ``sample_id`` is carried to every trajectory of the sample.
    """

    history_titles: tuple[str, ...]
    recall_titles: tuple[str, ...] | None = None
    sample_id: Any = None

    def __post_init__(self) -> None:  # one string was rolled out as titles of one letter each (review s35)
        refuse_one_string(self.history_titles, "RolloutSample.history_titles", "titles")
        refuse_one_string(self.recall_titles, "RolloutSample.recall_titles", "titles")


@dataclass
class RolloutStats:
    """Where a rollout's time went, and what it produced."""

    generation_s: float = 0.0
    environment_s: float = 0.0
    prompt_s: float = 0.0
    total_s: float = 0.0
    turns: int = 0
    engine_calls: int = 0
    generated_tokens: int = 0
    groundings: int = 0
    live_per_turn: list[int] = field(default_factory=list)
    end_reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("generation_s", "environment_s", "prompt_s", "total_s", "turns")}
        out.update(
            engine_calls=self.engine_calls,
            generated_tokens=self.generated_tokens,
            groundings=self.groundings,
            live_per_turn=list(self.live_per_turn),
            end_reasons=dict(self.end_reasons),
        )
        return out


@dataclass
class RolloutResult:
    """Trajectories, sample-major: ``samples[i]`` owns ``trajectories[i * group_size : (i + 1) * group_size]``."""

    trajectories: list[Trajectory]
    group_size: int
    stats: RolloutStats

    def groups(self) -> list[list[Trajectory]]:
        """One list of ``group_size`` trajectories per sample, in sample order (GRPO's groups)."""
        g = self.group_size
        return [self.trajectories[i : i + g] for i in range(0, len(self.trajectories), g)]


def turn_seed(seed: int, turn: int) -> int:
    """The engine seed of turn ``turn``: distinct per turn, fixed by ``seed``."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, turn]).generate_state(1)[0])


def first_prompts(
    samples: Sequence[RolloutSample], tokenizer: Any, prompts: AgentPrompts | None = None
) -> list[list[int]]:
    """Token ids of each sample's first prompt (system + user message, generation prompt appended)."""
    reserved = reserved_strings(tokenizer)
    return [
        encode_prompt(tokenizer, build_messages(s.history_titles, s.recall_titles, prompts=prompts, reserved=reserved))
        for s in samples
    ]


def rollout(
    engine: RolloutEngine,
    environment: Environment,
    samples: Sequence[RolloutSample],
    *,
    group_size: int = 1,
    agent: AgentConfig | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    prompts: AgentPrompts | None = None,
    max_context: int | None = None,
) -> RolloutResult:
    """Run the agent loop to the end for ``group_size`` trajectories of every sample; see the module docstring.

    ``agent`` carries the limits (``max_groundings``, token caps). ``prompts`` defaults to the templates of
    ``agent`` (``agent.template``, ``agent.use_recall``). ``max_context`` (e.g. the model's
    ``max_position_embeddings``) ends a trajectory with ``length_limit`` before its context would overflow.
    ``temperature`` 0 is greedy (evaluation).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    agent = agent or AgentConfig()
    prompts = prompts or AgentPrompts.from_config(agent)
    stats = RolloutStats()
    started = time.perf_counter()
    prompt_ids = first_prompts(samples, engine.tokenizer, prompts)
    trajectories = [
        Trajectory(
            ids, s.history_titles, config=agent, sample_id=s.sample_id, extras={"sample_index": i, "group_index": j}
        )
        for i, (s, ids) in enumerate(zip(samples, prompt_ids, strict=False))
        for j in range(group_size)
    ]
    stats.prompt_s = time.perf_counter() - started
    sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "stop": STOP_STRINGS}
    constrain = _Constrainer(engine, agent, samples, group_size, prompts) if agent.decoding == "constrained" else None
    while live := _live(trajectories, max_context):
        budgets = [t.next_budget() for t in live]
        if constrain is not None:
            turn_constraints = [constrain.turn(t) for t in live]
            sampling["constraints"] = turn_constraints
        t0 = time.perf_counter()
        if stats.turns == 0 and len(live) == len(trajectories):  # all still equal their prompts: n = G per prompt
            out = call_component(
                engine,
                "generate",
                prompt_ids,
                max_new_tokens=max(budgets),
                n=group_size,
                seed=turn_seed(seed, 0),
                **sampling,
            )
            _check_generations(engine, out, len(prompt_ids), group_size)
            gens = [g for row in out for g in row]
            stats.engine_calls += 1
        else:
            gens = [None] * len(live)
            for rows in _calls(live, budgets, max_context):
                part = dict(sampling)
                if constrain is not None:
                    part["constraints"] = [turn_constraints[i] for i in rows]
                out = call_component(
                    engine,
                    "generate",
                    [live[i].token_ids() for i in rows],
                    max_new_tokens=max(budgets[i] for i in rows),
                    n=1,
                    seed=turn_seed(seed, stats.turns),
                    **part,
                )
                _check_generations(engine, out, len(rows), 1)
                for i, row in zip(rows, out, strict=True):
                    gens[i] = row[0]
                stats.engine_calls += 1
        stats.generation_s += time.perf_counter() - t0
        stats.live_per_turn.append(len(live))
        replays = [c.fresh() for c in turn_constraints] if constrain is not None else [None] * len(live)
        for traj, gen, budget, replay in zip(live, gens, budgets, replays, strict=False):
            ids, lps, text = _within(gen, budget, engine.tokenizer)
            allowed = replay.replay(ids) if replay is not None else None
            # the engine stopped it (an eos, a stop string) within the turn's own budget: not the budget's end
            stopped = gen.finish_reason == "stop" and len(ids) == len(gen.token_ids)
            traj.add_turn(ids, lps, text, allowed, stopped=stopped)
            stats.generated_tokens += len(ids)
        t0 = time.perf_counter()
        stats.groundings += len(environment.step(live))
        stats.environment_s += time.perf_counter() - t0
        stats.turns += 1
    stats.total_s = time.perf_counter() - started
    stats.end_reasons.update(t.end_reason for t in trajectories)
    return RolloutResult(trajectories, group_size, stats)


def _check_generations(engine: RolloutEngine, out: Any, prompts: int, n: int) -> None:
    """``n`` generations for each of ``prompts`` prompts, as the engine contract says; a plugin engine's other
    count was a RuntimeError traceback through Lightning that named no engine."""
    counts = (
        [len(row) if isinstance(row, (list, tuple)) else -1 for row in out] if isinstance(out, (list, tuple)) else None
    )
    if counts is None or len(counts) != prompts or any(c != n for c in counts):
        from mgfrec.registry import registered_as

        named = registered_as(engine) or f"{type(engine).__module__}.{type(engine).__qualname__}"
        got = f"{len(counts)} rows of {sorted(set(counts))}" if counts is not None else type(out).__name__
        raise ValueError(
            f"{named}: generate returned {got} generations for {prompts} prompts with n={n}; it must return, per "
            "prompt, a list of n Generations (see rollout_engine in docs/plugins.md)"
        )


class _Constrainer:
    """Builds each trajectory's :class:`TurnConstraint` for its next turn (see the module docstring)."""

    def __init__(
        self,
        engine: RolloutEngine,
        agent: AgentConfig,
        samples: Sequence[RolloutSample],
        group_size: int,
        prompts: AgentPrompts,
    ):
        if not getattr(engine, "supports_constraints", False):
            raise ValueError(
                f"rollout engine {type(engine).__module__}.{type(engine).__qualname__} does not support "
                "agent.decoding: constrained; use rollout.engine: hf, or set agent.decoding: free (an engine of your "
                "own: give it supports_constraints = True and a constraints= keyword of generate, docs/plugins.md)"
            )
        self.grammar = grammar_for(engine)
        self.agent = agent
        self.reserved = reserved_strings(engine.tokenizer)
        show = self._show
        self.recall = [[show(t) for t in (s.recall_titles or ())] if prompts.use_recall else [] for s in samples]
        # each shown recall title's 1-based rank (its first place), for agent.recall_prior
        self.recall_rank = [{t: r for r, t in reversed(list(enumerate(titles, start=1)))} for titles in self.recall]
        keep = prompts.max_history  # only the history titles the prompt shows (agent.prompt_history)
        self.history = [[show(t) for t in (s.history_titles[-keep:] if keep else s.history_titles)] for s in samples]

    def _show(self, title: str) -> str:
        return neutralize_title(title, self.reserved).strip()

    def _prior(self, i: int, shown: list[str]) -> list[float] | None:
        """``agent.recall_prior``: the log weight ``-b log rank`` (weight ``rank ** -b``, which underflows to 0
        for a large ``b``) of each shown title by its place in sample ``i``'s recall list (a title shown only by a
        grounding ranks after the list); None when off or no list."""
        b, recall, rank = self.agent.recall_prior, self.recall[i], self.recall_rank[i]
        if b <= 0 or not recall:
            return None
        return [-b * math.log(rank.get(t, len(recall) + 1)) for t in shown]

    def turn(self, traj: Trajectory) -> TurnConstraint:
        """A fresh constraint for ``traj``'s next turn (deterministic: replaying it gives the same sets)."""
        agent, g = self.agent, self.grammar
        i = traj.extras["sample_index"]
        budget = traj.next_budget()
        # only titles that fit this turn's budget after the shortest thought and the tags: a longer one could
        # only end the trajectory with length_limit
        room = (
            budget
            - len(g.think_open)
            - 1
            - len(g.think_close)
            - max(len(g.answer_open) + len(g.answer_close), len(g.ground_open) + len(g.ground_close))
        )

        def fit(titles: list[str]) -> list[str]:
            return [t for t in titles if len(g.title_ids(t)) <= room]

        every = [*self.recall[i], *(self._show(t) for t in traj.shown_titles())]
        shown = fit(every)
        if every and not shown:
            # titles were shown but none fits what is left: the answer still stays among them (a free answer
            # would name anything), and the turn overruns its budget: a budget error, as it should be
            shown = [min(every, key=lambda t: len(g.title_ids(t)))]
        ground = None if agent.ground_titles == "free" else g.trie([*shown, *fit(self.history[i])])
        answer = g.trie(shown, log_weights=self._prior(i, shown))
        # a grounding needs room for an answer turn after it within the total budget (the constraint counts what
        # the turn writes)
        room = len(g.think_open) + 1 + len(g.think_close) + len(g.answer_open) + len(g.answer_close) + 24
        return TurnConstraint(
            g,
            answer,
            ground,
            can_ground=traj.num_groundings < agent.max_groundings,
            budget=budget,
            max_think_tokens=agent.max_think_tokens,
            total_left=agent.max_new_tokens_total - traj.state.total_tokens,
            answer_room=room,
        )


def grammar_for(engine: RolloutEngine) -> TurnGrammar:
    """The engine's :class:`TurnGrammar`, built once per engine (scanning the vocabulary once)."""
    grammar = getattr(engine, "_turn_grammar", None)
    if grammar is None or grammar.tokenizer is not engine.tokenizer:
        # the logits' width, which a padded vocabulary (Qwen2.5's) makes wider than the tokenizer: an engine's
        # own vocab_size (vllm's, which holds no model here), else its model's; the padded ids are never allowed
        width = getattr(engine, "vocab_size", None)
        if width is None:
            width = getattr(getattr(getattr(engine, "model", None), "config", None), "vocab_size", None)
        grammar = TurnGrammar(engine.tokenizer, width)
        engine._turn_grammar = grammar  # type: ignore[attr-defined]
    return grammar


def _calls(live: list[Trajectory], budgets: list[int], max_context: int | None) -> list[list[int]]:
    """The rows of ``live`` for each engine call of a turn: one call, unless the largest budget would take a
    trajectory past ``max_context``; then one call per budget. An engine decodes every row of a call up to its
    ``max_new_tokens``, so a row with little room was decoded past the model's context (an ``IndexError`` in a
    learned-position model's embedding, a device assert on a GPU; review s39) and only cut back afterwards."""
    widest = max(budgets)
    if max_context is None or all(len(t) + widest <= max_context for t in live):
        return [list(range(len(live)))]
    by_budget: dict[int, list[int]] = {}
    for i, budget in enumerate(budgets):
        by_budget.setdefault(budget, []).append(i)
    return [by_budget[b] for b in sorted(by_budget, reverse=True)]


def _live(trajectories: list[Trajectory], max_context: int | None) -> list[Trajectory]:
    """Trajectories that still take a turn; those with no room left (context or budget) end here."""
    live = []
    for t in trajectories:
        if t.done:
            continue
        if t.next_budget() <= 0:
            t.stop("length_limit", "no token budget left for another turn")
        elif max_context is not None and len(t) + t.next_budget() > max_context:
            t.stop("length_limit", f"the next turn could overflow the model's context of {max_context} tokens")
        else:
            live.append(t)
    return live


def _within(gen: Generation, budget: int, tokenizer: Any) -> tuple[list[int], list[float], str]:
    """The generation cut to ``budget`` tokens (a turn sampled with a larger cap than its own)."""
    if len(gen.token_ids) <= budget:
        return gen.token_ids, gen.logprobs, gen.text
    ids = gen.token_ids[:budget]
    return ids, gen.logprobs[:budget], tokenizer.decode(ids, skip_special_tokens=False)

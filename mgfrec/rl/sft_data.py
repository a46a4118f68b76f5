"""SFT trajectories: teacher plans for training samples, replayed through the real rollout loop.

A small policy trained from scratch cannot invent the right title; it can learn to *choose* among real
items it is shown (issue 5). So every synthesized trajectory grounds on titles taken from the lists in its
context and answers with a title copied from one of them. For one sample (history, recall list, target):

1. **Turn 1** ``<think>`` one short templated sentence naming the most recent history title ``</think>``
   ``<ground>`` a recall title ``</ground>``: the target itself when the recall list holds it, else the
   recall item whose title embedding is nearest the target's (the search most likely to bring it up).
   Without a recall list (``agent.use_recall: false``), the most recent history title.
2. The environment grounds it and the user agent answers: the observation is the real one.
3. **Turn 2, optional**: when the target is still not among the shown items and ``agent.max_groundings``
   allows a second grounding, ground on the returned item nearest the target (not one grounded before).
4. **Answer**: the target's title when it was shown (in the recall list or any returned list), else the
   shown title the recall model ranks best (``fallback="recall"``: the recall list's first item) or the
   shown title nearest the target (``fallback="nearest"``). Either way a copy of a shown title.

Every title the policy writes is neutralized exactly as the lists show it, so copying is exact, and a turn
whose text would exceed ``agent.max_new_tokens_per_turn`` falls back to a shorter ``<think>``.

The plans are computed first (with the same grounding engine, so the planned item lists are the ones the
loop will show), then a :class:`~mgfrec.rollout.scripted_engine.ScriptedEngine` replays each plan's turns
inside :func:`mgfrec.agent.loop.rollout`. The token ids, action masks and observations are therefore
exactly those a GRPO rollout of the same turns would produce. This module never trains anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mgfrec.agent.environment import Environment
from mgfrec.agent.loop import first_prompts, rollout
from mgfrec.agent.parser import ITEM_LIST_CLOSE, POLICY_TAGS, parse_turn
from mgfrec.agent.samples import SFTSample, to_rollout_sample
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.schema import AgentConfig
from mgfrec.grounding.engine import Grounding
from mgfrec.rollout.scripted_engine import GrammarViolation, ScriptedEngine, encode_split
from mgfrec.text.neutralize import neutralize_title, reserved_strings
from mgfrec.text.prompts import AgentPrompts

TURN_TAGS = tuple(sorted(POLICY_TAGS))
"""Teacher turns are tokenized tag by tag, as a constrained turn is written: a hub BPE (SmolLM2) would
otherwise merge ``><`` across ``</think><ground>``, a token no constrained turn can hold."""

Fallback = Literal["recall", "nearest"]
Teacher = Literal["target", "recall"]
"""What the teacher answers: the target when it was shown (``target``, the plans above), or always the recall
list's first item after grounding it (``recall``: the policy learns to copy the recall model's choice, a
choice a small policy learns within minutes; GRPO then learns when to deviate from it)."""


@dataclass(frozen=True)
class Plan:
    """The teacher's turns for one sample and the item lists it expects the environment to show."""

    turns: tuple[str, ...]
    grounded: tuple[tuple[int, ...], ...]  # planned item list of each grounding
    answer_item: int
    target_shown: bool


@dataclass
class SynthesisResult:
    """Finished trajectories (one per kept sample, in sample order), their plans and counters."""

    trajectories: list[Trajectory]
    plans: list[Plan]
    samples: list[SFTSample]
    stats: dict[str, Any] = field(default_factory=dict)


def _nearest(vectors: np.ndarray, candidates: Sequence[int], target: int, skip: set[int]) -> int | None:
    """The candidate whose vector is nearest the target's (first by list order on ties); None if none left."""
    pool = [c for c in candidates if c >= 0 and c not in skip]
    if not pool:
        return None
    d = np.linalg.norm(vectors[pool] - vectors[target], axis=1)
    return pool[int(np.argmin(d))]  # argmin keeps the first of equal distances


class _Writer:
    """Turn texts with a ``<think>`` short enough for the per-turn token budget (and, under constrained
    decoding, for ``agent.max_think_tokens``: a longer thought would be cut by the grammar)."""

    def __init__(self, tokenizer: Any, titles: Sequence[str], budget: int, max_think: int | None = None):
        self.tokenizer, self.titles, self.budget, self.max_think = tokenizer, titles, budget, max_think
        self.reserved = reserved_strings(tokenizer)

    def title(self, item: int) -> str:
        return neutralize_title(self.titles[item], self.reserved)

    def turn(self, thoughts: Sequence[str], action: str, item: int) -> str:
        """The first of ``thoughts`` whose turn fits the budget (the last one is used regardless)."""
        for think in thoughts:
            text = f"<think>{think}</think><{action}>{self.title(item)}</{action}>"
            short = self.max_think is None or self.size(think) <= self.max_think
            if short and self.size(text) <= self.budget:
                break
        return text

    def size(self, text: str) -> int:
        """Tokens of ``text`` as the replay writes it: tag by tag (:data:`TURN_TAGS`)."""
        return len(encode_split(self.tokenizer, text, TURN_TAGS))


def build_plans(
    samples: Sequence[SFTSample],
    grounding: Grounding,
    tokenizer: Any,
    agent: AgentConfig,
    *,
    second_grounding: bool = True,
    fallback: Fallback = "recall",
    teacher: Teacher = "target",
) -> list[Plan]:
    """The teacher plan of every sample (see the module docstring and :data:`Teacher`); groundings are
    batched per turn."""
    if agent.max_groundings < 1:
        raise ValueError("agent.max_groundings must be >= 1 for SFT: every synthesized trajectory grounds once")
    vectors = grounding.item_embeddings
    constrained = agent.decoding == "constrained"
    w = _Writer(
        tokenizer, grounding.titles, agent.max_new_tokens_per_turn, agent.max_think_tokens if constrained else None
    )
    recalls = [tuple(i for i in s.recall if i >= 0) if agent.use_recall else () for s in samples]

    first = []
    for s, rec in zip(samples, recalls, strict=True):
        if teacher == "recall" and rec:
            first.append(rec[0])
        elif s.target in rec:
            first.append(s.target)
        elif rec:
            first.append(_nearest(vectors, rec, s.target, set()))
        else:
            first.append(s.history[-1])
    turn1 = [
        w.turn(
            [f"The user recently enjoyed {w.title(s.history[-1])}.", "Something similar."],
            "ground",
            g,
        )
        for s, g in zip(samples, first, strict=True)
    ]
    lists1 = grounding.ground([parse_turn(t).title or "" for t in turn1])

    second: list[int | None] = [None] * len(samples)
    if second_grounding and agent.max_groundings >= 2 and teacher == "target":
        for n, s in enumerate(samples):
            if s.target not in recalls[n] and s.target not in lists1[n]:
                second[n] = _nearest(vectors, lists1[n], s.target, {first[n]})
    todo = [n for n, g in enumerate(second) if g is not None]
    turn2 = {n: w.turn([f"{w.title(second[n])} looks closer.", "Closer."], "ground", second[n]) for n in todo}
    lists2 = dict(
        zip(todo, grounding.ground([parse_turn(turn2[n]).title or "" for n in todo]) if todo else [], strict=False)
    )

    def answer_of(target: int, shown: list[int], history: Sequence[int]) -> tuple[int, bool]:
        """The teacher's answer among ``shown`` (what this trajectory was shown) and whether it is the target. An
        item of the user's history is never answered unless it is the target: the ranking leaves history items out,
        so such an answer can never be the target (without a recall list the first grounding, of the last history
        title, shows that item first, and the recall fallback and teacher answered it for every sample; review s32)."""
        seen = set(history)
        # (every item shown is the history's: as before); the target itself stays, consumed before or not
        fresh = [i for i in shown if i not in seen or i == target] or shown
        if teacher == "recall":
            return fresh[0], fresh[0] == target
        if target in shown:
            return target, True
        if fallback == "nearest":
            return _nearest(vectors, fresh, target, set()), False
        return fresh[0], False  # the recall list's best item (the first list shown)

    plans = []
    for n, s in enumerate(samples):
        grounded = [tuple(lists1[n])] + ([tuple(lists2[n])] if n in lists2 else [])
        answer, hit = answer_of(s.target, [*recalls[n], *(i for row in grounded for i in row)], s.history)
        turns = [turn1[n], *([turn2[n]] if n in turn2 else [])]
        turns.append(w.turn([f"{w.title(answer)} fits best.", "Best match."], "answer", answer))
        if sum(w.size(t) for t in turns) > agent.max_new_tokens_total and len(turns) == 3:
            # drop the optional grounding to fit the total, and answer from what is still shown without it
            grounded = grounded[:1]
            answer, hit = answer_of(s.target, [*recalls[n], *grounded[0]], s.history)
            turns = [turns[0], w.turn([f"{w.title(answer)} fits best.", "Best match."], "answer", answer)]
        plans.append(Plan(tuple(turns), tuple(grounded), int(answer), hit))
    return plans


class _PlanScript:
    """A :data:`~mgfrec.rollout.scripted_engine.Script`: finds the plan by the context's first prompt and
    plays its turn number ``observations so far``."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], plans: Sequence[Plan]):
        self.by_prompt: dict[str, Plan] = {}
        for ids, plan in zip(prompt_ids, plans, strict=True):
            key = tokenizer.decode(list(ids), skip_special_tokens=False)
            if key in self.by_prompt:
                raise ValueError("two samples of one replay batch have the same first prompt; batch them apart")
            self.by_prompt[key] = plan
        self.lengths = sorted({len(k) for k in self.by_prompt})

    def __call__(self, context: str, sample_index: int) -> str:
        for n in self.lengths:
            plan = self.by_prompt.get(context[:n])
            if plan is not None:
                turn = context[n:].count(ITEM_LIST_CLOSE)  # the policy's own text cannot hold the tag
                return plan.turns[min(turn, len(plan.turns) - 1)]
        raise RuntimeError("the scripted SFT engine got a context that starts with none of its prompts")


def _rounds(keys: Sequence[str], batch_size: int) -> list[list[int]]:
    """Batches of sample positions in which no first prompt repeats (a repeat goes to a later round)."""
    seen: dict[str, int] = defaultdict(int)
    by_round: dict[int, list[int]] = defaultdict(list)
    for n, key in enumerate(keys):
        by_round[seen[key]].append(n)
        seen[key] += 1
    return [
        idx[i : i + batch_size]
        for r in sorted(by_round)
        for idx in [by_round[r]]
        for i in range(0, len(idx), batch_size)
    ]


def synthesize(
    samples: Sequence[SFTSample],
    environment: Environment,
    agent: AgentConfig,
    *,
    prompts: AgentPrompts | None = None,
    second_grounding: bool = True,
    fallback: Fallback = "recall",
    teacher: Teacher = "target",
    batch_size: int = 256,
    max_context: int | None = None,
) -> SynthesisResult:
    """Plan every sample and replay the plans through :func:`~mgfrec.agent.loop.rollout`.

    Only trajectories that end ``answered`` are kept (a title too long for the turn budget ends a plan with
    ``length_limit``; under constrained decoding, a plan the turn grammar refuses is dropped too,
    ``stats["dropped_off_grammar"]``; ``stats["dropped"]`` counts both). ``stats["plan_mismatch"]`` counts
    trajectories whose environment showed other items than planned (possible only with an approximate
    grounder).
    """
    tokenizer, grounding = environment.tokenizer, environment.grounding
    prompts = prompts or AgentPrompts.from_config(agent)
    plans = build_plans(
        samples, grounding, tokenizer, agent, second_grounding=second_grounding, fallback=fallback, teacher=teacher
    )
    rollout_samples = [to_rollout_sample(s, grounding.titles) for s in samples]
    prompt_ids = first_prompts(rollout_samples, tokenizer, prompts)
    keys = [tokenizer.decode(ids, skip_special_tokens=False) for ids in prompt_ids]
    done: dict[int, Trajectory] = {}
    off_grammar = 0

    def replay(batch: list[int]) -> list[Trajectory]:
        engine = ScriptedEngine(
            tokenizer,
            _PlanScript(tokenizer, [prompt_ids[n] for n in batch], [plans[n] for n in batch]),
            split_at=TURN_TAGS,
        )
        result = rollout(
            engine,
            environment,
            [rollout_samples[n] for n in batch],
            group_size=1,
            agent=agent,
            temperature=0.0,
            prompts=prompts,
            max_context=max_context,
        )
        return result.trajectories

    for batch in _rounds(keys, batch_size):
        try:
            done.update(zip(batch, replay(batch), strict=True))
        except GrammarViolation:
            # a plan the constrained grammar refuses (it reserves room for the longest allowed title, and a
            # grounding only with room for an answer after it): replay one by one and drop those plans
            for n in batch:
                try:
                    done[n] = replay([n])[0]
                except GrammarViolation:
                    off_grammar += 1
    kept = sorted(n for n in done if done[n].end_reason == "answered")
    mismatch = sum(1 for n in kept if tuple(tuple(s.item_indices) for s in done[n].steps) != plans[n].grounded)
    stats = {
        "samples": len(samples),
        "kept": len(kept),
        "dropped": len(samples) - len(kept),
        "dropped_off_grammar": off_grammar,
        "plan_mismatch": mismatch,
        "target_answered": float(np.mean([plans[n].target_shown for n in kept])) if kept else 0.0,
        "mean_groundings": float(np.mean([done[n].num_groundings for n in kept])) if kept else 0.0,
    }
    return SynthesisResult([done[n] for n in kept], [plans[n] for n in kept], [samples[n] for n in kept], stats)

"""From finished trajectories to the target's rank and the reward's input (paper section 4.1 and eq. 7/8).

Following BIGRec, an answered title is ranked against *every* catalogue item by L2 distance
(:meth:`Grounding.full_scores <mgfrec.grounding.engine.Grounding.full_scores>`, all answers of a batch in
one call), and the target's pessimistic 1-based rank is read exactly as the evaluator reads a baseline's
(:func:`mgfrec.ranking.metrics.target_ranks_excluding`: the history left out, never the target;
``exclude_history=False`` ranks every item). So an agent's NDCG reward and its reported metrics come from
the same rank.

A trajectory without an answer (any end reason but ``answered``) has no rank: ``None``. This module does
not compute rewards; :mod:`mgfrec.rewards` does, from the :class:`~mgfrec.rewards.base.RewardInput` built here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.agent.trajectory import Trajectory
from mgfrec.grounding.engine import Grounding
from mgfrec.ranking.metrics import target_ranks, target_ranks_excluding
from mgfrec.registry.blame import call_component
from mgfrec.rewards.base import RewardInput


def answer_ranks(
    trajectories: Sequence[Trajectory],
    grounding: Grounding,
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    *,
    exclude_history: bool = True,
    device: str | torch.device = "cpu",
) -> list[int | None]:
    """The target's full-ranking rank for each trajectory's answer; None where there is no answer.

    ``targets[i]`` and ``histories[i]`` (item indices) belong to ``trajectories[i]``.
    """
    if not len(trajectories) == len(targets) == len(histories):
        raise ValueError(
            f"{len(trajectories)} trajectories, {len(targets)} targets and {len(histories)} histories: "
            "one each is needed"
        )
    answered = [i for i, t in enumerate(trajectories) if t.answer is not None]
    out: list[int | None] = [None] * len(trajectories)
    if not answered:
        return out
    num_items = len(grounding.titles)
    tgt = np.asarray([targets[i] for i in answered], dtype=np.int64)
    if tgt.min() < 0 or tgt.max() >= num_items:
        raise ValueError(
            f"target item index {int(tgt.max() if tgt.max() >= num_items else tgt.min())} is outside "
            f"the catalogue of {num_items} items"
        )
    with torch.inference_mode():
        scores = grounding.full_scores([trajectories[i].answer for i in answered], device=device)
        tgt_t = torch.from_numpy(tgt).to(scores.device)
        if exclude_history:
            hist = [np.asarray(histories[i], dtype=np.int64) for i in answered]
            ranks = target_ranks_excluding(scores, tgt_t, hist)
        else:
            ranks = target_ranks(scores, tgt_t)
    for i, rank in zip(answered, ranks.cpu().tolist(), strict=True):
        out[i] = int(rank)
    return out


def reward_inputs(
    trajectories: Sequence[Trajectory],
    grounding: Grounding,
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    *,
    exclude_history: bool = True,
    device: str | torch.device = "cpu",
    final: FinalRanking | None = None,
) -> list[RewardInput]:
    """One :class:`RewardInput` per trajectory: rank, ``format_ok``, groundings and end reason.

    The rank is read by ``final`` (the run's ``agent.final_ranking``, so GRPO's reward and the reported metrics
    come from the same rank whatever the rule); without it, by the paper's L2 over ``grounding``'s titles.
    ``extras`` carries the answer and the response length (policy tokens) for logs.
    """
    unfinished = [i for i, t in enumerate(trajectories) if not t.done]
    if unfinished:
        raise ValueError(f"trajectories {unfinished[:5]} are still running; rewards need finished trajectories")
    if final is None:
        final = FinalRanking("l2", grounding)
    elif final.grounding is not grounding:
        raise ValueError("reward_inputs: the final ranking was built over another grounding than the one given")
    ranks = final.ranks(trajectories, targets, histories, exclude_history=exclude_history, device=device)
    num_items = len(grounding.titles)
    return [
        RewardInput(
            target_rank=rank,
            num_items=num_items,
            format_ok=t.format_ok,
            groundings=t.num_groundings,
            end_reason=str(t.end_reason),
            extras={"answer": t.answer, "response_length": t.response_length},
        )
        for t, rank in zip(trajectories, ranks, strict=True)
    ]


def answer_then_recall_ranks(
    answers: Sequence[int | None],
    recall_scores: torch.Tensor,
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    *,
    exclude_history: bool = True,
) -> list[int | None]:
    """The target's rank when the answered item comes first and every other item follows in the recall
    model's order (``agent.final_ranking: answer_then_recall``); None where there is no answer.

    ``answers[i]``: the item the answer grounds to (its nearest item), ``recall_scores[i]``: the recall model's
    score of every item for sample ``i``. Read like every other rank (:func:`target_ranks_excluding`). An agent
    that always answers the recall model's first item gets exactly the recall model's ranks, so this row shows
    what the agent's *choice* adds to or takes from the recall model. Not the paper's rule (section 4.1)."""
    if not len(answers) == len(targets) == len(histories) == recall_scores.shape[0]:
        raise ValueError("answers, recall_scores, targets and histories must be aligned, one row per sample")
    rows = [n for n, a in enumerate(answers) if a is not None]
    scores = answer_first_scores([int(answers[n]) for n in rows], recall_scores[rows]) if rows else None
    return _read_ranks(len(answers), rows, scores, targets, histories, exclude_history)


def answer_first_scores(answers: Sequence[int], recall_scores: torch.Tensor) -> torch.Tensor:
    """``recall_scores`` (float64) with each row's answered item raised above every other item, the history's
    ``-inf`` included: the scores of ``answer_then_recall``. The raised score is finite (the row's largest finite
    score plus at least its magnitude, so it stays strictly first in float32 too), so the scores can be written
    as JSON (``mgfrec recommend --json``, ``mgfrec serve``)."""
    scores = recall_scores.to(torch.float64).clone()
    finite = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, float("-inf")))
    top = finite.max(dim=1).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # a row without a finite score
    scores[torch.arange(len(answers)), torch.tensor(list(answers), dtype=torch.long)] = top + top.abs().clamp_min(1.0)
    return scores


def joint_item_vectors(
    title_vectors: np.ndarray | torch.Tensor, id_vectors: torch.Tensor, title_weight: float = 1.0
) -> torch.Tensor:
    """``[title_weight * title, id]`` per item, each part's rows scaled to unit length: the space
    ``agent.final_ranking: l2_joint`` ranks in. ``id_vectors``: a collaborative model's item embeddings
    (``item_vectors()`` of a sasrec, gru4rec, caser or hybrid run), one row per catalogue item."""
    title = torch.as_tensor(np.asarray(title_vectors), dtype=torch.float32)
    ids = torch.as_tensor(id_vectors, dtype=torch.float32)
    if title.shape[0] != ids.shape[0]:
        raise ValueError(f"{title.shape[0]} title vectors and {ids.shape[0]} item vectors: one each per item")

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return torch.cat([title_weight * unit(title), unit(ids)], 1)


def joint_l2_ranks(
    answers: Sequence[int | None],
    vectors: torch.Tensor,
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    *,
    exclude_history: bool = True,
) -> list[int | None]:
    """The target's rank when every item is ranked by L2 distance to the answered item in ``vectors``
    (:func:`joint_item_vectors`; ``agent.final_ranking: l2_joint``); None where there is no answer.

    ``answers[i]``: the item the answer grounds to. The paper's rule with the title embedding joined to the
    recall model's item embedding, so the answer's neighbourhood also follows what the log says follows it.
    Not the paper's rule (section 4.1): its own row, never the headline."""
    if not len(answers) == len(targets) == len(histories):
        raise ValueError("answers, targets and histories must be aligned, one row per sample")
    rows = [n for n, a in enumerate(answers) if a is not None]
    scores = joint_l2_scores([int(answers[n]) for n in rows], vectors) if rows else None
    return _read_ranks(len(answers), rows, scores, targets, histories, exclude_history)


def joint_l2_scores(answers: Sequence[int], vectors: torch.Tensor) -> torch.Tensor:
    """Minus the L2 distance in ``vectors`` from each answered item to every item: the scores of ``l2_joint``."""
    with torch.inference_mode():
        return -torch.cdist(vectors[torch.tensor(list(answers), dtype=torch.long)], vectors)


def _read_ranks(
    size: int,
    rows: list[int],
    scores: torch.Tensor | None,
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    exclude_history: bool,
) -> list[int | None]:
    """The target's rank in each of ``rows`` from their ``scores`` (one row each), None elsewhere."""
    out: list[int | None] = [None] * size
    if not rows or scores is None:
        return out
    tgt = torch.tensor([targets[n] for n in rows])
    if exclude_history:
        ranks = target_ranks_excluding(scores, tgt, [np.asarray(histories[n], dtype=np.int64) for n in rows])
    else:
        ranks = target_ranks(scores, tgt)
    for n, r in zip(rows, ranks.tolist(), strict=True):
        out[n] = int(r)
    return out


JOINT_MODELS = "sasrec, gru4rec, caser or hybrid"
"""The built-in retrievers with item embeddings (``item_vectors``), which ``l2_joint`` joins to the titles'."""


def check_final_ranking(
    agent: Any, where: str, *, recall_run: str | Path | None = None, recall_model: str | None = None, reg: Any = None
) -> None:
    """Refuse, before any work, an ``agent.final_ranking`` the run's recall model cannot serve: ``answer_then_recall``
    and ``l2_joint`` need a recall run, and ``l2_joint`` one whose retriever has item embeddings. Judged by the
    retriever's class (``recall_run``'s recorded model, else ``recall_model``), without loading it; :meth:`
    FinalRanking.build` checks the loaded model again. ``derive --variant joint-l2`` over a last-title recall run
    wrote a run that could only fail, ``report`` rolled out every run before it first, and a sweep's ``l2_joint``
    cell failed at its fit's start, after the cells before it had trained (review s37)."""
    rule = agent.final_ranking
    if rule == "l2":
        return
    if recall_run is not None:
        from mgfrec.runs import read_run_info

        recall_model = read_run_info(recall_run).model
    if recall_model is None:
        raise ValueError(f"{where}: agent.final_ranking: {rule} needs the run's recall run (run.json extra.recall_run)")
    if rule != "l2_joint":
        return
    from mgfrec.registry import RegistryError, registry

    try:
        cls = (reg or registry()).load("retriever", recall_model)
    except RegistryError:  # a model nobody registered here: loading the recall run names it
        return
    if not callable(getattr(cls, "item_vectors", None)):
        named = f"{recall_run} ({recall_model})" if recall_run is not None else f"'{recall_model}'"
        raise ValueError(
            f"{where}: agent.final_ranking: l2_joint needs a recall run with item embeddings ({JOINT_MODELS}); "
            f"{named} has none"
        )


def check_start_recall(agent: Any, recall_run: str | Path | None, recall_model: str, run_flag: str, reg: Any) -> None:
    """:func:`check_final_ranking` for a command about to train over ``recall_run`` (named by ``run_flag``:
    ``--init RUN``, ``--recall-run RUN``), else over a fit of ``recall_model``."""
    if recall_run is not None:
        check_final_ranking(agent, run_flag, recall_run=recall_run, reg=reg)
    else:
        where = f"the recall model '{recall_model}' (--recall-model, retriever.model)"
        check_final_ranking(agent, where, recall_model=recall_model, reg=reg)


class FinalRanking:
    """A run's ``agent.final_ranking``: from answered titles to a score for every item (higher ranks
    first), the one rule evaluation and ``mgfrec recommend`` / ``serve`` / ``chat`` both read.

    ``l2`` (the paper's): minus the L2 distance to the answer's title embedding
    (:meth:`Grounding.full_scores <mgfrec.grounding.engine.Grounding.full_scores>`). ``answer_then_recall`` and
    ``l2_joint`` first ground the answer to its nearest item, then rank by :func:`answer_first_scores` or by L2
    in :func:`joint_item_vectors`; both need the run's recall run, whose loaded model stays in ``recall`` (None
    for ``l2``) for callers that also need its recall lists. :meth:`build` refuses a run that cannot use its rule
    at once, before any rollout."""

    def __init__(self, rule: str, grounding: Grounding, recall: Any = None, vectors: torch.Tensor | None = None):
        self.rule, self.grounding, self.recall, self.vectors = rule, grounding, recall, vectors

    @classmethod
    def build(cls, agent: Any, grounding: Grounding, recall_run: str | Path | None, where: str) -> FinalRanking:
        """For ``agent`` (an :class:`~mgfrec.config.schema.AgentConfig`) and the run's recall run; ``where``
        (the run folder) starts any refusal."""
        rule = agent.final_ranking
        if rule == "l2":
            return cls(rule, grounding)
        if not recall_run:
            raise ValueError(
                f"{where}: agent.final_ranking: {rule} needs the run's recall run (run.json extra.recall_run)"
            )
        from mgfrec.retrievers.fit import load_scorer

        scorer = load_scorer(recall_run).scorer
        if rule == "answer_then_recall":
            return cls(rule, grounding, recall=scorer)
        if not hasattr(scorer, "item_vectors"):
            raise ValueError(
                f"{where}: agent.final_ranking: l2_joint needs a recall run with item embeddings ({JOINT_MODELS}); "
                f"{recall_run} has none"
            )
        vectors = joint_item_vectors(grounding.item_embeddings, scorer.item_vectors(), agent.joint_title_weight)
        return cls(rule, grounding, recall=scorer, vectors=vectors)

    def answer_items(self, answers: Sequence[str], histories: Sequence[Sequence[int]] | None = None) -> list[int]:
        """The item each answered title grounds to: its nearest item; where several catalogue items share that
        title (CDs: "Greatest Hits" 61 times), the one the recall model scores highest for ``histories[i]``
        outside the history, which is the one its recall list showed. Without ``histories`` (or a recall
        model), the first of them."""
        items = self.grounding.nearest(list(answers)) if answers else []  # exactly, whatever the grounder
        if self.recall is None or histories is None:
            return items
        same = self.grounding.same_title
        rows = [n for n, j in enumerate(items) if j in same]
        if rows:
            scores = call_component(self.recall, "scores", [np.asarray(histories[n], dtype=np.int64) for n in rows])
            for r, n in enumerate(rows):
                seen = set(histories[n])
                items[n] = max(same[items[n]], key=lambda j: (j not in seen, float(scores[r, j]), -j))
        return items

    def _answered_items(
        self, trajectories: Sequence[Trajectory], histories: Sequence[Sequence[int]]
    ) -> list[int | None]:
        """:meth:`answer_items` per trajectory; None where there is no answer."""
        rows = [n for n, t in enumerate(trajectories) if t.answer is not None]
        items: list[int | None] = [None] * len(trajectories)
        answered = self.answer_items([trajectories[n].answer for n in rows], [histories[n] for n in rows])
        for n, item in zip(rows, answered, strict=True):
            items[n] = item
        return items

    def scores(self, answers: Sequence[str], histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """``[len(answers), N]`` scores of every item for each answered title (``histories[i]`` belongs to
        ``answers[i]``; only ``answer_then_recall`` reads it)."""
        if self.rule == "l2":
            return self.grounding.full_scores(list(answers))
        items = self.answer_items(answers, histories)
        if self.rule == "answer_then_recall":
            recall = call_component(self.recall, "scores", [np.asarray(h, dtype=np.int64) for h in histories])
            return answer_first_scores(items, recall)
        return joint_l2_scores(items, self.vectors)

    def ranks(
        self,
        trajectories: Sequence[Trajectory],
        targets: Sequence[int],
        histories: Sequence[Sequence[int]],
        *,
        exclude_history: bool = True,
        device: str | torch.device = "cpu",
    ) -> list[int | None]:
        """The target's rank for each trajectory's answer; None where there is no answer. Each rule's ranks
        come from its own function (:func:`answer_ranks`, :func:`answer_then_recall_ranks`,
        :func:`joint_l2_ranks`); ``device`` is where ``l2`` scores every item (the other rules score on the CPU)."""
        if self.rule == "l2":
            return answer_ranks(
                trajectories, self.grounding, targets, histories, exclude_history=exclude_history, device=device
            )
        items = self._answered_items(trajectories, histories)
        if self.rule == "answer_then_recall":
            recall = call_component(self.recall, "scores", [np.asarray(h, dtype=np.int64) for h in histories])
            return answer_then_recall_ranks(items, recall, targets, histories, exclude_history=exclude_history)
        return joint_l2_ranks(items, self.vectors, targets, histories, exclude_history=exclude_history)

"""The agent's quick validation during training: :func:`evaluate_policy` on a fixed subsample.

SFT runs it before training and after every epoch (:mod:`mgfrec.rl.sft`), GRPO every
``trainer.val_check_interval`` batches (:mod:`mgfrec.rl.module`). It runs the real agent loop, one trajectory
per sample, and measures the format and the grounded answer; ``mgfrec evaluate`` (:mod:`mgfrec.eval.agent_eval`)
is the full evaluation with intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mgfrec.agent.environment import Environment
from mgfrec.agent.final_ranking import FinalRanking
from mgfrec.agent.loop import rollout
from mgfrec.agent.samples import AgentSample, to_rollout_sample
from mgfrec.config.schema import MGFRecConfig
from mgfrec.ranking.metrics import per_sample
from mgfrec.registry import Registry, with_registry
from mgfrec.rollout.base import RolloutEngine, build_engine, context_limit
from mgfrec.text.neutralize import neutralize_title, reserved_strings
from mgfrec.text.prompts import AgentPrompts

METRIC_COLUMNS = ("format_valid", "mean_groundings", "answer_in_shown", "ndcg_full", "ndcg@10")
"""The keys of :func:`evaluate_policy`'s result, in the order the metrics files write them."""


def _norm(title: str) -> str:
    # WordPiece decoding (preset:tiny-minilm) lower-cases and re-spaces, around punctuation too ("vol. 4 ( folk )"
    # for "Vol. 4 (Folk)"): no shown title matched, and answer_in_shown read 0 for every answer. Compared without
    # any whitespace, then.
    return "".join(title.split()).casefold()


@with_registry
def evaluate_policy(
    model: torch.nn.Module,
    tokenizer: Any,
    environment: Environment,
    samples: Sequence[AgentSample],
    cfg: MGFRecConfig,
    *,
    prompts: AgentPrompts | None = None,
    seed: int = 0,
    reg: Registry | None = None,
    engine: RolloutEngine | None = None,
    final: FinalRanking | None = None,
) -> dict[str, float]:
    """Run the agent (``rollout.engine`` from ``reg``, one trajectory per sample) and measure it.

    Decoding follows ``eval.greedy`` like ``mgfrec evaluate``: greedy, or sampled at ``rollout.temperature`` /
    ``rollout.top_p`` with ``seed`` (so the same samples see the same random stream at every validation).

    ``format_valid``: share of trajectories that end ``answered``; ``mean_groundings``; ``answer_in_shown``:
    share whose answer is a title shown in the recall list or a returned item list; ``ndcg_full`` and
    ``ndcg@10`` of the grounded answer (full ranking, as the evaluator ranks), 0 for a sample with no answer.

    ``engine``: roll out with this engine, which must hold ``model``'s weights (GRPO passes its own, so a
    vllm engine starts once per run); default: a new one from ``rollout.engine``. ``final``: the run's
    ``agent.final_ranking`` (:class:`~mgfrec.agent.final_ranking.FinalRanking`) the NDCG columns are read by;
    default: the paper's L2.
    """
    if not samples:
        return dict.fromkeys(METRIC_COLUMNS, float("nan"))
    model.eval()
    if engine is None:
        engine = build_engine(cfg.rollout, model, tokenizer, reg=reg)
    grounding = environment.grounding
    max_context = context_limit(engine, model)
    result = rollout(
        engine,
        environment,
        [to_rollout_sample(s, grounding.titles) for s in samples],
        group_size=1,
        agent=cfg.agent,
        temperature=0.0 if cfg.eval.greedy else cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        seed=seed,
        prompts=prompts,
        max_context=max_context,
    )
    trajs = result.trajectories
    targets, histories = [s.target for s in samples], [s.history for s in samples]
    final = final or FinalRanking("l2", grounding)
    ranks = final.ranks(trajs, targets, histories, exclude_history=cfg.eval.exclude_history)
    reserved = reserved_strings(tokenizer)
    read: dict[str, str] = {}

    def as_read(title: str) -> str:
        """A title as the policy can write it back: through its tokenizer (WordPiece lower-cases, strips accents
        and re-spaces punctuation: "Café" comes back "cafe"), then :func:`_norm`."""
        if title not in read:
            ids = tokenizer.encode(title, add_special_tokens=False)
            read[title] = _norm(tokenizer.decode(ids, skip_special_tokens=True))
        return read[title]

    in_shown = []
    for t, s in zip(trajs, samples, strict=True):
        recall = [i for i in s.recall if i >= 0] if cfg.agent.use_recall else []
        shown = {as_read(neutralize_title(grounding.titles[i], reserved)) for i in recall}
        shown.update(as_read(neutralize_title(n, reserved)) for step in t.steps for n in step.item_titles)
        in_shown.append(t.answer is not None and as_read(t.answer) in shown)
    answered = [r for r in ranks if r is not None]
    scores = per_sample(np.asarray(answered, dtype=np.int64), [10]) if answered else {"ndcg_full": [], "ndcg@10": []}
    n = len(samples)
    return {
        "format_valid": float(np.mean([t.format_ok for t in trajs])),
        "mean_groundings": float(np.mean([t.num_groundings for t in trajs])),
        "answer_in_shown": float(np.mean(in_shown)),
        "ndcg_full": float(np.sum(scores["ndcg_full"]) / n),
        "ndcg@10": float(np.sum(scores["ndcg@10"]) / n),
    }

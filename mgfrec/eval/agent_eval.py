"""Evaluating an agent run with the one evaluator: roll the agent out on a split, rank from its answers.

The agent of ``RUN/policy`` (from ``mgfrec sft`` or ``mgfrec fit``) runs once per sample, greedily unless
``eval.greedy`` is false, with the run's own grounding, user agent and recall run. Each answer is grounded
and every item ranked (history excluded like every other method), and the ranks go through the same
:class:`~mgfrec.ranking.results.EvalResult` as the baselines, so intervals and paired tests apply unchanged.

A trajectory without an answer (a format error, a length or grounding limit) recommended nothing: its
target gets the worst rank, N. That is the pessimistic reading; it keeps broken agents from looking good.
The agent's own statistics (format-valid rate, groundings, end reasons) go to ``RUN/agent_<split>.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgfrec import progress
from mgfrec.agent.environment import build_environment
from mgfrec.agent.final_ranking import FinalRanking, reward_inputs
from mgfrec.agent.loop import RolloutSample, rollout
from mgfrec.agent.run_config import load_run_config
from mgfrec.atomic import atomic_write, atomic_write_text
from mgfrec.config.redaction import with_secrets_of
from mgfrec.config.schema import EvalConfig, MGFRecConfig, PolicyConfig
from mgfrec.data.protocol import subsample_rows
from mgfrec.grounding.engine import load_grounding
from mgfrec.models.policy import load_policy
from mgfrec.ranking.evaluator import evaluate_ranks
from mgfrec.ranking.results import EvalResult
from mgfrec.ranking.stats import bootstrap_ci
from mgfrec.registry import MissingExtraError, Registry, with_registry
from mgfrec.retrievers.recall import recall_lists
from mgfrec.rewards.compose import build_reward
from mgfrec.rollout.base import build_engine, check_engine, context_limit
from mgfrec.runs import RunInfo, check_same_run, json_ready, policy_folder, recall_run_of


@with_registry
def evaluate_agent(
    run_dir: Path,
    info: RunInfo,
    ds: Any,
    split: str,
    config: EvalConfig,
    *,
    limit: int | None = None,
    batch_size: int | None = None,
    exclude_history: bool | None = None,
    reg: Registry | None = None,
    write: bool = True,
    secrets_from: MGFRecConfig | None = None,
) -> tuple[EvalResult, dict[str, Any]]:
    """Roll the run's agent out on ``split`` (a seeded subsample of ``limit`` samples if given), ``batch_size``
    samples at a time (default ``config.rollout_batch_size``), then rank the answers ``config.batch_size`` at a
    time. With ``write``, the agent's statistics go to ``RUN/agent_<split>.json`` and its per-sample rows to
    ``RUN/agent_<split>_samples.csv``. ``secrets_from``: the config the run was just trained with, held in memory,
    whose secrets the run's ``config.yaml`` does not record (:func:`~mgfrec.config.redaction.with_secrets_of`).
    The user agent it builds is closed when it returns or fails."""
    with contextlib.ExitStack() as closing:
        return _evaluate_agent(
            run_dir,
            info,
            ds,
            split,
            config,
            limit=limit,
            batch_size=batch_size,
            exclude_history=exclude_history,
            reg=reg,
            write=write,
            secrets_from=secrets_from,
            closing=closing,
        )


def _evaluate_agent(
    run_dir: Path,
    info: RunInfo,
    ds: Any,
    split: str,
    config: EvalConfig,
    *,
    limit: int | None,
    batch_size: int | None,
    exclude_history: bool | None,
    reg: Registry | None,
    write: bool,
    secrets_from: MGFRecConfig | None,
    closing: contextlib.ExitStack,
) -> tuple[EvalResult, dict[str, Any]]:
    """:func:`evaluate_agent`; ``closing`` closes what it builds (the user agent) when the caller's block ends."""
    policy_dir = policy_folder(run_dir, info)
    cfg = load_run_config(run_dir)
    if secrets_from is not None:  # a sweep's cell: the URL's password it trained with, never written to the run
        cfg = with_secrets_of(cfg, secrets_from)
    exclude = config.exclude_history if exclude_history is None else exclude_history
    try:  # vLLM missing: refused before the policy and the embedder load (18 s on a tiny run; review s37)
        check_engine(cfg.rollout)
    except MissingExtraError as exc:
        raise MissingExtraError(
            f"{run_dir}: {exc}; evaluate reads the run's own rollout settings: to evaluate it with another engine, "
            f"derive a copy (mgfrec derive {run_dir} OUT --ablation full --set rollout.engine=hf), then evaluate OUT"
        ) from None
    model, tokenizer = load_policy(PolicyConfig(model=str(policy_dir), dtype=cfg.policy.dtype))
    model.eval()
    grounding = load_grounding(ds, cfg)
    environment = build_environment(grounding, tokenizer, cfg)
    closing.callback(environment.close)
    engine = build_engine(cfg.rollout, model, tokenizer)
    frame = ds.split(split)
    rows = subsample_rows(len(frame), limit, config.seed)
    recall_run = recall_run_of(run_dir, info)
    # agent.final_ranking, built (and a run that cannot use it refused) before any rollout
    final = FinalRanking.build(cfg.agent, grounding, recall_run, str(run_dir))
    recall = None
    if cfg.agent.use_recall and cfg.retriever.recall_size > 0 and recall_run:  # its model, if loaded, serves both
        recall = recall_lists(ds, split, cfg.retriever.recall_size, Path(recall_run), retriever=final.recall)
    histories = [[int(i) for i in frame["history"].iloc[n]] for n in rows]
    targets = [int(frame["target"].iloc[n]) for n in rows]
    chunk = config.rollout_batch_size if batch_size is None else batch_size
    trajectories = []
    with progress.task(f"evaluate {run_dir.name}") as task:
        for start in range(0, len(rows), chunk):
            trajectories.extend(
                _rollout_chunk(
                    engine,
                    environment,
                    cfg,
                    config,
                    model,
                    ds,
                    frame,
                    rows[start : start + chunk],
                    start,
                    histories,
                    recall,
                )
            )
            task.update(
                len(trajectories) / max(len(rows), 1), f"{len(trajectories)}/{len(rows)} {split} samples rolled out"
            )
    # One full ranking of the answers serves both the ranking metrics and the training reward; scored
    # eval.batch_size answers at a time, so memory holds a [batch, items] score matrix, not [split, items].
    step = config.batch_size
    inputs = [
        i
        for start in range(0, len(trajectories), step)
        for i in reward_inputs(
            trajectories[start : start + step],
            grounding,
            targets[start : start + step],
            histories[start : start + step],
            exclude_history=exclude,
            final=final,
        )
    ]
    ranks = [i.target_rank for i in inputs]
    worst = ds.num_items
    result = evaluate_ranks(
        np.asarray([worst if r is None else r for r in ranks], dtype=np.int64),
        frame["sample_id"].to_numpy()[rows],
        split=split,
        method=info.model,
        config=config,
        targets=np.asarray(targets, dtype=np.int64),
        num_items=ds.num_items,
        exclude_history=exclude,
        data_checksum=ds.checksum,
    )
    # The training reward (grpo.rewards, eq. 8 by default) of each evaluated trajectory: the quantity GRPO
    # maximises, e.g. -0.5 for a format error where the ranking metrics count the worst rank.
    reward = build_reward(cfg.grpo.rewards)
    rewards = np.asarray([reward.breakdown(i)["total"] for i in inputs], dtype=np.float64)
    lo, hi = (
        bootstrap_ci(rewards, config.bootstrap_samples, config.confidence, config.seed)
        if len(rewards)
        else (math.nan, math.nan)
    )
    ends = Counter(t.end_reason for t in trajectories)
    stats = {
        "samples": len(trajectories),
        "format_valid": float(np.mean([t.format_ok for t in trajectories])) if trajectories else float("nan"),
        "answered": sum(r is not None for r in ranks),
        "mean_groundings": float(np.mean([t.num_groundings for t in trajectories])) if trajectories else float("nan"),
        "mean_response_tokens": float(np.mean([t.response_length for t in trajectories]))
        if trajectories
        else float("nan"),
        "end_reasons": dict(sorted(ends.items())),
        "reward": float(rewards.mean()) if len(rewards) else float("nan"),
        "reward_ci": [lo, hi],
        "rewards": cfg.grpo.reward_names,
        "greedy": config.greedy,
        "temperature": 0.0 if config.greedy else cfg.rollout.temperature,
        "limit": limit,
    }
    if write:
        check_same_run(run_dir, info)  # not trained again meanwhile (review s33)
        text = json.dumps(json_ready(stats), indent=2, allow_nan=False)  # NaN (no trajectory) as null
        atomic_write_text(run_dir / f"agent_{split}.json", text)  # report reads it beside a sweep
        write_agent_samples(
            run_dir / f"agent_{split}_samples.csv", result.sample_ids, targets, trajectories, result.ranks, rewards
        )
    return result, stats


def write_agent_samples(
    path: Path, sample_ids: Any, targets: list[int], trajectories: list[Any], ranks: Any, rewards: Any = None
) -> Path:
    """``RUN/agent_<split>_samples.csv``: per sample its groundings, end reason, target rank, answered title
    (empty when none) and training reward, which the per-grounding-band figures (paper Fig. 3), paired reward
    comparisons and re-rankings of the same answers need and the aggregate ``agent_<split>.json`` cannot give."""
    frame = pd.DataFrame(
        {
            "sample_id": np.asarray(sample_ids),
            "target": np.asarray(targets, dtype=np.int64),
            "groundings": [int(t.num_groundings) for t in trajectories],
            "end_reason": [str(t.end_reason) for t in trajectories],
            "rank": np.asarray(ranks, dtype=np.int64),
        }
    )
    if rewards is not None:
        frame["reward"] = np.asarray(rewards, dtype=np.float64)
    frame["answer"] = [t.answer if t.answer is not None else "" for t in trajectories]  # last: added later
    atomic_write(path, lambda handle: frame.to_csv(handle, index=False), text=True)
    return path


def _rollout_chunk(
    engine: Any,
    environment: Any,
    cfg: Any,
    config: EvalConfig,
    model: Any,
    ds: Any,
    frame: pd.DataFrame,
    chunk: Any,
    start: int,
    histories: list[list[int]],
    recall: Any,
) -> list[Any]:
    """Roll the agent out on the samples ``chunk`` (rows of ``frame``; ``start`` is the first one's position)."""
    samples = [
        RolloutSample(
            tuple(ds.titles[i] for i in histories[start + k]),
            tuple(ds.titles[i] for i in recall[n] if i >= 0) if recall is not None else None,
            frame["sample_id"].iloc[n],
        )
        for k, n in enumerate(chunk)
    ]
    result = rollout(
        engine,
        environment,
        samples,
        agent=cfg.agent,
        temperature=0.0 if config.greedy else cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        seed=config.seed + start,
        max_context=context_limit(engine, model),
    )
    return result.trajectories

"""What one GRPO training step reports: the row of ``RUN/metrics.csv`` (and TensorBoard) built from the step's
trajectories, rewards, update metrics and timings, over the whole global batch (every process's trajectories
gathered, rank 0's groups first; each timing the slowest process's). Nothing here trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mgfrec.rl.advantages import degenerate_group_fraction
from mgfrec.rl.distributed import all_gather_rows, all_max

# the end/<reason> columns, in the order metrics.csv has always had them (mgfrec.agent.state.END_REASONS: the same)
END_REASONS = ("answered", "format_error", "grounding_limit", "length_limit")


def step_row(
    step: int,
    rewards: torch.Tensor,
    trajs: Sequence[Any],
    parts: Sequence[Mapping[str, float]],
    group_size: int,
    times: Sequence[float],
    train_metrics: Mapping[str, float],
    agent_stats: Mapping[str, float],
) -> dict[str, float]:
    """The metrics row of training step ``step``: the reward's mean and spread, the share of degenerate groups,
    format validity, groundings, response length, each reward part (``reward/<name>``; the NDCG part as
    ``ndcg``), how trajectories ended (``end/<reason>``), the update's metrics, the user agent's counters and
    ``times`` (rollout, environment, reward, train: in seconds)."""
    part_names = [k for k in parts[0] if k != "total"]
    facts = all_gather_rows(
        torch.tensor(
            [
                [
                    r,
                    t.format_ok,
                    t.num_groundings,
                    t.response_length,
                    *(p[k] for k in part_names),
                    *(str(t.end_reason) == e for e in END_REASONS),
                ]
                for r, t, p in zip(rewards.tolist(), trajs, parts, strict=False)
            ],
            dtype=torch.float64,
        )
    )
    all_rewards, means = facts[:, 0], facts.mean(dim=0).tolist()
    rollout_s, environment_s, reward_s, train_s = all_max(list(times))  # the slowest process's
    row = {
        "step": float(step),
        "trajectories": float(len(all_rewards)),
        "reward/mean": means[0],
        "reward/std": float(all_rewards.std()) if len(all_rewards) > 1 else 0.0,
        "degenerate_groups": degenerate_group_fraction(all_rewards.float(), group_size),
        "format_valid": means[1],
        "groundings": means[2],
        "response_length": means[3],
        **{f"reward/{k}": means[4 + n] for n, k in enumerate(part_names)},
        **{f"end/{e}": means[4 + len(part_names) + n] for n, e in enumerate(END_REASONS)},
        **train_metrics,
        **agent_stats,
        "time/rollout": rollout_s,
        "time/environment": environment_s,
        "time/reward": reward_s,
        "time/train": train_s,
    }
    if "reward/ndcg" in row:
        row["ndcg"] = row.pop("reward/ndcg")
    return row

"""Finished trajectories as padded tensors for the GRPO loss.

:func:`collate` right-pads every trajectory to the longest one. All tensors are ``[B, T]`` and aligned to
``input_ids``: ``old_logprobs[b, i]`` and ``action_mask[b, i]`` describe token ``input_ids[b, i]``, whose
log-prob the model's logits at position ``i - 1`` give (the loss shifts; nothing here does). Padding has
``attention_mask`` 0, ``action_mask`` False and ``old_logprobs`` 0.0. No policy token is ever cut: a cut would
drop part of a turn the reward was computed on, so a too-long batch is an error. What follows a trajectory's
last policy token (the observation a trajectory stopped by a budget ends with) is left out: it carries no loss
and, the model being causal, changes no earlier log-prob, but it went past ``max_context`` (the loop checks
each turn's budget, not the observation after the last one): an index error in a model with learned positions.

This module does not compute log-probs, advantages or the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from mgfrec.agent.constraints import AllowedSet, allowed_masks
from mgfrec.agent.trajectory import Trajectory


@dataclass(frozen=True)
class TrajectoryBatch:
    """``input_ids``/``attention_mask`` (int64), ``action_mask`` (bool), ``old_logprobs`` (float32): ``[B, T]``;
    ``prompt_lengths`` and ``lengths`` (int64): ``[B]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor
    old_logprobs: torch.Tensor
    prompt_lengths: torch.Tensor
    lengths: torch.Tensor
    allowed_index: torch.Tensor | None = None
    """``[B, T]`` int64: row of ``allowed_table`` that token ``[b, t]`` was sampled under, -1 if unconstrained."""
    allowed_table: torch.Tensor | None = None
    """``[M, V]`` bool: the distinct allowed sets of the batch (constrained decoding only)."""

    @property
    def constraints(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(allowed_index, allowed_table)`` for :mod:`mgfrec.models.logprobs`, or None when nothing is constrained."""
        if self.allowed_index is None or self.allowed_table is None:
            return None
        return self.allowed_index, self.allowed_table

    def to(self, device: str | torch.device) -> TrajectoryBatch:
        return TrajectoryBatch(
            **{f.name: (v.to(device) if (v := getattr(self, f.name)) is not None else None) for f in fields(self)}
        )


def collate(
    trajectories: Sequence[Trajectory],
    pad_token_id: int,
    *,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    vocab_size: int | None = None,
) -> TrajectoryBatch:
    """Right-padded tensors of ``trajectories``; ``max_length`` refuses (never truncates) longer ones.

    Constrained trajectories also give ``allowed_index``/``allowed_table`` (``vocab_size`` is then needed:
    the model's logits width)."""
    if not trajectories:
        raise ValueError("collate needs at least one trajectory")
    ids = [t.token_ids()[: _last_policy_token(t)] for t in trajectories]
    lengths = [len(x) for x in ids]
    longest = max(lengths)
    if max_length is not None and longest > max_length:
        worst = lengths.index(longest)
        raise ValueError(
            f"trajectory {worst} has {longest} tokens, more than max_length={max_length}; "
            "raise the limit or lower agent.max_new_tokens_total"
        )
    width = longest
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch = len(trajectories)
    input_ids = torch.full((batch, width), int(pad_token_id), dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    action = torch.zeros((batch, width), dtype=torch.bool)
    old = torch.zeros((batch, width), dtype=torch.float32)
    for b, (traj, row) in enumerate(zip(trajectories, ids, strict=True)):
        n = len(row)
        input_ids[b, :n] = torch.tensor(row, dtype=torch.long)
        attention[b, :n] = 1
        action[b, :n] = torch.tensor(traj.action_mask()[:n], dtype=torch.bool)
        old[b, :n] = torch.tensor(traj.logprobs()[:n], dtype=torch.float32)
    index = table = None
    if any(t.constrained for t in trajectories):
        if vocab_size is None:
            raise ValueError("constrained trajectories need collate(..., vocab_size=...) to build their masks")
        index = torch.full((batch, width), -1, dtype=torch.long)
        rows: dict[AllowedSet, int] = {}
        for b, traj in enumerate(trajectories):
            for t, s in enumerate(traj.allowed_sets()[: lengths[b]]):
                if s is not None:
                    index[b, t] = rows.setdefault(s, len(rows))
        table = allowed_masks(list(rows), vocab_size)
    return TrajectoryBatch(
        input_ids,
        attention,
        action,
        old,
        torch.tensor([len(t.prompt_ids) for t in trajectories], dtype=torch.long),
        torch.tensor(lengths, dtype=torch.long),
        index,
        table,
    )


def _last_policy_token(traj: Trajectory) -> int:
    """The length of ``traj`` up to and with its last policy token; one token when it has none (a prompt longer
    than the context ends before its first turn: whole, it went past the model's positions, and no token of it
    carries loss)."""
    mask = traj.action_mask()
    for i in range(len(mask) - 1, -1, -1):
        if mask[i]:
            return i + 1
    return min(len(mask), 1)

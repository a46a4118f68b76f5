"""Group-relative advantages (eq. 2 of the paper): each response's reward against its own group's.

For the ``G`` responses sampled for one prompt, ``A_i = (R_i - mean(R)) / (std(R) + eps)``. The standard
deviation is the **sample** one (Bessel's correction, ``N - 1`` in the denominator), as in DeepSeekMath's
reference code and TRL's ``GRPOTrainer`` (``trl.trainer.utils.nanstd``), so mgfrec's advantages equal TRL's
for the same rewards. ``eps`` sits outside the square root and keeps a group of equal rewards finite.

``scale=False`` leaves the advantages mean-centred only (Dr. GRPO): dividing by the std up-weights prompts
whose rewards barely differ, which Dr. GRPO argues is a difficulty bias.

A group whose rewards are all equal carries no learning signal; its advantages are exactly 0 here, not the
rounding residue of the mean over ``eps`` (six float32 rewards of 1/log2(6) would get 3e-4), so such a group
contributes nothing but the KL term to the loss.

This module knows nothing of the policy, the tokens or the loss; it maps rewards to advantages.
"""

from __future__ import annotations

import torch

from mgfrec.config.schema import GRPOConfig


def _grouped(rewards: torch.Tensor | list[float], group_size: int) -> torch.Tensor:
    """``rewards`` as a float ``[P, G]`` tensor; flat input must list each prompt's ``G`` responses together."""
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1 (grpo.group_size), got {group_size}")
    r = torch.as_tensor(rewards)
    if not r.is_floating_point():
        r = r.to(torch.get_default_dtype())
    if r.dim() == 2:
        if r.shape[1] != group_size:
            raise ValueError(
                f"rewards have shape {tuple(r.shape)}: the second dimension must be group_size={group_size}"
            )
        return r
    if r.dim() != 1:
        raise ValueError(
            f"rewards must be [num_prompts * group_size] or [num_prompts, group_size], got {tuple(r.shape)}"
        )
    if r.numel() % group_size:
        raise ValueError(
            f"{r.numel()} rewards do not split into groups of group_size={group_size}: "
            "every prompt needs exactly group_size responses, consecutive in the batch"
        )
    return r.view(-1, group_size)


def group_advantages(
    rewards: torch.Tensor | list[float],
    group_size: int,
    *,
    scale: bool = True,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Eq. 2 advantages, flat ``[P * G]`` in the order of ``rewards``.

    ``rewards`` is ``[P * G]`` (prompt ``p``'s responses at ``p*G .. p*G+G-1``) or ``[P, G]``. With
    ``scale`` the centred rewards are divided by ``std + eps`` (sample std, as TRL); without, they are only
    centred. A group of one response, or of equal rewards, gets advantages of exactly 0.
    """
    r = _grouped(rewards, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale:
        # A single response has no spread; TRL also uses 0 there rather than torch.std's NaN.
        std = r.std(dim=1, keepdim=True, correction=1) if group_size > 1 else torch.zeros_like(centred[:, :1])
        centred = centred / (std + eps)
    flat_group = r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True)
    return torch.where(flat_group, torch.zeros_like(centred), centred).reshape(-1)


def degenerate_group_fraction(rewards: torch.Tensor | list[float], group_size: int) -> float:
    """Fraction of groups whose rewards are all equal (they teach nothing); worth logging every step."""
    r = _grouped(rewards, group_size)
    return float((r.amax(dim=1) == r.amin(dim=1)).float().mean())


def advantages_from_config(rewards: torch.Tensor | list[float], config: GRPOConfig) -> torch.Tensor:
    """:func:`group_advantages` with ``grpo.group_size``, ``grpo.scale_rewards`` and ``grpo.advantage_epsilon``."""
    return group_advantages(rewards, config.group_size, scale=config.scale_rewards, eps=config.advantage_epsilon)

"""The GRPO loss (eqs. 3 and 6 of the paper) over per-token log-probs, masked to the policy's own tokens.

Per token ``t`` of response ``i`` with ``r = exp(logp - old_logp)`` and the sequence's advantage ``A_i``::

    objective = min(r * A_i, clip(r, 1 - eps, 1 + eps) * A_i)
    kl        = exp(ref_logp - logp) - (ref_logp - logp) - 1        # the "k3" estimator
    loss_t    = -(objective - beta * kl)

``kl`` is Schulman's k3 estimator of KL(pi_theta || pi_ref) from samples of pi_theta: unbiased, always
``>= 0``, and the form DeepSeekMath (GRPO's paper, which eq. 3 follows) and TRL's ``GRPOTrainer`` use. As a
loss its gradient is, in expectation, that of the *forward* KL(pi_ref || pi_theta).
``kl_importance_correction=True`` multiplies it by ``r`` (DeepSeek-V3.2), which makes the gradient the
unbiased reverse-KL one; TRL 1.16 does this by default (``use_bias_correction_kl=True``), mgfrec does not,
to stay with the paper. With ``kl_beta = 0`` the two are the same.

Only tokens with ``action_mask`` True enter the loss: the prompt, padding and every environment block
(``<item_list>``, ``<feedback>``; section 4.4.2) contribute exactly zero loss and zero gradient, whatever
their log-probs are, even NaN or inf. ``aggregation`` chooses how the masked tokens are averaged:

* ``"sequence-mean"``: each response's tokens are averaged, then the responses (``1/G sum_i 1/|y_i| sum_t``:
  DeepSeekMath's per-token form of eq. 3, which prints one ratio per response); TRL's ``loss_type="grpo"``. A long
  response's tokens weigh less.
* ``"token-mean"``: all masked tokens of the batch weigh the same (DAPO); TRL's ``loss_type="bnpo"``, and
  ``"dapo"`` when ``normalizer`` is the token count of the whole accumulated batch.

``normalizer`` replaces the denominator (the masked-token count, or the number of sequences) so that the
losses of several micro-batches add up to the mean over the whole batch: pass the count of the full batch.

This module computes the loss from tensors; it runs no model and owns no optimiser.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

Aggregation = Literal["token-mean", "sequence-mean"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


def _check_shapes(logprobs: torch.Tensor, action_mask: torch.Tensor, **others: torch.Tensor | None) -> None:
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got {tuple(logprobs.shape)}")
    if action_mask.shape != logprobs.shape:
        raise ValueError(f"action_mask {tuple(action_mask.shape)} must match logprobs {tuple(logprobs.shape)}")
    for name, t in others.items():
        if t is not None and t.shape != logprobs.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must match logprobs {tuple(logprobs.shape)}")


def _advantages_2d(advantages: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``[B]``, ``[B, 1]`` or per-token ``[B, T]`` advantages, broadcastable to ``[B, T]``."""
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    if advantages.dim() != 2 or advantages.shape[0] != shape[0] or advantages.shape[1] not in (1, shape[1]):
        raise ValueError(
            f"advantages must be [B], [B, 1] or [B, T] with B, T = {tuple(shape)}, got {tuple(advantages.shape)}"
        )
    return advantages


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    action_mask: torch.Tensor,
    *,
    clip_epsilon: float,
    kl_beta: float,
    aggregation: Aggregation = "token-mean",
    normalizer: float | torch.Tensor | None = None,
    kl_importance_correction: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped GRPO loss to minimise, and detached scalar metrics.

    ``logprobs`` (with gradient), ``old_logprobs`` (sampling policy) and ``ref_logprobs`` (reference policy, or
    None when ``kl_beta`` is 0) are ``[B, T]`` token log-probs aligned to the tokens (see
    :mod:`mgfrec.models.logprobs`); ``advantages`` is ``[B]`` (one per response, eq. 2) or ``[B, T]``;
    ``action_mask`` is ``[B, T]``, True on policy-sampled tokens. Old and reference log-probs are treated
    as constants. ``normalizer`` and ``kl_importance_correction``: see the module docstring.

    Metrics, all over masked tokens: ``clip_fraction/low`` (ratio below ``1 - eps`` with ``A < 0``),
    ``clip_fraction/high`` (above ``1 + eps`` with ``A > 0``) and ``clip_fraction/total``: the tokens whose
    gradient the clip zeroes, as TRL's ``clip_ratio/*``; ``ratio/mean``; ``approx_kl_old`` (k3 estimate of
    KL(pi_old || pi_theta)); ``kl`` (the KL term as it enters the loss, as TRL's ``kl``; only when
    ``ref_logprobs`` is given); ``policy_loss`` (the loss without the KL term); ``tokens`` (masked tokens).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS} (grpo.loss_aggregation), got {aggregation!r}")
    if kl_beta < 0 or clip_epsilon <= 0:
        raise ValueError(f"need kl_beta >= 0 and clip_epsilon > 0, got kl_beta={kl_beta}, clip_epsilon={clip_epsilon}")
    if kl_beta > 0 and ref_logprobs is None:
        raise ValueError(
            f"kl_beta={kl_beta} needs ref_logprobs from the reference policy; set grpo.kl_beta: 0 to train without"
        )
    _check_shapes(logprobs, action_mask, old_logprobs=old_logprobs, ref_logprobs=ref_logprobs)
    adv = _advantages_2d(advantages.to(logprobs.dtype), logprobs.shape)
    mask = action_mask.bool()
    weight = mask.to(logprobs.dtype)
    zero = logprobs.new_zeros(())
    # Masked entries are replaced *before* exp, here and for the KL, and the sum below selects with `where`
    # rather than multiplying by the mask: a stale or NaN value on an <item_list> token (log-prob or
    # per-token advantage) would otherwise become inf/NaN, and 0 * NaN is NaN in the loss and the gradient.
    log_ratio = torch.where(mask, logprobs - old_logprobs.detach(), zero)
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    objective = torch.minimum(ratio * adv, clipped * adv)
    per_token = -objective
    policy_per_token = per_token
    kl = None
    if ref_logprobs is not None:
        ref_gap = torch.where(mask, ref_logprobs.detach() - logprobs, zero)
        kl = torch.exp(ref_gap) - ref_gap - 1.0
        if kl_importance_correction:
            # The tokens were sampled from pi_old, not pi_theta: weighting by the (unclipped, differentiable)
            # ratio makes the KL gradient the unbiased reverse-KL one (DeepSeek-V3.2; TRL's default).
            kl = ratio * kl
        per_token = per_token + kl_beta * kl

    tokens_per_seq = weight.sum(-1)
    n_tokens = tokens_per_seq.sum()

    def aggregate(values: torch.Tensor) -> torch.Tensor:
        values = torch.where(mask, values, zero)
        if aggregation == "sequence-mean":
            # clamp: a response with no policy tokens adds 0 but still counts as one of the B (as TRL's "grpo")
            per_seq = values.sum(-1) / tokens_per_seq.clamp(min=1.0)
            return per_seq.sum() / (per_seq.shape[0] if normalizer is None else normalizer)
        return values.sum() / (n_tokens.clamp(min=1.0) if normalizer is None else normalizer)

    loss = aggregate(per_token)

    with torch.no_grad():
        denom = n_tokens.clamp(min=1.0)

        def token_mean(values: torch.Tensor) -> torch.Tensor:
            return torch.where(mask, values, zero).sum() / denom

        low = (ratio < 1.0 - clip_epsilon) & (adv < 0)
        high = (ratio > 1.0 + clip_epsilon) & (adv > 0)
        metrics = {
            "clip_fraction/low": token_mean(low.to(weight.dtype)),
            "clip_fraction/high": token_mean(high.to(weight.dtype)),
            "clip_fraction/total": token_mean((low | high).to(weight.dtype)),
            "ratio/mean": token_mean(ratio),
            # k3 with samples from pi_old: E_old[r - 1 - log r] estimates KL(pi_old || pi_theta)
            "approx_kl_old": token_mean(ratio - 1.0 - log_ratio),
            "policy_loss": aggregate(policy_per_token).detach(),
            "tokens": n_tokens.detach(),
        }
        if kl is not None:
            metrics["kl"] = token_mean(kl)
    return loss, metrics

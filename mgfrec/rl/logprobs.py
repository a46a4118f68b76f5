"""Per-token log-probs and entropies of a causal LM over whole trajectories, for the GRPO loss.

Alignment (the same as :mod:`mgfrec.agent.batching` and :func:`mgfrec.rollout.logprobs.sequence_logprobs`):
every result is ``[B, T]`` and aligned to ``input_ids``. Entry ``t`` describes token ``input_ids[:, t]``:
``log p(input_ids[t] | input_ids[<t])``, which the model's logits at position ``t - 1`` give. Column 0 has no
context and is 0. So ``logprobs * action_mask`` selects exactly the policy-sampled tokens, with no shift left
for the caller to get wrong.

Positions count real tokens only (``attention_mask.cumsum - 1``), so left or right padding leaves a row's
values unchanged, for absolute-position models too (RoPE models such as Qwen2 only see relative offsets);
padded entries are meaningless and must be masked by the caller (the loss does).

Memory: the model's ``[B, T, V]`` logits are unavoidable here; on top of them the log-prob is
``gather - logsumexp`` (no second ``[B, T, V]`` log-softmax kept for backward) and the entropy, which is for
logging only, is computed without gradient and in chunks of rows.

This module runs forward passes; it never samples, and it does not know which tokens are the policy's.
"""

from __future__ import annotations

import torch

# Rows of the flattened [B*T, V] logits per entropy chunk: bounds the temporary softmax to ~chunk * V floats.
_ENTROPY_CHUNK = 1024


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; greedy decoding (temperature 0) scores at temperature 1.0"
        )
    return float(temperature)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits for positions ``0 .. T-2`` (each predicts the next token), at least float32, over temperature."""
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        # log-probs of half-precision logits lose ~3 digits; float64 is kept as is (the numerical tests use it).
        logits = logits.float()
    temperature = _check_temperature(temperature)
    return logits / temperature if temperature != 1.0 else logits


def logprobs_from_logits(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T]`` log-prob of each token of ``input_ids`` under ``logits`` (``[B, T, V]``); column 0 is 0."""
    scaled = _scaled(logits, temperature)
    picked = scaled.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(scaled, dim=-1)
    return torch.nn.functional.pad(picked, (1, 0))


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T]`` entropy (nats) of the distribution that predicted each token; column 0 is 0. No gradient.

    Aligned like :func:`logprobs_from_logits`: entry ``t`` is the entropy of ``softmax(logits[:, t-1] / T)``.
    """
    scaled = _scaled(logits, temperature)
    flat = scaled.reshape(-1, scaled.shape[-1])
    parts = []
    for chunk in flat.split(_ENTROPY_CHUNK):
        logp = torch.log_softmax(chunk, dim=-1)
        parts.append(-(logp.exp() * logp).sum(-1))
    entropy = torch.cat(parts).view(scaled.shape[:-1]) if parts else scaled.new_zeros(scaled.shape[:-1])
    return torch.nn.functional.pad(entropy, (1, 0))


def _logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[B, T]``: entry ``t`` is ``log p(input_ids[t] | input_ids[<t])`` under ``model``; 0 at ``t = 0``.

    Gradients flow unless called under ``torch.no_grad()`` (as for the old and reference policies).
    ``temperature`` must be the sampling temperature, so that the ratio to the engine's log-probs is 1
    on-policy.
    """
    return logprobs_from_logits(_logits(model, input_ids, attention_mask), input_ids, temperature)


def token_logprobs_and_entropy(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_logprobs` and :func:`token_entropy` from one forward pass (the entropy has no gradient)."""
    logits = _logits(model, input_ids, attention_mask)
    return logprobs_from_logits(logits, input_ids, temperature), token_entropy(logits, temperature)

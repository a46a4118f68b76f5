"""The log-prob every engine's ``Generation.logprobs`` must equal, as the trainer will recompute it.

One definition for sampling and training: ``log_softmax(logits / T)`` of the next token, ``T`` the sampling
temperature, and ``T = 1`` for greedy decoding (``T = 0``). The teacher-forced computation itself is the
GRPO loss's :func:`mgfrec.models.logprobs.token_logprobs`; :func:`sequence_logprobs` only maps the sampling
temperature to the scoring one, so that the engine tests compare against exactly what the loss uses.
"""

from __future__ import annotations

import torch

from mgfrec.models.logprobs import token_logprobs


def effective_temperature(temperature: float) -> float:
    """The temperature log-probs are taken at: ``temperature``, or 1 for greedy (``temperature == 0``)."""
    return temperature if temperature > 0 else 1.0


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Float32 ``[B, L]``: entry ``t`` is the log-prob of ``input_ids[:, t]`` given the tokens before it.

    Column 0 (no context) is 0. Padding (``attention_mask`` 0) does not change a row's values. ``temperature``
    is the *sampling* temperature (0 allowed: scored at 1).
    """
    return token_logprobs(model, input_ids, attention_mask, effective_temperature(temperature))

"""One sampling step: next-token logits in, tokens and their log-probs out.

Randomness comes in as one uniform number per row, drawn by the caller from that row's own generator, so a
row's sample depends on its seed and its logits only, never on which other rows share the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mgfrec.rollout.logprobs import effective_temperature


def row_generator(seed: int, prompt_index: int, sample_index: int) -> torch.Generator:
    """A CPU generator for one (prompt, sample) row, well mixed from the three integers."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, prompt_index, sample_index]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device="cpu").manual_seed(int(state[0]) << 32 | int(state[1]))


def draw_uniforms(generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """Float64 ``[B]`` in [0, 1): one draw from each row's generator.

    The dtype is named: the default one (float32, or bfloat16 under Lightning's ``bf16-true``) rounded a draw near
    1 up to exactly 1.0, and the last vocabulary id was sampled whatever its probability (review s40)."""
    draws = [torch.rand((), generator=g, dtype=torch.float64).item() for g in generators]
    return torch.tensor(draws, dtype=torch.float64, device=device)


def sample_next(
    logits: torch.Tensor, uniforms: torch.Tensor, *, temperature: float, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[B]`` (int64) and float32 log-probs ``[B]`` from float logits ``[B, V]``.

    ``temperature == 0`` is greedy (``uniforms`` unused). Otherwise inverse-CDF sampling from
    ``softmax(logits / T)`` restricted to the smallest set of tokens whose mass reaches ``top_p``. The
    log-prob is always of the untruncated ``log_softmax(logits / T)`` (``T = 1`` when greedy).
    """
    logp = torch.log_softmax(logits.float() / effective_temperature(temperature), dim=-1)
    if temperature == 0:
        tokens = logits.argmax(-1)
    else:
        probs = logp.double().exp()
        if top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
            # drop a token when the mass before it already reaches top_p (the first token always stays)
            sorted_p = sorted_p.masked_fill(sorted_p.cumsum(-1) - sorted_p >= top_p, 0.0)
        else:
            sorted_p, order = probs, None
        cdf = sorted_p.cumsum(-1)
        total = cdf[:, -1:]
        # kept below the total mass, whatever uniform came in (1.0 from a caller's rounding, or a product that
        # rounded up): right=True then finds the first index whose cdf exceeds it, so a zero-probability token, the
        # padded tail of the vocabulary included, is never picked
        target = torch.minimum(uniforms.double().unsqueeze(-1) * total, torch.nextafter(total, torch.zeros_like(total)))
        picks = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)
        tokens = picks if order is None else order.gather(-1, picks[:, None]).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)

"""Helpers shared by the engine tests (hf and vllm), so both check against the same definitions."""

from __future__ import annotations

import torch

from mgfrec.rollout.logprobs import sequence_logprobs


def sample_prompts(tokenizer) -> list[list[int]]:
    """A short and a longer prompt, as token ids (padding differences show between them)."""
    return [
        tokenizer.encode("Kind of Blue", add_special_tokens=False),
        tokenizer.encode("The user listened to Abbey Road (Remastered) and Rumours, then", add_special_tokens=False),
    ]


def teacher_forced(model, prompt: list[int], generated: list[int], temperature: float) -> torch.Tensor:
    """Log-probs of ``generated`` after ``prompt`` from one full forward pass (what the loss recomputes)."""
    ids = torch.tensor([prompt + generated])
    with torch.no_grad():
        return sequence_logprobs(model, ids, temperature=temperature)[0, len(prompt) :]

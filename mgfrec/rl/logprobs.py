"""Moved to :mod:`mgfrec.models.logprobs` (docs/architecture.md); this path keeps working."""

from mgfrec.models.logprobs import (
    Constraints,
    head_logits,
    head_matches,
    logprobs_from_logits,
    restrict,
    token_entropy,
    token_logprobs,
    token_logprobs_and_entropy,
    vocab_width,
)

__all__ = [
    "Constraints",
    "head_logits",
    "head_matches",
    "logprobs_from_logits",
    "restrict",
    "token_entropy",
    "token_logprobs",
    "token_logprobs_and_entropy",
    "vocab_width",
]

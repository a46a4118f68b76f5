"""Constrained turns inside vLLM: a logits processor that applies each request's
:class:`~mgfrec.rollout.base.TokenConstraint` to its row of logits.

vLLM (v1) builds logits processors from classes given to ``LLM(logits_processors=...)`` and tells them which
request sits in which batch row. :class:`ConstraintLogitsProcessor` looks a request's constraint up by the key
in its ``SamplingParams.extra_args`` (an int, so it survives vLLM's copies and its msgpack transport; the
objects stay in this process's :data:`CONSTRAINTS`, which is why the engine core must run in-process). Before
each token it feeds the constraint the tokens sampled since the last call, then adds the allowed set's offsets
(-inf where disallowed, a prior's log-weights where there is one) to the row, as the hf engine does.

It is not argmax-invariant, so vLLM applies it before temperature: the sampled distribution is
``softmax((logits + offsets) / T)`` and, with ``logprobs_mode="processed_logprobs"``, the returned log-probs are
of that distribution, the one :mod:`mgfrec.models.logprobs` recomputes for training.

This module imports vLLM; :mod:`mgfrec.rollout.vllm_engine` imports it only when vLLM is there.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from mgfrec.rollout.base import AllowedTokens, TokenConstraint, allowed_offsets

EXTRA_ARG = "mgfrec_constraint"
_keys = itertools.count()


class _Request:
    """One request's constraint, the mask cache of its generate call, and how many of its output tokens the
    constraint has been fed. The count lives here, not in the per-row processor: vLLM drops a request from its
    batch when it is preempted or not scheduled for a step and adds it back later with the tokens of before,
    which a fresh count fed to the constraint a second time (a grammar error inside vLLM's step, or a silently
    wrong state)."""

    __slots__ = ("cache", "constraint", "seen")

    def __init__(self, constraint: TokenConstraint, cache: dict[AllowedTokens, torch.Tensor]):
        self.constraint, self.cache, self.seen = constraint, cache, 0


CONSTRAINTS: dict[int, _Request] = {}
"""Key -> the request's constraint state; filled and emptied by the engine."""


def register(constraints: Sequence[TokenConstraint | None]) -> list[int | None]:
    """Register one generate call's constraints; returns their keys (None for an unconstrained row)."""
    cache: dict[AllowedTokens, torch.Tensor] = {}  # one per call: equal sets share one offsets row
    keys: list[int | None] = []
    for c in constraints:
        if c is None:
            keys.append(None)
            continue
        key = next(_keys)
        CONSTRAINTS[key] = _Request(c, cache)
        keys.append(key)
    return keys


def release(keys: Sequence[int | None]) -> None:
    for key in keys:
        if key is not None:
            CONSTRAINTS.pop(key, None)


class _Row:
    """One request's per-row processor: advance the constraint by the new output tokens, then offset the row."""

    def __init__(self, request: _Request):
        self.request = request

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        request = self.request
        for tok in output_ids[request.seen :]:
            if tok < 0:  # vLLM's placeholder for a token still in flight
                raise RuntimeError(
                    "constrained decoding needs each sampled token before the next step: "
                    "set rollout.options.async_scheduling: false"
                )
            request.constraint.advance(tok)
            request.seen += 1
        return logits + allowed_offsets(request.constraint.allowed(), request.cache, logits)


class ConstraintLogitsProcessor(AdapterLogitsProcessor):
    """Applies the constraint registered under a request's ``extra_args[EXTRA_ARG]``; other requests pass."""

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token is most likely: applied before temperature, also when greedy

    def new_req_logits_processor(self, params: SamplingParams) -> Any:
        key = (params.extra_args or {}).get(EXTRA_ARG)
        if key is None:
            return None
        return _Row(CONSTRAINTS[key])  # also when vLLM adds the request back: the same state goes on

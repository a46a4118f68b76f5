"""The ``hf`` rollout engine: batched sampling from a transformers causal LM with a KV cache.

Its own decoding loop rather than ``model.generate``, so that (1) each row draws from its own seeded
generator (a sample does not depend on its batch neighbours or on padding), (2) the returned log-probs are
exactly the definition in :mod:`mgfrec.rollout.base`, and (3) rows that hit a stop leave the batch and the
KV cache at once instead of decoding padding until the longest row ends.

Prompts are left-padded; positions count real tokens only, so a padded row computes what it would alone.

Prefix reuse across turns (``Options.reuse_prefix``, on by default). The multi-turn loop calls ``generate``
once per turn with each trajectory's whole context: the previous call's prompt, the turn it sampled, and the
observation appended since. Re-reading all of it every turn is most of the cost on a CPU. So when a row
finishes, its key/value cache (every real token it was fed: the prompt and all sampled tokens but the last,
which was never fed) is kept, keyed by those tokens; the next call looks each prompt up, and a prompt that
extends a kept prefix is prefilled from that cache, with only its new tokens computed. Kept caches that the
next call does not use are dropped, so at most one call's rows are held. The result equals a full prefill
up to float rounding (tests/rollout/test_hf_prefix.py checks the log-probs against teacher forcing).
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import DynamicCache

from mgfrec.rollout.base import (
    AllowedTokens,
    Generation,
    TokenConstraint,
    allowed_offsets,
    check_generate_args,
    single_token_stops,
)
from mgfrec.rollout.sampling import draw_uniforms, row_generator, sample_next


@dataclass
class _Row:
    """One (prompt, sample) being decoded."""

    prompt: list[int]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop: str | None = None
    searched: int = 0  # characters of decoded text already searched for stop strings
    constraint: TokenConstraint | None = None


def has_sliding_window(config: Any) -> bool:
    """Whether a model attends over a sliding window in any layer (Mistral, Gemma 2/3, Qwen2 with
    ``use_sliding_window``): its cache then keeps only the window, not the whole prefix."""
    if config is None:
        return False
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return True
    return bool(getattr(config, "sliding_window", None)) and getattr(config, "use_sliding_window", True) is not False


class HFEngine:
    """Samples from a ``PreTrainedModel`` on its own device. Built as ``HFEngine(model, tokenizer, options)``.

    It supports constrained turns (``constraints=``, :class:`~mgfrec.rollout.base.TokenConstraint`): at each step the
    logits of a constrained row are renormalised over its allowed tokens before sampling, and the returned
    log-prob is of that restricted distribution.
    """

    supports_constraints = True

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        max_batch_size: int = Field(
            256, ge=1, description="rows (prompts x samples) per batch; a prompt's n samples always share one batch"
        )
        copy_model: bool = Field(
            False, description="decode from a private copy (load_weights then updates only the copy); default: share"
        )
        reuse_prefix: bool = Field(
            True, description="keep each finished row's KV cache so the next turn prefills only its new tokens"
        )

    def __init__(self, model: torch.nn.Module, tokenizer: Any, options: HFEngine.Options | None = None):
        self.options = options or HFEngine.Options()
        self.model = copy.deepcopy(model) if self.options.copy_model else model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load_policy sets one (pad = eos) for hub models")
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns until 5.40)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.timings = {"prefill_s": 0.0, "decode_s": 0.0, "prefill_tokens": 0, "decode_steps": 0, "reused_tokens": 0}
        """Cumulative: prompt forward passes (with padding) vs one-token decoding steps, for benchmarks;
        ``reused_tokens``: prompt tokens served from a kept prefix cache instead of being recomputed."""
        # A sliding-window layer's cache holds only its last W positions, which a kept prefix cannot be cut from
        # (a review: IndexError on Gemma-3/Mistral-style models once a context passed the window): no reuse there.
        self._reuse = self.options.reuse_prefix and not has_sliding_window(getattr(self.model, "config", None))
        self._kept: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}  # prefix -> per-layer (K, V)
        self._offered: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Copy ``state_dict`` into the engine's model in place (strict: every key must match)."""
        with torch.no_grad():
            self.model.load_state_dict(dict(state_dict), strict=True)
        self._kept.clear()  # caches of the old weights are stale

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        # instruct models list several end tokens (Qwen2.5: <|im_end|> and <|endoftext|>)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return {i for i in ids if i is not None}

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        stop_token_ids: Sequence[int] = (),
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        constraints: Sequence[TokenConstraint | None] | None = None,
    ) -> list[list[Generation]]:
        """See :class:`mgfrec.rollout.base.RolloutEngine`. ``constraints``: one per row (``len(prompts) * n``,
        prompt-major) or None; each is advanced through the tokens its row samples."""
        check_generate_args(prompts, max_new_tokens, n, temperature, top_p, constraints, stop)
        stop_ids, stop_strings = single_token_stops(self.tokenizer, stop)
        for i in stop_token_ids:
            stop_ids.setdefault(int(i), self.tokenizer.convert_ids_to_tokens(int(i)))
        for i in self._eos_ids():
            stop_ids.setdefault(i, self.tokenizer.convert_ids_to_tokens(i))
        rows = [_Row(list(map(int, p)), row_generator(seed, i, j)) for i, p in enumerate(prompts) for j in range(n)]
        for row, c in zip(rows, constraints or (), strict=False):
            row.constraint = c
        # prompts of similar length together (less padding when they do not fit one batch); a prompt's n
        # samples stay in one batch, so its prefill is computed once and shared
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        per_batch = max(1, self.options.max_batch_size // n)
        # this call may use what the last one kept; what it keeps is offered to the next call only
        self._offered, self._kept = self._kept, {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), per_batch):
                    chunk = [rows[i * n + j] for i in order[start : start + per_batch] for j in range(n)]
                    self._decode(chunk, n, max_new_tokens, stop_ids, stop_strings, temperature, top_p)
        finally:
            self.model.train(was_training)
            self._offered = {}
        out = [self._finish(r) for r in rows]
        return [out[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _finish(self, row: _Row) -> Generation:
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=False)
        reason = "stop" if row.stop is not None else "length"
        return Generation(row.tokens, row.logprobs, text, reason, row.stop)

    def _decode(
        self,
        rows: list[_Row],
        n: int,
        max_new_tokens: int,
        stop_ids: dict[int, str],
        stop_strings: list[str],
        temperature: float,
        top_p: float,
    ) -> None:
        """Decode ``rows``, in which each run of ``n`` consecutive rows shares one prompt."""
        device = self.device
        cache, mask, logits = self._prefill([r.prompt for r in rows[::n]], n)
        started = time.perf_counter()
        live = list(range(len(rows)))  # batch row b decodes rows[live[b]]
        next_pos = mask.sum(-1)
        masks: dict[AllowedTokens, torch.Tensor] = {}
        for step in range(max_new_tokens):
            uniforms = draw_uniforms([rows[r].generator for r in live], device)
            logits = self._constrain(logits, [rows[r].constraint for r in live], masks)
            tokens, logps = sample_next(logits, uniforms, temperature=temperature, top_p=top_p)
            keep = []
            for b, (tok, lp) in enumerate(zip(tokens.tolist(), logps.tolist(), strict=False)):
                row = rows[live[b]]
                if row.constraint is not None:
                    row.constraint.advance(tok)
                row.tokens.append(tok)
                row.logprobs.append(lp)
                row.stop = stop_ids.get(tok) or self._string_stop(row, stop_strings)
                if row.stop is None:
                    keep.append(b)
            if not keep or step == max_new_tokens - 1:
                self._keep(cache, mask, [rows[r] for r in live])
                break
            if len(keep) < len(live):  # finished rows leave the batch and the cache
                kept = set(keep)
                gone = [b for b in range(len(live)) if b not in kept]
                self._keep(cache, mask, [rows[live[b]] for b in gone], gone)
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, tokens, next_pos = mask[index], tokens[index], next_pos[index]
                live = [live[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=-1)
            out = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                use_cache=True,
                **{self._cache_kw: cache},
            )
            logits = out.logits[:, -1].float()
            next_pos = next_pos + 1
        self.timings["decode_s"] += time.perf_counter() - started
        self.timings["decode_steps"] += step + 1

    @staticmethod
    def _constrain(
        logits: torch.Tensor, constraints: list[TokenConstraint | None], masks: dict[AllowedTokens, torch.Tensor]
    ) -> torch.Tensor:
        """``logits`` with every disallowed token of a constrained row at -inf and its allowed set's offsets (a
        prior's log-weights, :meth:`AllowedTokens.offsets`) added; ``masks`` caches them per distinct set."""
        if all(c is None for c in constraints):
            return logits
        offsets = torch.zeros_like(logits)
        for b, c in enumerate(constraints):
            if c is not None:
                offsets[b] = allowed_offsets(c.allowed(), masks, logits[b])
        return logits + offsets

    def _keep(
        self, cache: DynamicCache, mask: torch.Tensor, rows: list[_Row], batch_rows: list[int] | None = None
    ) -> None:
        """Keep the KV cache of ``rows`` (batch positions ``batch_rows``, default all) for the next call."""
        if not self._reuse:
            return
        for b, row in zip(batch_rows if batch_rows is not None else range(len(rows)), rows, strict=True):
            real = mask[b].bool()
            key = tuple(row.prompt + row.tokens[:-1])  # the last sampled token was never fed to the model
            if int(real.sum()) != len(key):
                continue
            self._kept[key] = [
                (layer.keys[b][:, real].clone(), layer.values[b][:, real].clone()) for layer in cache.layers
            ]

    def _reused(self, prompt: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The longest offered prefix of ``prompt`` (shorter than it), as (length, per-layer KV); (0, None) if none."""
        best = None
        for key in self._offered:
            if len(key) < len(prompt) and (best is None or len(key) > len(best)) and tuple(prompt[: len(key)]) == key:
                best = key
        return (0, None) if best is None else (len(best), self._offered[best])

    def _prefill(self, prompts: list[list[int]], n: int) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """KV cache, attention mask and next-token logits of left-padded ``prompts``, each repeated ``n`` times.

        A prompt's ``n`` samples share one forward pass over it; the cache rows are copied, not recomputed.
        A prompt that extends a kept prefix (see the module docstring) computes only its new tokens: the batch is
        then ``[left padding, kept prefix, left padding, new tokens]`` per row, the padding masked out.
        """
        found = [self._reused(p) for p in prompts]
        if any(kv is not None for _, kv in found):
            return self._prefill_from(prompts, found, n)
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, prompt in enumerate(prompts):
            ids[b, width - len(prompt) :] = torch.tensor(prompt)
            mask[b, width - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        return self._prefill_forward(ids, mask, positions, cache, n)

    def _prefill_from(
        self, prompts: list[list[int]], found: list[tuple[int, Any]], n: int
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """:meth:`_prefill` where some prompts extend kept prefixes: only their new tokens are computed."""
        device = self.device
        past = max(length for length, _ in found)
        new = max(len(p) - length for p, (length, _) in zip(prompts, found, strict=True))
        template = next(kv for _, kv in found if kv is not None)
        layers = len(template)
        heads, dim = template[0][0].shape[0], template[0][0].shape[-1]
        dtype = template[0][0].dtype
        keys = [torch.zeros((len(prompts), heads, past, dim), dtype=dtype, device=device) for _ in range(layers)]
        values = [torch.zeros_like(k) for k in keys]
        mask = torch.zeros((len(prompts), past + new), dtype=torch.long, device=device)
        ids = torch.full((len(prompts), new), self.tokenizer.pad_token_id, dtype=torch.long)
        positions = torch.zeros((len(prompts), new), dtype=torch.long)
        for b, (prompt, (length, kv)) in enumerate(zip(prompts, found, strict=True)):
            if kv is not None:
                for layer, (k, v) in enumerate(kv):
                    keys[layer][b, :, past - length :] = k
                    values[layer][b, :, past - length :] = v
                mask[b, past - length : past] = 1
            rest = prompt[length:]
            ids[b, new - len(rest) :] = torch.tensor(rest)
            mask[b, past + new - len(rest) :] = 1
            positions[b, new - len(rest) :] = torch.arange(length, len(prompt))
            self.timings["reused_tokens"] += length
        cache = DynamicCache(ddp_cache_data=list(zip(keys, values, strict=True)), config=self.model.config)
        return self._prefill_forward(ids.to(device), mask, positions.to(device), cache, n)

    def _prefill_forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache, n: int
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        started = time.perf_counter()
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
        )
        logits = out.logits[:, -1].float()
        self.timings["prefill_s"] += time.perf_counter() - started
        self.timings["prefill_tokens"] += ids.numel()
        if n > 1:
            cache.batch_repeat_interleave(n)
            mask, logits = mask.repeat_interleave(n, dim=0), logits.repeat_interleave(n, dim=0)
        return cache, mask, logits

    def _string_stop(self, row: _Row, stop_strings: list[str]) -> str | None:
        """The stop string the latest token completed, if any (multi-token stops of hub tokenizers)."""
        if not stop_strings:
            return None
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=False)
        # a stop may straddle tokens: search from just before the text already searched
        start = max(0, row.searched - max(len(s) for s in stop_strings))
        row.searched = len(text)
        hits = [(text.find(s, start), s) for s in stop_strings]
        hits = [(i, s) for i, s in hits if i >= 0]
        return min(hits)[1] if hits else None

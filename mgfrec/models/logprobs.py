"""Per-token log-probs and entropies of a causal LM over whole trajectories, for the GRPO loss.

Alignment (the same as :mod:`mgfrec.agent.batching` and :func:`mgfrec.rollout.logprobs.sequence_logprobs`):
every result is ``[B, T]`` and aligned to ``input_ids``. Entry ``t`` describes token ``input_ids[:, t]``:
``log p(input_ids[t] | input_ids[<t])``, which the model's logits at position ``t - 1`` give. Column 0 has no
context and is 0. So ``logprobs * action_mask`` selects exactly the policy-sampled tokens, with no shift left
for the caller to get wrong.

Positions count real tokens only (``attention_mask.cumsum - 1``), so left or right padding leaves a row's
values unchanged, for absolute-position models too (RoPE models such as Qwen2 only see relative offsets);
padded entries are meaningless and must be masked by the caller (the loss does).

Memory: the log-prob is ``gather - logsumexp`` (no second log-softmax kept for backward) and the entropy,
which is for logging only, is computed without gradient and in chunks of rows. Given ``positions`` (GRPO
passes the action mask), the output layer runs on those positions alone, so the ``[B, T, V]`` logits of the
prompt and observations are never built: on the CDs data one GRPO step went from 4.45 GB peak RSS and 44 s to
2.52 GB and 25 s with the same numbers to the last digit (docs/agent-cpu.md).

Constrained decoding (:mod:`mgfrec.agent.constraints`): ``constraints=(allowed_index, allowed_table)``
(:attr:`mgfrec.agent.batching.TrajectoryBatch.constraints`) restricts the distribution at every position a
token was sampled under a constraint: its disallowed logits are set to -inf (and, under
``agent.recall_prior``, the prior's log-weights added) before the temperature and the softmax, so the log-prob
is of the renormalised distribution the sampler drew from. Old, new and reference log-probs all go
through here, so the GRPO ratio and KL compare the same restricted distributions.

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


Constraints = tuple[torch.Tensor, torch.Tensor]
"""``(allowed_index [B, T] int64, allowed_table [M, V])``: token ``[b, t]`` was sampled among the tokens of
``allowed_table[allowed_index[b, t]]``; index -1 means unconstrained. A bool table marks the allowed tokens; a
float table holds offsets added to the logits (0 or a prior's log-weight where allowed, -inf elsewhere)."""


def restrict(logits: torch.Tensor, index: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``logits`` (``[..., V]``) restricted by ``table[index]``: the tokens a bool row disallows at -inf, or a
    float row's offsets added; rows whose ``index`` (shape ``logits.shape[:-1]``) is -1 are left as they are."""
    index, table = index.to(logits.device), table.to(logits.device)
    where = index >= 0
    if table.dtype != torch.bool:
        offsets = torch.zeros(logits.shape, dtype=logits.dtype, device=logits.device)
        offsets[where] = table[index[where]].to(logits.dtype)
        return logits + offsets
    allowed = torch.ones(logits.shape, dtype=torch.bool, device=logits.device)
    allowed[where] = table[index[where]]
    return logits.masked_fill(~allowed, float("-inf"))


def _scaled(logits: torch.Tensor, temperature: float, constraints: Constraints | None = None) -> torch.Tensor:
    """Logits for positions ``0 .. T-2`` (each predicts the next token), at least float32, over temperature,
    with disallowed tokens at -inf where ``constraints`` restrict the next token."""
    index = None if constraints is None else constraints[0][:, 1:]  # token t's constraint restricts logits t - 1
    return _scale(logits[:, :-1], temperature, index, None if constraints is None else constraints[1])


def _scale(
    logits: torch.Tensor, temperature: float, index: torch.Tensor | None, table: torch.Tensor | None
) -> torch.Tensor:
    """``logits`` (``[..., V]``) at least float32, restricted by ``table[index]``, then over temperature (the
    engines' order: a prior's offsets are part of the logits the temperature divides)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        # log-probs of half-precision logits lose ~3 digits; float64 is kept as is (the numerical tests use it).
        logits = logits.float()
    temperature = _check_temperature(temperature)
    if index is not None and table is not None:
        width = logits.shape[-1]
        if table.shape[-1] != width:
            raise ValueError(
                f"allowed_table has {table.shape[-1]} columns but the logits {width}: build it with "
                "the model's vocabulary size"
            )
        logits = restrict(logits, index, table)
    return logits / temperature if temperature != 1.0 else logits


def logprobs_from_logits(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0, constraints: Constraints | None = None
) -> torch.Tensor:
    """``[B, T]`` log-prob of each token of ``input_ids`` under ``logits`` (``[B, T, V]``); column 0 is 0.

    With ``constraints``, of the distribution renormalised over each position's allowed tokens. A padded
    position has no constraint and stays a plain log-prob (the caller masks it)."""
    scaled = _scaled(logits, temperature, constraints)
    return torch.nn.functional.pad(_picked(scaled, input_ids[:, 1:]), (1, 0))


def _picked(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[ids]`` as ``gather - logsumexp`` (no log-softmax kept for backward)."""
    return logits.gather(-1, ids[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


@torch.no_grad()
def token_entropy(
    logits: torch.Tensor, temperature: float = 1.0, constraints: Constraints | None = None
) -> torch.Tensor:
    """``[B, T]`` entropy (nats) of the distribution that predicted each token; column 0 is 0. No gradient.

    Aligned like :func:`logprobs_from_logits`: entry ``t`` is the entropy of ``softmax(logits[:, t-1] / T)``
    (restricted to the allowed tokens under ``constraints``).
    """
    scaled = _scaled(logits, temperature, constraints)
    entropy = _entropy(scaled.reshape(-1, scaled.shape[-1])).view(scaled.shape[:-1])
    return torch.nn.functional.pad(entropy, (1, 0))


@torch.no_grad()
def _entropy(flat: torch.Tensor) -> torch.Tensor:
    """``[N]`` entropy of each row of ``[N, V]`` scaled logits, in chunks of rows."""
    parts = []
    for chunk in flat.split(_ENTROPY_CHUNK):
        logp = torch.log_softmax(chunk, dim=-1)
        p = logp.exp()
        parts.append(-torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1))  # 0 * -inf is 0 here, not NaN
    return torch.cat(parts) if parts else flat.new_zeros(flat.shape[:1])


def vocab_width(model: torch.nn.Module) -> int:
    """The width of ``model``'s logits, which constraint masks must match: ``config.vocab_size`` (the output
    layer's rows; read from the config because ZeRO-3 partitions the weight itself to an empty shape)."""
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if size:
        return int(size)
    return int(model.get_output_embeddings().weight.shape[0])


def _logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).logits


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    constraints: Constraints | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, T]``: entry ``t`` is ``log p(input_ids[t] | input_ids[<t])`` under ``model``; 0 at ``t = 0``.

    Gradients flow unless called under ``torch.no_grad()`` (as for the old and reference policies).
    ``temperature`` must be the sampling temperature, so that the ratio to the engine's log-probs is 1
    on-policy. ``constraints``: see the module docstring. ``positions`` (``[B, T]`` bool, e.g. the action
    mask): compute only the entries it marks and leave the others 0; the output layer then runs on those
    positions alone instead of materialising the whole ``[B, T, V]`` logits (see :func:`_selected`).
    """
    if positions is not None and head_matches(model):
        logits, ids, wanted = _selected(model, input_ids, attention_mask, temperature, constraints, positions)
        return _scatter(_picked(logits, ids), wanted)
    values = logprobs_from_logits(_logits(model, input_ids, attention_mask), input_ids, temperature, constraints)
    return values if positions is None else values * positions.to(values.dtype)


def token_logprobs_and_entropy(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    constraints: Constraints | None = None,
    positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_logprobs` and :func:`token_entropy` from one forward pass (the entropy has no gradient)."""
    if positions is not None and head_matches(model):
        logits, ids, wanted = _selected(model, input_ids, attention_mask, temperature, constraints, positions)
        return _scatter(_picked(logits, ids), wanted), _scatter(_entropy(logits.detach()), wanted)
    logits = _logits(model, input_ids, attention_mask)
    values = (
        logprobs_from_logits(logits, input_ids, temperature, constraints),
        token_entropy(logits, temperature, constraints),
    )
    if positions is None:
        return values
    keep = positions.to(values[0].dtype)  # the contract of ``positions``: the other entries are 0
    return values[0] * keep, values[1] * keep


def _selected(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    temperature: float,
    constraints: Constraints | None,
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scaled (and restricted) logits ``[N, V]`` that predict the ``N`` tokens ``positions`` marks (column 0
    never), their ids ``[N]`` and the ``[B, T - 1]`` mask of where they sit. The transformer body runs on
    every position; only the output layer is limited, as SFT's loss does (:mod:`mgfrec.rl.sft`)."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    body = getattr(model, model.base_model_prefix)
    hidden = body(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    wanted = positions[:, 1:].to(torch.bool)
    logits = head_logits(model, hidden[:, :-1][wanted])
    index = None if constraints is None else constraints[0][:, 1:][wanted]
    return (
        _scale(logits, temperature, index, None if constraints is None else constraints[1]),
        input_ids[:, 1:][wanted],
        wanted,
    )


def head_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits from last hidden states: its output layer, then the post-processing some architectures
    apply in ``forward`` (Granite's ``logits_scaling``, Cohere's ``logit_scale``, Gemma's final soft-capping).
    :func:`head_matches` checks the result against the model's own ``forward`` once per model."""
    logits = model.get_output_embeddings()(hidden)
    config = getattr(model, "config", None)
    scaling = getattr(config, "logits_scaling", None)
    if scaling:
        logits = logits / scaling
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale != 1:
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def head_matches(model: torch.nn.Module) -> bool:
    """Whether :func:`head_logits` over the base model's hidden states gives the model's own logits. Checked once
    per model on a few tokens (in eval mode, without gradient); an architecture that post-processes its logits in
    another way is then scored through its full ``forward`` instead, so the log-probs are always the model's."""
    known = getattr(model, "_mgfrec_head_matches", None)
    if known is not None:
        return known
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    ok = False
    if body is not None and model.get_output_embeddings() is not None:
        was_training = model.training
        device = next(model.parameters()).device
        ids = (torch.arange(1, 6, device=device) % vocab_width(model)).unsqueeze(0)
        try:
            model.eval()
            with torch.no_grad():
                full = model(input_ids=ids, use_cache=False).logits.float()
                mine = head_logits(model, body(input_ids=ids, use_cache=False).last_hidden_state).float()
            ok = full.shape == mine.shape and torch.allclose(full, mine, rtol=1e-3, atol=1e-3)
        finally:
            model.train(was_training)
    model._mgfrec_head_matches = ok
    return ok


def _scatter(values: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: ``values`` at the ``[B, T - 1]`` mask ``wanted`` (shifted by one column), 0 elsewhere."""
    out = values.new_zeros(wanted.shape).masked_scatter(wanted, values)
    return torch.nn.functional.pad(out, (1, 0))

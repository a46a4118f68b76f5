"""What a ``rollout_engine`` component is: token-id prompts in, sampled continuations with log-probs out.

An engine samples *one turn*: it continues each prompt until a stop (a stop token, a stop string such as
``</ground>``, or the tokenizer's end-of-sequence token) or ``max_new_tokens``. The multi-turn loop
(:mod:`mgfrec.agent.loop`) calls it once per turn for every live trajectory.

Log-probs. ``Generation.logprobs[t]`` is ``log_softmax(logits / T)[token_t]`` under the engine's current
weights, where ``T`` is the sampling temperature (``T = 1`` when sampling greedily, ``T = 0``). Top-p is a
truncation of the sampling distribution and is *not* renormalised into the log-prob: GRPO's ratio
``pi_theta / pi_old`` needs the same quantity the trainer recomputes by a teacher-forced forward pass, which
is :func:`mgfrec.rollout.logprobs.sequence_logprobs` at the same ``T`` (verl's and TRL's choice too).

A component registered under ``mgfrec.rollout_engine`` is built as ``cls(model, tokenizer, options)`` from
the policy model and tokenizer (:func:`mgfrec.models.policy.load_policy`) and its validated ``Options``, or as
``cls(model, tokenizer)`` when it declares none; :func:`build_engine` does that from ``RolloutConfig``.
This module must not import an engine implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from mgfrec.config.schema import RolloutConfig
from mgfrec.registry import Registry, registry
from mgfrec.validation import refuse_one_string


@dataclass(frozen=True)
class Generation:
    """One sampled continuation of one prompt."""

    token_ids: list[int]
    """Exactly the sampled tokens, the stop token included, no padding."""
    logprobs: list[float]
    """One per token: ``log_softmax(logits / T)`` of the sampled token (see the module docstring)."""
    text: str
    """``token_ids`` decoded as they are, special tokens (an ending eos) included: the parser must see
    everything the policy wrote, or a control token inside a turn would pass unseen."""
    finish_reason: Literal["stop", "length"]
    stop: str | None = None
    """With ``finish_reason == "stop"``: the stop string or the text of the stop token that ended it."""

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} tokens but {len(self.logprobs)} log-probs: one per token")


class AllowedTokens(Protocol):
    """What a :class:`TokenConstraint` allows at one position; hashable, so equal sets share one mask."""

    def mask(self, vocab_size: int) -> Any:
        """``[vocab_size]`` bool tensor, True where the token is allowed."""
        ...

    def offsets(self, vocab_size: int) -> Any:
        """``[vocab_size]`` float tensor added to the logits: -inf where disallowed, else 0 or a prior's offset."""
        ...

    def allows(self, token: int) -> bool: ...


class TokenConstraint(Protocol):
    """A per-row state machine an engine that declares ``supports_constraints`` samples under: before each
    token it asks :meth:`allowed`, renormalises the logits over it, and feeds the sampled token to
    :meth:`advance`. :class:`mgfrec.agent.constraints.TurnConstraint` is the agent's."""

    def allowed(self) -> AllowedTokens: ...

    def advance(self, token: int) -> None: ...


@runtime_checkable
class RolloutEngine(Protocol):
    """Samples continuations of token-id prompts from the policy."""

    tokenizer: Any
    """The policy's tokenizer (decodes ``text``, resolves stop strings)."""

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
    ) -> list[list[Generation]]:
        """``n`` continuations of every prompt: ``result[i][j]`` is sample ``j`` of ``prompts[i]``.

        Stops at any of ``stop`` (strings), ``stop_token_ids`` and the tokenizer's eos token. ``temperature``
        0 is greedy. The same ``seed`` and inputs give the same samples.
        """
        ...

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Replace the engine's copy of the policy weights (after an optimizer step)."""
        ...


def context_limit(engine: Any, model: Any) -> int | None:
    """The most tokens a trajectory may hold: the policy's ``max_position_embeddings`` and the engine's own
    ``max_context`` (vLLM's ``rollout.options.max_model_len``), whichever is smaller; None when neither says. The
    rollout loop ends a trajectory whose next turn would pass it (``length_limit``): with only the model's, a
    ``max_model_len`` below it failed the whole fit mid-rollout, "before any turn" (review s39)."""
    limits = (
        getattr(getattr(model, "config", None), "max_position_embeddings", None),
        getattr(engine, "max_context", None),
    )
    found = [int(x) for x in limits if isinstance(x, int) and not isinstance(x, bool) and x > 0]
    return min(found) if found else None


def allowed_offsets(allowed: AllowedTokens, cache: dict[AllowedTokens, Any], like: Any) -> Any:
    """``allowed``'s offsets row (:meth:`AllowedTokens.offsets`) as a tensor of ``like``'s width, device and dtype,
    built once per distinct set in ``cache``; an engine adds it to a constrained row's logits."""
    row = cache.get(allowed)
    if row is None:  # checked once per distinct set, not at every step
        row = allowed.offsets(like.shape[-1]).to(like.device, like.dtype)
        if not bool(row.isfinite().any()):
            raise RuntimeError("the turn grammar allows no token here; the constraint was driven past its end")
        cache[allowed] = row
    return row


def single_token_stops(tokenizer: Any, stop: Sequence[str]) -> tuple[dict[int, str], list[str]]:
    """Split stop strings into those that are one token (id -> string) and those that are not.

    With a preset tokenizer every agent tag is one token, so stopping is an id comparison. With a hub
    model's tokenizer ``</ground>`` is several tokens and the engine matches the decoded text instead.
    """
    ids: dict[int, str] = {}
    strings: list[str] = []
    for s in stop:
        encoded = tokenizer.encode(s, add_special_tokens=False)
        if len(encoded) == 1 and tokenizer.decode(encoded) == s:
            ids[encoded[0]] = s
        else:
            strings.append(s)
    return ids, strings


def build_engine(cfg: RolloutConfig, model: Any, tokenizer: Any, reg: Registry | None = None) -> RolloutEngine:
    """The engine named by ``cfg.engine`` over ``model``/``tokenizer``, with ``cfg.options`` validated.

    ``rollout.gpu_memory_utilization`` reaches every engine whose options have that field (vllm) unless
    ``rollout.options`` sets it itself."""
    reg = reg or registry()
    raw = dict(cfg.options)
    fields = getattr(getattr(reg.load("rollout_engine", cfg.engine), "Options", None), "model_fields", {})
    if "gpu_memory_utilization" in fields and "gpu_memory_utilization" not in raw:
        raw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    return reg.build("rollout_engine", cfg.engine, raw, model, tokenizer)


def check_engine(cfg: RolloutConfig, reg: Registry | None = None) -> None:
    """Whether the engine named by ``cfg.engine`` can be built here, for a command to ask before it touches its
    output: an engine class's ``check_available()`` raises :class:`~mgfrec.registry.MissingExtraError` when a
    library it needs is missing (vllm without vLLM), and its ``check_rollout(cfg)`` raises ``ValueError`` for
    rollout settings it cannot sample. Training builds its engine only once the trainer is set up, after an earlier
    run in ``--out`` was retired."""
    engine = (reg or registry()).load("rollout_engine", cfg.engine)
    settings = getattr(engine, "check_rollout", None)  # the rollout settings it cannot sample (vllm: top_p < 1)
    if callable(settings):
        settings(cfg)
    check = getattr(engine, "check_available", None)
    if callable(check):
        check()


def shares_model(engine: Any, model: Any) -> bool:
    """Whether ``engine`` samples from ``model`` itself (the hf engine without ``copy_model``): it needs no weights."""
    return getattr(engine, "model", None) is model


def sync_weights(engine: Any, model: Any) -> None:
    """Give ``engine`` the current weights of ``model``; nothing to do when the engine samples from ``model``
    itself (:func:`shares_model`). Training calls it before each rollout or validation."""
    if not shares_model(engine, model):
        engine.load_weights(model.state_dict())


def check_generate_args(
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    n: int,
    temperature: float,
    top_p: float,
    constraints: Sequence[TokenConstraint | None] | None = None,
    stop: Sequence[str] = (),
) -> None:
    """The argument rules every engine's ``generate`` shares; a ValueError naming the bad value (a TypeError for
    one string where a list is wanted). ``constraints``, when given: one per row (``len(prompts) * n``,
    prompt-major)."""
    refuse_one_string(stop, "stop", "stop strings")
    if isinstance(prompts, (str, bytes)) or any(isinstance(p, (str, bytes)) for p in prompts):
        raise TypeError("prompts: give a list of token-id lists (encode the text with the tokenizer first)")
    if max_new_tokens < 1 or n < 1:
        raise ValueError(f"max_new_tokens and n must be >= 1, got {max_new_tokens} and {n}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if constraints is not None and len(constraints) != len(prompts) * n:
        raise ValueError(f"{len(constraints)} constraints for {len(prompts) * n} rows: one per (prompt, sample)")

"""The config sections of GRPO training: the objective and its rewards (``grpo``), the Lightning loop (``trainer``)."""

from __future__ import annotations

import re
import warnings
from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from mgfrec.config.section import MAX_LR, ConfigDeprecationWarning, Section


class RewardSpec(Section):
    """One reward of ``grpo.rewards``: its registry name and its options, beside it as for every other kind.

    Written as the bare name (``ndcg``) when it has no options, as ``{name: hit-at-k, options: {k: 5}}``
    otherwise; both read back the same."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _as_name(self, handler: Any) -> Any:
        return handler(self) if self.options else self.name


RESERVED_REWARD_NAMES = frozenset({"mean", "std", "total"})
"""Names a reward part may not have: the logged summary's own keys (``reward/mean``, ``reward/std``, ``total``)."""


def reserved_reward_error(name: str) -> str:
    """The refusal of a reward part named one of :data:`RESERVED_REWARD_NAMES` (by the config and by
    :class:`~mgfrec.rewards.compose.ComposedReward`)."""
    return (
        f"grpo.rewards: '{name}' names a column of the reward's own summary (reward/mean, reward/std, the "
        "breakdown's total); register the reward under another name"
    )


class GRPOConfig(Section):
    """The GRPO objective: the rewards, the group, the clipped ratio and the KL to the reference policy."""

    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(name="ndcg"), RewardSpec(name="format")],
        description="reward components: names, or {name, options}",
    )
    group_size: int = Field(
        6,
        ge=1,
        description="rollouts per prompt (G); `mgfrec fit` needs at least 2: one alone has no group to compare with, "
        "and every advantage is 0 (a run's config with 1 still loads, for evaluation)",
    )
    clip_epsilon: float = Field(0.2, gt=0, description="the ratio is clipped to [1 - epsilon, 1 + epsilon] (eq. 3)")
    kl_beta: float = Field(0.04, ge=0, description="weight of the KL term to the reference policy (eq. 1)")
    scale_rewards: bool = Field(True, description="divide advantages by the group std (eq. 2)")
    advantage_epsilon: float = Field(
        1e-4,
        gt=0,
        le=1,  # 1e300 made every advantage 0: a fit that trained nothing without a word (review s40)
        description="added to the group std before dividing by it",
    )
    updates_per_batch: int = Field(1, ge=1, description="optimizer steps on each batch of rollouts")
    loss_aggregation: Literal["token-mean", "sequence-mean"] = Field(
        "token-mean",
        description="token-mean (DAPO/TRL bnpo) or sequence-mean (DeepSeekMath's per-token form of eq. 3, TRL grpo)",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient norm clip per optimizer step")
    kl_importance_correction: bool = Field(False, description="TRL 1.16's use_bias_correction_kl; off = the paper")
    reference_device: Literal["policy", "cpu"] = Field(
        "policy", description="where the frozen KL reference lives: beside the policy, or offloaded to the CPU"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_reward_options(cls, data: Any) -> Any:
        """``grpo.reward_options.<name>`` (before issue 12) is read into the named reward's ``options``."""
        if not isinstance(data, dict) or "reward_options" not in data:
            return data
        data = dict(data)
        old = data.pop("reward_options") or {}
        if not old:
            return data
        warnings.warn(
            "grpo.reward_options is deprecated: put each reward's options beside its name, e.g. "
            "grpo.rewards: [ndcg, {name: hit-at-k, options: {k: 5}}, format]",
            ConfigDeprecationWarning,
            stacklevel=2,
        )
        if not isinstance(old, dict):
            raise ValueError(
                f"grpo.reward_options: expected a mapping of reward name to options, got {type(old).__name__}"
            )
        rewards = data.get("rewards", ["ndcg", "format"])
        if not isinstance(rewards, list):
            return data  # the field validators name the wrong type
        specs, used = [], set()
        for spec in rewards:
            name = spec if isinstance(spec, str) else spec.get("name") if isinstance(spec, dict) else None
            if name in old and not (isinstance(spec, dict) and spec.get("options")):
                spec = {"name": name, "options": old[name]}
                used.add(name)
            specs.append(spec)
        unused = sorted(set(old) - used)
        if unused:  # options nobody reads are a mistake, not something to drop silently
            raise ValueError(
                f"grpo.reward_options: options for {', '.join(map(str, unused))}, which grpo.rewards does not use"
            )
        data["rewards"] = specs
        return data

    @model_validator(mode="after")
    def _one_of_each(self) -> GRPOConfig:
        # The logged breakdown is keyed by name: a reward listed twice would hide a part of the total.
        seen: set[str] = set()
        for spec in self.rewards:
            # a part named "mean" replaced reward/mean in metrics.csv, one named "total" was overwritten (review s32)
            if spec.name in RESERVED_REWARD_NAMES:
                raise ValueError(reserved_reward_error(spec.name))
            if spec.name in seen:
                raise ValueError(
                    f"grpo.rewards: '{spec.name}' is listed twice; list each reward once (the logged breakdown "
                    "is keyed by name), or register the variant under a second name"
                )
            seen.add(spec.name)
        return self

    @property
    def reward_names(self) -> list[str]:
        return [r.name for r in self.rewards]


class TrainerConfig(Section):
    """GRPO's training loop (Lightning): optimizer, batches, steps, devices, validation and logging."""

    lr: float = Field(1e-4, gt=0, le=MAX_LR, description="policy learning rate (the paper: 1e-6 for Qwen2.5-1.5B)")
    weight_decay: float = Field(
        0.01,
        ge=0,
        le=1,
        description="GRPO's AdamW weight decay (decoupled; torch's default, what every run so far used; TRL uses 0): "
        "the weights shrink by lr x weight_decay each step, even on a batch whose groups teach nothing",
    )
    global_batch_size: int = Field(16, ge=1, description="prompts per optimizer step, via accumulation (paper 128)")
    micro_batch_size: int = Field(8, ge=1, description="trajectories per forward and backward pass")
    epochs: int = Field(1, ge=1, le=1_000_000, description="passes over the train samples when max_steps is null")
    max_steps: int | None = Field(  # beyond 1e9 a step counter overflowed a C integer
        30, ge=1, le=1_000_000_000, description="training steps (null: trainer.epochs passes)"
    )
    strategy: str = Field("auto", description="Lightning's strategy: auto, ddp, deepspeed_stage_2, ...")
    accelerator: str = Field("cpu", description="Lightning's accelerator: cpu, gpu, auto")
    devices: int | str = Field(
        1, description="processes per node (one per GPU; -1 or auto: all); several: data-parallel GRPO"
    )
    num_nodes: int = Field(1, ge=1, description="nodes, each running `devices` processes (Lightning's launcher)")
    precision: str = Field("32-true", description="Lightning's precision: 32-true, bf16-mixed, 16-mixed, ...")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="an integer from 0 to 2**32 - 1")
    val_check_interval: int = Field(10, ge=1, description="training steps between validations")
    log_every_n_steps: int = Field(
        1, ge=1, description="training steps between rows of metrics.csv (a validation always writes one)"
    )
    tensorboard: bool = Field(
        False, description="also log every step to RUN/tensorboard (needs the tensorboard package)"
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> Any:
        """Lightning's whole-number precisions written unquoted, as its configs write them (``precision: 16``),
        were "Input should be a valid string" (review s36): read as their text."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_as_given(cls, value: Any) -> Any:
        """``true`` was read as 1 devices, and ``"3"`` kept as text, which fit's early batch-split check skipped
        (review s40): a switch is refused, a whole number written as text is that number (as Lightning reads it)."""
        if isinstance(value, bool):
            raise ValueError("give a number of devices (1 or more; -1 for all), auto, or GPU indices, not true/false")
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
            return int(value)
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | str) -> int | str:
        """What Lightning takes: a count (1 or more; -1 for all), ``auto``, or GPU indices such as ``0,1``."""
        text = str(value).strip()
        if text in ("auto", "-1") or re.fullmatch(r"[1-9][0-9]*|[0-9]+(,[0-9]+)*,|[0-9]+(,[0-9]+)+", text):
            return value
        raise ValueError("give a number of devices (1 or more; -1 for all), auto, or GPU indices such as 0,1")

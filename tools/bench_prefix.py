"""The hf engine with and without prefix reuse across turns, on the same samples in one run.

    python tools/bench_prefix.py DATA_DIR [--samples 20] [--recall 10]

Rolls out the (untrained, constrained) tiny preset greedily on the first valid samples of a prepared folder,
with the last ``--recall`` history titles standing in for a recall list (0: none), once with
``rollout.options.reuse_prefix`` on and once off, and prints wall time, prefill/decode split and tokens.
Results: docs/agent-cpu.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import torch

from mgfrec.agent.environment import build_environment
from mgfrec.agent.loop import RolloutSample, rollout
from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.grounding.engine import load_grounding
from mgfrec.models.policy import load_policy
from mgfrec.rollout.hf_engine import HFEngine


def recall_titles(titles: Sequence[str], history: Sequence[int], n: int) -> tuple[str, ...]:
    """The last ``n`` history titles, the stand-in recall list; none for 0 (``history[-0:]`` is all of it)."""
    return tuple(titles[i] for i in history[len(history) - n :]) if n > 0 else ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--recall", type=int, default=10, help="history titles standing in for a recall list (0: none)")
    args = parser.parse_args()
    if args.samples < 1:
        parser.error(f"--samples: {args.samples}: give 1 or more")
    if args.recall < 0:
        parser.error(f"--recall: {args.recall}: give 0 or more")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    try:
        ds = PreparedDataset(args.data)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    cfg = MGFRecConfig()
    grounding = load_grounding(ds, cfg)
    model, tokenizer = load_policy(cfg.policy, list(ds.titles), seed=0)
    environment = build_environment(grounding, tokenizer, cfg)
    frame = ds.split("valid").head(args.samples)
    samples = [
        RolloutSample(tuple(ds.titles[i] for i in h), recall_titles(ds.titles, h, args.recall))
        for h in frame["history"]
    ]
    for reuse in (True, False):
        engine = HFEngine(model, tokenizer, HFEngine.Options(reuse_prefix=reuse))
        start = time.perf_counter()
        result = rollout(engine, environment, samples, agent=cfg.agent, temperature=0.0)
        t = engine.timings
        print(
            f"reuse_prefix={reuse}: {time.perf_counter() - start:.1f} s, turns {result.stats.turns}, "
            f"prefill {t['prefill_s']:.1f} s ({t['prefill_tokens']} tokens, {t['reused_tokens']} reused), "
            f"decode {t['decode_s']:.1f} s ({t['decode_steps']} steps)",
            flush=True,
        )


if __name__ == "__main__":
    main()

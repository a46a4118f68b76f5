"""Benchmark the full-ranking evaluator and the bootstrap.

Measures (1) ranking throughput in samples/s for catalogues of 5K and 60K items with random scores,
with and without history exclusion, and (2) the cost of summarising ranks with bootstrap intervals and of
one paired comparison, for split sizes from CDs' 491 samples up to 50K. The scorer returns a pre-drawn
score matrix, so the numbers are the evaluator's own cost, not a model's.

    python tools/bench_evaluator.py                 # prints a markdown section
    python tools/bench_evaluator.py --device cuda   # rank on a GPU
    python tools/bench_evaluator.py --quick         # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from mgfrec.config.schema import EvalConfig
from mgfrec.ranking.evaluator import rank_targets
from mgfrec.ranking.results import EvalResult


class RandomScores:
    """Returns slices of one pre-drawn random [batch, N] matrix (ties are practically impossible)."""

    def __init__(self, num_items: int, batch_size: int, device: str, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.matrix = torch.rand(batch_size, num_items, generator=gen).to(device)

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        return self.matrix[: len(histories)]


def best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` runs in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_ranking(num_items: int, samples: int, batch_size: int, device: str, repeats: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, num_items, size=20) for _ in range(samples)]
    targets = rng.integers(0, num_items, size=samples)
    scorer = RandomScores(num_items, batch_size, device)
    rows = []
    for exclude in (True, False):
        seconds = best_of(
            lambda exclude=exclude: rank_targets(
                scorer, histories, targets, batch_size=batch_size, exclude_history=exclude
            ),
            repeats,
        )
        rows.append((num_items, samples, batch_size, exclude, samples / seconds))
    return rows


def bench_bootstrap(n: int, resamples: int, repeats: int) -> tuple:
    rng = np.random.default_rng(0)
    ranks_a = rng.integers(1, 5000, size=n)
    ranks_b = rng.integers(1, 5000, size=n)
    config = EvalConfig(bootstrap_samples=resamples)
    summarise = best_of(lambda: EvalResult.from_ranks(ranks_a, split="test", method="a", config=config), repeats)
    a = EvalResult.from_ranks(ranks_a, split="test", method="a", config=config)
    b = EvalResult.from_ranks(ranks_b, split="test", method="b", config=config)
    compare = best_of(lambda: a.compare(b), repeats)
    return (n, resamples, summarise, compare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    sizes = [(5_000, 512 if args.quick else 4096), (60_000, 256 if args.quick else 1024)]
    ranking = [row for n, s in sizes for row in bench_ranking(n, s, 256, args.device, args.repeats)]
    splits = [491, 5_000] if args.quick else [491, 5_000, 50_000]
    boot = [bench_bootstrap(n, 1000, args.repeats) for n in splits]

    cpu = f"{platform.machine()}, {os.cpu_count()} cores"
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else cpu
    print(
        f"Device: {args.device} ({device}); torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
        f"best of {args.repeats}.\n"
    )
    print("| items N | samples | batch | history excluded | samples/s |")
    print("|---:|---:|---:|---|---:|")
    for n, s, bs, excl, rate in ranking:
        print(f"| {n:,} | {s:,} | {bs} | {'yes' if excl else 'no'} | {rate:,.0f} |")
    print("\n| split samples | resamples | summarise (8 metrics, CIs) s | paired comparison (8 metrics) s |")
    print("|---:|---:|---:|---:|")
    for n, r, summarise, compare in boot:
        print(f"| {n:,} | {r} | {summarise:.3f} | {compare:.3f} |")


if __name__ == "__main__":
    main()

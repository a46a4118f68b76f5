"""Time the grounders' shared last step, :func:`mgfrec.grounding.ties.finish_topk`, alone: random 384-d item
vectors, 1,000 random queries, a random proposal of k + 16 rows per query (as a backend gives), k = 10; best of 5.

    OMP_NUM_THREADS=1 python tools/bench_finish_topk.py [--items 4634 60000]

Results: docs/benchmarks.md (the tie rule's crowded-row check).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mgfrec.grounding.ties import TIE_MARGIN, UniqueVectors, finish_topk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[4634, 60000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n in args.items:
        unique = UniqueVectors.build(rng.standard_normal((n, 384)).astype(np.float32))
        queries = rng.standard_normal((args.queries, 384)).astype(np.float32)
        proposal = np.argsort(rng.random((args.queries, n)), axis=1)[:, : args.k + TIE_MARGIN]
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            finish_topk(unique, queries, proposal, args.k)
            best = min(best, time.perf_counter() - start)
        print(f"{n:>7,} items: {best * 1000:.1f} ms for {args.queries:,} queries")


if __name__ == "__main__":
    main()

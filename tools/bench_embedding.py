"""Benchmark title embedding: model load time and titles/s at several batch sizes.

Encodes distinct titles of the real shared CDs catalogue as documents through
:class:`mgfrec.embed.sentence.SentenceTransformerEmbedder` (the path the embedding cache takes), so the
numbers include its length sort and chunking.

    python tools/bench_embedding.py                                  # bundled MiniLM, CPU
    python tools/bench_embedding.py --batch-sizes 16,64,256 --titles 2000
    python tools/bench_embedding.py --model /path/to/gte-Qwen2-1.5B-instruct --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import pandas as pd
import torch
from shared_data import SHARED, need_shared  # noqa: E402 (tools/ is on sys.path)

from mgfrec.config.schema import EmbeddingConfig
from mgfrec.embed.sentence import SentenceTransformerEmbedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--titles", type=int, default=2000, help="distinct CDs titles to encode per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    items_csv = SHARED / "amazon2023-cds" / "items.csv"
    need_shared(items_csv)
    if args.threads:
        torch.set_num_threads(args.threads)

    titles = pd.read_csv(items_csv, dtype=str, keep_default_na=False)["title"]
    texts = list(dict.fromkeys(titles))[: args.titles]
    mean_chars = sum(map(len, texts)) / len(texts)
    config = EmbeddingConfig(model=args.model, device=args.device, dtype=args.dtype)
    embedder = SentenceTransformerEmbedder(config)
    start = time.perf_counter()
    dim = embedder.dim  # loads the model
    load_s = time.perf_counter() - start
    embedder.encode(texts[:32])  # warm-up
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"# {embedder.model_id} ({dim}-d, {args.dtype}, {args.device}) loaded in {load_s:.1f} s")
    print(f"# {len(texts):,} distinct CDs titles, mean {mean_chars:.1f} characters; best of {args.repeats}\n")
    print("| batch size | seconds | titles/s |")
    print("|---:|---:|---:|")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        run = embedder.derive(batch_size=batch_size)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run.encode(texts)
            times.append(time.perf_counter() - start)
        best = min(times)
        print(f"| {batch_size} | {best:.2f} | {len(texts) / best:,.0f} |", flush=True)
    # Reference: sentence-transformers' own encode on the same titles in one call, without mgfrec's chunking.
    batch_size = int(args.batch_sizes.split(",")[-1])
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        embedder.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        times.append(time.perf_counter() - start)
    print(f"| {batch_size} (SentenceTransformer.encode directly) | {min(times):.2f} | {len(texts) / min(times):,.0f} |")
    print(f"\n# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Paired comparison of two agent runs by their training reward on the same evaluated samples.

    python tools/paired_reward.py RUN_A RUN_B [--split valid]

Reads ``RUN/agent_<split>_samples.csv`` (written by ``mgfrec evaluate RUN --split SPLIT``; its ``reward``
column is the run's ``grpo.rewards``, eq. 8 by default: the answer's no-cut-off NDCG, -0.5 for a format
error) of both runs, pairs them by sample id and prints mgfrec's paired test (bootstrap of the mean
difference and exact sign test; significant only when both reject) as JSON. ``mgfrec report`` compares
ranking metrics, where an unanswered sample counts as the worst rank; this compares the objective GRPO
optimises.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from mgfrec.ranking.stats import align, paired_test


def read(run: Path, split: str) -> pd.DataFrame:
    path = run / f"agent_{split}_samples.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run 'mgfrec evaluate {run} --split {split}' first")
    frame = pd.read_csv(path)
    if "reward" not in frame:
        raise SystemExit(f"{path}: no reward column; evaluate the run again with this version of mgfrec")
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    a, b = read(args.run_a, args.split), read(args.run_b, args.split)
    try:
        pos_a, pos_b = align(a["sample_id"].to_numpy(), b["sample_id"].to_numpy(), str(args.run_a), str(args.run_b))
    except ValueError as exc:  # runs over other samples: a user error, one line
        raise SystemExit(f"error: {exc}") from None
    test = paired_test(a["reward"].to_numpy()[pos_a], b["reward"].to_numpy()[pos_b], "reward", samples=args.bootstrap)
    out = {"a": str(args.run_a), "b": str(args.run_b), "split": args.split, **asdict(test)}
    out["format_valid"] = {
        "a": float((a["end_reason"] == "answered").mean()),
        "b": float((b["end_reason"] == "answered").mean()),
    }
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

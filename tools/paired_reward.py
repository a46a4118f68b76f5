"""Paired comparison of two agent runs by their training reward on the same evaluated samples.

    python tools/paired_reward.py RUN_A RUN_B [--split valid]

Reads ``RUN/agent_<split>_samples.csv`` (written by ``mgfrec evaluate RUN --split SPLIT``; its ``reward``
column is the run's ``grpo.rewards``, eq. 8 by default: the answer's no-cut-off NDCG, -0.5 for a format
error) of both runs, pairs them by sample id and prints mgfrec's paired test (bootstrap of the mean
difference and exact sign test; significant only when both reject) as JSON. ``mgfrec report`` compares
ranking metrics, where an unanswered sample counts as the worst rank; this compares the objective GRPO
optimises.

Like ``mgfrec report`` it refuses two runs made on different data sets (their run.json ``data_checksum``) or
that disagree on a sample's target. When one run was evaluated on a subsample (``--limit``) of the samples of
the other, the other is cut to that subsample, with a note on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from mgfrec.ranking.stats import align, bootstrap_can_reject, paired_test
from mgfrec.runs import json_ready, read_run_info

COLUMNS = ("sample_id", "target", "end_reason", "reward")


class Refused(Exception):
    """A user error: printed as one ``error:`` line, exit code 2."""


def read(run: Path, split: str) -> pd.DataFrame:
    """The run's per-sample file, checked: the columns this reads, integer sample ids and targets, finite
    rewards."""
    path = run / f"agent_{split}_samples.csv"
    if not path.is_file():
        raise Refused(f"{path}: missing; run 'mgfrec evaluate {run} --split {split}' first")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise Refused(f"{path}: empty; run 'mgfrec evaluate {run} --split {split}' again") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise Refused(f"{path}: not a samples file ({' '.join(str(exc).split())})") from None
    if "reward" not in frame:
        raise Refused(f"{path}: no reward column; evaluate the run again with this version of mgfrec")
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise Refused(f"{path}: no {', '.join(missing)} column; evaluate the run again with this version of mgfrec")
    if frame.empty:
        raise Refused(f"{path}: no samples")
    out = pd.DataFrame({"end_reason": frame["end_reason"]})
    for column, kind in (("sample_id", "an integer"), ("target", "an integer"), ("reward", "a finite number")):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if kind == "an integer":
            bad |= np.isfinite(values) & (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise Refused(f"{path}, line {row + 2}: {column} {frame[column].iloc[row]!r} is not {kind}")
        out[column] = values.astype(np.int64) if kind == "an integer" else values
    return out


def checksum(run: Path) -> str:
    """The run.json ``data_checksum`` of ``run``; empty when the run has no run.json to say it."""
    try:
        return read_run_info(run).data_checksum
    except FileNotFoundError:
        return ""
    except ValueError as exc:
        raise Refused(str(exc)) from None


def cut_to_common(a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames on the same samples: where one run's samples are a subsample of the other's (an evaluation with
    ``--limit`` beside one of the whole split), the larger is cut to the smaller, with a note; anything else is
    left to :func:`align` to refuse."""
    ids_a, ids_b = set(a["sample_id"]), set(b["sample_id"])
    if ids_a == ids_b or not (ids_a < ids_b or ids_b < ids_a):
        return a, b
    small, large = (name_a, name_b) if ids_a < ids_b else (name_b, name_a)
    common = ids_a & ids_b
    print(
        f"note: {small} holds {len(common)} of the {max(len(ids_a), len(ids_b))} samples of {large}; "
        f"{large} is compared on those {len(common)} only",
        file=sys.stderr,
    )
    return a[a["sample_id"].isin(common)], b[b["sample_id"].isin(common)]


def compare(args: argparse.Namespace) -> dict:
    name_a, name_b = str(args.run_a), str(args.run_b)
    a, b = read(args.run_a, args.split), read(args.run_b, args.split)
    sum_a, sum_b = checksum(args.run_a), checksum(args.run_b)
    if sum_a and sum_b and sum_a != sum_b:
        raise Refused(
            f"'{name_a}' and '{name_b}' were evaluated on different data sets (checksums {sum_a} vs {sum_b} in their "
            "run.json)"
        )
    a, b = cut_to_common(a, b, name_a, name_b)
    try:
        pos_a, pos_b = align(a["sample_id"].to_numpy(), b["sample_id"].to_numpy(), name_a, name_b)
    except ValueError as exc:  # runs over other samples
        if "cover different samples" not in str(exc):
            raise Refused(str(exc)) from None
        # align's advice (mgfrec report --limit) cuts baselines' ranks, not an agent's samples file
        head = str(exc).split("; ")[:-1]
        raise Refused(
            "; ".join(head) + f"; evaluate both on the same samples: 'mgfrec evaluate RUN --split {args.split}' "
            "for each, with the same --limit or none"
        ) from None
    differ = a["target"].to_numpy()[pos_a] != b["target"].to_numpy()[pos_b]
    if differ.any():
        sid = int(a["sample_id"].to_numpy()[pos_a][differ][0])
        raise Refused(
            f"'{name_a}' and '{name_b}' disagree on the target of {int(differ.sum())} samples (e.g. sample {sid}); "
            "they were not evaluated on the same data set"
        )
    test = paired_test(a["reward"].to_numpy()[pos_a], b["reward"].to_numpy()[pos_b], "reward", samples=args.bootstrap)
    if 0 < args.bootstrap and not bootstrap_can_reject(args.bootstrap, test.alpha):
        print(
            f"note: with {args.bootstrap} resamples the bootstrap p-value cannot fall below alpha={test.alpha:g} "
            f"(its least is 2/{args.bootstrap + 1}): no difference can be marked; give at least "
            f"{math.floor(2 / test.alpha)} (--bootstrap)",
            file=sys.stderr,
        )
    out = {"a": name_a, "b": name_b, "split": args.split, **asdict(test)}
    out["format_valid"] = {
        "a": float((a["end_reason"] == "answered").mean()),
        "b": float((b["end_reason"] == "answered").mean()),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: the sign test alone decides)")
    args = parser.parse_args(argv)
    if args.bootstrap < 0:
        parser.error(f"--bootstrap: {args.bootstrap}: give 0 or more")
    try:
        out = compare(args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(json_ready(out), indent=2, default=str, allow_nan=False))


if __name__ == "__main__":
    main()

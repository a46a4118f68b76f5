"""Does the simulated user's feedback carry signal? Following it against ignoring it, on the same samples.

For a recall run (e.g. the demo's hybrid) on one split, every sample does what the demo's policy does: it
grounds the recall model's first title; the environment returns the grounding's ``top_k`` items and the
configured user agent critiques them, exactly as in a rollout (``build_environment``; the user agent sees the
history, the grounded title and the list, never the target). Answers are then ranked by the paper's rule (L2 to
the answer's title) and each row is compared with "ignore" by the report's paired test (bootstrap and sign test):

* ignore: answer the recall model's first title (the feedback is not read);
* follow: answer the first listed item the feedback says suits the user ("From the list, "X" ... suit(s) me
  best"), else the recall model's first title;
* follow, also "the closest is X": as follow, and also the item named when "Nothing in the list really suits me";
* list oracle: the target whenever the returned list holds it, else the recall model's first title (what any
  use of that one list could reach).

It also says how often the returned list holds the target and how often the feedback names it. The embedder,
the grounding (its ``top_k``) and the user agent are the run's own, from its ``config.yaml`` (mgfrec's defaults
only for a run without one); the first lines say which.

    python tools/feedback_signal.py runs/demo/hybrid --split test --samples 100
    python tools/feedback_signal.py runs/demo/hybrid --split test --cutoff 10    # NDCG@10 instead of N_full

Numbers are in docs/agent-cpu.md. Runs on the CPU in about a minute for 100 samples.
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np
import torch
from choice_headroom import Rows, check_at_least, recall_split, run_config, user_errors  # tools/ is on sys.path

from mgfrec.agent.environment import build_environment
from mgfrec.grounding.engine import load_grounding
from mgfrec.ranking.metrics import target_ranks_excluding
from mgfrec.retrievers.recall import top_items
from mgfrec.user_agents.base import FeedbackRequest

SUITS = re.compile(r"From the list, (.*?) suits? me best\.")
CLOSEST = re.compile(r'Nothing in the list really suits me; the closest is "(.*?)"\.')
QUOTED = re.compile(r'"(.*?)"')


def named(feedback: str, closest: bool) -> str | None:
    """The first listed title the feedback recommends (or, with ``closest``, names as the closest), or None."""
    found = SUITS.search(feedback)
    if found:
        titles = QUOTED.findall(found.group(1))
        return titles[0] if titles else None
    found = CLOSEST.search(feedback) if closest else None
    return found.group(1) if found else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a baseline run folder (the recall model)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=None, help="the seeded subsample of this size (as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --samples (the demo uses data.seed, 0)")
    parser.add_argument("--cutoff", type=int, default=0, help="compare NDCG@CUTOFF (0: no cut-off, the default)")
    args = parser.parse_args(argv)
    check_at_least({"--samples": args.samples}, 1)
    check_at_least({"--cutoff": args.cutoff}, 0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    with user_errors():
        signal(args)


def signal(args: argparse.Namespace) -> None:
    run, frame, hist = recall_split(args.run, args.split, args.samples, args.seed)
    cfg, source = run_config(args.run)
    ds = run.ds
    tgt = frame["target"].to_numpy()
    first = top_items(run.scorer, hist, ds.num_items, 1)[:, 0]
    grounding = load_grounding(ds, cfg)
    environment = build_environment(grounding, None, cfg)
    lists = grounding.ground([ds.titles[i] for i in first], cfg.grounding.top_k)
    requests = [
        FeedbackRequest(tuple(ds.titles[i] for i in h), ds.titles[f], tuple(ds.titles[i] for i in row))
        for h, f, row in zip(hist, first, lists, strict=True)
    ]
    feedback = environment.user_agent.feedback(requests)
    index = {t: i for i, t in enumerate(ds.titles)}

    def answers(closest: bool) -> np.ndarray:
        out = []
        for f, row, text in zip(first, lists, feedback, strict=True):
            title = named(text, closest)
            shown = {ds.titles[i]: i for i in row}
            out.append(shown.get(title, index.get(title, f)) if title is not None else f)
        return np.array(out)

    def ranks(items: np.ndarray) -> np.ndarray:
        scores = grounding.full_scores([ds.titles[i] for i in items])
        return target_ranks_excluding(scores, torch.tensor(tgt), hist).numpy()

    in_list = np.array([t in row for t, row in zip(tgt, lists, strict=True)])
    follow = answers(closest=False)
    print(f"{args.run} on {args.split}: {len(hist)} samples; grounded on the recall model's first title")
    print(
        f"embedder {cfg.embedding.embedder} ({grounding.embedder.model_id}), grounder {cfg.grounding.grounder}, "
        f"user agent {cfg.user_agent.backend}; from {source}"
    )
    print(f"returned list ({cfg.grounding.top_k} items) holds the target: {in_list.mean():.3f}")
    print(f"feedback names a listed item as suiting: {np.mean([named(f, False) is not None for f in feedback]):.3f}")
    hits = f"{np.mean(follow == tgt):.3f}; the recall model's first title is: {np.mean(first == tgt):.3f}"
    print(f"the item the feedback says suits best is the target: {hits}")
    rows = {
        "ignore: answer the recall model's first title": first,
        "follow: the item the feedback says suits best": follow,
        "follow, also 'the closest is X'": answers(closest=True),
        "list oracle: the target when the list holds it": np.where(in_list, tgt, first),
    }
    line = Rows(args.cutoff, "ignore", width=48).line
    for name, items in rows.items():
        line(name, ranks(items))


if __name__ == "__main__":
    main()

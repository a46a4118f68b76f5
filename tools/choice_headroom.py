"""How much can an agent that *chooses* among the items it was shown gain over the recall model itself?

For a prepared data set and a baseline run (the recall model, e.g. hybrid), on one split:

* the recall model's own full ranking (its N_full and Hit@1);
* "answer = recall top-1": the paper's final ranking (every item by L2 to the answer's title embedding)
  when the agent always answers the recall model's first item;
* oracles that answer the target whenever it is in the recall top-K (else the top-1), ranked the same way:
  the ceiling of a perfect chooser among K shown items;
* an expected-NDCG chooser: the candidate whose L2 neighbourhood maximises the NDCG expected under
  softmax(recall scores / tau), i.e. the best a chooser that only knows the recall model's scores can do;
* with ``--joined K ...``: an answer that names the recall top-K titles at once ("A; B; C", embedded as
  one query) and, without text, the mean of their title vectors: whether spreading the answer over several
  shown items orders the catalogue better under the paper's L2 rule than one title does;
* with ``--oracle`` (the synthetic source only): the generator's own next-item distribution, which knows
  each user's favourite genres and the true popularity. Ranking every item by it is the Bayes-optimal
  ranking: no recommender, the agent included, has a higher expected NDCG. The rows give that bound, the
  paper's L2 ranking around its top-1, and its choice among the recall top-K: the best any chooser of one
  shown item can do.

Every row after the first is compared with the recall model's own ranking on the same samples (paired
bootstrap and sign test, as ``mgfrec report`` marks rows). Titles are embedded as the run was made: with the
``embedding`` section of its own ``config.yaml`` (mgfrec's defaults only for a run without one); the first line
says which embedder.

    python tools/choice_headroom.py RUN_DIR --split valid --k 10 30
    python tools/choice_headroom.py RUN_DIR --split test --oracle --samples 100   # the demo's test subsample
    python tools/choice_headroom.py RUN_DIR --split test --cutoff 10              # NDCG@10 instead of N_full
    python tools/choice_headroom.py RUN_DIR --split test --item-vectors SASREC_RUN   # L2 over text + item ids
    python tools/choice_headroom.py RUN_DIR --split test --joined 2 3 5   # answers naming several shown titles

Numbers for the synthetic default and CDs are in docs/agent-cpu.md. Runs on the CPU in about a minute.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from shared_data import refuse  # noqa: E402 (tools/ is on sys.path)

from mgfrec.agent.final_ranking import joint_item_vectors
from mgfrec.agent.run_config import load_run_config
from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.protocol import subsample_split
from mgfrec.data.sources.synthetic import SyntheticOptions
from mgfrec.data.sources.synthetic_world import SyntheticWorld
from mgfrec.embed.base import load_embedder
from mgfrec.embed.cache import cached_item_embeddings
from mgfrec.ranking.metrics import hit, ndcg, target_ranks_excluding
from mgfrec.ranking.stats import paired_test
from mgfrec.retrievers.fit import load_scorer
from mgfrec.retrievers.recall import top_items


@contextmanager
def user_errors() -> Iterator[None]:
    """A missing or wrong run folder, an unknown split, a bad config or component: one ``error:`` line, exit code
    2 (as mgfrec's commands say them), not a traceback."""
    from mgfrec.config.load import ConfigError
    from mgfrec.registry import MissingExtraError, RegistryError, error_message
    from mgfrec.user_agents.base import UserAgentError

    try:
        yield
    except (ConfigError, RegistryError, UserAgentError, MissingExtraError, ValueError, OSError) as exc:
        refuse(error_message(exc))


def check_at_least(values: dict[str, Any], low: float) -> None:
    """Refuse any of ``values`` (flag -> a number, a list of them or None) below ``low``."""
    for flag, given in values.items():
        for value in given if isinstance(given, list) else [given]:
            if value is not None and not (math.isfinite(value) and value >= low):
                refuse(f"{flag}: {value}: give a number >= {low:g}")


def run_config(run_dir: str | Path) -> tuple[MGFRecConfig, str]:
    """The config the run was made with (its ``config.yaml``, read as ``mgfrec evaluate`` reads a run's) and
    where it came from; mgfrec's defaults for a run folder without one."""
    if (Path(run_dir) / "config.yaml").is_file():
        return load_run_config(run_dir), f"{Path(run_dir) / 'config.yaml'}"
    return MGFRecConfig(), "mgfrec's defaults (the run has no config.yaml)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a baseline run folder (the recall model)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 30])
    parser.add_argument("--tau", type=float, nargs="*", default=[0.1, 1.0])
    parser.add_argument("--oracle", action="store_true", help="add the synthetic generator's Bayes-optimal rows")
    parser.add_argument("--samples", type=int, default=None, help="the seeded subsample of this size (as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --samples (the demo uses data.seed, 0)")
    parser.add_argument(
        "--cutoff", type=int, default=0, help="compare NDCG@CUTOFF instead of N_full (0: no cut-off, the default)"
    )
    parser.add_argument(
        "--joined",
        type=int,
        nargs="*",
        default=[],
        help="add rows answering the recall top-K titles joined into one answer (and their mean vector)",
    )
    parser.add_argument(
        "--item-vectors",
        default=None,
        help="a run with item embeddings (sasrec, gru4rec, caser, hybrid): rank by L2 over them joined to the "
        "title embeddings (agent.final_ranking: l2_joint) instead of the title embeddings alone",
    )
    parser.add_argument(
        "--text-weight", type=float, default=1.0, help="with --item-vectors: the text part's weight (0: ids only)"
    )
    args = parser.parse_args(argv)
    check_at_least({"--k": args.k, "--samples": args.samples, "--joined": args.joined}, 1)
    check_at_least({"--cutoff": args.cutoff, "--text-weight": args.text_weight}, 0)
    for tau in args.tau:  # the chooser divides the recall scores by it
        if not (math.isfinite(tau) and tau > 0):
            refuse(f"--tau: {tau}: give a number > 0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    if args.joined and args.item_vectors:
        refuse("--joined embeds answer texts: it cannot be combined with --item-vectors")
    if args.joined and max(args.joined) > max(args.k):
        refuse(f"--joined {max(args.joined)}: at most the largest --k ({max(args.k)})")
    with user_errors():
        headroom(args)


def headroom(args: argparse.Namespace) -> None:
    run, frame, hist = recall_split(args.run, args.split, args.samples, args.seed)
    ds = run.ds
    cfg, source = run_config(args.run)
    embedder = load_embedder(cfg.embedding)
    tgt = torch.tensor(frame["target"].to_numpy())
    emb = torch.tensor(cached_item_embeddings(ds, cfg.embedding, embedder).vectors, dtype=torch.float32)
    if args.item_vectors:
        model = load_scorer(args.item_vectors).scorer
        if not hasattr(model, "item_vectors"):
            refuse(f"--item-vectors: {args.item_vectors} has no item embeddings (a sasrec or hybrid run has)")
        emb = joint_item_vectors(emb, model.item_vectors(), args.text_weight)
    scores = run.scorer.scores(hist).float()
    top = top_items(run.scorer, hist, ds.num_items, max(args.k))

    def ranks(s: torch.Tensor) -> np.ndarray:
        return target_ranks_excluding(s, tgt, hist).numpy()

    def answer_ranks(items: np.ndarray) -> np.ndarray:
        return ranks(-torch.cdist(emb[torch.as_tensor(items)], emb))

    line = Rows(args.cutoff, "recall").line

    used = f"embedder {cfg.embedding.embedder} ({embedder.model_id}), from {source}"
    print(f"{args.run} on {args.split}: {len(hist)} samples; {used}")
    line("recall model's own ranking", ranks(scores))
    line("answer = recall top-1, L2 ranking", answer_ranks(top[:, 0]))
    for k in args.k:
        shown = np.array([t in row[:k] for t, row in zip(frame["target"], top, strict=True)])
        ans = np.array([t if t in row[:k] else row[0] for t, row in zip(frame["target"], top, strict=True)])
        line(f"oracle among top-{k} (target shown {shown.mean():.3f})", answer_ranks(ans))
    k = min(args.k)
    for tau in args.tau:
        chosen = []
        for s in range(len(hist)):
            cand = torch.as_tensor(top[s][:k])
            cand = cand[cand >= 0]
            p = torch.softmax(scores[s, cand] / tau, 0)
            d = torch.cdist(emb[cand], emb)
            d[:, torch.as_tensor(hist[s])] = float("inf")
            r = (d.unsqueeze(1) <= d[:, cand].unsqueeze(2)).sum(-1).float()  # rank of candidate j under answer a
            chosen.append(int(cand[int((p.unsqueeze(0) / torch.log2(1 + r)).sum(1).argmax())]))
        line(f"expected-NDCG chooser, top-{k}, tau {tau}", answer_ranks(np.array(chosen)))
    if args.joined:
        joined_rows(ds, top, args.joined, emb, ranks, line, embedder)
    if args.oracle:
        oracle_rows(ds, frame, top, args.k, ranks, answer_ranks, line)


def recall_split(run_dir: str, split: str, samples: int | None, seed: int) -> tuple[Any, Any, list[np.ndarray]]:
    """The recall run (``load_scorer``), its split (the seeded subsample of ``samples``, as the demo takes it)
    and the split's histories as index arrays."""
    run = load_scorer(run_dir)
    frame = run.ds.split(split)
    if samples is not None:
        frame = subsample_split(frame, samples, seed)
    return run, frame, [np.array(h, dtype=np.int64) for h in frame["history"]]


class Rows:
    """Prints one row per chooser from its per-sample target ranks: NDCG (no cut-off, or at ``cutoff``) and
    Hit@1; every row after the first is compared with the first by the report's paired test."""

    def __init__(self, cutoff: int = 0, first: str = "the first row", width: int = 44):
        self.cutoff, self.first, self.width = cutoff, first, width
        self.metric = f"ndcg@{cutoff}" if cutoff else "ndcg_full"
        self.label = f"N@{cutoff}" if cutoff else "N_full"
        self.base: np.ndarray | None = None

    def line(self, name: str, r: np.ndarray) -> None:
        values = ndcg(r, self.cutoff or None)
        vs = ""
        if self.base is None:
            self.base = values
        else:
            test = paired_test(values, self.base, self.metric)
            mark = {"a": "above", "b": "below"}.get(test.better or "", "not significant")
            wl = f"{test.sign.wins}/{test.sign.losses}"
            vs = f"  vs {self.first} {test.diff:+.4f} [{test.ci[0]:+.4f}, {test.ci[1]:+.4f}] wins/losses {wl} {mark}"
        print(f"{name:<{self.width}} {self.label} {values.mean():.4f}  Hit@1 {hit(r, 1).mean():.3f}{vs}")


def joined_rows(ds, top, ks, emb, ranks, line, embedder) -> None:  # noqa: ANN001
    """Answers naming the recall top-K titles at once, embedded as one query (the paper's rule) by the run's
    ``embedder``, and the mean of their title vectors."""
    titles = ds.items["title"].tolist()
    for k in ks:
        if k > top.shape[1]:
            refuse(f"--joined {k}: at most the largest --k ({top.shape[1]})")
        texts = ["; ".join(titles[i] for i in row[:k] if i >= 0) for row in top]
        query = torch.tensor(embedder.encode(texts, query=True), dtype=torch.float32)
        line(f"answer = recall top-{k} titles joined, L2", ranks(-torch.cdist(query, emb)))
        mean = torch.stack([emb[torch.as_tensor(row[:k][row[:k] >= 0])].mean(0) for row in top])
        line(f"mean of recall top-{k} title vectors, L2", ranks(-torch.cdist(mean, emb)))


def oracle_rows(ds, frame, top, ks, ranks, answer_ranks, line) -> None:  # noqa: ANN001
    """The synthetic generator's Bayes-optimal ranking and the best one-item choices it implies."""
    source = ds.manifest["source"]
    if source["name"] != "synthetic":
        refuse(f"--oracle needs a data set prepared from the synthetic source, not {source['name']!r}")
    if ds.manifest["protocol"]["history_length"] < source["params"]["max_length"] - 1:
        refuse("--oracle needs whole histories: prepare with data.history_length >= max_length - 1")
    world = SyntheticWorld(SyntheticOptions(**source["params"]))
    item_ids = ds.items["item_id"].to_numpy()
    column = {item_id: j for j, item_id in enumerate(world.item_ids)}
    to_world = np.array([column[i] for i in item_ids])  # data set item index -> world column
    probs = np.stack(
        [
            world.next_item_probabilities(user, item_ids[np.asarray(h)].tolist())[to_world]
            for user, h in zip(frame["user_id"], frame["history"], strict=True)
        ]
    )
    line("oracle: Bayes-optimal ranking (knows genres)", ranks(torch.tensor(probs)))
    line("oracle: answer = its top-1, L2 ranking", answer_ranks(probs.argmax(1)))
    for k in ks:
        choice = np.array([row[:k][np.argmax(p[row[:k]])] for p, row in zip(probs, top, strict=True)])
        line(f"oracle: its choice among recall top-{k}, L2", answer_ranks(choice))


if __name__ == "__main__":
    main()

"""One whole trajectory for one user: what ``mgfrec recommend RUN`` shows.

The agent run folder (from ``mgfrec sft`` now, ``mgfrec fit`` later) gives the policy (``RUN/policy``), its
config and data set, and the recall run that filled its first prompts. The history comes from the data
set's log (``--user``: the user's latest ``history_length`` items) or is typed in (``--history``: titles,
each grounded to its nearest catalogue item so the recall model can read it). The agent runs greedily by
default; its answer is grounded and every item ranked, history excluded, to give the final top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgfrec.agent.environment import build_environment
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.components import check_components
from mgfrec.config.load import load_config
from mgfrec.config.schema import MGFRecConfig, PolicyConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.eval.metrics import history_mask
from mgfrec.grounding.engine import Grounding, load_grounding
from mgfrec.registry import Registry, with_registry
from mgfrec.retrievers.fit import load_retriever
from mgfrec.retrievers.recall import top_items
from mgfrec.rl.policy import load_policy
from mgfrec.rollout.base import build_engine
from mgfrec.rollout.loop import RolloutSample, rollout
from mgfrec.runs import RUN_FILE, read_run_info


@dataclass
class Recommendation:
    history: list[int]  # item indices the agent was told about (oldest first)
    recall: list[int]  # the first prompt's recall list (empty with recall off)
    trajectory: Trajectory
    top: list[tuple[int, float]]  # (item index, score = -L2 distance), best first; empty without an answer

    def to_dict(self, ds: PreparedDataset) -> dict[str, Any]:
        items = ds.items
        steps = list(self.trajectory.steps)
        turns = []
        for n, turn in enumerate(self.trajectory.turns):
            entry: dict[str, Any] = {"kind": turn.kind, "think": turn.think, "title": turn.title, "error": turn.error}
            if turn.kind == "ground" and n < len(steps):
                step = steps[n]
                entry["items"] = [
                    {"item_idx": int(i), "item_id": str(items.item_id.iloc[i]), "title": t}
                    for i, t in zip(step.item_indices, step.item_titles, strict=True)
                ]
                entry["feedback"] = step.feedback
            turns.append(entry)

        def item(i: int) -> dict[str, Any]:
            return {"item_idx": int(i), "item_id": str(items.item_id.iloc[i]), "title": str(items.title.iloc[i])}

        return {
            "history": [item(i) for i in self.history],
            "recall": [item(i) for i in self.recall],
            "turns": turns,
            "answer": self.trajectory.answer,
            "end_reason": self.trajectory.end_reason,
            "format_ok": self.trajectory.format_ok,
            "groundings": self.trajectory.num_groundings,
            "top": [{**item(i), "score": score} for i, score in self.top],
        }


def user_history(ds: PreparedDataset, user_id: str, length: int) -> list[int]:
    """The user's latest ``length`` items in time order (file order breaks ties), from the cleaned log."""
    log = ds.interactions
    rows = log[log["user_id"].astype(str) == str(user_id)]
    if rows.empty:
        raise KeyError(f"--user {user_id!r}: no such user in {ds.root} (user ids are strings as in the input)")
    rows = rows.reset_index().sort_values(["timestamp", "index"], kind="stable")
    return rows["item_idx"].astype(int).tolist()[-length:]


def typed_history(grounding: Grounding, titles: list[str]) -> list[int]:
    """Each typed title grounded to its nearest catalogue item (exact titles map to themselves)."""
    titles = [t.strip() for t in titles if t.strip()]
    if not titles:
        raise ValueError("--history: give at least one title, separated by ';'")
    return [row[0] for row in grounding.ground(titles, k=1)]


@with_registry
def recommend(
    run_dir: str | Path,
    *,
    user: str | None = None,
    history_titles: list[str] | None = None,
    sets: tuple[str, ...] = (),
    top_k: int = 10,
    sample: bool = False,
    seed: int = 0,
    reg: Registry | None = None,
) -> tuple[Recommendation, PreparedDataset]:
    """Run the agent of ``run_dir`` once for one user; see the module docstring."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info.kind != "agent":
        raise ValueError(f"{run_dir / RUN_FILE}: kind is '{info.kind}'; recommend needs an agent run (mgfrec sft / fit)")
    if (user is None) == (history_titles is None):
        raise ValueError("give exactly one of --user USER_ID or --history 'title; title; ...'")
    cfg: MGFRecConfig = load_config(run_dir / "config.yaml", sets)
    check_components(cfg, source=str(run_dir / "config.yaml"))
    ds = PreparedDataset(info.data)
    policy_dir = run_dir / str(info.extra.get("policy", "policy"))
    model, tokenizer = load_policy(PolicyConfig(model=str(policy_dir), dtype=cfg.policy.dtype))
    grounding = load_grounding(ds, cfg)
    history = (
        user_history(ds, user, cfg.data.history_length) if user is not None else typed_history(grounding, history_titles)
    )
    recall: list[int] = []
    recall_run = info.extra.get("recall_run")
    if cfg.agent.use_recall and cfg.retriever.recall_size > 0 and recall_run:
        retriever = load_retriever(Path(recall_run), ds)
        row = top_items(retriever, [np.asarray(history, dtype=np.int64)], ds.num_items, cfg.retriever.recall_size)[0]
        recall = [int(i) for i in row if i >= 0]
    environment = build_environment(grounding, tokenizer, cfg)
    sample_in = RolloutSample(
        tuple(ds.titles[i] for i in history), tuple(ds.titles[i] for i in recall) if recall else None
    )
    result = rollout(
        build_engine(cfg.rollout, model, tokenizer),
        environment,
        [sample_in],
        agent=cfg.agent,
        temperature=cfg.rollout.temperature if sample else 0.0,
        top_p=cfg.rollout.top_p,
        seed=seed,
        max_context=getattr(model.config, "max_position_embeddings", None),
    )
    trajectory = result.trajectories[0]
    top: list[tuple[int, float]] = []
    if trajectory.answer is not None:
        scores = grounding.full_scores([trajectory.answer])
        if cfg.eval.exclude_history:
            scores = scores.masked_fill(history_mask([np.asarray(history)], ds.num_items), float("-inf"))
        # a stable sort keeps equal scores (duplicated titles) in item-index order: the grounding tie rule
        values, order = scores[0].sort(descending=True, stable=True)
        top = [(int(i), float(v)) for v, i in zip(values[:top_k], order[:top_k], strict=True) if v > float("-inf")]
    return Recommendation(history, recall, trajectory, top), ds

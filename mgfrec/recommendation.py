"""What a recommendation query asks and what its answer holds: :class:`Query`, :class:`Recommendation` and the
JSON shapes of its items and turns, and how a query's history is read (a user's latest items from the data set's
log, or typed titles, each the catalogue item it names or grounds to). :mod:`mgfrec.recommend` answers the
queries; ``mgfrec serve``, ``mgfrec chat`` and the case study read these shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mgfrec.agent.trajectory import Trajectory
from mgfrec.data.prepared import PreparedDataset
from mgfrec.grounding.engine import Grounding
from mgfrec.validation import is_blank, is_whole_number, refuse_one_string


@dataclass(frozen=True)
class Query:
    """Whom to recommend for: exactly one of ``user`` or ``history_titles``; ``split`` (with ``user``) takes
    the user's sample of that split, so that its target's place can be reported: the latest one, or the one whose
    ``sample_id`` is given (a user may have several samples in a split). Each check names the argument and, in
    brackets, the command-line flag that sets it."""

    user: str | None = None
    history_titles: tuple[str, ...] | None = None
    split: str | None = None
    top_k: int = 10
    sample_id: int | None = None

    def __post_init__(self) -> None:
        if (self.user is None) == (self.history_titles is None):
            raise ValueError("give exactly one of --user USER_ID or --history 'title; ...' (user or history_titles)")
        if is_whole_number(self.user):
            object.__setattr__(self, "user", str(self.user))  # ids are compared as text (ml-100k's are numbers)
        if self.user is not None and not isinstance(self.user, str):
            raise TypeError(f"user: give a user id as a string or a whole number, got {type(self.user).__name__}")
        refuse_one_string(self.history_titles, "history_titles", "title strings")
        if self.history_titles is not None and not all(isinstance(t, str) for t in self.history_titles):
            raise TypeError("history_titles: give a sequence of title strings")
        if self.split is not None and self.user is None:
            raise ValueError("split (--split) needs user (--user): a typed history has no held-out target")
        if not is_whole_number(self.top_k):
            raise TypeError(f"top_k (--top-k): give a whole number, got {self.top_k!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k (--top-k) must be >= 1, got {self.top_k}")
        if self.sample_id is not None:
            if not is_whole_number(self.sample_id):
                raise TypeError(f"sample_id (--sample-id): give a whole number, got {self.sample_id!r}")
            if self.split is None:
                raise ValueError("sample_id (--sample-id) needs split (--split): it names one sample of a split")


@dataclass
class Recommendation:
    history: list[int]  # item indices the agent was told about (oldest first)
    recall: list[int]  # the first prompt's recall list (empty with recall off)
    trajectory: Trajectory | None  # None for a baseline run
    top: list[tuple[int, float]]  # (item index, score), best first; empty without an answer
    target: int | None = None  # the split sample's held-out item, when the query named a split
    target_rank: int | None = None  # its 1-based place among all items (history excluded as configured)
    sample_id: int | None = None  # the split sample the history and target came from

    def to_dict(self, ds: PreparedDataset) -> dict[str, Any]:
        def item(i: int) -> dict[str, Any]:
            return item_dict(ds, i)

        t = self.trajectory
        out: dict[str, Any] = {
            "kind": "baseline" if t is None else "agent",
            "history": [item(i) for i in self.history],
            "recall": [item(i) for i in self.recall],
            "turns": [] if t is None else [turn_dict(ds, t, n) for n in range(len(t.turns))],
            "answer": None if t is None else t.answer,
            "end_reason": None if t is None else t.end_reason,
            "end_detail": None if t is None else t.state.error,  # why it ended without an answer, when known
            "format_ok": None if t is None else t.format_ok,
            "groundings": 0 if t is None else t.num_groundings,
            "top": [{**item(i), "score": score + 0.0} for i, score in self.top],  # -0.0 (a negated 0 distance) as 0.0
        }
        if self.target is not None:
            out["target"] = {**item(self.target), "rank": self.target_rank, "sample_id": self.sample_id}
        return out


def item_dict(ds: PreparedDataset, i: int) -> dict[str, Any]:
    """An item as every JSON answer shows it: index, id and title."""
    return {"item_idx": int(i), "item_id": str(ds.items.item_id.iloc[i]), "title": str(ds.items.title.iloc[i])}


def turn_dict(ds: PreparedDataset, trajectory: Trajectory, n: int) -> dict[str, Any]:
    """Turn ``n`` of a trajectory: thought, kind, title, error and, for a served grounding, items and feedback."""
    turn = trajectory.turns[n]
    entry: dict[str, Any] = {"kind": turn.kind, "think": turn.think, "title": turn.title, "error": turn.error}
    if turn.kind == "ground" and n < len(trajectory.steps):
        step = trajectory.steps[n]
        entry["items"] = [
            {"item_idx": int(i), "item_id": str(ds.items.item_id.iloc[i]), "title": t}
            for i, t in zip(step.item_indices, step.item_titles, strict=True)
        ]
        # none shown (the none backend's empty text, as the observation leaves the block out): null, as a request
        # with "feedback": "none" gave it; it was "" from `recommend --set user_agent.backend=none`
        entry["feedback"] = step.feedback or None
    return entry


def user_rows(ds: PreparedDataset, user_id: str) -> pd.DataFrame:
    """The user's rows of the cleaned log; a user the data set does not hold is one line naming a few it does."""
    log = ds.interactions
    rows = log[log["user_id"].astype(str) == str(user_id)]
    if rows.empty:
        known = ", ".join(repr(u) for u in log["user_id"].astype(str).drop_duplicates().head(3))
        raise KeyError(
            f"--user {user_id!r}: no such user in {ds.root} (user ids are strings as in the input, e.g. {known})"
        )
    return rows


def user_history(ds: PreparedDataset, user_id: str, length: int) -> list[int]:
    """The user's latest ``length`` items in time order (file order breaks ties), from the cleaned log."""
    rows = user_rows(ds, user_id).reset_index().sort_values(["timestamp", "index"], kind="stable")
    return rows["item_idx"].astype(int).tolist()[-length:]


def history_titles_read(titles: Sequence[str]) -> list[str]:
    """The typed titles :func:`typed_history` reads: each stripped, blank ones (:func:`is_blank`: a lone zero-width
    space, a BOM or NUL too) left out."""
    return [t.strip() for t in titles if not is_blank(t)]


def typed_history(grounding: Grounding, titles: Sequence[str]) -> list[int]:
    """Each typed title as a catalogue item: a title the catalogue holds exactly is that item (the first of
    several sharing it), any other is grounded to its nearest item. The exact lookup comes first because
    the embedder may not tell titles apart (MiniLM is uncased and strips accents: "abbey road" and "Abbey
    Road", or "été" in its composed and decomposed forms, get one vector, and the tie goes to the lower index)."""
    refuse_one_string(titles, "history titles", "title strings")
    if not all(isinstance(t, str) for t in titles):
        raise TypeError("history titles: give a list of title strings")
    titles = history_titles_read(titles)
    if not titles:
        raise ValueError("--history: give at least one title, separated by ';'")
    exact = [grounding.title_index.get(t) for t in titles]
    missing = [t for t, j in zip(titles, exact, strict=True) if j is None]
    nearest = iter(grounding.nearest(missing)) if missing else iter(())  # exactly, whatever the grounder
    return [next(nearest) if j is None else j for j in exact]

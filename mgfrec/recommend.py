"""One whole trajectory for one user: what ``mgfrec recommend RUN``, ``mgfrec serve`` and ``mgfrec chat`` show.

:func:`load_recommender` loads a run folder once (the policy, its config and data set, the grounding and the
recall run of an agent run; the scorer of a baseline run) and :meth:`Recommender.recommend_many` answers
queries with it: ``mgfrec recommend`` calls it once through :func:`recommend`, the server calls it for every
batch of requests, the terminal chat for every conversation. The history comes from the data set's log
(``user``: the user's latest ``history_length`` items), from a split's sample (``user`` and ``split``: its
history, and its target, whose place in the ranking is then reported) or is typed in (``history_titles``:
each grounded to its nearest catalogue item so the recall model can read it). The agent runs greedily by
default; its answer ranks every item by the run's ``agent.final_ranking`` (the paper's L2 unless a variant
run says otherwise, as the evaluator ranks), history excluded, to give the final top-k. A
baseline run ranks from its scorer and has no trajectory.

Several queries of one call are rolled out together (one engine call per turn for all of them). The
``listener`` sees every turn and observation as it happens, for streaming; the loop itself is not changed.
A query and its answer (:class:`Query`, :class:`Recommendation`, their JSON shapes and how a history is read) are
:mod:`mgfrec.recommendation`'s, importable from here as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.agent.environment import Environment, build_environment
from mgfrec.agent.final_ranking import FinalRanking
from mgfrec.agent.loop import RolloutSample, rollout
from mgfrec.agent.run_config import load_run_config
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.components import check_components
from mgfrec.config.load import config_source, sets_field
from mgfrec.config.schema import EvalConfig, MGFRecConfig, PolicyConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.grounding.engine import load_grounding
from mgfrec.models.policy import load_policy
from mgfrec.ranking.metrics import comparable, history_mask, nan_to_neg_inf, target_ranks
from mgfrec.recommendation import (  # noqa: F401 (the query and answer shapes were this module's, as before)
    Query,
    Recommendation,
    history_titles_read,
    item_dict,
    turn_dict,
    typed_history,
    user_history,
    user_rows,
)
from mgfrec.registry import Registry, with_registry
from mgfrec.registry.blame import call_component
from mgfrec.retrievers.fit import load_retriever, open_data
from mgfrec.retrievers.recall import top_items
from mgfrec.retrievers.sequences import history_window
from mgfrec.rollout.base import build_engine, check_engine, context_limit
from mgfrec.runs import RUN_FILE, policy_folder, read_run_info, recall_run_of, with_run_plugins
from mgfrec.staleness import check_agent_current
from mgfrec.user_agents.base import UserAgent
from mgfrec.validation import not_utf8_at, refuse_one_string

Listener = Callable[[int, dict[str, Any]], None]
"""``listener(query_index, event)``: one ``turn`` or ``observation`` event of query ``query_index``."""


class _LockedEngine:
    """The rollout engine behind a lock: concurrent rollouts (a person typing in one, a batch in another)
    take turns on the model instead of running it from two threads at once."""

    def __init__(self, engine: Any, lock: threading.RLock):
        self._engine, self._lock = engine, lock
        self.tokenizer = engine.tokenizer
        # what the loop asks of an engine for constrained turns: support, and the model (its vocabulary size)
        self.supports_constraints = getattr(engine, "supports_constraints", False)
        self.model = getattr(engine, "model", None)
        self.max_context = getattr(engine, "max_context", None)  # vLLM's max_model_len (rollout.base.context_limit)

    def generate(self, prompts: Any, **kwargs: Any) -> Any:
        with self._lock:  # the engine's own wrong signature named as it is in fit (review s34)
            return call_component(self._engine, "generate", prompts, **kwargs)

    def load_weights(self, state_dict: Any) -> None:
        with self._lock:
            self._engine.load_weights(state_dict)

    def close(self) -> None:
        close = getattr(self._engine, "close", None)
        if callable(close):
            with self._lock:
                close()


class Locked:
    """``inner`` with the methods named in ``methods`` called under ``lock``; everything else passes through.
    The grounding and an automatic user agent share the embedder with the engine's thread, so they take turns."""

    def __init__(self, inner: Any, lock: threading.RLock, methods: Sequence[str]):
        self._inner, self._lock, self._methods = inner, lock, frozenset(methods)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._methods:
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return call_component(self._inner, name, *args, **kwargs)

        return locked


class _WatchedEnvironment(Environment):
    """The run's environment, reporting each new turn before grounding it and each observation after."""

    def __init__(
        self,
        base: Environment,
        grounding: Any,
        user_agent: UserAgent | None,
        ds: PreparedDataset,
        listener: Listener | None,
    ):
        super().__init__(
            grounding, base.tokenizer, user_agent, top_k=base.top_k, max_feedback_tokens=base.max_feedback_tokens
        )
        self._ds, self._listener = ds, listener

    def step(self, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
        if self._listener is not None:
            for t in trajectories:
                n = len(t.turns) - 1
                turn = t.turns[n]
                event = {"n": n, "kind": turn.kind, "think": turn.think, "title": turn.title, "error": turn.error}
                self._listener(int(t.sample_id), {"type": "turn", **event})
        served = super().step(trajectories)
        if self._listener is not None:
            for t in served:
                n = len(t.turns) - 1
                entry = turn_dict(self._ds, t, n)
                self._listener(
                    int(t.sample_id),
                    {
                        "type": "observation",
                        "n": n,
                        "title": entry["title"],
                        "items": entry["items"],
                        "feedback": entry["feedback"],
                    },
                )
        return served


@with_run_plugins  # a plugin the run was made with that is not installed here: named with its package
def checked_run_config(run_dir: str | Path, sets: Sequence[str] = ()) -> MGFRecConfig:
    """``run_dir``'s config with ``sets``, every component it names that recommending builds checked: ``chat``
    calls it before it asks for a history (a missing plugin was named only after one was typed; review s39)."""
    cfg = load_run_config(run_dir, sets)
    # grpo.rewards is never computed here: a run trained with a reward plugin serves without its package
    # "with flags or --set" when sets changed it: a --set grounding.grounder=nope was blamed on the run (s36)
    source = config_source(Path(run_dir) / "config.yaml", sets)
    check_components(cfg, source=source, rewards=False, data=False)
    return cfg


class Recommender:
    """A run folder loaded once; answers :class:`Query` objects (see the module docstring). Thread-safe: the
    engine is used under one lock, so a server may call :meth:`recommend_many` from several threads."""

    @with_run_plugins  # a plugin the run was made with that is not installed here: named with its package
    def __init__(self, run_dir: str | Path, sets: Sequence[str] = (), query: Query | None = None):
        """``query``: a user's query is checked against the data set (:meth:`history_of`) before the policy loads,
        so an unknown user, split sample or ``sample_id`` is refused at once, not after the model has loaded."""
        self.run_dir = Path(run_dir)
        self.info = read_run_info(self.run_dir)
        if self.info.kind not in ("agent", "baseline"):
            raise ValueError(
                f"{self.run_dir / RUN_FILE}: field 'kind' is '{self.info.kind}'; expected 'agent' or 'baseline'"
            )
        self.cfg: MGFRecConfig = checked_run_config(self.run_dir, sets)
        if not any(sets_field(text, "eval.exclude_history") for text in sets):
            # how items are ranked is the ranking command's choice, as evaluate's and report's: the run's recorded
            # value (a fit's --set eval.exclude_history=false) gave a sample another place here than in its
            # ranks_<split>.csv (review s29)
            ranking = self.cfg.eval.model_copy(update={"exclude_history": EvalConfig().exclude_history})
            self.cfg = self.cfg.model_copy(update={"eval": ranking})
        self.lock = threading.RLock()
        self.engine: Any = None
        self.environment: Environment | None = None
        self.retriever: Any = None
        self.run_user_agent: UserAgent | None = None  # the run's configured user agent, used under the lock
        if self.info.kind == "baseline":
            from mgfrec.eval.runs import load_scorer  # late: the evaluator's own way to load a baseline

            loaded = load_scorer(self.run_dir)
            self.ds, self.scorer = loaded.ds, loaded.scorer
            self._check_user(query)
            self.grounding = load_grounding(self.ds, self.cfg)
            return
        self.ds = open_data(self.run_dir, self.info)  # the data set the policy was trained on, checked by checksum
        # a recall run fitted again since the agent was trained over it (or a derived run's trained run trained
        # again): evaluate refused it, while recommend, serve and chat answered over another recall list (review s38)
        check_agent_current(self.run_dir, self.info, rolling_out=True)
        self.scorer = None
        self._check_user(query)  # before the policy loads: it was refused only after (~30 s on CDs; note s31)
        check_engine(self.cfg.rollout)  # vLLM missing: refused before the policy loads too (review s37)
        policy_dir = policy_folder(self.run_dir, self.info)  # a deleted one was refused as a hub id
        self.model, tokenizer = load_policy(PolicyConfig(model=str(policy_dir), dtype=self.cfg.policy.dtype))
        self.grounding = load_grounding(self.ds, self.cfg)
        recall_run = recall_run_of(self.run_dir, self.info)
        self.final = FinalRanking.build(self.cfg.agent, self.grounding, recall_run, str(self.run_dir))
        if self.cfg.agent.use_recall and self.cfg.retriever.recall_size > 0 and recall_run:
            # the final ranking's recall model, when its rule loaded one, is this same run's
            self.retriever = self.final.recall
            if self.retriever is None:
                self.retriever = load_retriever(Path(recall_run), self.ds)
        self.environment = build_environment(self.grounding, tokenizer, self.cfg)
        self.engine = _LockedEngine(build_engine(self.cfg.rollout, self.model, tokenizer), self.lock)
        if self.environment.user_agent is not None:
            self.run_user_agent = Locked(self.environment.user_agent, self.lock, ("feedback",))

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def method(self) -> str:
        return self.info.model

    def close(self) -> None:
        """Release the run's user agent (threads, connections) and its rollout engine (vLLM's engine and its copy of
        the policy in a temporary folder, which a stopped `serve` left behind; review s37)."""
        if self.environment is not None and self.environment.user_agent is not None:
            self.environment.user_agent.close()
        if self.engine is not None:
            self.engine.close()

    def _check_user(self, query: Query | None) -> None:
        """Resolve a user's ``query`` against the data set alone (a typed history needs the grounding: later)."""
        if query is not None and query.user is not None:
            self.history_of(query)

    # --- what a query means ------------------------------------------------------------------------------

    def history_of(self, query: Query) -> tuple[list[int], int | None]:
        """The query's history (item indices, oldest first) and, for a split sample, its target."""
        if query.user is not None and (at := not_utf8_at(query.user)) is not None:  # an API's user_id "\udcff"
            raise KeyError(f"--user {query.user!r}: not valid UTF-8 text (character {at})")  # the lookup named none
        if query.history_titles is not None:
            # the latest titles of the data set's window, as a user's history: 3,000 pasted titles overflowed the
            # policy's context, and the agent never answered (review s35)
            typed = history_titles_read(query.history_titles)[-history_window(self.ds) :]
            with self.lock:
                return typed_history(self.grounding, typed), None
        if query.split is None:
            # the length the data set was prepared with, as its split samples (not the run config's field)
            return user_history(self.ds, query.user, history_window(self.ds)), None
        rows = self.split_samples(query.split, query.user)
        if rows.empty:
            user_rows(self.ds, query.user)  # no such user at all: said so, with a few that exist (review s31)
            raise KeyError(f"--user {query.user!r}: no sample of this user in split '{query.split}' of {self.ds.root}")
        if query.sample_id is not None:
            chosen = rows[rows["sample_id"] == query.sample_id]
            if chosen.empty:
                ids = ", ".join(str(i) for i in rows["sample_id"].tolist()[:10])
                raise KeyError(
                    f"--sample-id {query.sample_id}: not a sample of user {query.user!r} in split '{query.split}' "
                    f"(theirs: {ids})"
                )
            row = chosen.iloc[0]
        else:
            row = rows.iloc[-1]  # the latest: a split's samples are in time order
        return [int(i) for i in row["history"]], int(row["target"])

    def sample_of(self, query: Query) -> int | None:
        """The id of the split sample ``query`` reads (see :meth:`history_of`); None without a split."""
        if query.split is None or query.user is None:
            return None
        if query.sample_id is not None:
            return int(query.sample_id)
        rows = self.split_samples(query.split, query.user)
        return int(rows["sample_id"].iloc[-1]) if not rows.empty else None

    def split_samples(self, split: str, user: str) -> Any:
        """The samples of ``user`` in ``split`` (a pandas frame: sample_id, history, target...), oldest first."""
        frame = self.ds.split(split)
        return frame[frame["user_id"].astype(str) == str(user)]

    def users(self, split: str | None = None) -> list[str]:
        """User ids of the data set (``split``: those with a sample in that split), in first-seen order."""
        ids = self.ds.split(split)["user_id"] if split is not None else self.ds.interactions["user_id"]
        return list(dict.fromkeys(ids.astype(str).tolist()))

    def search(self, text: str, k: int = 10) -> list[tuple[int, float]]:
        """Grounding as a service: the ``k`` catalogue items nearest ``text``, with their L2 distances."""
        if not isinstance(text, str):
            raise TypeError(f"text: give one title or query string, got {type(text).__name__}")
        with self.lock:
            indices, distances = self.grounding.search([text], k)
        return [(int(i), float(d)) for i, d in zip(indices[0], distances[0], strict=True) if i >= 0]

    # --- recommending ------------------------------------------------------------------------------------

    def recommend_many(
        self,
        queries: Sequence[Query],
        *,
        user_agent: UserAgent | None | str = "run",
        sample: bool = False,
        seed: int = 0,
        listener: Listener | None = None,
    ) -> list[Recommendation]:
        """Answer every query; agent runs roll all of them out together. ``user_agent`` is ``"run"`` (the run's
        configured one), ``None`` (no feedback) or a user agent object (e.g. ``human``)."""
        # a string or one Query was "'str' object has no attribute 'user'" deep inside (review s35)
        if isinstance(queries, (str, bytes, Query)) or not all(isinstance(q, Query) for q in queries):
            raise TypeError("queries: give a list of Query objects (recommend() takes one)")
        if isinstance(user_agent, str) and user_agent != "run":  # "none" was "builtins.str has no feedback()"
            raise TypeError(
                f"user_agent {user_agent!r}: give 'run' (the run's own), None (no feedback) or a user agent object"
            )
        resolved = [self.history_of(q) for q in queries]
        histories = [h for h, _ in resolved]
        if self.kind == "baseline":
            with self.lock:
                scores = call_component(self.scorer, "scores", [np.asarray(h, dtype=np.int64) for h in histories])
            return [
                self._ranked(q, h, tgt, [], None, scores[n : n + 1])
                for n, (q, (h, tgt)) in enumerate(zip(queries, resolved, strict=True))
            ]
        recalls: list[list[int]] = [[] for _ in queries]
        if self.retriever is not None:
            with self.lock:
                rows = top_items(
                    self.retriever,
                    [np.asarray(h, dtype=np.int64) for h in histories],
                    self.ds.num_items,
                    self.cfg.retriever.recall_size,
                )
            recalls = [[int(i) for i in row if i >= 0] for row in rows]
        titles = self.ds.titles
        samples = [
            RolloutSample(tuple(titles[i] for i in h), tuple(titles[i] for i in r) if r else None, n)
            for n, (h, r) in enumerate(zip(histories, recalls, strict=True))
        ]
        agent = self.run_user_agent if user_agent == "run" else user_agent
        grounding = Locked(self.grounding, self.lock, ("ground", "search", "full_scores"))
        environment = _WatchedEnvironment(self.environment, grounding, agent, self.ds, listener)
        result = rollout(
            self.engine,
            environment,
            samples,
            agent=self.cfg.agent,
            temperature=self.cfg.rollout.temperature if sample else 0.0,
            top_p=self.cfg.rollout.top_p,
            seed=seed,
            max_context=context_limit(self.engine, self.model),
        )
        out = []
        for q, (h, tgt), r, traj in zip(queries, resolved, recalls, result.trajectories, strict=True):
            scores = None
            if traj.answer is not None:
                with self.lock:  # the run's agent.final_ranking, as the evaluator ranks
                    scores = self.final.scores([traj.answer], [h])
            out.append(self._ranked(q, h, tgt, r, traj, scores))
        return out

    def recommend(self, query: Query, **kwargs: Any) -> Recommendation:
        """One query; see :meth:`recommend_many`."""
        return self.recommend_many([query], **kwargs)[0]

    def _ranked(
        self, q: Query, history: list[int], target: int | None, recall: list[int], traj: Trajectory | None, scores: Any
    ) -> Recommendation:
        rec = Recommendation(history, recall, traj, [], target, sample_id=self.sample_of(q))
        if scores is None:
            if target is not None:
                rec.target_rank = self.ds.num_items  # no answer recommends nothing: the evaluator's worst rank
            return rec
        scores = nan_to_neg_inf(comparable(scores).cpu())  # as the evaluator; a descending sort puts NaN first
        exclude = history_mask([np.asarray(history)], self.ds.num_items) if self.cfg.eval.exclude_history else None
        if exclude is not None and q.history_titles is not None:
            # a typed title names no one item: every item with that title is history ("Abbey Road" twice)
            for i in history:
                exclude[0, list(self.grounding.same_title.get(i, ()))] = True
        if target is not None:
            rec.target_rank = int(target_ranks(scores, torch.tensor([target]), exclude)[0])  # the evaluator's rank
        if exclude is not None:  # as the evaluator: the history left out, never a known target
            if target is not None:
                exclude[0, target] = False
            scores = scores.masked_fill(exclude, float("-inf"))
        # a stable sort keeps equal scores (duplicated titles) in item-index order: the grounding tie rule
        values, order = scores[0].sort(descending=True, stable=True)
        if target is not None:
            # the target after the items it ties with, as its rank counts them (pessimistic): it was listed at #8
            # above a line saying "at place 9"
            rest = order[order != target]
            place = rec.target_rank - 1
            order = torch.cat([rest[:place], torch.tensor([target], dtype=order.dtype), rest[place:]])
            values = scores[0][order]
        k = q.top_k
        rec.top = [(int(i), float(v)) for v, i in zip(values[:k], order[:k], strict=True) if v > float("-inf")]
        return rec


def load_recommender(run_dir: str | Path, sets: Sequence[str] = (), query: Query | None = None) -> Recommender:
    """Load ``run_dir`` (an agent run or a baseline run) for recommending; ``sets`` are ``--set`` overrides;
    ``query``, when given, is checked against the run's data set before the policy loads."""
    # read letter by letter, one string was "override 'a' must look like section.field=value"
    refuse_one_string(sets, "sets", "'section.field=value' overrides")
    return Recommender(run_dir, sets, query)


@with_registry
def recommend(
    run_dir: str | Path,
    *,
    user: str | None = None,
    history_titles: list[str] | None = None,
    split: str | None = None,
    sets: tuple[str, ...] = (),
    top_k: int = 10,
    sample: bool = False,
    seed: int = 0,
    sample_id: int | None = None,
    reg: Registry | None = None,
) -> tuple[Recommendation, PreparedDataset]:
    """Run the agent of ``run_dir`` once for one user; see the module docstring."""
    refuse_one_string(history_titles, "history_titles", "titles")
    if history_titles is not None and not isinstance(history_titles, (list, tuple)):
        raise TypeError(f"history_titles: give a list of title strings, got {type(history_titles).__name__}")
    titles = tuple(history_titles) if history_titles is not None else None
    query = Query(user, titles, split, top_k, sample_id)
    rec = load_recommender(run_dir, sets, query)
    try:
        return rec.recommend(query, sample=sample, seed=seed), rec.ds
    finally:
        rec.close()

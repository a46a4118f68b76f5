"""The ``simulated`` user agent: deterministic feedback from title embeddings, cheap enough for training.

The offline default. It plays the user of Table 1 with geometry instead of an LLM, and sees exactly what
the LLM user agent sees (history, grounded title, listed items; never the target):

* The user's taste is the recency-weighted centroid ``p`` of the history vectors (the most recent item
  weighs 1, the one before ``recency_decay``, then ``recency_decay**2``, ...).
* The interest summary names the history titles nearest ``p``.
* Distances are judged against the user's own spread: ``scale`` is the median distance of each history
  item to the weighted centroid of the *other* history items (leave-one-out, so that history items are
  judged like any new item; with a single history item, the median distance of the listed items). A title within
  ``scale`` fits, within ``scale * (1 + tolerance)`` partly fits, beyond that it does not.
* The grounded title gets a verdict; the listed items nearest ``p`` are named as the ones that fit, the
  farthest as one to move away from; the suggestion to move "closer to" names the recent history item that
  the listed items cover worst (largest distance to its nearest listed item).

Same input, same text: no sampling, and ties break by position. All titles of a batch are embedded in one
``embed`` call. Titles are quoted as they are; neutralising them for the observation is the agent's job.
Not cached: its answer depends on the embedder, which a cache key cannot see, and computing it is cheaper
than a lookup anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.schema import UserAgentConfig
from mgfrec.user_agents.base import FeedbackRequest, UsageStats, UserAgentContext, UserAgentError


class SimulatedOptions(BaseModel):
    """``user_agent.options`` for ``simulated``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    recency_decay: float = Field(0.85, gt=0, le=1, description="weight ratio between consecutive history items")
    summary_size: int = Field(3, ge=1, description="history titles named as the interest summary")
    recent: int = Field(3, ge=1, description="most recent history items a 'closer to' suggestion may name")
    good_items: int = Field(2, ge=1, description="at most this many listed items named as fitting")
    tolerance: float = Field(0.1, ge=0, description="relative margin beyond the user's spread that 'partly fits'")


_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def _quote(titles: Sequence[str]) -> str:
    quoted = [f'"{t}"' for t in titles]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


class SimulatedUserAgent:
    """Feedback from title-embedding geometry; see the module docstring."""

    Options = SimulatedOptions

    def __init__(self, cfg: UserAgentConfig | None, options: SimulatedOptions | None, context: UserAgentContext | None):
        if context is None or context.embed is None:
            raise UserAgentError(
                "user agent backend 'simulated' needs title embeddings: build it through the agent loop, or pass "
                "UserAgentContext(embed=...) to load_user_agent"
            )
        self.options = options or SimulatedOptions()
        self._embed = context.embed
        self.usage = UsageStats()

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        if not requests:
            return []
        started = time.monotonic()
        titles = list(dict.fromkeys(t for r in requests for t in (*r.history_titles, r.grounded_title, *r.item_titles)))
        vectors = np.asarray(self._embed(titles), dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) != len(titles):
            raise UserAgentError(
                f"user agent 'simulated': embed returned shape {vectors.shape} for {len(titles)} titles; "
                "it must return one row per title"
            )
        row = {t: i for i, t in enumerate(titles)}
        out = [self._one(r, lambda ts: vectors[[row[t] for t in ts]]) for r in requests]
        self.usage.add(calls=len(requests), latency_s_total=time.monotonic() - started)
        return out

    def _one(self, req: FeedbackRequest, vec: Any) -> str:
        opts = self.options
        history, items, title = list(req.history_titles), list(req.item_titles), req.grounded_title
        if not history:
            return f'I have not interacted with anything yet, so I cannot tell whether "{title}" suits me.'
        hist = vec(history)
        weights = opts.recency_decay ** np.arange(len(history) - 1, -1, -1, dtype=np.float64)
        taste = weights @ hist / weights.sum()
        d_hist = np.linalg.norm(hist - taste, axis=1)
        d_title = float(np.linalg.norm(vec([title])[0] - taste))
        lst = vec(items) if items else np.empty((0, hist.shape[1]))
        d_items = np.linalg.norm(lst - taste, axis=1)
        if len(history) >= 2:
            # Leave-one-out: each history item against the centroid of the others. A member pulls the centroid
            # towards itself, so its plain distance would understate how far a new item of the same taste lies.
            others = (weights.sum() * taste - weights[:, None] * hist) / (weights.sum() - weights)[:, None]
            scale = float(np.median(np.linalg.norm(hist - others, axis=1)))
        else:
            scale = float(np.median(d_items)) if items else 0.0
        loose = scale * (1 + opts.tolerance)

        # stable argsort: equal distances keep history/list order, so the text is deterministic
        core = [history[i] for i in np.argsort(d_hist, kind="stable")[: opts.summary_size]]
        parts = [f"From what I have enjoyed, I mostly like things such as {_quote(core)}."]
        if d_title <= scale:
            parts.append(f'"{title}" fits my taste well.')
        elif d_title <= loose:
            parts.append(f'"{title}" is somewhat related to what I like, but not quite it.')
        else:
            parts.append(f'"{title}" is not really what I am looking for.')

        far = None
        if items:
            order = np.argsort(d_items, kind="stable")
            good = [int(i) for i in order[: opts.good_items] if d_items[i] <= loose]
            if good:
                verb = "suits" if len(good) == 1 else "suit"
                parts.append(f"From the list, {_quote([items[i] for i in good])} {verb} me best.")
            else:
                parts.append(f'Nothing in the list really suits me; the closest is "{items[int(order[0])]}".')
            worst = int(order[-1])
            if len(items) > 1 and d_items[worst] > loose and worst not in good:
                far = items[worst]
                parts.append(f'"{far}" is far from my taste.')
        else:
            parts.append("The search found nothing for it.")

        if d_title <= scale and far is None:
            parts.append("Keep looking in this direction.")
        else:
            recent = list(range(max(0, len(history) - opts.recent), len(history)))[::-1]  # most recent first
            ref = lst if items else vec([title])
            gaps = [float(np.min(np.linalg.norm(ref - hist[j], axis=1))) for j in recent]
            closer = history[recent[int(np.argmax(gaps))]]  # argmax keeps the first: the most recent on ties
            away = f' and away from "{far}"' if far else ""
            parts.append(f'Try something closer to "{closer}"{away}.')
        # one paragraph, its titles on one line as wherever a title is shown to a model: a title's line break
        # split the feedback (review s39)
        return _LINE_BREAKS.sub(" ", " ".join(parts))

    def stats(self) -> dict[str, Any]:
        return self.usage.snapshot()

    def close(self) -> None:
        pass

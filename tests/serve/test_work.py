"""The server's batcher: requests that arrive while a batch runs are answered together, by mode; the queue
is bounded; one bad request does not fail the others."""

from __future__ import annotations

import threading

import pytest

from mgfrec.recommend import Query
from mgfrec.serve.work import Batcher, Busy, Mode


class Recorder:
    """Stands in for a Recommender: records each recommend_many call; the first one waits for ``release``."""

    def __init__(self):
        self.calls: list[tuple[list[str], object]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def recommend_many(self, queries, *, user_agent, sample, seed, listener):
        self.calls.append(([q.user for q in queries], user_agent))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(30)
        if any(q.user == "bad" for q in queries):
            raise KeyError("--user 'bad': no such user")
        for n, q in enumerate(queries):
            listener(n, {"type": "turn", "user": q.user})
        return [f"rec for {q.user}" for q in queries]


def test_requests_queued_during_a_batch_run_as_one_batch_per_mode():
    rec = Recorder()
    batcher = Batcher(rec, max_batch=3, queue_size=10)
    first = batcher.submit(Query(user="u0"), Mode())
    assert rec.started.wait(30)
    heard: list[dict] = []
    futures = [batcher.submit(Query(user=f"u{n}"), Mode(), heard.append) for n in range(1, 5)]
    silent = batcher.submit(Query(user="n1"), Mode("none"))
    rec.release.set()
    assert first.result(30) == "rec for u0"
    assert [f.result(30) for f in futures] == [f"rec for u{n}" for n in range(1, 5)]
    assert silent.result(30) == "rec for n1"
    batcher.close()
    # the oldest waiting request decides the next batch's mode: u4 (queued before n1) goes before n1
    assert [users for users, _ in rec.calls] == [["u0"], ["u1", "u2", "u3"], ["u4"], ["n1"]]
    assert [agent for _, agent in rec.calls] == ["run", "run", "run", None]
    assert sorted(e["user"] for e in heard) == ["u1", "u2", "u3", "u4"]  # each listener hears its own request
    assert batcher.stats == {"requests": 6, "batches": 4, "largest_batch": 3, "failed": 0}


def test_a_full_queue_refuses_and_a_bad_request_fails_alone():
    rec = Recorder()
    batcher = Batcher(rec, max_batch=4, queue_size=2)
    batcher.submit(Query(user="u0"), Mode())
    assert rec.started.wait(30)
    bad, good = batcher.submit(Query(user="bad"), Mode()), batcher.submit(Query(user="u1"), Mode())
    with pytest.raises(Busy, match="queue is full"):
        batcher.submit(Query(user="u2"), Mode())
    rec.release.set()
    with pytest.raises(KeyError, match="no such user"):
        bad.result(30)
    assert good.result(30) == "rec for u1"
    batcher.close()
    assert batcher.stats["failed"] == 1

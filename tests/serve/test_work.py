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


class Gated:
    """Stands in for a Recommender: every recommend_many call waits for one ``go.release()``."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.go = threading.Semaphore(0)
        self.entered = threading.Semaphore(0)

    def recommend_many(self, queries, *, user_agent, sample, seed, listener):
        self.calls.append([q.user for q in queries])
        self.entered.release()
        assert self.go.acquire(timeout=30)
        return [f"rec for {q.user}" for q in queries]


def test_requests_the_worker_took_aside_count_against_the_queue_bound():
    """Requests of another mode that the worker has taken out of the queue still wait: they count, so the number
    waiting never exceeds the capacity (before, the worker emptied the queue and the backlog grew without bound)."""
    rec = Gated()
    batcher = Batcher(rec, max_batch=2, queue_size=4)
    first = batcher.submit(Query(user="u0"), Mode())
    assert rec.entered.acquire(timeout=30)  # u0 runs; the worker waits in it
    waiting = [batcher.submit(Query(user=u), Mode(feedback=f)) for u, f in [("a1", "simulated"), ("b1", "none")]]
    waiting += [batcher.submit(Query(user=u), Mode(feedback=f)) for u, f in [("a2", "simulated"), ("b2", "none")]]
    assert batcher.queued() == 4
    with pytest.raises(Busy, match="queue is full"):
        batcher.submit(Query(user="x"), Mode())
    rec.go.release()  # u0 ends; the worker takes all four, runs a1 + a2 and keeps b1, b2 aside
    assert rec.entered.acquire(timeout=30) and rec.calls[-1] == ["a1", "a2"]
    assert batcher.queued() == 2
    more = [batcher.submit(Query(user=f"c{n}"), Mode()) for n in range(2)]
    with pytest.raises(Busy, match="queue is full"):
        batcher.submit(Query(user="y"), Mode())
    assert batcher.queued() == 4
    for _ in range(3):
        rec.go.release()
    assert first.result(30) == "rec for u0"
    assert [f.result(30) for f in waiting + more] == [f"rec for {u}" for u in ("a1", "b1", "a2", "b2", "c0", "c1")]
    batcher.close()


def test_a_request_queued_behind_the_stop_is_refused_not_left_waiting():
    import time

    rec = Gated()
    batcher = Batcher(rec, max_batch=1, queue_size=4)
    running = batcher.submit(Query(user="u0"), Mode())
    assert rec.entered.acquire(timeout=30)
    stopper = threading.Thread(target=batcher.close)
    stopper.start()  # the stop marker is queued while u0 runs
    deadline = time.monotonic() + 30
    while batcher._queue.qsize() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    late = batcher.submit(Query(user="u1"), Mode())  # behind the marker
    rec.go.release()
    stopper.join(30)
    assert running.result(30) == "rec for u0"
    with pytest.raises(Busy, match="stopping"):
        late.result(5)


class FailsAfterATurn:
    """A batch of several requests streams one turn each, then fails; a request alone succeeds."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def recommend_many(self, queries, *, user_agent, sample, seed, listener):
        self.calls.append([q.user for q in queries])
        for n, q in enumerate(queries):
            listener(n, {"type": "turn", "user": q.user})
        if len(queries) > 1:
            raise RuntimeError("the user agent went away mid-batch")
        return [f"rec for {q.user}" for q in queries]


def test_a_failed_batch_never_shows_a_stream_its_turns_twice():
    """After a batch fails, requests that streamed nothing yet are answered one by one; a request whose stream
    already showed turns of the failed attempt ends with the error instead of showing them again."""
    rec = FailsAfterATurn()
    gate = Gated()
    batcher = Batcher(gate, max_batch=3, queue_size=8)  # hold the worker while the batch gathers
    first = batcher.submit(Query(user="u0"), Mode())
    assert gate.entered.acquire(timeout=30)
    heard: dict[str, list[dict]] = {"s1": [], "s2": []}
    streamed = [batcher.submit(Query(user=u), Mode(), heard[u].append) for u in ("s1", "s2")]
    plain = batcher.submit(Query(user="p1"), Mode())
    batcher.recommender = rec
    gate.go.release()
    assert first.result(30) == "rec for u0"
    for f in streamed:
        with pytest.raises(RuntimeError, match="went away"):
            f.result(30)
    assert plain.result(30) == "rec for p1"  # no stream: retried alone, answered
    batcher.close()
    assert heard == {"s1": [{"type": "turn", "user": "s1"}], "s2": [{"type": "turn", "user": "s2"}]}  # once each
    assert rec.calls == [["s1", "s2", "p1"], ["p1"]]


class UserAgentDown:
    """The run's user agent fails for every request of a batch (its server is down), whatever the batch."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def recommend_many(self, queries, *, user_agent, sample, seed, listener):
        from mgfrec.user_agents.base import PartialFeedbackError

        self.calls.append([q.user for q in queries])
        raise PartialFeedbackError("3 of 3 feedback requests failed; the first: timed out", [None] * len(queries))


def test_a_user_agent_down_for_the_whole_batch_fails_it_once_not_once_per_request():
    """Each request was rolled out again alone, each waiting out the user agent's timeouts and retries again."""
    gate = Gated()
    batcher = Batcher(gate, max_batch=3, queue_size=8)
    first = batcher.submit(Query(user="u0"), Mode())
    assert gate.entered.acquire(timeout=30)
    waiting = [batcher.submit(Query(user=f"u{n}"), Mode()) for n in (1, 2, 3)]
    down = UserAgentDown()
    batcher.recommender = down
    gate.go.release()
    assert first.result(30) == "rec for u0"
    for future in waiting:
        with pytest.raises(Exception, match="3 of 3 feedback requests failed"):
            future.result(30)
    batcher.close()
    assert down.calls == [["u1", "u2", "u3"]]
    assert batcher.stats["failed"] == 3


@pytest.mark.reliability
def test_a_request_its_client_gave_up_on_leaves_the_queue_bound_at_once():
    """Timed-out and disconnected requests kept their slots until the worker reached them: with the queue full of
    requests nobody would read, a live one got 503 "the request queue is full"."""
    rec = Gated()
    batcher = Batcher(rec, max_batch=1, queue_size=2)
    first = batcher.submit(Query(user="u0"), Mode())
    assert rec.entered.acquire(timeout=30)  # u0 runs; the worker waits in it
    gone = [batcher.submit(Query(user=u), Mode()) for u in ("a", "b")]
    with pytest.raises(Busy, match="queue is full"):
        batcher.submit(Query(user="x"), Mode())
    assert all(f.cancel() for f in gone)  # both clients gave up (the server cancels their queued jobs)
    assert batcher.queued() == 0
    live = batcher.submit(Query(user="c"), Mode())
    assert batcher.queued() == 1
    for _ in range(2):
        rec.go.release()
    assert first.result(30) == "rec for u0" and live.result(30) == "rec for c"
    assert batcher.queued() == 0 and rec.calls == [["u0"], ["c"]]  # the cancelled ones never ran
    batcher.close()


@pytest.mark.reliability
def test_a_failure_logged_for_the_server_shows_its_escape_sequences_as_text(caplog):
    """A remote user agent's error message is the remote server's text: its escape sequences reached the log raw."""
    from mgfrec.serve.work import INTERNAL_ERROR, client_error_text

    with caplog.at_level("ERROR", logger="mgfrec.serve"):
        assert client_error_text(RuntimeError("401 bad key \x1b]0;PWNED\x07\x1b[2J")) == INTERNAL_ERROR
    logged = caplog.records[-1].getMessage()
    assert "401 bad key \\x1b]0;PWNED\\x07\\x1b[2J" in logged and "\x1b" not in logged


@pytest.mark.reliability
def test_a_plugins_failure_is_logged_and_chatted_with_the_plugin_named(tmp_path, monkeypatch, caplog):
    """A plugin's crash inside a served recommendation reached the log as its bare message ("boom"), with no word of
    which installed package failed; the client still gets the fixed line."""
    from mgfrec.registry import KINDS, Registry, use_registry
    from mgfrec.serve.work import INTERNAL_ERROR, client_error_text, failure_text

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "crashing_reward.py").write_text(
        "class Reward:\n    def __call__(self, x):\n        raise RuntimeError('boom')\n"
    )
    import crashing_reward

    reg = Registry({k: {} for k in KINDS})
    reg.add("reward", "crash", crashing_reward.Reward)
    with pytest.raises(RuntimeError) as raised:
        crashing_reward.Reward()(1)
    with use_registry(reg), caplog.at_level("ERROR", logger="mgfrec.serve"):
        assert client_error_text(raised.value) == INTERNAL_ERROR
        assert failure_text(raised.value).startswith("reward 'crash' (crashing_reward:Reward, from python:")
        assert failure_text(raised.value).endswith(" failed: RuntimeError: boom")
        assert failure_text(ValueError("bare")) == "bare"  # nobody's plugin: the message alone
    assert "reward 'crash'" in caplog.records[-1].getMessage()


@pytest.mark.reliability
def test_an_api_error_names_the_requests_field_not_the_commands_flag():
    """POST /v1/recommend with a wrong sample_id was told '--sample-id 1: not a sample ...'."""
    from mgfrec.serve.work import error_text

    assert error_text(KeyError("--sample-id 1: not a sample of user 'u'")) == "sample_id 1: not a sample of user 'u'"
    assert error_text(KeyError("--user 'x': no sample of this user")) == "user_id 'x': no sample of this user"
    assert error_text(ValueError("k: too many")) == "k: too many" and error_text(None) == "unknown error"


def test_the_note_of_a_failed_fallback_goes_to_the_log_not_to_the_client(caplog):
    """A human conversation asked again because the run's user agent failed sent the client that agent's server
    and model in its feedback_wanted note, which /v1/recommend and the error events keep for the server's log."""
    import logging
    import types

    from mgfrec.serve.work import FALLBACK_FAILED, Conversation
    from mgfrec.user_agents.base import FeedbackRequest

    events: list[dict] = []
    recommender = types.SimpleNamespace(run_user_agent=None)
    conv = Conversation(recommender, Query(None, ("a",)), Mode(feedback="human"), events.append, feedback_timeout_s=5)
    conv.human.note = "the automatic feedback failed (user agent backend 'openai' at http://10.0.0.9/v1 (model m-x))"
    with caplog.at_level(logging.ERROR, logger="mgfrec.serve"):
        conv._ask(FeedbackRequest(("a",), "b", ("c",)))
    assert events == [{"type": "feedback_wanted", "title": "b", "items": ["c"], "note": FALLBACK_FAILED}]
    assert "10.0.0.9" in caplog.text and "m-x" in caplog.text


@pytest.mark.reliability
def test_a_failed_recommendation_is_logged_without_the_keys_the_environment_holds(caplog, monkeypatch):
    """The server's log is a file: a remote user agent's error echoing its key was written there whole (review s35)."""
    import logging

    from mgfrec.serve.work import INTERNAL_ERROR, client_error_text

    monkeypatch.setenv("ACME_API_TOKEN", "tok-VERYSECRET-0123456789")
    with caplog.at_level(logging.ERROR, logger="mgfrec.serve"):
        shown = client_error_text(RuntimeError("upstream said: bad token tok-VERYSECRET-0123456789"))
    assert shown == INTERNAL_ERROR
    assert "bad token <redacted>" in caplog.text and "VERYSECRET" not in caplog.text

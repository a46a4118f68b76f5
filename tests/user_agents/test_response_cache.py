"""The SQLite response cache: real files, hits served without the backend, reopening, threads, failures."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from ua_servers import FakeServer, serve
from uakit import KEY_ENV, api_config, make_request

from mgfrec.user_agents.base import FeedbackRequest, UsageStats, UserAgentError, load_user_agent
from mgfrec.user_agents.cache import CachedUserAgent, ResponseCache, cache_key
from mgfrec.user_agents.none import NoFeedbackAgent
from mgfrec.user_agents.openai_chat import OpenAIChatAgent
from mgfrec.user_agents.simulated import SimulatedUserAgent


class EchoAgent:
    """A cacheable backend that answers with the grounded title and counts what it was asked."""

    def __init__(self, fail: bool = False):
        self.asked: list[FeedbackRequest] = []
        self.fail = fail
        self.lock = threading.Lock()
        self.usage = UsageStats()

    def cache_key(self, request: FeedbackRequest) -> str:
        return cache_key(backend="echo", prompt=[request.history_titles, request.grounded_title, request.item_titles])

    def feedback(self, requests):
        if self.fail:
            raise UserAgentError("echo: down")
        with self.lock:
            self.asked.extend(requests)
        self.usage.add(calls=len(requests))
        return [f"about {r.grounded_title}" for r in requests]

    def stats(self):
        return self.usage.snapshot()

    def close(self):
        pass


def test_a_title_holding_a_lone_surrogate_fails_as_it_does_without_a_cache(api_key, tmp_path, fresh_registry):
    """With a cache, a title holding a lone surrogate (the library's callers can pass one) raised a bare
    UnicodeEncodeError from the cache key; without one the backend named the failure (review s41)."""
    from dataclasses import replace

    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    request = replace(make_request(0), history_titles=["Jazz \ud800 x", *make_request(0).history_titles[1:]])
    with serve(FakeServer("openai")) as server:
        for cache in (None, str(tmp_path / "c.sqlite")):
            cfg = api_config(server.url, backend="openai", cache_path=cache, max_retries=0)
            agent = load_user_agent(cfg, reg=fresh_registry)
            with pytest.raises(UserAgentError, match="backend 'openai'"):
                agent.feedback([request])
            agent.close()


def test_a_second_call_is_served_from_the_file_without_the_server(api_key, tmp_path, fresh_registry):
    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    path = tmp_path / "run" / "user_agent.sqlite"
    batch = [make_request(0), make_request(1), make_request(0)]  # a repeat within the batch is asked once
    with serve(FakeServer("openai", responder=lambda b: f"reply {len(b['messages'][0]['content'])}")) as server:
        agent = load_user_agent(api_config(server.url, backend="openai", cache_path=str(path)), reg=fresh_registry)
        assert isinstance(agent, CachedUserAgent)
        first = agent.feedback(batch)
        assert server.count == 2
        assert agent.feedback(batch) == first
        assert server.count == 2  # every reply came from the cache
        stats = agent.stats()
        agent.close()

        assert path.is_file()
        assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM responses").fetchone() == (2,)
        reopened = load_user_agent(api_config(server.url, backend="openai", cache_path=str(path)), reg=fresh_registry)
        assert reopened.feedback(batch) == first
        assert server.count == 2  # survives reopening
        assert reopened.stats()["cache_hits"] == 3 and reopened.stats()["calls"] == 0
        reopened.close()

    assert first[0] == first[2]
    assert (stats["cache_hits"], stats["cache_misses"], stats["calls"]) == (4, 2, 2)


def key_of(cfg, options, req) -> str:
    with OpenAIChatAgent(cfg, options, None) as agent:
        return agent.cache_key(req)


def test_changing_model_or_sampling_changes_the_key(api_key):
    req = make_request()
    cfg = api_config("http://127.0.0.1:9/v1", model="a")
    opts = OpenAIChatAgent.Options
    keys = {
        key_of(cfg, None, req),
        key_of(api_config("http://127.0.0.1:9/v1", model="b"), None, req),
        key_of(cfg, opts(temperature=0.0), req),
        key_of(cfg, opts(max_tokens=10), req),
        key_of(cfg, opts(system="Be brief."), req),
        key_of(cfg, None, make_request(1)),
    }
    assert len(keys) == 6
    # ... but not the retries, the timeout or the backoff: they do not change what the model says
    other = api_config("http://127.0.0.1:9/v1", model="a", max_retries=0, timeout_s=1.0)
    assert key_of(other, opts(backoff_s=3.0), req) == key_of(cfg, None, req)
    # the server does (one model name on two servers shared their answers), its credentials do not
    assert key_of(api_config("http://127.0.0.1:8/v1", model="a"), None, req) != key_of(cfg, None, req)
    secret = api_config("http://bob:pw-one@127.0.0.1:9/v1", model="a")
    assert key_of(secret, None, req) == key_of(api_config("http://bob:pw-two@127.0.0.1:9/v1", model="a"), None, req)
    # a query tells two servers apart too (a gateway's ?deployment=a and ?deployment=b shared answers; review
    # s32); a URL without one keys as before, so caches written then still answer
    routed = {key_of(api_config(f"http://127.0.0.1:9/v1?deployment={d}", model="a"), None, req) for d in "ab"}
    assert len(routed) == 2 and key_of(cfg, None, req) not in routed
    from mgfrec.user_agents.cache import cache_key
    from mgfrec.user_agents.transport import shown_url

    with OpenAIChatAgent(cfg, None, None) as agent:
        before = cache_key(
            backend="openai",
            base_url=shown_url(str(agent._client.base_url)),
            model="a",
            sampling=agent.sampling(),
            messages=agent.messages(req),
        )
    assert key_of(cfg, None, req) == before


def test_two_servers_with_one_model_name_do_not_share_answers(api_key, tmp_path, fresh_registry):
    """The key left the server out: server B's agent was answered from server A's cached replies (review s26)."""
    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    path = str(tmp_path / "c.sqlite")
    with (
        serve(FakeServer("openai", responder=lambda b: "from A")) as a,
        serve(FakeServer("openai", responder=lambda b: "from B")) as b,
    ):
        answers = []
        for server in (a, b):
            cfg = api_config(server.url, backend="openai", model="default", cache_path=path)
            agent = load_user_agent(cfg, reg=fresh_registry)
            answers.append(agent.feedback([make_request()]))
            agent.close()
    assert answers == [["from A"], ["from B"]] and b.count == 1


def test_the_answers_of_a_partly_failed_batch_are_kept(api_key, tmp_path, fresh_registry):
    """One request of a batch fails (HTTP 500, no retries): the call fails, but the answers that came back are
    stored, so asking again sends only the one that failed."""
    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    path = tmp_path / "c.sqlite"
    batch = [make_request(n) for n in range(4)]
    server = FakeServer("openai", responder=lambda b: "reply " + b["messages"][-1]["content"][-12:])
    with serve(server):
        server.faults = ["ok", "ok", "500", "ok"]
        agent = load_user_agent(
            api_config(server.url, backend="openai", cache_path=str(path), max_retries=0), reg=fresh_registry
        )
        with pytest.raises(UserAgentError, match="1 of 4 feedback requests failed"):
            agent.feedback(batch)
        assert server.count == 4 and len(agent.cache) == 3
        answers = agent.feedback(batch)
        assert server.count == 5 and len(answers) == 4  # only the failed one was asked again
        assert answers == agent.feedback(batch) and server.count == 5
        agent.close()


def test_failures_are_not_stored(tmp_path):
    path = tmp_path / "c.sqlite"
    failing = CachedUserAgent(EchoAgent(fail=True), path)
    with pytest.raises(UserAgentError):
        failing.feedback([make_request()])
    assert len(failing.cache) == 0
    failing.close()
    working = CachedUserAgent(EchoAgent(), path)
    assert working.feedback([make_request()]) == ["about Grounded Jazz Title 0"]
    assert len(working.inner.asked) == 1
    working.close()


def test_threads_share_one_cache_safely(tmp_path):
    agent = CachedUserAgent(EchoAgent(), tmp_path / "c.sqlite")
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for round_ in range(5):
                batch = [make_request((t + round_ + i) % 12) for i in range(4)]
                got = agent.feedback(batch)
                assert got == [f"about {r.grounded_title}" for r in batch]
            results[t] = got
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 8
    assert len(agent.cache) == 12
    stats = agent.stats()
    assert stats["cache_hits"] + stats["cache_misses"] == 8 * 5 * 4
    agent.close()


def test_a_cache_file_in_a_missing_folder_is_created_and_closed_use_is_an_error(tmp_path):
    cache = ResponseCache(tmp_path / "a" / "b" / "c.sqlite")
    cache.put_many([("k", "v")])
    assert cache.get_many(["k", "missing"]) == {"k": "v"}
    cache.close()
    with pytest.raises(UserAgentError, match="closed"):
        cache.get_many(["k"])


def test_backends_without_a_cache_key_are_not_wrapped(tmp_path, fresh_registry, toy_embed):
    from mgfrec.config.schema import UserAgentConfig
    from mgfrec.user_agents.base import UserAgentContext

    fresh_registry.add("user_agent", "none", NoFeedbackAgent)
    fresh_registry.add("user_agent", "simulated", SimulatedUserAgent)
    for name in ("none", "simulated"):
        path = tmp_path / f"{name}.sqlite"
        cfg = UserAgentConfig(backend=name, cache_path=str(path))
        agent = load_user_agent(cfg, UserAgentContext(embed=toy_embed), reg=fresh_registry)
        assert not isinstance(agent, CachedUserAgent)
        assert not path.exists()


@pytest.mark.reliability
def test_training_puts_the_cache_in_the_run_folder_and_a_second_identical_request_is_a_hit(
    api_key, tmp_path, fresh_registry
):
    from mgfrec.user_agents.base import RUN_CACHE_FILE, with_run_cache

    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    fresh_registry.add("user_agent", "simulated", SimulatedUserAgent)
    run = tmp_path / "run"
    with serve(FakeServer("openai")) as server:
        cfg = with_run_cache(api_config(server.url, backend="openai"), run, fresh_registry)
        assert cfg.cache_path == str(run / RUN_CACHE_FILE)  # null became the run folder's file
        agent = load_user_agent(cfg, reg=fresh_registry)
        agent.feedback([make_request(7)])
        agent.feedback([make_request(7)])
        stats = agent.stats()
        agent.close()
    assert server.count == 1 and (stats["cache_hits"], stats["cache_misses"]) == (1, 1)
    assert (run / RUN_CACHE_FILE).is_file()
    # an explicit path is kept, false turns the cache off, and a backend without cache_key gets none
    explicit = api_config("http://127.0.0.1:9/v1", backend="openai", cache_path=str(tmp_path / "mine.sqlite"))
    assert with_run_cache(explicit, run, fresh_registry).cache_path == str(tmp_path / "mine.sqlite")
    off = api_config("http://127.0.0.1:9/v1", backend="openai", cache_path=False)
    assert with_run_cache(off, run, fresh_registry).cache_path is False
    assert with_run_cache(api_config("", backend="simulated"), run, fresh_registry).cache_path is None


def test_the_counters_add_up_when_part_of_a_batch_fails(api_key, tmp_path):
    """A partly failed batch of 4 (request 0 twice, stored; 1 and 2 sent, one of them failed) grew hits + misses
    by 1 instead of 4."""
    from mgfrec.user_agents.base import PartialFeedbackError

    with serve(FakeServer("openai")) as server:
        inner = OpenAIChatAgent(api_config(server.url, max_retries=0, max_concurrency=1), None)
        agent = CachedUserAgent(inner, tmp_path / "c.sqlite")
        agent.feedback([make_request(0)])
        server.faults[:] = ["ok", "500"]
        with pytest.raises(PartialFeedbackError):
            agent.feedback([make_request(0), make_request(0), make_request(1), make_request(2)])
        stats = agent.stats()
        agent.close()
    assert (stats["cache_hits"], stats["cache_misses"]) == (2, 1 + 2)  # each of the 5 requests counted once


@pytest.mark.reliability
def test_a_runs_cache_path_is_absolute_and_a_moved_runs_is_looked_for_in_the_run(tmp_path, monkeypatch, fresh_registry):
    """`mgfrec fit --out runs/x` recorded cache_path 'runs/x/user_agent_cache.sqlite': `mgfrec evaluate` run from
    another folder opened (and created, folders and all) another cache there; a moved run re-created its old
    folder to hold one."""
    from mgfrec.user_agents.base import RUN_CACHE_FILE, cache_of_run, with_run_cache

    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    monkeypatch.chdir(tmp_path)
    cfg = with_run_cache(api_config("http://127.0.0.1:9/v1", backend="openai"), "runs/x", fresh_registry)
    assert cfg.cache_path == str(tmp_path.resolve() / "runs" / "x" / RUN_CACHE_FILE)
    run = tmp_path / "moved"
    run.mkdir()
    here = str(run.resolve() / RUN_CACHE_FILE)
    for gone in (str(tmp_path / "gone" / "x" / RUN_CACHE_FILE), f"runs/y/{RUN_CACHE_FILE}"):
        assert cache_of_run(cfg.model_copy(update={"cache_path": gone}), run).cache_path == here
    for kept in (cfg.cache_path.replace("runs/x/", ""), False, None):  # its folder exists; off; not cached
        assert cache_of_run(cfg.model_copy(update={"cache_path": kept}), run).cache_path == kept


@pytest.mark.reliability
def test_a_cache_path_under_a_file_and_another_programs_database_are_named_by_the_field(tmp_path):
    """``error: .../afile: File exists`` named no field; a SQLite file with its own ``responses`` table opened, then
    every lookup was a traceback ("no such column: key")."""
    (tmp_path / "afile").write_text("notes")
    with pytest.raises(UserAgentError, match=r"^user_agent.cache_path: cannot open the SQLite cache .*afile"):
        ResponseCache(tmp_path / "afile" / "c.sqlite")
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE responses (id INTEGER PRIMARY KEY, body TEXT)")
    with pytest.raises(UserAgentError, match=r"^user_agent.cache_path: .*app.sqlite is a SQLite file of another kind"):
        ResponseCache(other)


@pytest.mark.reliability
def test_a_damaged_cache_is_one_line_and_a_locked_one_keeps_the_fresh_answers(tmp_path):
    """A file whose pages are damaged after it opened, and one another process holds locked, were tracebacks; the
    locked one also lost the answers just fetched (paid for)."""
    from mgfrec.user_agents.cache import ResponsesNotCached

    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put_many([(f"k{n}", "v" * 2000) for n in range(400)])  # a few pages, with an index of its own
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(path.read_bytes())
    page = len(data) // pages
    data[page * 2 : page * (pages - 1)] = b"\xa5" * (page * (pages - 3))  # header and schema page kept
    path.write_bytes(bytes(data))
    damaged = ResponseCache(path)
    with pytest.raises(UserAgentError, match=r"^user_agent.cache_path: cannot read the SQLite cache .*malformed"):
        damaged.get_many([f"k{n}" for n in range(400)])
    damaged.close()

    locked_path = tmp_path / "locked.sqlite"
    agent = CachedUserAgent(EchoAgent(), locked_path)
    agent.cache._db().execute("PRAGMA busy_timeout = 100")  # the 30 s wait, made short
    holder = sqlite3.connect(locked_path)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing (a sibling run, an open sqlite3 shell)
    try:
        with pytest.warns(ResponsesNotCached, match=r"1 answers were not stored .*database is locked"):
            assert agent.feedback([make_request()]) == ["about Grounded Jazz Title 0"]
    finally:
        holder.rollback()
        holder.close()
        agent.close()


@pytest.mark.reliability
def test_answers_a_read_only_cache_cannot_store_are_said_once_and_all_counted(tmp_path):
    """A write that failed was a warning per batch, whose text held the batch's size: Python shows one text once,
    so a second batch of that size went unsaid and how many answers were lost could not be known (review s36)."""
    import warnings

    from mgfrec.user_agents.cache import ResponsesNotCached

    path = tmp_path / "locked.sqlite"
    agent = CachedUserAgent(EchoAgent(), path)
    agent.cache._db().execute("PRAGMA busy_timeout = 50")
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # Python's own filter: one text, shown once
            for n in range(3):
                assert agent.feedback([make_request(n)]) == [f"about Grounded Jazz Title {n}"]
        said = [w for w in caught if issubclass(w.category, ResponsesNotCached)]
        assert len(said) == 1 and "counted as the user agent's cache_not_stored" in str(said[0].message)
        assert agent.stats()["cache_not_stored"] == 3 and agent.stats()["cache_misses"] == 3
    finally:
        holder.rollback()
        holder.close()
        agent.close()


@pytest.mark.reliability
def test_a_cache_path_that_cannot_open_is_refused_before_the_recall_fit(tmp_path, monkeypatch, api_key):
    """A damaged file, a folder or another program's database given as user_agent.cache_path was found when the user
    agent was built, after the recall model's fit (minutes on real data; review s36). Checking writes nothing."""
    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.config.schema import DataConfig, UserAgentConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.user_agents.base import check_user_agent

    (tmp_path / "noise.sqlite").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "folder.sqlite").mkdir()
    (tmp_path / "a-file").write_text("x")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE responses (id INTEGER, body TEXT)")
    before = other.read_bytes()
    for path, said in [
        ("noise.sqlite", "cannot open the SQLite cache .*noise.sqlite: file is not a database"),
        ("folder.sqlite", "cannot open the SQLite cache .*folder.sqlite: it is a folder"),
        ("a-file/c.sqlite", "a-file is a file, not a folder"),
        ("other.sqlite", "is a SQLite file of another kind"),
    ]:
        cfg = UserAgentConfig(backend="openai", model="m", api_key_env=KEY_ENV, cache_path=str(tmp_path / path))
        with pytest.raises(UserAgentError, match=rf"^user_agent.cache_path: .*{said}"):
            check_user_agent(cfg, "GRPO training")
    assert other.read_bytes() == before and not (tmp_path / "other.sqlite-wal").exists()
    fine = UserAgentConfig(backend="openai", model="m", api_key_env=KEY_ENV, cache_path=str(tmp_path / "new" / "c.db"))
    check_user_agent(fine, "GRPO training")
    assert not (tmp_path / "new").exists()  # made when the cache opens, not by the check

    data = tmp_path / "data"
    prepare(
        DataConfig(source="synthetic", options={"n_users": 30, "n_items": 40, "n_artists": 8, "max_length": 6}), data
    )
    sets = ["user_agent.backend=openai", "user_agent.model=m", f"user_agent.api_key_env={KEY_ENV}"]
    sets.append(f"user_agent.cache_path={tmp_path / 'noise.sqlite'}")
    for command in ("fit", "sft"):
        args = [command, "--data", str(data), "--out", str(tmp_path / command)]
        result = CliRunner().invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
        assert result.exit_code == 2 and "file is not a database" in result.output, result.output
        assert not (tmp_path / command / "recall").exists()


def test_a_partly_failed_batch_numbers_its_answers_by_the_callers_requests(tmp_path):
    """Through the cache, ``PartialFeedbackError.answers`` was numbered over the uncached requests only: request 0's
    answer came back as request 1's."""
    from mgfrec.user_agents.base import PartialFeedbackError

    class FailsOn:
        def __init__(self, bad: str):
            self.bad, self.inner = bad, EchoAgent()

        def cache_key(self, request):
            return self.inner.cache_key(request)

        def feedback(self, requests):
            answers = [None if r.grounded_title.endswith(self.bad) else f"about {r.grounded_title}" for r in requests]
            raise PartialFeedbackError("some failed", answers)

        def stats(self):
            return {}

        def close(self):
            pass

    agent = CachedUserAgent(FailsOn(bad="Title 2"), tmp_path / "c.sqlite")
    agent.cache.put_many([(agent.cache_key(make_request(0)), "cached 0")])
    with pytest.raises(PartialFeedbackError) as info:
        agent.feedback([make_request(n) for n in range(4)])
    assert info.value.answers == ["cached 0", "about Grounded Jazz Title 1", None, "about Grounded Jazz Title 3"]
    assert info.value.sent == ["about Grounded Jazz Title 1", None, "about Grounded Jazz Title 3"]
    agent.close()


class NoKey(EchoAgent):
    def cache_key(self, request):  # a forgotten return
        key = cache_key(backend="echo", prompt=[request.grounded_title])  # noqa: F841


class WrongAnswers(EchoAgent):
    def __init__(self, answers):
        super().__init__()
        self.answers = answers

    def feedback(self, requests):
        return self.answers(requests)


@pytest.mark.reliability
def test_a_backends_bad_keys_and_answers_are_named_and_never_stored(tmp_path):
    """A cache_key returning None answered a whole batch with the first reply; an answer of the wrong type was stored
    before the environment refused it, and read back as text on the next run; a generator of answers was a len()
    traceback (review s31)."""
    batch = [make_request(0), make_request(1)]
    with pytest.raises(UserAgentError, match=r"NoKey.cache_key returned None for request 0, not a non-empty str"):
        CachedUserAgent(NoKey(), tmp_path / "a.sqlite").feedback(batch)
    for answers, words in (
        (lambda rs: [5 for _ in rs], r"answer 0 is a int; feedback must be str \(nothing was cached\)"),
        (lambda rs: (f"x {r.grounded_title}" for r in rs), r"returned a generator of feedbacks for 2 requests"),
    ):
        path = tmp_path / "b.sqlite"
        agent = CachedUserAgent(WrongAnswers(answers), path)
        with pytest.raises(UserAgentError, match=words):
            agent.feedback(batch)
        agent.close()
        with sqlite3.connect(path) as db:
            assert db.execute("select count(*) from responses").fetchone()[0] == 0


@pytest.mark.reliability
def test_a_plugin_backends_bad_cache_key_is_named_by_its_registry_name_and_package(tmp_path):
    """A plugin user agent whose ``cache_key`` returned None was named by its module and class only; the name and the
    package a user chose it by (``--user-agent nokey``, from which package) is what they can act on (review s37)."""
    import json
    import os
    import subprocess
    import sys
    import textwrap

    (tmp_path / "nokey_agent.py").write_text(
        textwrap.dedent(
            """
            class NoKey:
                def __init__(self, cfg, options=None, context=None):
                    pass

                def cache_key(self, request):
                    return None

                def feedback(self, requests):
                    return ["fine" for _ in requests]

                def stats(self):
                    return {}

                def close(self):
                    pass
            """
        ),
        encoding="utf-8",
    )
    dist = tmp_path / "mgfrec_nokey-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mgfrec-nokey\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[mgfrec.user_agent]\nnokey = nokey_agent:NoKey\n", encoding="utf-8")
    cache = tmp_path / "c.sqlite"
    code = textwrap.dedent(
        f"""
        from mgfrec.config.load import load_config
        from mgfrec.user_agents.base import FeedbackRequest, UserAgentError, load_user_agent

        cfg = load_config(None, ["user_agent.backend=nokey", "user_agent.cache_path={cache}"])
        agent = load_user_agent(cfg.user_agent)
        try:
            agent.feedback([FeedbackRequest(("A",), "B", ("B", "C"))])
        except UserAgentError as exc:
            print(str(exc))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.strip()
    assert said.startswith("user_agent 'nokey' (nokey_agent:NoKey, from mgfrec-nokey 1.0): cache_key returned None"), (
        json.dumps(said)
    )


@pytest.mark.reliability
def test_a_cache_another_process_is_writing_waits_for_it_rather_than_failing(tmp_path):
    """Two commands opening one new cache together: switching the file to WAL answers "database is locked" at once
    (past SQLite's busy handler), and the second command failed (review s39)."""
    path = tmp_path / "cache.sqlite"
    other = sqlite3.connect(path, check_same_thread=False, isolation_level=None)  # as another process's connection
    other.execute("CREATE TABLE x(a)")
    other.execute("BEGIN")
    other.execute("INSERT INTO x VALUES (1)")  # it holds the write lock for a moment
    timer = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        cache = ResponseCache(path)  # was: "cannot open the SQLite cache ...: database is locked", at once
    finally:
        timer.join()
        other.close()
    cache.put_many([("k", "an answer")])
    assert cache.get_many(["k"]) == {"k": "an answer"}
    cache.close()


def test_a_cache_path_under_home_is_expanded(tmp_path, monkeypatch):
    """``~/cache.sqlite`` made a folder named ``~`` in the working folder (review s39)."""
    from mgfrec.config.schema import UserAgentConfig

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert UserAgentConfig(cache_path="~/c.sqlite").cache_path == str(tmp_path / "home" / "c.sqlite")
    assert UserAgentConfig(cache_path=False).cache_path is False


def test_a_reply_far_past_max_tokens_is_cut_before_it_is_stored(api_key, tmp_path, fresh_registry):
    """A server ignoring max_tokens sent 30 MB "in 2 tokens": held in memory and stored whole (review s39)."""
    from mgfrec.user_agents.replies import reply_limit

    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    with serve(FakeServer("openai", responder=lambda body: "x" * 500_000)) as server:
        cfg = api_config(
            server.url, backend="openai", cache_path=str(tmp_path / "c.sqlite"), options={"max_tokens": 16}
        )
        agent = load_user_agent(cfg, reg=fresh_registry)
        try:
            (reply,) = agent.feedback([make_request()])
        finally:
            agent.close()
    assert len(reply) == reply_limit(16) == 4096
    assert (tmp_path / "c.sqlite").stat().st_size < 100_000

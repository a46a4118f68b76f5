"""``mgfrec serve`` over real HTTP on 127.0.0.1: the JSON API, streamed conversations, validation, batching."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from servekit import SCRIPT_TITLES, ServerProcess, ThreadServer, hf_copy, read_events, subprocess_env


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=300) as c:
        yield c


def test_recommend_for_a_user_returns_the_whole_trajectory_and_the_ranking(client, serve_run):
    _, _, ds = serve_run
    user = str(ds.interactions.user_id.iloc[0])
    r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["kind"] == "agent" and out["end_reason"] == "answered" and out["format_ok"]
    assert [t["kind"] for t in out["turns"]] == ["ground"] * len(SCRIPT_TITLES) + ["answer"]
    first = out["turns"][0]
    assert first["title"] == ds.titles[SCRIPT_TITLES[0]] and first["think"].startswith("scripted step 0")
    assert len(first["items"]) == 10 and first["items"][0]["title"] == ds.titles[SCRIPT_TITLES[0]]
    assert first["feedback"].startswith("From what I have enjoyed")  # the run's simulated user answered
    assert "heard: From what I have enjoyed" in out["turns"][1]["think"]  # and the agent read it
    assert len(out["top"]) == 5 and {"item_id", "title", "score"} <= set(out["top"][0])
    assert not {h["item_idx"] for h in out["history"]} & {t["item_idx"] for t in out["top"]}


def test_a_typed_history_and_no_feedback(client, serve_run):
    _, _, ds = serve_run
    r = client.post("/v1/recommend", json={"history": [ds.titles[0], ds.titles[1]], "k": 3, "feedback": "none"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [h["item_idx"] for h in out["history"]] == [0, 1]
    assert all(t["feedback"] is None for t in out["turns"] if t["kind"] == "ground")
    assert "heard: nothing" in out["turns"][1]["think"]
    assert len(out["top"]) == 3 and "target" not in out


def test_a_split_sample_reports_the_targets_place(client, serve_run):
    _, _, ds = serve_run
    test = ds.split("test")
    user, target = str(test.user_id.iloc[0]), int(test.target.iloc[0])
    out = client.post("/v1/recommend", json={"user_id": user, "split": "test", "k": 80}).json()
    assert out["target"]["item_idx"] == target
    places = [n for n, t in enumerate(out["top"], 1) if t["item_idx"] == target]
    assert places == [out["target"]["rank"]]  # the target sits in the ranking at the place reported


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"user_id": "no-such-user"}, 404, "no-such-user"),
        ({"history": []}, 422, "history"),
        ({"history": ["  ", ""]}, 422, "non-blank"),
        ({"history": ["x" * 301]}, 422, "at most 300"),
        ({"history": ["a"], "k": 0}, 422, "k"),
        ({"history": ["a"], "k": 101}, 422, "k"),
        ({"history": ["a"], "k": 90}, 422, "catalogue"),
        ({"history": ["a"], "user_id": "U1"}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"history": ["a"], "split": "test"}, 422, "split"),
        ({"history": ["a"], "feedback": "human"}, 422, "/v1/sessions"),
        ({"history": ["a"], "feedback": "loud"}, 422, "feedback"),
        ({"history": ["a"], "api_key": "sk-x"}, 422, "api_key"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(client, body, status, words):
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_the_serving_line_names_the_url_on_one_line_however_long_the_run_path(server, client):
    """Printed without a terminal, rich wrapped it at 80 columns: with a run path of any length the URL was on the
    next line, and ``--port 0``'s port could not be read from the line that names it (review s32)."""
    client.get("/healthz")  # the line is out before the server answers
    lines = [line for line in server.log.splitlines() if line.startswith("serving ")]
    assert len(lines) == 1 and lines[0].endswith(f" at {server.url}/"), server.log[-2000:]
    assert len(lines[0]) > 80  # (the fixture's run path makes it long enough to have wrapped)


@pytest.mark.reliability
def test_a_body_key_given_twice_is_refused_as_a_query_parameter_given_twice_is(client, serve_run):
    """``{"user_id": "U23", "user_id": "U00"}`` answered for U00 and ``"k"`` twice took the last (review s32)."""
    _, _, ds = serve_run
    user = str(ds.interactions.user_id.iloc[0])
    headers = {"content-type": "application/json"}
    for raw, key in (
        (f'{{"user_id": "nobody", "user_id": "{user}", "k": 1}}', "user_id"),
        (f'{{"user_id": "{user}", "k": 1, "k": 2}}', "k"),
    ):
        r = client.post("/v1/recommend", content=raw, headers=headers)
        assert r.status_code == 422 and r.json() == {"error": f"body.{key}: given 2 times; give it once"}, r.text
    opened = client.post("/v1/sessions", content=f'{{"user_id": "{user}", "user_id": "{user}"}}', headers=headers)
    assert opened.status_code == 422 and "body.user_id: given 2 times" in opened.text, opened.text
    assert client.post("/v1/recommend", content=f'{{"user_id": "{user}", "k": 1}}', headers=headers).status_code == 200
    assert client.post("/v1/recommend", content="[" * 100_000, headers=headers).status_code in (400, 422)


@pytest.mark.reliability
def test_a_sample_id_that_is_not_the_users_is_refused_before_the_queue(client, serve_run):
    """It was checked in the batch worker: the client's error took a batch slot and counted in /healthz's
    queue.failed, which an operator reads as the server failing (review s32)."""
    _, _, ds = serve_run
    user = str(ds.split("test").user_id.iloc[0])
    failed = client.get("/healthz").json()["queue"]["failed"]
    for path in ("/v1/recommend", "/v1/sessions"):
        r = client.post(path, json={"user_id": user, "split": "test", "sample_id": 10**9})
        assert r.status_code == 422 and r.json()["error"].startswith(f"sample_id {10**9}: not a sample of user"), r.text
    assert client.get("/healthz").json()["queue"]["failed"] == failed


@pytest.mark.reliability
def test_a_key_sent_as_a_user_or_session_id_is_not_echoed_in_the_404(client):
    """``{"user_id": "sk-proj-..."}`` and ``/v1/sessions/sk-proj-.../events`` answered 404 with the key in the body,
    where the access log redacts it (review s32)."""
    key = "sk-proj-AbCdEf1234567890XyZ"
    for r in (
        client.post("/v1/recommend", json={"user_id": key}),
        client.post("/v1/recommend", json={"user_id": key, "split": "test"}),
        client.get(f"/v1/sessions/{key}/events"),
    ):
        assert r.status_code == 404 and "<redacted>" in r.json()["error"] and key not in r.text, r.text


@pytest.mark.reliability
def test_a_key_or_a_huge_name_sent_as_a_field_or_parameter_name_is_not_echoed(client):
    """An unknown body field or query parameter named with a key came back whole in the 422's error and detail,
    where docs/serve.md says validation errors never echo the input; a 900,000-character name came back twice,
    a reply twice the request's size (review s34)."""
    key = "sk-proj-AbCdEf1234567890XyZabcdefABCDEF"
    for r in (
        client.post("/v1/recommend", json={"user_id": "u", key: 1}),
        client.get(f"/v1/users?{key}=1"),
        client.get(f"/v1/users?{key}=1&{key}=2"),
        client.post("/v1/recommend", json={"user_id": "u", f"apikey={key}": 1}),  # a key inside a longer name
        client.post("/v1/recommend", json={"user_id": "u", f"Bearer {key}": 1}),
    ):
        assert r.status_code == 422 and "<redacted>" in r.text and key not in r.text, r.text
    huge = client.post("/v1/recommend", json={"user_id": "u", "x" * 900_000: 1})
    assert huge.status_code == 422 and len(huge.content) < 1000 and "x" * 60 in huge.text, huge.text[:300]


def test_grounding_as_a_service_health_and_schema(client, serve_run):
    _, _, ds = serve_run
    found = client.get("/v1/items", params={"q": ds.titles[5], "k": 3}).json()
    assert found["items"][0]["title"] == ds.titles[5] and len(found["items"]) == 3
    assert client.get("/v1/items").status_code == 422
    assert client.get("/v1/items", params={"q": "a", "k": 0}).status_code == 422
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["kind"] == "agent" and health["items"] == ds.num_items
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warned "Duplicate Operation ID healthz_healthz_get" here
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/recommend", "/v1/items", "/healthz", "/v1/sessions", "/v1/sessions/{sid}/events"} <= set(paths)
    assert client.head("/healthz").status_code == 200 and set(paths["/healthz"]) == {"get"}
    users = client.get("/v1/users", params={"split": "test", "limit": 5}).json()["users"]
    assert len(users) == 5 and set(users) <= set(ds.split("test").user_id.astype(str))
    page = client.get("/")
    assert page.status_code == 200 and "EventSource" in page.text


def test_a_conversation_streams_turn_by_turn(client, serve_run):
    _, _, ds = serve_run
    opened = client.post("/v1/sessions", json={"history": [ds.titles[0]], "k": 4})
    assert opened.status_code == 201, opened.text
    seen: list[int] = []

    def second_reader(event):
        if not seen:  # while the stream is open, another reader is refused
            seen.append(client.get(opened.json()["events"]).status_code)

    events = read_events(client, opened.json()["events"], second_reader)
    assert seen == [409]
    kinds = [e["type"] for e in events]
    assert kinds == ["turn", "observation"] * len(SCRIPT_TITLES) + ["turn", "done"]
    assert events[0]["title"] == ds.titles[SCRIPT_TITLES[0]] and events[1]["items"][0]["title"] == events[0]["title"]
    assert events[-1]["result"]["end_reason"] == "answered" and len(events[-1]["result"]["top"]) == 4
    assert client.get(opened.json()["events"]).status_code == 404  # read once, then forgotten


def test_you_are_the_user_over_http(client, serve_run):
    _, _, ds = serve_run
    opened = client.post("/v1/sessions", json={"history": [ds.titles[0], ds.titles[2]], "feedback": "human"}).json()
    replies = iter([{"text": "too loud, I want quiet records"}, {"text": ""}, {"answer_now": True}])
    seen = []

    def answer(event):
        if event["type"] == "feedback_wanted":
            seen.append(event["title"])
            both = client.post(opened["feedback"], json={"text": "calm piano", "answer_now": True})
            assert both.status_code == 422 and "not both" in both.json()["error"]  # the text was silently lost
            r = client.post(opened["feedback"], json=next(replies))
            assert r.status_code == 200, r.text

    events = read_events(client, opened["events"], answer)
    observations = [e for e in events if e["type"] == "observation"]
    assert observations[0]["feedback"] == "too loud, I want quiet records"  # the person's words, as typed
    assert observations[1]["feedback"].startswith("From what I have enjoyed")  # Enter: the simulated user
    assert "final answer now" in observations[2]["feedback"]
    turns = [e for e in events if e["type"] == "turn"]
    assert "heard: too loud, I want quiet records" in turns[1]["think"]
    assert seen == [ds.titles[i] for i in SCRIPT_TITLES[:3]]  # asked to answer after 3 of the 4 scripted groundings
    assert [e["title"] for e in turns][-1] == ds.titles[SCRIPT_TITLES[2]] and turns[-1]["kind"] == "answer"
    assert events[-1]["type"] == "done" and events[-1]["result"]["end_reason"] == "answered"
    assert client.post(opened["feedback"], json={"text": "late"}).status_code == 404  # the conversation is over


def test_feedback_when_none_is_wanted_and_a_cancel(client, serve_run):
    _, _, ds = serve_run
    opened = client.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "human"}).json()
    # nothing asked yet, or already asked: either way the answer names the state
    first = client.post(opened["feedback"], json={"text": "x" * 2001})
    assert first.status_code == 422
    asked = threading.Event()

    def cancel(event):
        if event["type"] == "feedback_wanted" and not asked.is_set():
            asked.set()
            assert client.delete(f"/v1/sessions/{opened['session_id']}").status_code == 200

    events = read_events(client, opened["events"], cancel)
    # as a conversation without a person: nothing but the end after the cancel, with the same words
    after = events[[e["type"] for e in events].index("feedback_wanted") + 1 :]
    assert after == [{"type": "error", "error": "the conversation was cancelled (cancelled by the client)"}], after
    assert client.delete(f"/v1/sessions/{opened['session_id']}").status_code == 404
    # cancelled before its events were read: the feedback box it had asked for is not sent, only the end (a page
    # showed a box whose reply got a 409; review s37)
    late = client.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "human"}).json()
    time.sleep(3)  # its first (scripted) turn is out and it waits for the person: the events wait unread
    assert client.delete(f"/v1/sessions/{late['session_id']}").status_code == 200
    assert read_events(client, late["events"]) == [
        {"type": "error", "error": "the conversation was cancelled (cancelled by the client)"}
    ]
    assert client.get("/healthz").json()["status"] == "ok"  # the engine is free again
    # an unknown id of 60,000 characters was echoed whole in the 404 (httpx sends at most 64 KiB of URL)
    gone = client.get(f"/v1/sessions/{'a' * 60_000}/events")
    assert gone.status_code == 404 and len(gone.text) < 300, gone.text[:300]
    assert "a" * 64 + "... (60000 characters)" in gone.json()["error"]
    assert client.post("/v1/recommend", json={"history": [ds.titles[1]], "feedback": "none"}).status_code == 200


def test_concurrent_requests_are_all_answered(client, serve_run):
    _, _, ds = serve_run
    results: list[int] = []

    def one(n: int) -> None:
        with httpx.Client(base_url=client.base_url, timeout=300) as c:
            results.append(c.post("/v1/recommend", json={"history": [ds.titles[n]], "k": 2}).status_code)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    queue = client.get("/healthz").json()["queue"]
    assert queue["requests"] >= 6 and queue["largest_batch"] <= 4  # --max-batch 4


def test_a_baseline_run_answers_without_a_trajectory(serve_run):
    from mgfrec.recommend import load_recommender
    from mgfrec.serve.app import create_app

    _, baseline, ds = serve_run
    with ThreadServer(create_app(load_recommender(baseline))) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/healthz").json()["kind"] == "baseline"
        test = ds.split("test")
        out = c.post("/v1/recommend", json={"user_id": str(test.user_id.iloc[1]), "split": "test", "k": 5}).json()
        assert out["kind"] == "baseline" and out["turns"] == [] and out["answer"] is None and len(out["top"]) == 5
        assert 1 <= out["target"]["rank"] <= ds.num_items
        # last-title: the best item is the one nearest the history's last title
        last = int(test.history.iloc[1][-1])
        assert out["top"][0]["item_idx"] != last
        opened = c.post("/v1/sessions", json={"history": [ds.titles[4]], "k": 3}).json()
        events = read_events(c, opened["events"])
        assert [e["type"] for e in events] == ["done"] and events[0]["result"]["turns"] == []
        human = c.post("/v1/sessions", json={"history": [ds.titles[4]], "feedback": "human"})
        assert human.status_code == 422 and "needs an agent run" in human.json()["error"]


def test_a_person_who_never_answers_times_out_cleanly(serve_run, plugin, monkeypatch, tmp_path):
    import mgfrec.recommend as rec_module
    from mgfrec.recommend import load_recommender
    from mgfrec.serve.app import ServeOptions, create_app

    monkeypatch.syspath_prepend(str(plugin))  # the scripted engine, without touching the process's registry
    from mgfrec_serve_testkit import Options, ScriptedTestEngine

    run, _, ds = serve_run
    titles = [ds.titles[i] for i in SCRIPT_TITLES]
    monkeypatch.setattr(
        rec_module, "build_engine", lambda cfg, m, tok: ScriptedTestEngine(m, tok, Options(titles=titles))
    )
    app = create_app(load_recommender(hf_copy(run, tmp_path / "run")), ServeOptions(feedback_timeout_s=0.5))
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        opened = c.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "human"}).json()
        events = read_events(c, opened["events"])
        assert [e["type"] for e in events] == ["turn", "feedback_wanted", "error"]
        assert "no feedback within 0.5 s (--feedback-timeout)" in events[-1]["error"]  # the flag that sets it
        r = c.post("/v1/recommend", json={"history": [ds.titles[0]], "feedback": "none"})  # nothing left stuck
        assert r.status_code == 200 and r.json()["end_reason"] == "answered"


def test_the_real_hf_engine_answers_concurrent_requests(serve_run, tmp_path):
    """The tiny untrained policy on the real ``hf`` engine: its turns are noise, but they are served."""
    from mgfrec.recommend import load_recommender
    from mgfrec.serve.app import ServeOptions, create_app

    run, _, ds = serve_run
    recommender = load_recommender(hf_copy(run, tmp_path / "run"), ("agent.max_new_tokens_per_turn=16",))
    codes, outs = [], []
    with ThreadServer(create_app(recommender, ServeOptions(max_batch=4))) as srv:

        def one(n: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=300) as c:
                r = c.post("/v1/recommend", json={"history": [ds.titles[n], ds.titles[n + 1]], "k": 3})
                codes.append(r.status_code)
                outs.append(r.json())

        threads = [threading.Thread(target=one, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [200] * 3
    assert all(o["end_reason"] in {"answered", "grounding_limit", "length_limit", "format_error"} for o in outs)
    assert all(o["turns"] and (o["top"] == [] or len(o["top"]) == 3) for o in outs)


def test_no_key_reaches_a_response_or_the_log(serve_run, plugin, tmp_path):
    secret = "sk-test-0123456789abcdefSECRET"
    run, _, ds = serve_run
    proc = ServerProcess(
        run,
        plugin,
        "--set",
        "user_agent.api_key_env=MGFREC_TEST_KEY",
        env=subprocess_env(plugin, MGFREC_TEST_KEY=secret, OPENAI_API_KEY=secret),
    )
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=300) as c:
            bodies = [c.get(p).text for p in ("/healthz", "/openapi.json", "/", "/v1/users")]
            bodies.append(c.post("/v1/recommend", json={"history": [ds.titles[0]]}).text)
            bodies.append(c.post("/v1/recommend", json={"history": ["a"], "api_key": secret}).text)
    finally:
        proc.stop()
    assert not [b for b in bodies if secret in b]
    assert secret not in proc.log and "MGFREC_TEST_KEY" not in proc.log


def test_a_failing_user_agent_gives_the_client_a_fixed_line_and_the_log_the_details(serve_run, plugin):
    """A remote user agent that cannot be reached: the 500 body and the conversation's error event say only that
    the recommendation failed; its server, model and key variable go to the server's log, never the key."""
    from mgfrec.serve.work import INTERNAL_ERROR

    secret = "sk-test-0123456789abcdefSECRET"
    run, _, ds = serve_run
    sets = [
        "user_agent.backend=openai",
        "user_agent.model=m-private",
        "user_agent.base_url=http://127.0.0.1:9/internal/v1",
        "user_agent.api_key_env=MGFREC_TEST_KEY",
        "user_agent.max_retries=0",
        "user_agent.timeout_s=5",
    ]
    args = [a for s in sets for a in ("--set", s)]
    proc = ServerProcess(run, plugin, *args, env=subprocess_env(plugin, MGFREC_TEST_KEY=secret))
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=300) as c:
            r = c.post("/v1/recommend", json={"history": [ds.titles[0]]})
            opened = c.post("/v1/sessions", json={"history": [ds.titles[1]]}).json()
            events = read_events(c, opened["events"])
    finally:
        proc.stop()
    assert r.status_code == 500 and r.json() == {"error": INTERNAL_ERROR}
    assert events[-1] == {"type": "error", "error": INTERNAL_ERROR}
    for private in ("127.0.0.1:9", "m-private", "MGFREC_TEST_KEY"):
        assert private not in r.text and private not in str(events)
    assert "the recommendation failed: user agent backend 'openai' at http://127.0.0.1:9/internal/v1" in proc.log
    assert secret not in proc.log


def test_a_finished_conversation_holds_no_slot_and_a_cancel_ends_a_batched_one(
    serve_run, plugin, monkeypatch, tmp_path
):
    """--max-sessions counts conversations still running: a finished one (its events still readable) frees its
    slot at once. DELETE on a conversation without a person ends it with a 'cancelled' error event, nothing after."""
    import time

    _, _, ds = serve_run
    # each turn takes 0.3 s, so a conversation is still running when it is cancelled
    app = slow_scripted_app(serve_run, plugin, monkeypatch, tmp_path, 0.3, max_sessions=1)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        first = c.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "none"})
        assert first.status_code == 201
        assert c.post("/v1/sessions", json={"history": [ds.titles[1]]}).status_code == 503  # the one slot is taken
        deadline, second = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # the first ends after a few slow turns; its slot is free at once
            second = c.post("/v1/sessions", json={"history": [ds.titles[1]], "feedback": "none"})
            if second.status_code == 201:
                break
            time.sleep(0.2)
        assert second is not None and second.status_code == 201, second.text
        health = c.get("/healthz").json()  # the finished first is still held (readable); only the second runs
        assert (health["sessions"], health["open_sessions"]) == (2, 1), health
        assert read_events(c, first.json()["events"])[-1]["type"] == "done"  # still readable after it ended
        assert c.delete(f"/v1/sessions/{second.json()['session_id']}").json() == {"status": "cancelled"}
        events = read_events(c, second.json()["events"])
        assert events[-1] == {"type": "error", "error": "the conversation was cancelled (cancelled by the client)"}
        assert not [e for e in events if e["type"] == "done"]


@pytest.mark.reliability
def test_a_dropped_event_stream_keeps_its_slot_until_its_rollout_ends(serve_run, plugin, monkeypatch, tmp_path):
    """The session was forgotten as soon as its reader went away, while its rollout went on: a client that opened
    a conversation, read the stream's headers and closed it, in a loop, got 60 past --max-sessions 4, each still
    running a model turn."""
    import time

    _, _, ds = serve_run
    app = slow_scripted_app(serve_run, plugin, monkeypatch, tmp_path, 3.0, max_sessions=1)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        first = c.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "human"})
        assert first.status_code == 201
        with c.stream("GET", first.json()["events"]) as stream:
            assert stream.status_code == 200
        time.sleep(0.5)  # the server has seen the reader go; the first turn (3 s) still runs
        again = c.post("/v1/sessions", json={"history": [ds.titles[1]], "feedback": "human"})
        assert again.status_code == 503, again.text
        assert c.get("/healthz").json()["open_sessions"] == 1
        deadline, second = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # the cancelled rollout ends after its turn: the slot is free again
            second = c.post("/v1/sessions", json={"history": [ds.titles[1]], "feedback": "none"})
            if second.status_code == 201:
                break
            time.sleep(0.2)
        assert second is not None and second.status_code == 201, second.text
        events = read_events(c, first.json()["events"])  # what is left of the dropped one: that it was cancelled
        assert events[-1] == {"type": "error", "error": "the conversation was cancelled (the page was closed)"}


@pytest.mark.reliability
def test_a_cancel_in_a_running_batch_ends_the_stream_now_and_keeps_the_slot(serve_run, plugin, monkeypatch, tmp_path):
    """The end event of a conversation whose batch was running went out only when the batch ended: a stopping
    server's grace period cut the stream first, with no event and a traceback in the log (review s36). It goes
    out at the cancel now; the conversation holds its --max-sessions slot until its batch ends."""
    import time

    _, _, ds = serve_run
    app = slow_scripted_app(serve_run, plugin, monkeypatch, tmp_path, 2.0, max_sessions=1)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        opened = c.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "none"}).json()
        time.sleep(0.5)  # its batch has started: its first 2 s turn runs
        assert c.delete(f"/v1/sessions/{opened['session_id']}").json() == {"status": "cancelled"}
        events = read_events(c, opened["events"])
        assert events == [{"type": "error", "error": "the conversation was cancelled (cancelled by the client)"}]
        health = c.get("/healthz").json()
        assert health["open_sessions"] == 1, health  # the stream ended before its batch: its slot is still held
        assert health["sessions"] == 0, health  # but nothing is left to read: a second GET kept keep-alives open
        assert c.get(opened["events"]).status_code == 404
        assert c.post("/v1/sessions", json={"history": [ds.titles[1]], "feedback": "none"}).status_code == 503
        deadline, again = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # free once the batch ends
            again = c.post("/v1/sessions", json={"history": [ds.titles[1]], "feedback": "none"})
            if again.status_code == 201:
                break
            time.sleep(0.2)
        assert again is not None and again.status_code == 201, again.text


def test_a_seed_sent_with_greedy_decoding_does_not_split_batches(serve_run, plugin, monkeypatch, tmp_path):
    """``seed`` is read only with ``sample``, but it keyed the batch: requests with seeds 1..4 ran in batches of
    one (review s36)."""
    _, _, ds = serve_run
    app = slow_scripted_app(serve_run, plugin, monkeypatch, tmp_path, 0.5, max_batch=4)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        answers: list[int] = []

        def one(n: int) -> None:
            body = {"history": [ds.titles[n]], "feedback": "none", "seed": n + 1}
            answers.append(httpx.post(srv.url + "/v1/recommend", json=body, timeout=120).status_code)

        clients = [threading.Thread(target=one, args=(n,)) for n in range(5)]
        [t.start() for t in clients]
        [t.join() for t in clients]
        queue = c.get("/healthz").json()["queue"]
    assert answers == [200] * 5 and queue["largest_batch"] >= 2, queue  # the 4 queued behind the first run together


def test_a_request_whose_client_gave_up_leaves_the_queue(serve_run, plugin, monkeypatch, tmp_path):
    """Six clients that gave up after 0.3 s were all still rolled out, one slow batch after another, while new
    requests met a full queue; now a queued request whose client closed its connection leaves the queue."""
    import time

    _, _, ds = serve_run
    app = slow_scripted_app(serve_run, plugin, monkeypatch, tmp_path, 0.5, max_batch=1)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:

        def give_up(n):
            body = {"history": [ds.titles[n]], "feedback": "none"}
            with pytest.raises(httpx.TimeoutException):
                httpx.post(srv.url + "/v1/recommend", json=body, timeout=0.3)

        clients = [threading.Thread(target=give_up, args=(n,)) for n in range(6)]
        [t.start() for t in clients]
        [t.join() for t in clients]
        deadline = time.monotonic() + 30
        while c.get("/healthz").json()["queue"]["waiting"] and time.monotonic() < deadline:
            time.sleep(0.2)
        queue = c.get("/healthz").json()["queue"]
        assert queue["waiting"] == 0 and queue["batches"] <= 2, queue  # at most the one running and one more
        answered = c.post("/v1/recommend", json={"history": [ds.titles[0]], "feedback": "none"})
        assert answered.status_code == 200


def test_ctrl_c_ends_open_conversations_and_stops_the_server(serve_run, plugin):
    """With a person's event stream open, Ctrl-C only logged "waiting for connections to close" and the server
    ran on: the stream's keep-alive never ends. Now the first Ctrl-C ends each conversation, then the server."""
    import signal

    run, _, ds = serve_run
    proc = ServerProcess(run, plugin)
    try:
        proc.wait_ready()
        opened = httpx.post(proc.url + "/v1/sessions", json={"history": [ds.titles[0]], "feedback": "human"}).json()
        events: list[dict] = []
        wanted = threading.Event()

        def on_event(event):
            if event["type"] == "feedback_wanted":
                wanted.set()

        reader = threading.Thread(
            target=lambda: events.extend(read_events(httpx.Client(), proc.url + opened["events"], on_event)),
            daemon=True,
        )
        reader.start()
        assert wanted.wait(120), proc.log
        proc.proc.send_signal(signal.SIGINT)
        proc.proc.wait(timeout=60)  # before: still running, waiting for the stream to close
        reader.join(timeout=30)
        assert events[-1]["type"] == "error" and "the server is stopping" in events[-1]["error"], events
    finally:
        proc.stop()


def slow_scripted_app(serve_run, plugin, monkeypatch, tmp_path, seconds: float, **options):
    """The app over a copy of the agent run whose scripted engine takes ``seconds`` per turn."""
    import time

    import mgfrec.recommend as rec_module
    from mgfrec.recommend import load_recommender
    from mgfrec.serve.app import ServeOptions, create_app

    monkeypatch.syspath_prepend(str(plugin))
    from mgfrec_serve_testkit import Options, ScriptedTestEngine

    class Slow:
        def __init__(self, inner):
            self.inner = inner

        def generate(self, *args, **kwargs):
            time.sleep(seconds)
            return self.inner.generate(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    run, _, ds = serve_run
    titles = [ds.titles[i] for i in SCRIPT_TITLES]
    monkeypatch.setattr(
        rec_module, "build_engine", lambda cfg, m, tok: Slow(ScriptedTestEngine(m, tok, Options(titles=titles)))
    )
    return create_app(load_recommender(hf_copy(run, tmp_path / "run")), ServeOptions(**options))


JSON = {"content-type": "application/json"}


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "words"),
    [
        ("GET", "/nope", None, {}, 404, "/nope: no such route"),
        ("PUT", "/v1/recommend", None, {}, 405, "PUT /v1/recommend: method not allowed"),
        ("POST", "/v1/recommend", b"\xff\xfe{", {"content-type": "application/json"}, 400, "body: could not be read"),
        (
            "POST",
            "/v1/recommend",
            b'{"history": ["a"], "k": }',
            {"content-type": "application/json"},
            422,
            "body: not valid JSON at character",
        ),
        ("POST", "/v1/recommend", b"", {"content-type": "application/json"}, 422, "body: required"),
        ("POST", "/v1/recommend", b'{"history": ["a"]}', {"content-type": "text/plain"}, 422, "body: "),
        ("GET", "/v1/users?limit=2&splt=test", None, {}, 422, "query.splt: not a parameter of /v1/users"),
        ("GET", "/v1/items?q=x&K=5", None, {}, 422, "query.K: not a parameter of /v1/items"),
        ("GET", "/v1/items?q=%20", None, {}, 422, "query.q: give a non-blank title"),
        # a zero-width space, a BOM, NUL: read as an arbitrary catalogue item (review s30)
        ("GET", "/v1/items?q=%E2%80%8B", None, {}, 422, "query.q: give a non-blank title"),
        # read last-wins, and with replacement characters (review s30)
        ("GET", "/v1/users?split=test&split=valid", None, {}, 422, "query.split: given 2 times; give it once"),
        ("GET", "/v1/items?q=%FF%FEabc&k=1", None, {}, 422, "query.q: its percent-encoding is not UTF-8 text"),
        ("POST", "/v1/recommend", rb'{"history": ["\u200b", "\ufeff \u0000"]}', JSON, 422, "non-blank title"),
        (  # a body field put in the URL was ignored: 10 items for ?k=1
            "POST",
            "/v1/recommend?k=1",
            b'{"history": ["a"]}',
            JSON,
            422,
            "query.k: not a parameter of /v1/recommend (it takes none)",
        ),
        ("POST", "/v1/sessions?feedback=human", b'{"history": ["a"]}', JSON, 422, "query.feedback: not a parameter"),
        ("GET", "/healthz?verbose=1", None, {}, 422, "query.verbose: not a parameter of /healthz"),
        (  # curl -d's default content-type: the body is a JSON object, the message says what was wrong
            "POST",
            "/v1/recommend",
            b'{"history": ["a"]}',
            {"content-type": "application/x-www-form-urlencoded"},
            422,
            "the content-type was 'application/x-www-form-urlencoded'",
        ),
        (  # "json" in the name but not read as JSON: the line named no content-type, blaming the body (review s39)
            "POST",
            "/v1/recommend",
            b'{"history": ["a"]}',
            {"content-type": "text/json"},
            422,
            "the content-type was 'text/json'",
        ),
        ("POST", "/v1/recommend", b'{"history": ["a"], "k": true}', JSON, 422, "k: Input should be a valid integer"),
        ("POST", "/v1/recommend", b'{"history": ["a"], "k": "5"}', JSON, 422, "k: Input should be a valid integer"),
        ("POST", "/v1/recommend", b'{"history": ["a"], "sample_id": 3}', JSON, 422, "sample_id: needs split"),
        ("POST", "/v1/recommend", b"[" + b" " * 1_000_001 + b"]", JSON, 413, "body: more than 1,000,000 bytes"),
        ("GET", "/healthz", None, {"host": "attacker.example"}, 400, "header Host 'attacker.example': this server"),
        (  # valid UTF-8 JSON, too deep for the parser: it was blamed on the encoding
            "POST",
            "/v1/recommend",
            b"[" * 100_000 + b"]" * 100_000,
            JSON,
            400,
            "could not be read as JSON (not UTF-8, nested too deeply, or a number too long)",
        ),
    ],
)
def test_every_4xx_has_one_error_line_naming_what_is_wrong(client, method, path, content, headers, status, words):
    """The router's 404/405 and an unreadable body answered {"detail": ...} without "error"; a JSON error was
    named by its character position as if it were a field ("24: JSON decode error"); misspelt query parameters
    were ignored."""
    r = client.request(method, path, content=content, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["error"], r.json()
    assert not r.json()["error"].startswith(": ")


def test_every_get_route_answers_head(client):
    """/v1/users and /v1/items answered HEAD with 405 (RFC 9110 asks every GET route to take it; review s30)."""
    for path in ("/", "/healthz", "/v1/users?limit=1", "/v1/items?q=x&k=1"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code)
    assert client.get("/v1/users?limit=1").status_code == 200


def test_cancelling_a_finished_conversation_says_so(client, serve_run):
    """DELETE answered {"status": "cancelled"} for a conversation that had already ended with `done`."""
    _, _, ds = serve_run
    opened = client.post("/v1/sessions", json={"history": [ds.titles[0]], "feedback": "none"}).json()
    sid = opened["session_id"]
    deadline = time.monotonic() + 120
    while client.get("/healthz").json()["open_sessions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    r = client.delete(f"/v1/sessions/{sid}")
    assert r.status_code == 409 and "already finished" in r.json()["error"], r.text
    assert [e["type"] for e in read_events(client, opened["events"])][-1] == "done"


def test_the_access_log_cuts_query_strings_and_port_0_is_a_real_port():
    """uvicorn logged ``GET /v1/items?q=...&api_key=SECRET``; ``--port 0`` was announced as ``:0``."""
    import logging

    from mgfrec.serve import app as app_mod
    from mgfrec.serve.access_log import path_only

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/items?q=x&api_key=SECRET", "1.1", 200),
        None,
    )
    assert path_only(record) and record.getMessage() == '127.0.0.1:5 - "GET /v1/items HTTP/1.1" 200'
    # an encoded ?, a ; parameter, a key as a path segment (review s28): none reaches the log
    for path, shown in (
        ("/v1/items%3Fq=sk-live-ENCODEDSECRET", "/v1/items"),
        ("/v1/items%3fq=x", "/v1/items"),
        ("/v1/items;api_key=sk-live-SEMISECRET", "/v1/items"),
        ("/v1/users/sk-proj-4f9Qx2Lm8Zr7Tb3Kw1Yp/items", "/v1/users/<redacted>/items"),
        ("/v1/users/U%20336", "/v1/users/U%20336"),
        # a key beside other characters in its segment was logged whole (review s30)
        ("/v1/items&api_key=sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU", "/v1/items&api_key=<redacted>"),
        ("/v1/items/Bearer%20sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU", "/v1/items/Bearer%20<redacted>"),
        # decoded, a line break or an escape sequence beside a key forged log lines (review s30)
        (
            "/v1/items%0AINFO:%20forged%1B%5B31m%20sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU",
            "/v1/items%0AINFO:%20forged%1B%5B31m%20<redacted>",
        ),
        ("/v1/items/key:sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU,x", "/v1/items/key:<redacted>,x"),
        ("/v1/items/sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU%2Fx", "/v1/items/<redacted>/x"),
    ):
        record.args = ("127.0.0.1:5", "GET", path, "1.1", 404)
        assert path_only(record) and record.getMessage() == f'127.0.0.1:5 - "GET {shown} HTTP/1.1" 404'
    with app_mod._listening_socket("127.0.0.1", 0) as held:
        assert 0 < held.getsockname()[1] <= 65535


@pytest.mark.reliability
def test_the_port_is_held_while_the_run_loads(monkeypatch):
    """The port was probed, the probe closed, then the run loaded for 10-40 s: a server started meanwhile took the
    port, and this one printed "serving ... at" after loading, then uvicorn's bind error and exit 3."""
    import socket

    from mgfrec.serve import app as app_mod

    with app_mod._listening_socket("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]  # free now, closed below
    tried = {}

    def loading(run_dir, sets):  # another server binding the port while this one loads
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                other.bind(("127.0.0.1", port))
                other.listen()
                tried["taken"] = True
            except OSError:
                tried["taken"] = False
        raise ValueError("no run here")

    monkeypatch.setattr("mgfrec.recommend.load_recommender", loading)
    with pytest.raises(ValueError, match="no run here"):
        app_mod.serve("somewhere", app_mod.ServeOptions(host="127.0.0.1", port=port))
    assert tried == {"taken": False}
    with app_mod._listening_socket("127.0.0.1", port):  # and given back when loading failed
        pass


@pytest.mark.reliability
def test_stopping_answers_a_waiting_request_with_503_and_a_second_signal_quits_at_once(serve_run, plugin, tmp_path):
    """A request in flight when the server stopped got a plain-text 500 after the shutdown's grace, with a
    CancelledError traceback in the log, and a second Ctrl-C did not quit while the batch ran. The folder's name
    (untrusted, like run.json's model) was printed with its escape sequences acting on the terminal."""
    import signal

    run, _, ds = serve_run
    evil = tmp_path / "evil\x1b]0;PWNED\x07run"
    evil.symlink_to(run, target_is_directory=True)
    # each scripted turn takes 30 s: the batch would run for minutes
    proc = ServerProcess(evil, plugin, "--set", "rollout.options.delay_s=30")
    try:
        proc.wait_ready()
        answers: list[httpx.Response] = []
        client = threading.Thread(
            target=lambda: answers.append(
                httpx.post(proc.url + "/v1/recommend", json={"history": [ds.titles[0]]}, timeout=120)
            )
        )
        client.start()
        deadline = time.monotonic() + 60
        while httpx.get(proc.url + "/healthz").json()["queue"]["batches"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.proc.send_signal(signal.SIGINT)
        client.join(timeout=60)
        assert answers and answers[0].status_code == 503, proc.log
        assert answers[0].json() == {"error": "the server is stopping; try again when it is back"}
        proc.proc.send_signal(signal.SIGINT)  # the batch still runs (30 s a turn): this one quits at once
        proc.proc.wait(timeout=25)
    finally:
        proc.stop()
    assert proc.proc.returncode == 128 + signal.SIGINT, proc.log
    assert "Traceback" not in proc.log and "CancelledError" not in proc.log, proc.log
    assert "stopped at once (second signal)" in proc.log
    assert "evil\\x1b]0;PWNED\\x07run" in "".join(proc.log.split()) and "\x1b]0;PWNED" not in proc.log


@pytest.mark.reliability
def test_a_chunked_body_is_cut_off_and_head_and_local_names_are_answered(client):
    """A body of any size was read whole before it was refused (a 400 MB post made the server hold 1.8 GB); HEAD /
    and HEAD /healthz were 405 (curl -I, uptime monitors)."""

    def chunks():
        for _ in range(64):
            yield b" " * 100_000

    r = client.post("/v1/recommend", content=chunks(), headers=JSON)  # no Content-Length: sent in chunks
    assert r.status_code == 413 and "body: more than 1,000,000 bytes" in r.json()["error"], r.text
    assert client.head("/healthz").status_code == 200 and client.head("/").status_code == 200
    port = client.base_url.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:  # HTTP/1.0 without a Host header
        raw.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        reply = b"".join(iter(lambda: raw.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]  # not a browser, so no rebinding: answered
    users = client.get("/v1/users?limit=2").json()
    assert len(users["users"]) == 2 and users["total"] > 2  # the list says how many there are


@pytest.mark.reliability
def test_the_web_page_takes_any_query_and_the_api_none_it_does_not_read(client):
    assert client.get("/?utm_source=mail").status_code == 200  # a shared link's own query
    assert client.get("/v1/users?split=test&limit=1").status_code == 200

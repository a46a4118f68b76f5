"""Retries, timeouts, malformed bodies and the concurrency bound, against real local servers.

Attempts are counted by the server, so these tests see what really went over the wire.
"""

from __future__ import annotations

import re
import threading

import pytest
from ua_servers import FakeServer, serve
from uakit import KEY_ENV, api_config, build, make_request

from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent
from mgfrec.user_agents.base import UserAgentError
from mgfrec.user_agents.openai_chat import OpenAIChatAgent

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("fault", ["429", "500", "malformed"])
def test_a_passing_fault_is_retried_and_counted(api_key, fault):
    with serve(FakeServer("openai", faults=[fault, fault])) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=2)) as agent:
            assert agent.feedback([make_request()]) == ["fine"]
            stats = agent.stats()
    assert server.count == 3
    assert (stats["calls"], stats["retries"], stats["errors"]) == (1, 2, 0)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("429", "HTTP status 429"), ("500", "HTTP status 500"), ("malformed", "malformed response body")],
)
def test_a_lasting_fault_ends_in_a_clear_error_after_every_retry(api_key, fault, reason):
    with serve(FakeServer("openai", default=fault)) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=2)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
            stats = agent.stats()
    assert server.count == 3  # 1 + max_retries, never more: the SDK's and mgfrec's retries share one budget
    message = str(info.value)
    assert "'openai'" in message and server.url in message and reason in message and "3 attempt(s)" in message
    assert (stats["calls"], stats["retries"], stats["errors"]) == (0, 2, 1)
    if fault == "500":  # the SDK's "Error code: 500 - boom" said the status twice, as the docs did not (review s42)
        assert "HTTP status 500 (InternalServerError: boom)" in message, message


def test_a_malformed_body_then_a_server_error_share_one_retry_budget(api_key):
    with serve(FakeServer("openai", faults=["malformed", "500", "500", "500"])) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=2)) as agent:
            with pytest.raises(UserAgentError, match=r"HTTP status 500.*3 attempt\(s\)"):
                agent.feedback([make_request()])
    assert server.count == 3


def test_a_stalled_server_times_out_and_is_retried(api_key):
    with serve(FakeServer("openai", default="timeout", hang_s=1.5)) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=1, timeout_s=0.2)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    assert server.count == 2
    assert "timed out (user_agent.timeout_s=0.2)" in str(info.value) and "2 attempt(s)" in str(info.value)


def test_one_failure_in_a_batch_fails_the_batch_rather_than_dropping_a_reply(api_key):
    requests = [make_request(n) for n in range(4)]
    with serve(FakeServer("openai", faults=["500"])) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError, match=r"1 of 4 feedback requests failed"):
                agent.feedback(requests)
            assert agent.stats()["calls"] == 3 and agent.stats()["errors"] == 1
    assert server.count == 4


@pytest.mark.parametrize("bound", [1, 3])
def test_no_more_requests_in_flight_than_max_concurrency(api_key, bound):
    # With a barrier of `bound` parties, the server only answers once `bound` requests are in flight together:
    # so the client really runs `bound` at a time (else the barrier breaks), and never more (max_in_flight).
    barrier = threading.Barrier(bound) if bound > 1 else None
    with serve(FakeServer("openai", barrier=barrier)) as server:
        cfg = api_config(server.url, max_concurrency=bound, max_retries=0)
        with build(OpenAIChatAgent, cfg) as agent:
            assert agent.feedback([make_request(n) for n in range(3 * bound)]) == ["fine"] * (3 * bound)
    assert server.max_in_flight == bound


def test_the_anthropic_backend_retries_a_server_error_and_reports_it(api_key):
    with serve(FakeServer("anthropic", faults=["500", "429"])) as server:
        with build(AnthropicMessagesAgent, api_config(server.url, model="claude-test")) as agent:
            assert agent.feedback([make_request()]) == ["fine"]
            assert agent.stats()["retries"] == 2
    assert server.count == 3


def test_the_anthropic_backend_gives_up_with_a_clear_error(api_key):
    with serve(FakeServer("anthropic", default="malformed")) as server:
        with build(AnthropicMessagesAgent, api_config(server.url, model="claude-test", max_retries=1)) as agent:
            with pytest.raises(UserAgentError, match=r"'anthropic' at http://127\.0\.0\.1:\d+.*malformed.*2 attempt"):
                agent.feedback([make_request()])
    assert server.count == 2


@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["empty", "blank"])
def test_empty_feedback_text_is_a_malformed_response_retried_then_an_error(api_key, cls, fault):
    # accepted, it would drop <feedback> from the observation: the run would silently become the no-feedback ablation
    wire = "openai" if cls is OpenAIChatAgent else "anthropic"
    model = {} if cls is OpenAIChatAgent else {"model": "claude-test"}
    with serve(FakeServer(wire, faults=[fault])) as server:
        with build(cls, api_config(server.url, max_retries=2, **model)) as agent:
            assert agent.feedback([make_request()]) == ["fine"]  # retried past one empty answer
            assert agent.stats()["retries"] == 1
    assert server.count == 2
    with serve(FakeServer(wire, default=fault)) as server:
        with build(cls, api_config(server.url, max_retries=2, **model)) as agent:
            with pytest.raises(UserAgentError, match=r"malformed response body.*text is empty.*3 attempt\(s\)"):
                agent.feedback([make_request()])
    assert server.count == 3


@pytest.mark.parametrize(
    ("cls", "fault", "words"),
    [
        (OpenAIChatAgent, "cut", "token limit before any text (finish_reason 'length'); raise user_agent.options"),
        (AnthropicMessagesAgent, "cut", "token limit before any text (stop_reason 'max_tokens'); raise user_agent"),
        (OpenAIChatAgent, "refusal", "the model refused to answer (I cannot help with that)"),
    ],
    ids=["openai-length", "anthropic-max-tokens", "openai-refusal"],
)
def test_an_empty_answer_that_would_come_again_is_not_retried_and_says_why(api_key, cls, fault, words):
    """Cut at the token limit or refused: each retry was paid for and got the same, then 'text is empty'."""
    wire = "openai" if cls is OpenAIChatAgent else "anthropic"
    model = {} if cls is OpenAIChatAgent else {"model": "claude-test"}
    with serve(FakeServer(wire, default=fault)) as server:
        with build(cls, api_config(server.url, max_retries=3, **model)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    assert server.count == 1 and words in str(info.value) and "1 attempt(s)" in str(info.value)


def test_a_placeholder_key_a_few_characters_long_does_not_garble_the_error(monkeypatch):
    """A local server's placeholder key ("5") is no secret: the message keeps its digits ("HTTP status 500"); a
    real key's length is scrubbed as before (test_key_never_shown)."""
    from uakit import KEY_ENV

    monkeypatch.setenv(KEY_ENV, "5")
    with serve(FakeServer("openai", default="500")) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    assert "HTTP status 500" in str(info.value) and "***" not in str(info.value)


@pytest.mark.parametrize(
    ("wire", "fault", "reason"),
    [
        ("openai", "nochoices", "the response has no choices"),
        ("anthropic", "nulltext", "a text content block.s text is not a string"),
    ],
)
def test_an_empty_choices_list_or_a_null_text_is_a_malformed_body_retried(api_key, wire, fault, reason):
    """`choices: []` was "IndexError: list index out of range"; a null text block a TypeError, never retried."""
    from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent

    cls, model = (OpenAIChatAgent, {}) if wire == "openai" else (AnthropicMessagesAgent, {"model": "claude-test"})
    with serve(FakeServer(wire, faults=[fault])) as server:
        with build(cls, api_config(server.url, max_retries=2, **model)) as agent:
            assert agent.feedback([make_request()]) == ["fine"]  # retried, then answered
    assert server.count == 2
    with serve(FakeServer(wire, default=fault)) as server:
        with build(cls, api_config(server.url, max_retries=1, **model)) as agent:
            with pytest.raises(UserAgentError, match=f"malformed response body \\({reason}"):
                agent.feedback([make_request()])


_HUNG_CLIENT = """
import sys
from mgfrec.config.schema import UserAgentConfig
from mgfrec.user_agents.base import FeedbackRequest, load_user_agent

cfg = UserAgentConfig(
    backend="openai", model="m", base_url=sys.argv[1], api_key_env="MGFREC_TEST_KEY", timeout_s=20, max_retries=2
)
agent = load_user_agent(cfg)
request = FeedbackRequest(history_titles=["Kind of Blue"], grounded_title="Blue Train", item_titles=["A Love Supreme"])
try:
    agent.feedback([request, request])
finally:
    agent.close()
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_while_a_request_hangs_ends_the_process_with_no_new_attempt(tmp_path, sig):
    """Ctrl-C (or SIGTERM) during a request the server never answers: the process printed its stop and then lived on
    for (1 + max_retries) x timeout_s (62 s here), sending every retry after the signal, because the request
    threads were joined at exit. Now no attempt starts after the signal and the hung one is left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    with serve(FakeServer("openai", default="timeout", hang_s=30)) as server:
        env = {**os.environ, "MGFREC_TEST_KEY": "EMPTY", "OMP_NUM_THREADS": "1"}
        if sig == "SIGTERM":  # as the CLI turns it (mgfrec.signals.sigterm_stops): an exception in the main thread
            script = "from mgfrec.signals import sigterm_stops\nwith sigterm_stops():\n" + "".join(
                "    " + line + "\n" for line in _HUNG_CLIENT.strip().splitlines()
            )
        else:
            script = _HUNG_CLIENT
        proc = subprocess.Popen([sys.executable, "-c", script, server.url], env=env, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(600):  # both requests reach the server (each then hangs for 30 s, past the 20 s timeout)
                if server.count >= 2 or proc.poll() is not None:
                    break
                time.sleep(0.05)
            assert server.count == 2, proc.stderr.read() if proc.poll() is not None else server.count
            proc.send_signal(getattr(signal, sig))
            proc.wait(timeout=19)  # the old code waited for the 20 s timeout, then retried twice more
            assert server.in_flight == 2  # it ended while the server still held both requests
        finally:
            proc.kill()
            stderr = proc.stderr.read()
        time.sleep(0.5)
        assert server.count == 2, stderr  # no retry after the signal


def test_agents_dropped_unclosed_leave_no_threads_and_close_waits_for_a_request_in_flight(api_key):
    """evaluate, sft and fit drop their run's user agent without close(): its request threads then blocked forever
    and kept the agent and its connections alive (+15 threads per agent in a sweep's process). And close() while
    another thread's request was in flight cut it off (APIConnectionError) instead of letting it finish."""
    import gc
    import time
    import weakref

    def pool_threads() -> int:
        return sum(t.name.startswith("mgfrec-user-agent-openai") for t in threading.enumerate())

    with serve(FakeServer("openai")) as server:
        refs = []
        for _ in range(6):
            agent = build(OpenAIChatAgent, api_config(server.url, max_concurrency=8))
            assert agent.feedback([make_request(n) for n in range(8)]) == ["fine"] * 8
            refs.append(weakref.ref(agent))
            del agent
        gc.collect()
        assert all(ref() is None for ref in refs)  # nothing kept them alive
        for _ in range(100):  # their finalizers ended the idle threads
            if pool_threads() == 0:
                break
            time.sleep(0.05)
        assert pool_threads() == 0

    with serve(FakeServer("openai", faults=["timeout"], hang_s=1.0)) as server:
        agent = build(OpenAIChatAgent, api_config(server.url, timeout_s=5.0))
        got = {}
        worker = threading.Thread(target=lambda: got.update(answers=agent.feedback([make_request()])))
        worker.start()
        while server.count == 0:
            time.sleep(0.01)
        agent.close()  # the request in flight gets its answer first
        worker.join(timeout=10)
        assert got == {"answers": ["fine"]} and server.count == 1
        with pytest.raises(UserAgentError, match="is closed"):
            agent.feedback([make_request()])


def test_close_starts_no_retry_and_tells_a_batch_whose_requests_were_still_queued(api_key):
    """close() while another thread's request failed and was retried waited through every retry, sending them; and
    a batch larger than max_concurrency whose requests were still queued waited forever (a Future cancelled while
    pending never wakes wait()). Now no attempt starts after close(), and the batch ends with an error."""
    import time

    with serve(FakeServer("openai", default="500", hang_s=0.0)) as server:
        server.default = "timeout"  # each attempt stalls 0.5 s, then the fault below
        server.hang_s = 0.5
        agent = build(OpenAIChatAgent, api_config(server.url, max_retries=3, timeout_s=0.2, max_concurrency=2))
        got = {}

        def batch():
            try:
                got["answers"] = agent.feedback([make_request(n) for n in range(6)])
            except UserAgentError as exc:
                got["error"] = str(exc)

        worker = threading.Thread(target=batch)
        worker.start()
        while server.count < 2:
            time.sleep(0.01)
        agent.close()
        sent = server.count
        worker.join(timeout=20)
        assert not worker.is_alive()  # it hung here
        assert "was closed before this request was answered" in got["error"]
        time.sleep(0.6)
        assert server.count == sent  # no retry after close()


@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
def test_a_redirect_is_not_followed_and_no_header_reaches_the_other_host(api_key, cls):
    """The SDKs followed redirects to any host; httpx drops Authorization across origins but not X-Api-Key, so
    ``anthropic`` with ``key_header: x-api-key`` sent the key there, and both sent the user's history (review s26)."""
    wire = "openai" if cls is OpenAIChatAgent else "anthropic"
    options = {"key_header": "x-api-key"} if cls is AnthropicMessagesAgent else {}
    with serve(FakeServer(wire)) as other, serve(FakeServer(wire, default="redirect")) as server:
        server.redirect_to = other.url.replace("127.0.0.1", "localhost").removesuffix("/v1")
        with build(cls, api_config(server.url, model="m", max_retries=1, options=options)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    assert other.count == 0 and server.count == 1  # a 3xx is no fault to retry
    message = str(info.value)
    assert "HTTP status 307" in message and "redirects to http://localhost:" in message
    assert "set user_agent.base_url to where it points" in message and api_key not in message


def test_a_redirect_to_a_location_that_is_no_url_is_named_as_the_servers_fault(api_key):
    """`Location: http://[bad` made urlsplit's "Invalid IPv6 URL" the whole message, no backend, status or
    attempt named, and the error was not counted (review s41)."""
    with serve(FakeServer("openai", default="redirect", redirect_to="http://[bad")) as server:
        with build(OpenAIChatAgent, api_config(server.url, model="m", max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
            assert agent.stats()["errors"] == 1
    message = str(info.value)
    assert "backend 'openai'" in message and "HTTP status 307" in message, message
    assert "redirects to a Location that is not a URL" in message and "Invalid IPv6" not in message, message


def test_timeout_s_bounds_a_response_sent_a_byte_at_a_time(api_key):
    """``timeout_s`` was the SDK's timeout per read: a server trickling its body held one request for minutes."""
    # about 250 bytes, one every 0.5 s: no read waits as long as timeout_s, so only a bound on the whole attempt
    # ends it (without one the answer arrives after two minutes and the test fails)
    with serve(FakeServer("openai", default="trickle", hang_s=10.0)) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=0, timeout_s=1.0)) as agent:
            with pytest.raises(UserAgentError, match=r"timed out \(user_agent.timeout_s=1.0\).*1 attempt"):
                agent.feedback([make_request()])
    assert server.count == 1


@pytest.mark.parametrize("fault", ["wait3600", "waitdate"])
@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
def test_a_retry_after_of_an_hour_is_not_waited_for_and_is_named(api_key, cls, fault):
    """The anthropic SDK waited any Retry-After, silently: a 429 asking for 3600 s (or for a date an hour ahead)
    hung the command for an hour."""
    wire = "openai" if cls is OpenAIChatAgent else "anthropic"
    with serve(FakeServer(wire, default=fault)) as server:
        with build(cls, api_config(server.url, model="m", max_retries=1)) as agent:
            done = threading.Event()
            result: list[BaseException] = []

            def ask() -> None:
                try:
                    agent.feedback([make_request()])
                except UserAgentError as exc:
                    result.append(exc)
                done.set()

            threading.Thread(target=ask, daemon=True).start()
            assert done.wait(60), "still waiting on the server's Retry-After"
    assert server.count == 1  # not retried: the server asked for an hour
    assert "HTTP status 429" in str(result[0]), str(result[0])
    assert re.search(r"asked to wait 3[56]\d\d s before retrying \(Retry-After\): not retried", str(result[0]))


def test_a_key_echoed_url_encoded_or_json_escaped_is_scrubbed(monkeypatch):
    key = "sk-TAILSECRET/0123+456789=="
    monkeypatch.setenv(KEY_ENV, key)
    with serve(FakeServer("openai", default="echoquoted")) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    assert "HTTP status 401" in str(info.value) and "TAILSECRET" not in str(info.value), str(info.value)


def test_a_url_secret_sharing_the_keys_first_characters_is_scrubbed_whole(monkeypatch):
    """Two credentials of one provider (`sk-proj-...` as the key and in the base URL's query): the key's cut-short
    echoes were cut first, leaving `***QUERYSECRET...` of the URL's, which no whole replace then found; it reached
    serve's log and chat's terminal (review s41)."""
    monkeypatch.setenv(KEY_ENV, "sk-proj-ENVSECRETabcdefghij1234567890XYZ")
    with serve(FakeServer("openai", default="echopath")) as server:
        url = f"{server.url}?token=sk-proj-QUERYSECRET1234567890abcdEF"
        with build(OpenAIChatAgent, api_config(url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    said = str(info.value)
    assert "HTTP status 401" in said and "/v1/chat/completions?" in said, said
    assert "QUERYSECRET" not in said and "ENVSECRET" not in said, said


def test_cut_short_echoes_of_the_key_and_a_url_token_sharing_its_head_are_both_scrubbed(monkeypatch):
    """A server's text cut to a length keeps the first part of an echoed secret: the key's cut took the head
    (`sk-proj-`) a URL token shares with it, leaving the token's tail; and cutting every query value garbled the
    model's name and an api-version date (review s41)."""
    key, token = "sk-proj-" + "A" * 40, "sk-proj-" + "B" * 30
    monkeypatch.setenv(KEY_ENV, key)
    url = f"http://127.0.0.1:9/v1?deployment=gpt-4.1-nano-eastus&api-version=2024-10-21&token={token}"
    with build(OpenAIChatAgent, api_config(url, max_retries=0, model="gpt-4.1-nano-2025-04-14")) as agent:
        said = agent._scrubbed(
            f"model gpt-4.1-nano-2025-04-14; api-version '2024-10-01'; key {key[:20]}; token {token[:24]}"
        )
    assert "AAAA" not in said and "BBBB" not in said, said
    assert "model gpt-4.1-nano-2025-04-14; api-version '2024-10-01'" in said, said


@pytest.mark.parametrize(
    "url", ["https://apikey:sk-TAILSECRET0123456789abcdef/v1", "http://[::1/v1", "ftp://host/v1", "localhost:8000"]
)
def test_a_base_url_that_is_no_url_is_one_line_that_does_not_show_it(api_key, url):
    """``https://apikey:sk-...`` (a key pasted as a password without a host) was a traceback quoting the key as a bad
    port, at the first request of a fit (check_ready did not parse the URL)."""
    cfg = api_config(url)
    for check in (lambda: OpenAIChatAgent.check_ready(cfg), lambda: build(OpenAIChatAgent, cfg)):
        with pytest.raises(UserAgentError, match=r"user_agent.base_url is not a usable URL") as info:
            check()
        assert "TAILSECRET" not in str(info.value)


@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
def test_an_error_page_of_many_lines_is_one_bounded_line(api_key, cls):
    """A proxy's HTML 502 page (or a server's message of many lines) was printed whole: kilobytes over many lines,
    the backend, status and attempts buried in it (review s36)."""
    with serve(FakeServer(cls.name, default="htmlpage")) as server:
        with build(cls, api_config(server.url, max_retries=0, model="m")) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message
    assert "[...]" in message or cls is OpenAIChatAgent  # its SDK quotes no body: "Error code: 502"
    assert f"'{cls.name}'" in message and "502" in message and message.endswith("(user_agent.max_retries=0)")


@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
def test_a_usage_of_strings_or_a_lone_surrogate_is_an_answer_not_a_failure(api_key, cls, tmp_path):
    """Valid JSON with an odd value failed an answered request: a usage of "7" as "unsupported operand type(s) for
    +" (counted as a call, not an error), and a text holding JSON's "\\ud800" lost the whole batch when the cache
    stored it (review s36)."""
    cfg = api_config("", max_retries=0, model="m", cache_path=str(tmp_path / "c.sqlite"))
    with serve(FakeServer(cls.name, faults=["strusage", "surrogate"])) as server:
        from mgfrec.user_agents.cache import CachedUserAgent

        agent = CachedUserAgent(build(cls, cfg.model_copy(update={"base_url": server.url})), cfg.cache_path)
        try:
            assert agent.feedback([make_request(0)]) == ["fine"]
            assert agent.feedback([make_request(1)]) == ["fine ?"]
            assert agent.feedback([make_request(1)]) == ["fine ?"]  # stored, read back
            stats = agent.stats()
        finally:
            agent.close()
    assert server.count == 2
    assert (stats["calls"], stats["errors"], stats["cache_hits"], stats["cache_not_stored"]) == (2, 0, 1, 0)
    assert stats["prompt_tokens"] >= (13 if cls is AnthropicMessagesAgent else 11)  # "13" counts 13 or 0


def test_a_refused_connection_says_what_the_http_client_met(api_key):
    """The OpenAI SDK says "Connection error." for a refused port, a name that does not resolve and a body cut short
    alike: the HTTP client's own error is named beside it (review s36)."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with build(OpenAIChatAgent, api_config(f"http://127.0.0.1:{port}/v1", max_retries=0)) as agent:
        with pytest.raises(UserAgentError) as info:
            agent.feedback([make_request()])
    assert "Connection error. (ConnectError:" in str(info.value) and "refused" in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("cls", "variable"),
    [(OpenAIChatAgent, "OPENAI_BASE_URL"), (AnthropicMessagesAgent, "ANTHROPIC_BASE_URL")],
    ids=["openai", "anthropic"],
)
@pytest.mark.parametrize(("value", "said"), [("localhost:8000/v1", "is not a usable URL"), ("", "set but empty")])
def test_the_base_url_variable_the_sdk_reads_is_checked_as_the_field_is(
    api_key, monkeypatch, cls, variable, value, said
):
    """With user_agent.base_url null the SDK reads $OPENAI_BASE_URL: a URL without a scheme, or the variable exported
    empty, failed at the first request, after the recall fit and every retry, as "Connection error." (review s36)."""
    monkeypatch.setenv(variable, value)
    cfg = api_config(None, model="m")
    for check in (lambda: cls.check_ready(cfg), lambda: build(cls, cfg)):
        with pytest.raises(UserAgentError, match=rf"^the environment variable {variable} .*{said}"):
            check()
    assert (
        cls.check_ready(api_config("http://127.0.0.1:9/v1", model="m")) is None
    )  # the field, when given, is what is read
    monkeypatch.setenv(variable, "http://127.0.0.1:9/v1")
    assert cls.check_ready(cfg) is None


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.mark.reliability
def test_a_socks_proxy_the_http_client_cannot_use_is_one_line_naming_the_variable(api_key, monkeypatch):
    """ALL_PROXY=socks5://... without httpx's socks extra: an 85-line ImportError traceback from `chat` (review s39)."""
    import importlib.util

    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed here: the HTTP client can use a SOCKS proxy")
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://bob:pr0xyPassw0rd@127.0.0.1:1080")
    with pytest.raises(UserAgentError) as info:
        build(OpenAIChatAgent, api_config("http://example.test/v1", model="m"))
    said = str(info.value)
    assert "cannot use the proxy in $ALL_PROXY" in said and "socks" in said, said
    assert "pr0xyPassw0rd" not in said and api_key not in said
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.reliability
def test_an_unreachable_proxy_is_named_not_blamed_on_the_server(api_key, monkeypatch):
    """HTTP_PROXY pointing at a closed port: "Connection error ... refused" for a server that was up (review s39)."""
    import socket

    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as probe:  # a port nothing listens on: the proxy
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://bob:pr0xyPassw0rd@127.0.0.1:{port}")
    with serve(FakeServer("openai")) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
        assert server.count == 0
    said = str(info.value)
    assert "sent through the proxy in $HTTP_PROXY" in said and "pr0xyPassw0rd" not in said, said
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # exempted: no word of a proxy
    from mgfrec.user_agents.transport import proxy_variable

    assert proxy_variable(server.url) is None and proxy_variable("http://example.test/v1") == "HTTP_PROXY"
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:2")  # both cases set: httpx reads the lower-case one
    assert proxy_variable("http://example.test/v1") == "http_proxy"


@pytest.mark.reliability
@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_200_that_is_a_page_or_an_error_object_says_what_the_server_sent(api_key, wire):
    """An HTML page sent with 200 was "AttributeError: 'str' object has no attribute 'choices'"; a gateway's error
    object sent with 200 lost its message and was asked again (review s39)."""
    from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent

    cls, model = (OpenAIChatAgent, {}) if wire == "openai" else (AnthropicMessagesAgent, {"model": "claude-test"})
    with serve(FakeServer(wire, faults=["html200"])) as server:
        with build(cls, api_config(server.url, max_retries=2, **model)) as agent:
            assert agent.feedback([make_request()]) == ["fine"]  # a passing portal: asked again, answered
    with serve(FakeServer(wire, default="html200")) as server:
        with build(cls, api_config(server.url, max_retries=1, **model)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
    assert "answered 200 with text/html, not a completion: '<html><head><title>Sign in" in str(info.value)
    with serve(FakeServer(wire, default="error200")) as server:
        with build(cls, api_config(server.url, max_retries=2, **model)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request()])
        assert server.count == 1  # the same would come back: not asked again
    said = str(info.value)
    assert "answered 200 with an error, not a completion: The model 'gpt-x' does not exist" in said, said

"""The ``openai`` backend against a real local HTTP server speaking the Chat Completions wire format."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import traceback

import pytest
from ua_servers import FakeServer, serve
from uakit import KEY_ENV, SECRET, api_config, build, make_request

from mgfrec.user_agents.base import UserAgentError, load_user_agent
from mgfrec.user_agents.openai_chat import OpenAIChatAgent
from mgfrec.user_agents.prompt import prompt_builder


def reply_naming_title(body: dict) -> str:
    """The fake model's reply names the grounded title it was asked about, so order can be checked."""
    prompt = body["messages"][-1]["content"]
    return "feedback on " + re.search(r'Given item title: "(.*?)"', prompt).group(1)


def test_sends_the_table1_prompt_and_returns_replies_in_order(api_key):
    requests = [make_request(n) for n in range(5)]
    with serve(FakeServer("openai", responder=reply_naming_title, expected_key=api_key)) as server:
        agent = build(OpenAIChatAgent, api_config(server.url, model="test-model"))
        try:
            replies = agent.feedback(requests)
        finally:
            agent.close()

    assert replies == [f"feedback on Grounded Jazz Title {n}" for n in range(5)]
    assert server.count == 5
    by_title = {re.search(r"Title (\d)", r.body["messages"][-1]["content"]).group(1): r for r in server.received}
    sent = by_title["3"]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["model"] == "test-model"
    assert sent.body["messages"] == [{"role": "user", "content": prompt_builder(None)(requests[3])}]
    content = sent.body["messages"][0]["content"]
    assert content.startswith("Act as a user agent.")
    assert "Record of items you’ve interacted with: " in content
    assert "Important rules:" in content and content.endswith("Output your feedback.")
    for title in (*requests[3].history_titles, requests[3].grounded_title, *requests[3].item_titles):
        assert title in content
    assert sent.body["max_completion_tokens"] == 512
    assert "temperature" not in sent.body  # None: the server's default

    stats = agent.stats()
    assert (stats["calls"], stats["retries"], stats["errors"]) == (5, 0, 0)
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (5 * 11, 5 * 7)
    assert stats["latency_s_total"] > 0 and stats["latency_s_mean"] == pytest.approx(stats["latency_s_total"] / 5)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_query_in_the_base_url_is_sent_after_the_endpoint(api_key, wire):
    """Both SDKs append the endpoint to the base URL's text: `.../v1?api-version=1` sent
    `/v1/?api-version=1chat/completions`, a 404 blamed on the model, for Azure-style and gateway URLs (review s41)."""
    from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent

    cls = OpenAIChatAgent if wire == "openai" else AnthropicMessagesAgent
    endpoint = "/v1/chat/completions" if wire == "openai" else "/v1/messages"
    with serve(FakeServer(wire, expected_key=api_key)) as server:
        agent = build(cls, api_config(f"{server.url}?api-version=2024-06-01&deployment=a&a=1&a=2&flag", model="m"))
        try:
            assert agent.feedback([make_request(0)]) == ["fine"]
            assert agent.base_url.endswith("?***")  # the query is still hidden where the URL is shown
        finally:
            agent.close()
    # as written: a key given twice keeps both values, a key without a value stays so (a mapping kept one value)
    assert [r.path for r in server.received] == [f"{endpoint}?api-version=2024-06-01&deployment=a&a=1&a=2&flag"]


def test_sampling_options_reach_the_request_body(api_key):
    with serve(FakeServer("openai")) as server:
        opts = {"temperature": 0.0, "top_p": 0.9, "max_tokens": 64, "seed": 7, "system": "Be brief."}
        with build(OpenAIChatAgent, api_config(server.url, model="m", options=opts)) as agent:
            assert agent.feedback([make_request()]) == ["fine"]
    body = server.received[0].body
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"], body["seed"]) == (0.0, 0.9, 64, 7)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][1]["role"] == "user"


def test_base_url_falls_back_to_the_environment_and_the_model_to_the_papers(api_key, monkeypatch, fresh_registry):
    with serve(FakeServer("openai")) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
        cfg = api_config(None, backend="openai")
        agent = load_user_agent(cfg, reg=fresh_registry)
        assert agent.feedback([make_request()]) == ["fine"]
        agent.close()
    assert server.received[0].body["model"] == "gpt-4.1-nano-2025-04-14"


@pytest.mark.reliability
def test_a_missing_key_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UserAgentError, match=KEY_ENV):
        build(OpenAIChatAgent, api_config("http://127.0.0.1:9/v1"))


@pytest.mark.reliability
def test_a_rejected_key_is_not_retried_and_the_error_says_where_to_look(api_key):
    with serve(FakeServer("openai", expected_key="another-key")) as server:
        with build(OpenAIChatAgent, api_config(server.url)) as agent, pytest.raises(UserAgentError) as info:
            agent.feedback([make_request()])
    assert server.count == 1
    message = str(info.value)
    assert "401" in message and KEY_ENV in message and "1 attempt" in message


@pytest.mark.reliability
def test_the_key_never_leaks_into_logs_stats_cache_or_errors(api_key, tmp_path, caplog, fresh_registry):
    caplog.set_level(logging.DEBUG)  # the SDK and httpx log requests at DEBUG
    fresh_registry.add("user_agent", "openai", OpenAIChatAgent)
    cache = tmp_path / "ua.sqlite"
    with serve(FakeServer("openai", expected_key=api_key, faults=["500"] * 3)) as server:
        agent = load_user_agent(
            api_config(server.url, backend="openai", cache_path=str(cache), max_retries=1), reg=fresh_registry
        )
        with pytest.raises(UserAgentError) as info:  # the first request fails twice: the error path
            agent.feedback([make_request(0)])
        assert agent.feedback([make_request(1)]) == ["fine"]  # one 500 left, then fine: the cache gets a row
        stats = agent.stats()
        agent.close()
    assert server.received[0].headers["authorization"] == f"Bearer {SECRET}"  # the key was really used
    error_text = "".join(traceback.format_exception(info.value))
    assert SECRET not in error_text
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(stats)
    assert SECRET.encode() not in cache.read_bytes()
    rows = sqlite3.connect(cache).execute("SELECT key, response FROM responses").fetchall()
    assert rows and all(SECRET not in k and SECRET not in v for k, v in rows)

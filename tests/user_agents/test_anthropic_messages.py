"""The ``anthropic`` backend against a real local HTTP server speaking the Messages wire format."""

from __future__ import annotations

import logging
import traceback

import pytest
from ua_servers import FakeServer, serve
from uakit import KEY_ENV, SECRET, api_config, build, make_request

from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent
from mgfrec.user_agents.base import UserAgentError
from mgfrec.user_agents.prompt import prompt_builder


def test_sends_the_table1_prompt_with_key_and_version_headers(api_key):
    requests = [make_request(n) for n in range(3)]
    responder = lambda body: "reply to " + body["messages"][0]["content"].split("Given item title: ")[1].split("\n")[0]  # noqa: E731
    with serve(FakeServer("anthropic", responder=responder, expected_key=api_key)) as server:
        cfg = api_config(
            server.url, model="claude-test", options={"system": "You are a music fan.", "temperature": 0.2}
        )
        with build(AnthropicMessagesAgent, cfg) as agent:
            replies = agent.feedback(requests)
            stats = agent.stats()

    assert replies == [f'reply to "Grounded Jazz Title {n}"' for n in range(3)]
    first = next(r for r in server.received if "Title 0" in r.body["messages"][0]["content"])
    assert first.path == "/v1/messages"
    assert first.headers["authorization"] == f"Bearer {SECRET}"  # how anthropic>=2 sends an api_key
    assert first.headers["anthropic-version"]  # the SDK's API version header
    assert first.body["model"] == "claude-test"
    assert first.body["max_tokens"] == 512
    assert first.body["system"] == "You are a music fan."
    assert first.body["temperature"] == 0.2
    assert first.body["messages"] == [{"role": "user", "content": prompt_builder(None)(requests[0])}]
    assert "Kind of Blue" in first.body["messages"][0]["content"]
    assert (stats["calls"], stats["prompt_tokens"], stats["completion_tokens"]) == (3, 3 * 13, 3 * 5)


def test_the_key_can_travel_in_the_classic_x_api_key_header_alone(api_key):
    with serve(FakeServer("anthropic", expected_key=api_key)) as server:
        cfg = api_config(server.url, model="claude-test", options={"key_header": "x-api-key"})
        with build(AnthropicMessagesAgent, cfg) as agent:
            assert agent.feedback([make_request()]) == ["fine"]
    headers = server.received[0].headers
    assert headers["x-api-key"] == SECRET and "authorization" not in headers
    assert headers["anthropic-version"]


def test_the_model_is_required(api_key):
    with pytest.raises(UserAgentError, match="user_agent.model is required"):
        build(AnthropicMessagesAgent, api_config("http://127.0.0.1:9"))


@pytest.mark.reliability
def test_the_key_comes_from_the_named_variable_only(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-the-default-variable")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UserAgentError, match=KEY_ENV):  # api_key_env names another variable: that one is read
        build(AnthropicMessagesAgent, api_config("http://127.0.0.1:9", model="m"))


@pytest.mark.reliability
def test_the_key_never_leaks_into_logs_or_errors(api_key, caplog):
    caplog.set_level(logging.DEBUG)
    with serve(FakeServer("anthropic", expected_key=api_key, default="500")) as server:
        cfg = api_config(server.url, model="claude-test", max_retries=1, options={"key_header": "x-api-key"})
        with build(AnthropicMessagesAgent, cfg) as agent, pytest.raises(UserAgentError) as info:
            agent.feedback([make_request()])
    assert server.count == 2 and server.received[0].headers["x-api-key"] == SECRET
    assert SECRET not in "".join(traceback.format_exception(info.value))
    assert SECRET not in caplog.text

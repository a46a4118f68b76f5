"""The ``anthropic`` user agent: the Messages API through the official ``anthropic`` SDK (extra ``mgfrec[anthropic]``).

The base URL is ``user_agent.base_url``, else ``ANTHROPIC_BASE_URL``, else the SDK's default; the model
``user_agent.model`` is required; the key comes only from the environment variable named by
``user_agent.api_key_env`` (default ``ANTHROPIC_API_KEY``); ``options.key_header`` chooses the header
that carries it. ``options.system`` becomes the Messages API's
top-level ``system`` field; the Table 1 prompt is the one user message.
Concurrency, retries, errors and stats: :mod:`mgfrec.user_agents.remote`.
"""

from __future__ import annotations

from typing import Any, Literal

import anthropic
from pydantic import Field

from mgfrec.user_agents.remote import RemoteChatAgent, RemoteOptions
from mgfrec.user_agents.replies import TOKEN_LIMIT_HINT, MalformedResponse, UnusableResponse, check_completion_body


class AnthropicMessagesOptions(RemoteOptions):
    """``user_agent.options`` for ``anthropic``."""

    key_header: Literal["sdk", "x-api-key"] = Field(
        "sdk",
        description="how the key travels: as the SDK sends it (recent SDKs: Authorization: Bearer), or only in "
        "the classic x-api-key header, for compatible servers that read nothing else",
    )


class AnthropicMessagesAgent(RemoteChatAgent):
    """Feedback from the Messages API; see the module docstring."""

    name = "anthropic"
    default_key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    Options = AnthropicMessagesOptions
    transport_options = RemoteChatAgent.transport_options | {"key_header"}

    def _make_client(self, api_key: str, event_hooks: dict[str, list[Any]]) -> anthropic.Anthropic:
        headers: dict[str, Any] = {}
        if self.options.key_header == "x-api-key":
            headers = {"X-Api-Key": api_key, "Authorization": anthropic.Omit()}
        return anthropic.Anthropic(
            default_headers=headers,
            api_key=api_key,
            base_url=self._server(),  # without its query (sent by an event hook); None: the SDK's default
            timeout=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
            # no redirects: the SDK followed them to any host, the key's header and the prompts with them
            http_client=anthropic.DefaultHttpxClient(event_hooks=event_hooks, follow_redirects=False),
        )

    def _complete(self, client: anthropic.Anthropic, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        opts = self.options
        kwargs: dict[str, Any] = {}
        system = [m["content"] for m in messages if m["role"] == "system"]
        if system:
            kwargs["system"] = system[0]
        # Recent SDKs no longer take temperature/top_p as arguments (newer models fix them); when set, they
        # travel as plain body fields, for the models and compatible servers that still accept them.
        sampling = {n: getattr(opts, n) for n in ("temperature", "top_p") if getattr(opts, n) is not None}
        if sampling:
            kwargs["extra_body"] = sampling
        raw = client.messages.with_raw_response.create(
            model=self.model,
            max_tokens=opts.max_tokens,
            messages=[m for m in messages if m["role"] != "system"],
            **kwargs,
        )
        # Parsing is deferred so that a 200 with a broken body is told apart from HTTP failures and retried.
        check_completion_body(raw.http_response)
        try:
            message = raw.parse()
            texts = [block.text for block in message.content if block.type == "text"]
        except Exception as exc:
            raise MalformedResponse(f"{type(exc).__name__}: {exc}") from None
        if any(not isinstance(t, str) for t in texts):  # "text": null was a TypeError, never retried
            raise MalformedResponse("a text content block's text is not a string")
        if not "".join(texts).strip():  # asking again would get the same: say why instead
            stop = getattr(message, "stop_reason", None)
            if stop == "max_tokens":
                raise UnusableResponse(
                    "the message reached its token limit before any text (stop_reason 'max_tokens'); "
                    + TOKEN_LIMIT_HINT
                )
            if stop == "refusal":
                raise UnusableResponse("the model refused to answer (stop_reason 'refusal')")
        if not texts:
            raise MalformedResponse("the message has no text content block")
        if not "".join(texts).strip():  # empty feedback would silently turn the run into the no-feedback ablation
            raise MalformedResponse("the message's text is empty")
        usage = message.usage
        return "".join(texts), (usage.input_tokens or 0) if usage else 0, (usage.output_tokens or 0) if usage else 0

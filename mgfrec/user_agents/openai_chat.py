"""The ``openai`` user agent: Chat Completions through the official ``openai`` SDK (extra ``mgfrec[openai]``).

Works against any OpenAI-compatible server: OpenAI itself, vLLM's ``vllm serve``, or a gateway. The base URL
is ``user_agent.base_url``, else the ``OPENAI_BASE_URL`` environment variable, else the SDK's default; the
model is ``user_agent.model`` (default: the paper's ``gpt-4.1-nano-2025-04-14``); the key comes only from
the environment variable named by ``user_agent.api_key_env`` (default ``OPENAI_API_KEY``).

Each request is one user message holding the Table 1 prompt (plus ``options.system`` if set).
Concurrency, retries, errors and stats: :mod:`mgfrec.user_agents.remote`.
"""

from __future__ import annotations

from typing import Any

import openai
from pydantic import Field

from mgfrec.user_agents.remote import RemoteChatAgent, RemoteOptions
from mgfrec.user_agents.replies import TOKEN_LIMIT_HINT, MalformedResponse, UnusableResponse, check_completion_body


class OpenAIChatOptions(RemoteOptions):
    """``user_agent.options`` for ``openai``."""

    seed: int | None = Field(None, description="sampling seed, for servers that honour it")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra JSON fields (server-specific)")


class OpenAIChatAgent(RemoteChatAgent):
    """Feedback from a Chat Completions endpoint; see the module docstring."""

    name = "openai"
    default_key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_model = "gpt-4.1-nano-2025-04-14"
    Options = OpenAIChatOptions

    def _make_client(self, api_key: str, event_hooks: dict[str, list[Any]]) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=api_key,
            base_url=self._server(),  # without its query (sent by an event hook); None: the SDK's default
            timeout=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
            # no redirects: the SDK followed them to any host, the key's header and the prompts with them
            http_client=openai.DefaultHttpxClient(event_hooks=event_hooks, follow_redirects=False),
        )

    def _complete(self, client: openai.OpenAI, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        opts = self.options
        kwargs: dict[str, Any] = {"max_completion_tokens": opts.max_tokens}
        for name in ("temperature", "top_p", "seed"):
            if getattr(opts, name) is not None:
                kwargs[name] = getattr(opts, name)
        if opts.extra_body:
            kwargs["extra_body"] = opts.extra_body
        raw = client.chat.completions.with_raw_response.create(model=self.model, messages=messages, **kwargs)
        # Parsing is deferred so that a 200 with a broken body is told apart from HTTP failures and retried.
        check_completion_body(raw.http_response)
        try:
            completion = raw.parse()
            if not completion.choices:  # it was "IndexError: list index out of range"
                raise MalformedResponse("the response has no choices")
            choice = completion.choices[0]
            text, refusal, finish = (
                choice.message.content,
                getattr(choice.message, "refusal", None),
                choice.finish_reason,
            )
        except MalformedResponse:
            raise
        except Exception as exc:
            raise MalformedResponse(f"{type(exc).__name__}: {exc}") from None
        if not (isinstance(text, str) and text.strip()):  # asking again would get the same: say why instead
            if refusal:
                raise UnusableResponse(f"the model refused to answer ({self.scrub_reply(str(refusal))[:200]})")
            if finish == "length":
                raise UnusableResponse(
                    "the completion reached its token limit before any text (finish_reason 'length'); "
                    + TOKEN_LIMIT_HINT
                )
            if finish == "content_filter":
                raise UnusableResponse(
                    "the provider's content filter removed the completion (finish_reason 'content_filter')"
                )
        if not isinstance(text, str):
            raise MalformedResponse("the completion has no text content")
        if not text.strip():  # empty feedback would silently turn the run into the no-feedback ablation
            raise MalformedResponse("the completion's text is empty")
        usage = completion.usage
        return text, (usage.prompt_tokens or 0) if usage else 0, (usage.completion_tokens or 0) if usage else 0

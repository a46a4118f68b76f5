"""What a reply of an API backend must be: a completion object with text (:func:`check_completion_body`), kept up
to :func:`reply_limit` characters. :class:`MalformedResponse` is retried by
:class:`~mgfrec.user_agents.remote.RemoteChatAgent`, :class:`UnusableResponse` not."""

from __future__ import annotations

from typing import Any


class MalformedResponse(Exception):
    """A 200 response that is not a usable completion; retried by :class:`RemoteChatAgent`."""


class UnusableResponse(Exception):
    """A well-formed 200 that holds no feedback and would hold none again (cut at the token limit before any text,
    filtered, refused): not retried, and the message says why."""


MAX_REPLY_CHARS_PER_TOKEN = 32
"""A reply is cut at this many characters per ``max_tokens`` (at least 4,096): far above any tokenizer's."""


def reply_limit(max_tokens: int) -> int:
    """The most characters of a reply kept (see :data:`MAX_REPLY_CHARS_PER_TOKEN`)."""
    return max(4096, MAX_REPLY_CHARS_PER_TOKEN * max_tokens)


def check_completion_body(response: Any) -> None:
    """Refuse a 2xx ``response`` (the HTTP library's) whose body is no completion object, saying what it is: an HTML
    page (a captive portal, a proxy's login) was "AttributeError: 'str' object has no attribute 'choices'", and a
    gateway's ``{"error": {...}}`` sent with 200 lost the server's explanation and was asked again (review s39).
    The first is :class:`MalformedResponse` (retried: a gateway's page may be passing); the second
    :class:`UnusableResponse` (the same would come back). The caller's message is scrubbed of secrets."""
    kind = (response.headers.get("content-type") or "no content type").split(";")[0].strip()
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        if not text.lstrip().startswith(("{", "[")):  # a truncated JSON body keeps the parser's own words
            cut = text[:160] + (" [...]" if len(text) > 160 else "")
            raise MalformedResponse(
                f"the server answered {response.status_code} with {kind}, not a completion: {cut!r}"
            ) from None
        return
    if not isinstance(body, dict):
        raise MalformedResponse(
            f"the server answered {response.status_code} with a JSON {type(body).__name__}, not a completion object"
        )
    error = body.get("error")
    if error and not any(body.get(k) for k in ("choices", "content")):
        said = error.get("message") or error if isinstance(error, dict) else error
        said = " ".join(str(said).split())
        raise UnusableResponse(
            f"the server answered {response.status_code} with an error, not a completion: {said[:200]}"
        )


TOKEN_LIMIT_HINT = "raise user_agent.options.max_tokens"

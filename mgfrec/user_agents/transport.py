"""What the API backends need of HTTP itself, whichever HTTP library their SDK uses (``httpx``, ``httpx2``): a
deadline on a whole answer (:func:`deadline_stream`), the wait a ``Retry-After`` asks (:func:`retry_after_s`), a
``base_url`` that is a usable URL (:func:`check_base_url`), and a URL as messages may show it (:func:`shown_url`,
:func:`url_secrets`)."""

from __future__ import annotations

import base64
import datetime
import email.utils
import functools
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit
from urllib.request import proxy_bypass_environment

from mgfrec.user_agents.base import UserAgentError
from mgfrec.validation import KEY_PREFIXES, holds_key

MAX_RETRY_AFTER_S = 60.0
"""The longest ``Retry-After`` the SDK is let wait for; a response asking a longer one (a quota spent for the hour)
is not retried: the request fails at once, its message saying what the server asked."""


def http_library(obj: Any) -> Any:
    """The HTTP library an SDK object comes from (``httpx``, or ``httpx2`` in recent SDKs)."""
    return sys.modules[type(obj).__module__.partition(".")[0]]


@functools.cache
def deadline_stream(lib: Any) -> type:
    """A response body stream of HTTP library ``lib`` that raises its ``ReadTimeout`` once an attempt's deadline
    has passed, between chunks: the per-read timeout never fires while a server sends a byte at a time."""

    class DeadlineStream(lib.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, deadline: float, request: Any, timeout_s: float, length: int | None):
            self._inner, self._deadline, self._request, self._timeout_s = inner, deadline, request, timeout_s
            self._length = length

        def __iter__(self) -> Any:
            received = 0
            for chunk in self._inner:
                received += len(chunk)
                whole = self._length is not None and received >= self._length  # arrived: never thrown away
                if not whole and time.monotonic() > self._deadline:
                    raise lib.ReadTimeout(
                        f"the response took longer than user_agent.timeout_s={self._timeout_s}", request=self._request
                    )
                yield chunk

        def close(self) -> None:
            self._inner.close()

    return DeadlineStream


def retry_after_s(headers: Any) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``retry-after`` in seconds or as an HTTP date (the
    ``anthropic`` SDK waits for a date an hour ahead too); None when it asks none."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after") or "")
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def check_base_url(url: str | None, where: str = "user_agent.base_url") -> None:
    """Refuse a ``user_agent.base_url`` (or the URL ``where`` names) that is no http(s) URL with a host, in one line
    that does not show it (a key pasted into it, ``https://apikey:sk-...``, was quoted by the HTTP library's
    traceback as a bad port)."""
    if url is None:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserAgentError(
            f"{where} is not a usable URL (not shown: it may hold a key); write it as http(s)://host[:port]/path"
        )


def check_base_url_variable(name: str) -> None:
    """Refuse the environment variable ``name`` (``OPENAI_BASE_URL``), which the SDK reads where
    ``user_agent.base_url`` is null, when it is set to something that is no URL: ``localhost:8000/v1`` or an empty
    value failed only at the first request, after the recall fit and every retry, as "Connection error." (review
    s36), where the same value given as ``user_agent.base_url`` was refused at once."""
    value = os.environ.get(name)
    if value is None:
        return
    if not value.strip():
        raise UserAgentError(
            f"the environment variable {name} is set but empty (user_agent.base_url is null, so the client reads it); "
            "unset it for the provider's own URL, or set it, or user_agent.base_url, to http(s)://host[:port]/path"
        )
    check_base_url(value, f"the environment variable {name} (read because user_agent.base_url is null)")


def shown_url(url: str) -> str:
    """``url`` with its password and query string replaced: ``https://bob:***@host/v1?***``; a user name given
    without a password (``https://sk-TOKEN@host``, a token in the user name) is replaced whole: ``***@host``."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        name, colon, _ = userinfo.partition(":")
        userinfo = f"{name}:***" if colon else "***"
    netloc = f"{userinfo}{at}{host}"
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else ""))


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be credentials (its password, a user name given without one, its query
    string), longest first; with user information, also the ``Authorization: Basic`` value an HTTP client makes
    of it (base64 of ``user:password``), which a server may echo back in an error."""
    parts = urlsplit(url)
    name = parts.username if parts.password is None else ""
    found = [parts.password or "", name or "", parts.query, *(v for _, v in parse_qsl(parts.query))]
    if parts.username is not None:
        for user, password in {
            (parts.username, parts.password or ""),
            (unquote(parts.username), unquote(parts.password or "")),
        }:
            found.append(base64.b64encode(f"{user}:{password}".encode()).decode())
    return sorted({f for f in found if len(f) >= 4}, key=len, reverse=True)


def proxy_variable(url: str | None) -> str | None:
    """The environment variable naming the proxy that a request to ``url`` (None: a provider's https URL) goes
    through, as the SDKs' HTTP clients read them (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, either case,
    ``NO_PROXY`` exempting a host); None when it goes straight to the server. For messages: a bad or unreachable
    proxy was blamed on ``user_agent.base_url`` or on the server (review s39)."""
    try:
        parts = urlsplit(url or "https://api.invalid")
        host = parts.hostname or ""
    except ValueError:
        return None
    if host and proxy_bypass_environment(host):
        return None
    for name in (f"{parts.scheme}_proxy", "all_proxy"):
        for variable in (name, name.upper()):  # the lower-case one first, as httpx and urllib read them
            if os.environ.get(variable):
                return variable
    return None


def cut_prefixes(text: str, secrets: Sequence[str], shortest: int = 8) -> str:
    """``text`` with every run of at least ``shortest`` characters that begins one of ``secrets`` replaced by
    ``***``, the longest such run at each place: a server's text cut to a length before it was scrubbed (a
    refusal's first 200 characters) kept the first part of an echoed key, which a whole-key replace did not find
    (review s32)."""
    secrets = [s for s in secrets if len(s) >= shortest]
    if not secrets:
        return text
    heads = re.compile("|".join(re.escape(h) for h in sorted({s[:shortest] for s in secrets}, key=len, reverse=True)))
    out, pos = [], 0
    while (match := heads.search(text, pos)) is not None:
        start = match.start()
        longest = 0
        for secret in secrets:
            if text.startswith(secret[:shortest], start):
                end = start + shortest
                while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
                    end += 1
                longest = max(longest, end - start)
        out += [text[pos:start], "***"]
        pos = start + longest
    return "".join(out) + text[pos:]


def url_credentials(url: str) -> list[str]:
    """The parts of ``url`` that are credentials, whose echoes cut short are scrubbed too: its password, and the
    query's values that look like a key (``holds_key``); not the query's other values (an api-version date)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    values = [v for _, v in parse_qsl(parts.query) if holds_key(v) or v.startswith(KEY_PREFIXES)]
    return [*([password] if password else []), *values]

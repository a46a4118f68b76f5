"""What the API backends share: bounded concurrency, retries, attempt counting, clear errors, and the key rule.

:class:`RemoteChatAgent` answers a batch by sending one chat request per :class:`FeedbackRequest` from a
thread pool of ``user_agent.max_concurrency`` workers; the official SDK's synchronous client is thread-safe
and its connection pool is shared. Subclasses (``openai``, ``anthropic``) only build their SDK client and
turn one prompt into one completion.

Retries. The SDK retries what HTTP tells it to (timeouts, connection errors, 408/409/429 and 5xx, honouring
``Retry-After``) with exponential backoff. A 200 whose body is not a usable completion (malformed JSON, no
text) is retried here, with exponential backoff from ``options.backoff_s``. Both draw on one budget:
at most ``1 + user_agent.max_retries`` HTTP attempts per request, counted by an event hook on the SDK's HTTP
client so the count is exact whoever retried. A request that still fails raises :class:`UserAgentError`
naming the backend, base URL, model, status and attempt count; it never turns into empty feedback.

Time. An answer still arriving ``user_agent.timeout_s`` after its request was sent is cut off (the SDKs pass the
timeout per read, so a server trickling its answer a byte at a time held a request for minutes; an answer that has
arrived whole is kept), and a response asking for a ``Retry-After`` longer than :data:`MAX_RETRY_AFTER_S` is not
retried (the ``anthropic`` SDK waited any length, silently).

Keys. The API key is read only from the environment variable named by ``user_agent.api_key_env`` and
handed to the SDK; it is never logged, stored, put in stats or cache keys, and is scrubbed from error text.
Redirects are not followed: the SDKs followed them to any host, with ``X-Api-Key`` (httpx drops only
``Authorization`` across origins) and the user's history; a 3xx is an error naming where it points.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, wait
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.schema import UserAgentConfig
from mgfrec.user_agents.base import (
    FeedbackRequest,
    PartialFeedbackError,
    UsageStats,
    UserAgentContext,
    UserAgentError,
)
from mgfrec.user_agents.cache import cache_key
from mgfrec.user_agents.daemon_pool import DaemonPool
from mgfrec.user_agents.prompt import prompt_builder
from mgfrec.user_agents.replies import (  # noqa: F401 - TOKEN_LIMIT_HINT: importable from here, as plugins found it
    TOKEN_LIMIT_HINT,
    MalformedResponse,
    UnusableResponse,
    reply_limit,
)
from mgfrec.user_agents.transport import (
    MAX_RETRY_AFTER_S,
    check_base_url,
    check_base_url_variable,
    cut_prefixes,
    deadline_stream,
    http_library,
    proxy_variable,
    retry_after_s,
    shown_url,
    url_credentials,
    url_secrets,
)
from mgfrec.validation import refuse_redacted


class RemoteOptions(BaseModel):
    """``user_agent.options`` shared by the API backends."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    temperature: float | None = Field(None, ge=0, description="None: the server's default")
    top_p: float | None = Field(None, gt=0, le=1, description="None: the server's default")
    max_tokens: int = Field(512, ge=1, description="upper bound on the feedback length, in tokens")
    system: str | None = Field(None, description="optional system message; the paper names none")
    backoff_s: float = Field(0.5, ge=0, description="first wait before retrying a malformed response; doubles")


class Stopped(BaseException):
    """Raised by the HTTP client's request hook once the batch it serves was interrupted (Ctrl-C, SIGTERM): no new
    attempt is made. A BaseException, so that the SDK's retry loop (which retries any Exception) lets it through."""


MIN_SCRUBBED_KEY = 8
"""Keys at least this long are scrubbed from error text; shorter ones are placeholders, not secrets."""
MAX_REASON = 500
"""The most characters of a failure's reason (a server's error body) an error line quotes."""


def token_count(value: object) -> int:
    """A token count as a server reported it; anything but a finite number >= 0 (a string, a null) counts 0: a
    usage of ``"7"`` failed the answered request as "unsupported operand type(s) for +" (review s36)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return int(value) if ok else 0


class RemoteChatAgent:
    """Base class of the API backends; see the module docstring. Subclasses set the class attributes and
    implement :meth:`_make_client`, :meth:`_complete` and :meth:`_describe_error`."""

    name: ClassVar[str]
    default_key_env: ClassVar[str]
    base_url_env: ClassVar[str | None] = None  # the variable the SDK reads where user_agent.base_url is null
    default_model: ClassVar[str | None] = None
    Options: ClassVar[type[RemoteOptions]] = RemoteOptions
    transport_options: ClassVar[frozenset[str]] = frozenset({"backoff_s", "system"})
    """Options that do not change what the model answers (``system`` is part of the messages already)."""

    @classmethod
    def check_ready(cls, cfg: UserAgentConfig) -> None:
        """What the constructor checks, for a command to ask before its long stages (``fit`` fitted its recall model
        for a minute, then stopped at the missing key): a model named, and a usable key in the environment."""
        cls._model_of(cfg)
        cls._key_of(cfg)
        refuse_redacted(cfg.base_url, "user_agent.base_url")  # a URL's password read back from a run's config.yaml
        cls._check_url(cfg)

    @classmethod
    def _check_url(cls, cfg: UserAgentConfig) -> None:
        check_base_url(cfg.base_url)
        if cfg.base_url is None and cls.base_url_env:
            check_base_url_variable(cls.base_url_env)

    @classmethod
    def _model_of(cls, cfg: UserAgentConfig) -> str:
        model = cfg.model or cls.default_model
        if not model:
            raise UserAgentError(f"user_agent.model is required for backend '{cls.name}'")
        return model

    @classmethod
    def _key_of(cls, cfg: UserAgentConfig) -> str:
        key_env = cfg.api_key_env or cls.default_key_env
        key = os.environ.get(key_env, "").strip()  # a pasted key often ends in a newline or a space
        if any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise UserAgentError(
                f"the environment variable {key_env} holds a control character inside the key (an HTTP header "
                "cannot carry it); set it to the key alone"
            )
        if not key.isascii():  # copied from a page with "…" or a curly quote: refused by httpx at the first request
            at = next(i for i, c in enumerate(key) if not c.isascii())
            raise UserAgentError(
                f"the environment variable {key_env} holds a character outside ASCII (position {at + 1} of the key; "
                "an HTTP header cannot carry it, and a key copied from a page may end in '...' or hold a curly "
                "quote); set it to the key alone"
            )
        if not key:
            raise UserAgentError(
                f"user agent backend '{cls.name}' reads its API key from the environment variable {key_env}, "
                f"which is not set. Set it (any placeholder such as EMPTY works for a local server that needs no "
                f"key), or name another variable in user_agent.api_key_env."
            )
        return key

    def __init__(self, cfg: UserAgentConfig, options: RemoteOptions | None, context: UserAgentContext | None = None):
        self.cfg = cfg
        self.options = options or self.Options()
        refuse_redacted(cfg.base_url, "user_agent.base_url")  # evaluate, recommend, serve: as check_ready does
        self.model: str = self._model_of(cfg)
        self.key_env = cfg.api_key_env or self.default_key_env
        key = self._key_of(cfg)
        self._secret = key  # kept only to scrub it from error text
        self._prompt = prompt_builder(cfg.prompt)
        self._attempts = threading.local()
        self._check_url(cfg)
        self._base_query = ""  # the base URL's query string, sent with every request (:meth:`_server`)
        try:
            hooks = {"request": [self._count_attempt, self._send_query], "response": [self._on_response]}
            self._client = self._make_client(key, hooks)
        except Exception as exc:
            # the HTTP library's URL errors (no ValueError) quote the URL, which may hold a key; any other failure
            # (a subclass's bug) is no URL's and keeps its own message
            # the URL the client was to use: the field, else the variable the SDK reads (none: the provider's)
            proxy = proxy_variable(cfg.base_url or (os.environ.get(self.base_url_env) if self.base_url_env else None))
            if isinstance(exc, ImportError) and proxy:  # a SOCKS proxy without httpx's extra: an 85-line traceback
                reason = " ".join(str(exc).split())[:300]
                for secret in [*url_secrets(os.environ.get(proxy, "")), *([key] if key else [])]:
                    reason = reason.replace(secret, "***")
                raise UserAgentError(
                    f"user agent backend '{self.name}': its HTTP client cannot use the proxy in ${proxy} "
                    f"({reason}); install what it names, or unset {proxy} (NO_PROXY exempts a host)"
                ) from None
            if not (isinstance(exc, ValueError) or type(exc).__name__ in ("InvalidURL", "UnsupportedProtocol")):
                raise
            what = f"user_agent.base_url or the proxy in ${proxy}" if proxy else "user_agent.base_url"
            raise UserAgentError(
                f"user agent backend '{self.name}': its HTTP client refused {what} ({type(exc).__name__}; "
                "the URL is not shown, it may hold a key)"
            ) from None
        finally:
            del key
        self._pool: DaemonPool | None = DaemonPool(cfg.max_concurrency, f"mgfrec-user-agent-{self.name}")
        self._interrupted = False  # a batch was stopped (Ctrl-C, SIGTERM): close() then waits for no request
        self._batches: set[threading.Event] = set()  # the stop events of the batches running now
        self._batches_lock = threading.Lock()  # feedback() from several threads (serve), close() from another
        # an agent dropped without close() (evaluate, sft and fit build theirs for a run): its idle workers end
        weakref.finalize(self, self._pool.shutdown, False)
        self.usage = UsageStats()

    def _server(self) -> str | None:
        """The base URL a subclass's :meth:`_make_client` gives its SDK: ``user_agent.base_url`` (or the SDK's
        variable, :attr:`base_url_env`) without its query string, which :meth:`_send_query` puts on every request.
        The SDKs append the endpoint to the URL's text, query and all: ``http://h/v1?api-version=1`` sent
        ``/v1/?api-version=1chat/completions``, a 404 blamed on the model (review s41). None: no URL is set, and the
        SDK uses its default, as before."""
        url = self.cfg.base_url or (os.environ.get(self.base_url_env) if self.base_url_env else None)
        parts = urlsplit(url) if url else None
        if parts is None or not parts.query:
            return self.cfg.base_url
        self._base_query = parts.query
        return urlunsplit(parts._replace(query=""))

    def _send_query(self, request: Any) -> None:
        """The base URL's query string, as written (a key given twice, a key without a value), after the SDK's
        own parameters of each request: an SDK's ``default_query`` is a mapping, which kept one value per key."""
        if self._base_query:
            raw = quote(self._base_query, safe="=&;%+/:@!$'()*,?~").encode("ascii")
            own = request.url.query
            request.url = request.url.copy_with(query=own + b"&" + raw if own else raw)

    def _server_url(self) -> str:
        """The server's URL with its query, as requests are sent to it (shown only through :func:`shown_url`)."""
        base = str(self._client.base_url)
        return f"{base}?{self._base_query}" if self._base_query else base

    # --- what subclasses provide -------------------------------------------------------------------------

    def _make_client(self, api_key: str, event_hooks: dict[str, list[Any]]) -> Any:
        """The SDK client, its HTTP client carrying ``event_hooks`` and not following redirects
        (``follow_redirects=False``), timeout and retries from ``self.cfg``."""
        raise NotImplementedError

    def _complete(self, client: Any, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        """One completion: (text, prompt tokens, completion tokens). Raises :class:`MalformedResponse` for a
        body that is not a usable completion; lets the SDK's own errors through."""
        raise NotImplementedError

    def _describe_error(self, exc: BaseException) -> str:
        """A short reason for an SDK error, with the HTTP status when there is one."""
        status = getattr(exc, "status_code", None)
        if status is not None:
            hint = {
                401: f"; check the key in ${self.key_env}",
                403: f"; check the key in ${self.key_env}",
                404: "; check user_agent.model and user_agent.base_url",
            }.get(status, "")
            if 300 <= status < 400:
                response = getattr(exc, "response", None)
                where = response.headers.get("location") if response is not None else None
                try:
                    to = f" to {shown_url(where)}" if where else ""
                except ValueError:  # `Location: http://[bad`: urlsplit's "Invalid IPv6 URL" was the whole message (s41)
                    to = " to a Location that is not a URL"
                hint = (
                    f"; the server redirects{to}: redirects are not followed "
                    "(the key and the prompts would go with them), so set user_agent.base_url to where it points"
                )
            asked = getattr(self._attempts, "asked_wait", None)
            if asked is not None:
                hint += f"; the server asked to wait {asked:.0f} s before retrying (Retry-After): not retried"
            # the OpenAI SDK's message begins "Error code: 500 - ": the status said twice (review s42)
            said = re.sub(r"^Error code: \d+ - ", "", str(getattr(exc, "message", exc)))
            return f"HTTP status {status} ({type(exc).__name__}: {said}){hint}"
        proxy = proxy_variable(self._server_url())  # the client's own: the field's, or the SDK's choice
        # an unreachable proxy was reported as the server's connection error, naming no proxy (review s39)
        through = f"; sent through the proxy in ${proxy} (NO_PROXY exempts a host)" if proxy else ""
        if "Timeout" in type(exc).__name__:
            return f"timed out (user_agent.timeout_s={self.cfg.timeout_s}){through}"
        cause = exc.__cause__
        if cause is not None and str(cause) and str(cause) not in str(exc):
            # the OpenAI SDK says only "Connection error." for a refused port, a name that does not resolve and a
            # body cut short alike; what its HTTP client raised tells them apart (review s36)
            return f"{type(exc).__name__}: {exc} ({type(cause).__name__}: {cause}){through}"
        return f"{type(exc).__name__}: {exc}{through}"

    # --- the shared machinery ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's URL as messages show it: a password or a query string (``?api-key=...``) hidden."""
        return shown_url(self._server_url())

    def messages(self, request: FeedbackRequest) -> list[dict[str, str]]:
        """The chat messages sent for ``request``: the optional system message, then the Table 1 prompt."""
        msgs = [{"role": "system", "content": self.options.system}] if self.options.system else []
        return [*msgs, {"role": "user", "content": self._prompt(request)}]

    def sampling(self) -> dict[str, Any]:
        """Every setting besides the prompt and model that changes the response (part of the cache key)."""
        return self.options.model_dump(exclude=set(self.transport_options))

    def cache_key(self, request: FeedbackRequest) -> str:
        # the server too: one model name on two servers (vLLM's "default", a gateway) shared their answers
        parts: dict[str, Any] = {
            "backend": self.name,
            "base_url": shown_url(self._server_url()),
            "model": self.model,
            "sampling": self.sampling(),
            "messages": self.messages(request),
        }
        query = httpx.URL(self._server_url()).query  # shown as *** above: two servers told apart only by it (a
        if query:  # gateway's ?deployment=a and ?deployment=b) shared answers (s32); digested, as it may hold a key
            parts["query"] = hashlib.sha256(query).hexdigest()  # (httpx.URL.query is bytes)
        return cache_key(**parts)  # (a URL without a query keys as before: caches written then still answer)

    def _count_attempt(self, request: Any) -> None:
        # Called by the SDK's HTTP client for every attempt, in the worker thread that makes it.
        stop = getattr(self._attempts, "stop", None)
        if stop is not None and stop.is_set():
            raise Stopped  # the batch was interrupted: no new attempt (a retry would be paid traffic)
        self._attempts.n = getattr(self._attempts, "n", 0) + 1
        self._attempts.started = time.monotonic()
        self._attempts.asked_wait = None  # what this attempt's answer asks, not an earlier one's

    def _on_response(self, response: Any) -> None:
        # Called by the SDK's HTTP client with each response, before its body is read, in the worker thread.
        lib = http_library(response)
        deadline = getattr(self._attempts, "started", time.monotonic()) + self.cfg.timeout_s
        length = response.headers.get("content-length")
        length = int(length) if length and length.isdigit() else None
        response.stream = deadline_stream(lib)(response.stream, deadline, response.request, self.cfg.timeout_s, length)
        asked = retry_after_s(response.headers) if response.status_code >= 400 else None
        if asked is not None and asked > MAX_RETRY_AFTER_S:
            # no retry at all: the server asked to be left alone for longer than a command waits (both SDKs obey
            # x-should-retry; the anthropic one waited any Retry-After, silently)
            self._attempts.asked_wait = asked
            response.headers["x-should-retry"] = "false"

    def feedback(self, requests: Sequence[FeedbackRequest]) -> list[str]:
        if self._pool is None:
            raise UserAgentError(f"user agent backend '{self.name}' is closed")
        if not requests:
            return []
        stop = threading.Event()
        with self._batches_lock:
            self._batches.add(stop)
        try:
            try:
                futures = [self._pool.submit(self._one, self.messages(r), stop) for r in requests]
            except RuntimeError:  # closed by another thread since the check above
                raise UserAgentError(f"user agent backend '{self.name}' is closed") from None
            try:
                wait(futures)  # let every request finish before reporting, so none is left running unseen
            except BaseException:  # Ctrl-C, SIGTERM: no attempt starts after it; one in flight is left to its thread
                stop.set()
                self._interrupted = True
                for future in futures:
                    future.cancel()
                raise
        finally:
            with self._batches_lock:
                self._batches.discard(stop)
        outcomes = [self._outcome(f) for f in futures]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            prefix = (
                f"{len(failed)} of {len(requests)} feedback requests failed; the first: " if len(requests) > 1 else ""
            )
            answers = [None if isinstance(o, BaseException) else o for o in outcomes]
            raise PartialFeedbackError(prefix + str(failed[0]), answers) from None  # failed[0] holds nothing more
        return outcomes

    def _outcome(self, future: Future[Any]) -> Any:
        """A request's answer, or the error it ended with: closed (another thread's close() cancelled it before it
        was sent, or stopped its retries) or the request's own."""
        if future.cancelled() or isinstance(future.exception(), Stopped):
            return UserAgentError(f"user agent backend '{self.name}' was closed before this request was answered")
        return future.exception() or future.result()

    def _one(self, messages: list[dict[str, str]], stop: threading.Event | None = None) -> str:
        self._attempts.n, self._attempts.stop, self._attempts.asked_wait = 0, stop, None
        started = time.monotonic()
        malformed = 0
        while True:
            budget = self.cfg.max_retries - self._attempts.n
            failure = None
            try:
                client = (
                    self._client if budget == self.cfg.max_retries else self._client.with_options(max_retries=budget)
                )
                text, prompt_tokens, completion_tokens = self._complete(client, messages)
                # a lone surrogate (JSON's "\ud800") could not be stored in the cache or encoded for the policy's
                # tokenizer: the whole batch's answers were lost (review s36); it reads as "?"
                text = text.encode("utf-8", "replace").decode("utf-8")
                # a server ignoring max_tokens (30 MB "in 2 tokens") filled memory and the cache; the policy reads
                # at most agent.max_feedback_tokens of a reply (review s39)
                text = text[: reply_limit(self.options.max_tokens)]
                prompt_tokens, completion_tokens = token_count(prompt_tokens), token_count(completion_tokens)
            except UnusableResponse as exc:
                failure = str(exc)
            except MalformedResponse as exc:
                if self._attempts.n <= self.cfg.max_retries:
                    time.sleep(min(self.options.backoff_s * 2**malformed, 8.0))
                    malformed += 1
                    continue
                failure = f"malformed response body ({exc})"
            except Exception as exc:
                failure = self._describe_error(exc)
            if failure is not None:
                # Raised outside the except block, so neither chained nor carrying a context: an SDK error may
                # hold the request (its Authorization header) or a body that echoes it, and a printed chain
                # would show it. The scrubbed reason says what went wrong.
                raise self._fail(failure)
            attempts = max(self._attempts.n, 1)
            self.usage.add(
                calls=1,
                retries=attempts - 1,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_s_total=time.monotonic() - started,
            )
            # A server's answer may quote the request's Authorization header (a proxy, a test double, a model
            # told to): the feedback goes into the cache, the trajectory, every output and a trained policy's data
            return self.scrub_reply(text)

    def scrub_reply(self, text: str) -> str:
        """A reply with this backend's secrets replaced by ``***``: every fresh one, and (through
        :class:`~mgfrec.user_agents.cache.CachedUserAgent`) every cached one, written before replies were scrubbed."""
        return self._scrubbed(text, shortest=MIN_SCRUBBED_KEY)

    def _fail(self, reason: str) -> UserAgentError:
        attempts = max(self._attempts.n, 1)
        self.usage.add(errors=1, retries=attempts - 1)
        # one line of a bounded length: a proxy's HTML error page or a server's message of many lines was printed
        # whole, burying the backend, status and attempts (review s36); scrubbed before it is cut, so no cut leaves
        # part of a key
        reason = " ".join(self._scrubbed(reason).split())
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON] + " [...]"
        message = (
            f"user agent backend '{self.name}' at {self.base_url} (model {self.model}): {reason}; "
            f"gave up after {attempts} attempt(s) (user_agent.max_retries={self.cfg.max_retries})"
        )
        return UserAgentError(self._scrubbed(message))

    def _scrubbed(self, text: str, shortest: int = 0) -> str:
        """``text`` with the API key and the base URL's credentials (those of at least ``shortest`` characters:
        a feedback's words are not garbled for a URL's ``?v=1``) replaced by ``***``. A placeholder key a few
        characters long (a local server's "x") is no secret, and replacing it everywhere would garble the text
        ("HTTP status 401" with the key "1"); every provider's key is far longer."""
        key = self._secret if self._secret and len(self._secret) >= MIN_SCRUBBED_KEY else None
        if key:
            # as sent, and as a server may echo it: URL-encoded (a query, a form) or JSON-escaped
            for form in dict.fromkeys((key, quote(key, safe=""), quote_plus(key), json.dumps(key)[1:-1])):
                text = text.replace(form, "***")
        url = self._server_url()
        for secret in url_secrets(url):  # an SDK's text may quote the whole URL
            if len(secret) >= shortest:
                text = text.replace(secret, "***")
        # echoes cut short, last, for the key and the URL's credentials together: one after the other, the key's
        # cut took the head a URL token shares with it (two keys of one provider: sk-proj-...), and the token's
        # tail was left (review s41); a query's other values (an api-version date) are not cut, which garbled text
        return cut_prefixes(text, [*([key] if key else []), *url_credentials(url)])

    def stats(self) -> dict[str, Any]:
        return self.usage.snapshot()

    def close(self) -> None:
        if self._pool is not None:
            # no retry starts after close() (it waited through every retry of a failing request, sending them);
            # an attempt in flight is waited for, unless a batch was interrupted: then the one the server still
            # holds is left to its daemon thread
            with self._batches_lock:
                for stop in self._batches:
                    stop.set()
            self._pool.shutdown(wait=not self._interrupted)
            self._pool = None
            self._client.close()

    def __enter__(self) -> RemoteChatAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

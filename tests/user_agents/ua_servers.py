"""Real HTTP servers on 127.0.0.1 that speak the Chat Completions and Messages wire formats, with faults.

Each server runs ``http.server.ThreadingHTTPServer`` in a background thread, records every request it
receives (path, headers, JSON body), counts requests in flight, and answers from a script of faults:
``faults`` is consumed one entry per request (``"timeout"``, ``"429"``, ``"500"``, ``"malformed"``,
``"echo401"`` (a 401 whose body quotes the key headers; ``"echopath"``: the bearer key and the request's path with its
query), ``"echo200"`` (feedback that quotes them),
``"empty"``/``"blank"`` (a 200 with empty or whitespace text), ``"cut"`` (empty text at the token limit),
``"refusal"`` (Chat Completions' refusal), ``"nochoices"``, ``"nulltext"``, ``"redirect"`` (a 307 to
``redirect_to``), ``"trickle"`` (a whole answer sent a byte every ``hang_s / 20`` seconds), ``"wait3600"`` (a 429
asking for an hour; ``"waitdate"``: as an HTTP date), ``"echoquoted"`` (a 401 quoting the bearer key URL-encoded
and JSON-escaped), ``"htmlpage"`` (a proxy's 502 page: HTML of many lines, 6 kB), ``"html200"`` (a captive
portal's page, sent with 200), ``"error200"`` (a gateway's error object, sent with 200), ``"strusage"`` (a usage whose
token counts are strings), ``"surrogate"`` (text holding JSON's lone surrogate ``\ud800``), ``"ok"``); when it is
empty, ``default`` is used. The reply text is ``responder(body)`` so
tests can check which prompt a reply belongs to.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeServer:
    """Shared state of one fake API server; see the module docstring."""

    wire: str  # "openai" | "anthropic"
    responder: Callable[[dict[str, Any]], str] = lambda body: "fine"
    faults: list[str] = field(default_factory=list)
    default: str = "ok"
    hang_s: float = 2.0  # how long a "timeout" fault stalls (longer than the client's timeout in tests)
    barrier: threading.Barrier | None = None  # when set, each request waits here before answering
    expected_key: str | None = None
    redirect_to: str = ""
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @property
    def count(self) -> int:
        return len(self.received)

    def next_action(self) -> str:
        with self.lock:
            return self.faults.pop(0) if self.faults else self.default


def _completion(wire: str, model: str, text: str | None, stop: str | None = None, refusal: str | None = None):
    if wire == "openai":
        message = {"role": "assistant", "content": text, **({"refusal": refusal} if refusal else {})}
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": stop or "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text or ""}],
        "model": model,
        "stop_reason": stop or "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 13, "output_tokens": 5},
    }


def _handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    path_for = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}[state.wire]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            with state.lock:
                state.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._answer(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a stalled attempt: expected in the timeout tests
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, body: dict[str, Any] | None) -> None:
            if self.path.partition("?")[0] != path_for or body is None:  # routed by its path, as a real server
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            if state.expected_key is not None:
                bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                # The Messages API takes the key in x-api-key or as a bearer token; Chat Completions as a bearer.
                given = {bearer, self.headers.get("x-api-key")} if state.wire == "anthropic" else {bearer}
                if state.expected_key not in given:
                    self._send(401, b'{"error": {"type": "authentication_error", "message": "invalid key"}}')
                    return
            if state.barrier is not None:
                state.barrier.wait(timeout=10)
            action = state.next_action()
            if action == "timeout":
                time.sleep(state.hang_s)
                action = "ok"  # too late: the client has given up on this attempt
            if action == "429":
                self._send(
                    429, b'{"error": {"type": "rate_limit_error", "message": "slow down"}}', {"retry-after": "0.01"}
                )
            elif action == "500":
                # retry-after-ms keeps the SDK's backoff short in tests; the status is what makes it retry.
                self._send(500, b'{"error": {"type": "api_error", "message": "boom"}}', {"retry-after-ms": "10"})
            elif action == "echopath":  # a 401 quoting the key and the request's path, query and all
                bearer = self.headers.get("Authorization")
                self._send(401, json.dumps({"error": {"message": f"bad key {bearer} for {self.path}"}}).encode())
            elif action == "echo401":  # a hostile or careless server: the 401 body quotes the request's headers
                echoed = {
                    "authorization": self.headers.get("Authorization"),
                    "x-api-key": self.headers.get("x-api-key"),
                }
                self._send(401, json.dumps({"error": {"message": f"invalid credentials {echoed}"}}).encode())
            elif action == "echo200":  # a proxy or a model told to: a 200 whose feedback quotes the key headers
                text = f"your key is {self.headers.get('Authorization')} {self.headers.get('x-api-key')}"
                self._send(200, json.dumps(_completion(state.wire, body.get("model", "?"), text)).encode())
            elif action in ("empty", "blank"):  # a 200 whose text is empty or only whitespace
                text = "" if action == "empty" else " \n\t "
                self._send(200, json.dumps(_completion(state.wire, body.get("model", "?"), text)).encode())
            elif action == "cut":  # the token limit reached before any text: asking again gets the same
                stop = "length" if state.wire == "openai" else "max_tokens"
                self._send(200, json.dumps(_completion(state.wire, body.get("model", "?"), "", stop)).encode())
            elif action == "echorefusal":  # a refusal that quotes the Authorization header past 180 characters
                refusal = "x" * 180 + f" {self.headers.get('Authorization')}"
                payload = _completion(state.wire, body.get("model", "?"), None, refusal=refusal)
                self._send(200, json.dumps(payload).encode())
            elif action == "refusal":  # Chat Completions' refusal field, no content
                payload = _completion(state.wire, body.get("model", "?"), None, refusal="I cannot help with that")
                self._send(200, json.dumps(payload).encode())
            elif action == "nochoices":  # Chat Completions with an empty choices list
                payload = _completion("openai", body.get("model", "?"), "x")
                payload["choices"] = []
                self._send(200, json.dumps(payload).encode())
            elif action == "nulltext":  # a Messages text block whose text is null
                payload = _completion("anthropic", body.get("model", "?"), "x")
                payload["content"][0]["text"] = None
                self._send(200, json.dumps(payload).encode())
            elif action == "redirect":  # to another origin: what a redirect would carry there is the point
                self._send(307, b"", {"Location": state.redirect_to + self.path})
            elif action == "trickle":  # headers at once, then the body a byte at a time: no single read stalls
                payload = json.dumps(_completion(state.wire, body.get("model", "?"), "slow")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                for byte in payload:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(state.hang_s / 20)
            elif action in ("wait3600", "waitdate"):  # a quota spent for the hour, in seconds or as an HTTP date
                from email.utils import formatdate

                wait = "3600" if action == "wait3600" else formatdate(time.time() + 3600, usegmt=True)
                self._send(429, b'{"error": {"type": "rate_limit_error", "message": "quota"}}', {"retry-after": wait})
            elif action == "echoquoted":  # the key as a query or a form would carry it, and inside a JSON string
                from urllib.parse import quote

                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                message = f"bad key {quote(key, safe='')} or {json.dumps(key)[1:-1]}"
                self._send(401, json.dumps({"error": {"message": message}}).encode())
            elif action == "malformed":
                self._send(200, b'{"id": "chatcmpl-test", "choices": [ {"index": 0, "mess')
            elif action == "html200":  # a captive portal or a proxy's login page, sent with 200
                page = b"<html><head><title>Sign in to the guest network</title></head><body>...</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
            elif action == "error200":  # a gateway's error object, sent with 200
                self._send(200, json.dumps({"error": {"message": "The model 'gpt-x' does not exist"}}).encode())
            elif action == "htmlpage":  # what nginx or a CDN sends for a dead upstream: a page, not JSON
                page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n" + "<p>upstream</p>\n" * 400
                self.send_response(502)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page.encode())
            elif action == "strusage":  # valid JSON, a usage of the wrong type
                payload = _completion(state.wire, body.get("model", "?"), state.responder(body))
                payload["usage"] = {k: str(v) for k, v in payload["usage"].items()}
                self._send(200, json.dumps(payload).encode())
            elif action == "surrogate":  # "\ud800" as JSON writes it: valid JSON, not encodable as UTF-8
                payload = json.dumps(_completion(state.wire, body.get("model", "?"), "fine SURROGATE"))
                self._send(200, payload.replace("SURROGATE", "\\ud800").encode())
            else:
                payload = _completion(state.wire, body.get("model", "?"), state.responder(body))
                self._send(200, json.dumps(payload).encode())

    return Handler


class serve:  # noqa: N801 (used as a context manager, reads like a function)
    """``with serve(FakeServer(...)) as state:`` runs the server; ``state.url`` is the SDK's base URL."""

    def __init__(self, state: FakeServer):
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.httpd.daemon_threads = True

    def __enter__(self) -> FakeServer:
        # A short poll interval: shutdown() waits up to one interval for the serving loop to notice.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        host, port = self.httpd.server_address[:2]
        # The OpenAI SDK's base URL ends in /v1; the Anthropic SDK adds /v1 to its paths itself.
        root = f"http://{host}:{port}"
        self.state.url = root + "/v1" if self.state.wire == "openai" else root
        return self.state

    def __exit__(self, *exc: object) -> None:
        if self.state.barrier is not None:
            self.state.barrier.abort()
        self.httpd.shutdown()
        self.httpd.server_close()

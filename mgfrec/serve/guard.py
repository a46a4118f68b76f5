"""What stands in front of the server's app: the size of a request body and, on a loopback address, the
``Host`` a request names (see :class:`Guard`)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mgfrec.text.terminal import terminal_safe

MAX_BODY_BYTES = 1_000_000
"""The largest request body read (the largest valid one, 50 titles of 300 characters, is under 100 kB); a
longer one is refused with 413 before it is parsed, so a client cannot make the server hold gigabytes."""

STOPPING = "the server is stopping; try again when it is back"
"""What a request the stopping server will not answer is told (503)."""
BODY_TIMEOUT_S = 30.0
"""Seconds a request's body may take to arrive once its headers have: a client that stops half-way (a
Content-Length of 100 and 6 bytes sent) got no answer and held its connection until the server stopped."""


def is_loopback(name: str) -> bool:
    """Whether a host name or address is a loopback one: ``localhost``, any of 127.0.0.0/8, ``::1``."""
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware in front of the app: a body over :data:`MAX_BODY_BYTES` gets 413 (by its Content-Length at
    once, else as soon as that many bytes arrived), and a server listening on a loopback address answers only
    requests whose ``Host`` names one (any other is a page of another site reaching it by DNS rebinding: 400)."""

    def __init__(self, app: Any, listen_host: str, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit
        self.loopback_only = is_loopback(listen_host)  # 127.0.0.2 is loopback too, and as open to rebinding

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.loopback_only:
            host = headers.get(b"host", b"").decode("latin-1")
            name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]  # port cut
            if host and not is_loopback(name):  # no Host (HTTP/1.0): not a browser, so not rebinding
                shown = terminal_safe(host[:100])
                message = (
                    f"header Host {shown!r}: this server listens on a loopback address and answers only to "
                    "localhost, 127.0.0.0/8 and ::1 (serve with --host to be reached by another name)"
                )
                await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"error": self._too_large()}, status_code=413)(scope, receive, send)
            return
        received, body_done = 0, False
        deadline: float | None = None  # of the whole body, from the first read (it was restarted per chunk)

        async def limited() -> Any:
            nonlocal received, body_done, deadline
            if body_done:  # the app waits for the client to leave (a stream's end): no deadline
                return await receive()
            now = asyncio.get_running_loop().time()
            deadline = deadline if deadline is not None else now + BODY_TIMEOUT_S
            try:
                message = await asyncio.wait_for(receive(), max(deadline - now, 0.0))
            except asyncio.TimeoutError:
                raise StarletteHTTPException(
                    408, f"body: not received within {BODY_TIMEOUT_S:g} s of the headers"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.limit:  # a body sent in chunks, without a Content-Length
                    raise StarletteHTTPException(413, self._too_large())
            return message

        try:
            await self.app(scope, limited, send)
        except asyncio.CancelledError:
            if body_done:
                raise
            # the server stopping (its grace period over) while a client was still sending its body: nothing of
            # the request was read, so it gets 503, not a traceback in the log per such client
            try:
                await JSONResponse({"error": STOPPING}, status_code=503)(scope, receive, send)
            except Exception:  # noqa: BLE001 - the connection may be gone already; nothing else to tell
                pass

    def _too_large(self) -> str:
        return f"body: more than {self.limit:,} bytes; a request is a JSON object of at most 50 titles"

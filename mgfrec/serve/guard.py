"""What stands in front of the server's app: the size of a request body and, on a loopback address, the
``Host`` a request names (see :class:`Guard`)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mgfrec.text.terminal import terminal_safe

MAX_BODY_BYTES = 1_000_000
"""The largest request body read (the largest valid one, 50 titles of 300 characters, is under 100 kB); a
longer one is refused with 413 before it is parsed, so a client cannot make the server hold gigabytes."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Guard:
    """ASGI middleware in front of the app: a body over :data:`MAX_BODY_BYTES` gets 413 (by its Content-Length at
    once, else as soon as that many bytes arrived), and a server listening on a loopback address answers only
    requests whose ``Host`` names one (any other is a page of another site reaching it by DNS rebinding: 400)."""

    def __init__(self, app: Any, listen_host: str, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit
        self.loopback_only = listen_host in LOOPBACK

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.loopback_only:
            host = headers.get(b"host", b"").decode("latin-1")
            name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]  # port cut
            if host and name.lower() not in LOOPBACK:  # no Host (HTTP/1.0): not a browser, so not rebinding
                shown = terminal_safe(host[:100])
                message = (
                    f"header Host {shown!r}: this server listens on a loopback address and answers only to "
                    f"{', '.join(LOOPBACK)} (serve with --host to be reached by another name)"
                )
                await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"error": self._too_large()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # a body sent in chunks, without a Content-Length
                    raise StarletteHTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"body: more than {self.limit:,} bytes; a request is a JSON object of at most 50 titles"

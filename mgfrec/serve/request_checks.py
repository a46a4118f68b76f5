"""What ``mgfrec serve`` refuses in a request before a route reads it, in one line: a validation error as
``field: problem`` without echoing the input, a query parameter the route does not take, given twice, or not
UTF-8 once decoded, and a JSON body that gives one key twice."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import unquote_plus

from fastapi import HTTPException, Request

from mgfrec.validation import REDACTED, holds_key


def shown_part(name: object) -> str:
    """A field or parameter name a client sent, as an error may echo it: :data:`~mgfrec.validation.REDACTED` when it
    looks like a key, else its first 60 characters (an unknown body field named with a key, or a megabyte-long
    name, came back whole, twice; review s34)."""
    text = str(name)
    # a key inside a longer name ("apikey=sk-...", "Bearer sk-...") came back, cut to 60 characters (review s34)
    return REDACTED if holds_key(text) else text[:60]


def is_json_media(content_type: str) -> bool:
    """Whether ``content_type`` is one the server reads as JSON, by FastAPI's rule: ``application/json`` or
    ``application/<anything>+json``, any case and parameters. ``text/json`` or ``application/x-json`` are not
    read, and the line for them named no content-type, blaming a valid JSON object instead (review s39)."""
    media = content_type.split(";")[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def validation_line(error: dict[str, Any], content_type: str = "application/json") -> str:
    """One request validation error as ``field: problem``: the body itself is named ``body`` (a body that is
    missing, not JSON, or not an object; with the request's ``content_type`` when it was not JSON), query
    parameters ``query.<name>``; the input is never echoed, and a name only as :func:`shown_part` shows it."""
    where = [shown_part(p) for p in error["loc"]]
    if where and where[0] == "body":
        where = where[1:]
    kind = error["type"]
    if kind == "json_invalid":
        position = f" at character {where[0]}" if where else ""
        cause = (error.get("ctx") or {}).get("error")
        return f"body: not valid JSON{position}" + (f" ({cause})" if cause else "")
    if not where:
        sent = "" if is_json_media(content_type) else f"; the content-type was {content_type[:60] or 'none'!r}"
        if kind == "missing":
            return f"body: required (send a JSON object, content-type: application/json{sent})"
        return f"body: {error['msg']} (send a JSON object, content-type: application/json{sent})"
    return f"{'.'.join(where)}: {error['msg']}"


def only_parameters(request: Request) -> None:
    """Refuse a query parameter the route does not take (a misspelt ``splt=test``, or ``?k=1`` on a route that
    reads ``k`` from its body, was ignored silently); every route depends on it."""
    route = request.scope.get("route")
    if getattr(route, "path", None) == "/":  # the web page: a link may carry its own query (?utm_source=...)
        return
    dependant = getattr(route, "dependant", None)
    allowed = [p.alias for p in dependant.query_params] if dependant is not None else []
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "none"
        raise HTTPException(
            422, f"query.{shown_part(unknown[0])}: not a parameter of {request.url.path} (it takes {takes})"
        )
    # a parameter given twice was read last-wins (?split=test&split=valid answered for valid), and one whose
    # percent-encoding is not UTF-8 was read with replacement characters (review s30)
    twice = sorted(name for name in set(request.query_params) if len(request.query_params.getlist(name)) > 1)
    if twice:
        times = len(request.query_params.getlist(twice[0]))
        raise HTTPException(422, f"query.{shown_part(twice[0])}: given {times} times; give it once")
    for piece in request.scope.get("query_string", b"").decode("latin-1").split("&"):
        name, _, value = piece.partition("=")
        try:
            unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            shown = shown_part(unquote_plus(name, errors="replace"))
            raise HTTPException(422, f"query.{shown}: its percent-encoding is not UTF-8 text") from None


class _Repeated(ValueError):
    """A JSON object that gives a key more than once (its name and count)."""


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    counts = Counter(key for key, _ in pairs)
    key, times = counts.most_common(1)[0] if counts else ("", 1)
    if times > 1:
        raise _Repeated(key, times)
    return dict(pairs)


async def body_keys_once(request: Request) -> None:
    """Refuse a JSON body that gives one key twice (``{"user_id": "a", "user_id": "b"}`` answered for ``b``, and
    ``"k"`` given twice took the last, where a query parameter given twice is refused; review s32). Every route
    depends on it; a body that is not JSON is left to the route's own validation."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    raw = await request.body()  # read once: the route reads the same bytes
    if not raw:
        return
    try:
        json.loads(raw, object_pairs_hook=_each_key_once)
    except _Repeated as repeated:
        key, times = repeated.args
        raise HTTPException(422, f"body.{shown_part(key)}: given {times} times; give it once") from None
    except (ValueError, RecursionError):  # not JSON (the route says where), or nested past Python's limit
        return

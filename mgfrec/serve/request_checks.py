"""What ``mgfrec serve`` refuses in a request before a route reads it, in one line: a validation error as
``field: problem`` without echoing the input, and a query parameter the route does not take, given twice, or not
UTF-8 once decoded."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from fastapi import HTTPException, Request


def validation_line(error: dict[str, Any], content_type: str = "application/json") -> str:
    """One request validation error as ``field: problem``: the body itself is named ``body`` (a body that is
    missing, not JSON, or not an object; with the request's ``content_type`` when it was not JSON), query
    parameters ``query.<name>``; the input is never echoed."""
    where = [str(p) for p in error["loc"]]
    if where and where[0] == "body":
        where = where[1:]
    kind = error["type"]
    if kind == "json_invalid":
        position = f" at character {where[0]}" if where else ""
        cause = (error.get("ctx") or {}).get("error")
        return f"body: not valid JSON{position}" + (f" ({cause})" if cause else "")
    if not where:
        sent = "" if "json" in content_type.lower() else f"; the content-type was {content_type[:60] or 'none'!r}"
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
        raise HTTPException(422, f"query.{unknown[0]}: not a parameter of {request.url.path} (it takes {takes})")
    # a parameter given twice was read last-wins (?split=test&split=valid answered for valid), and one whose
    # percent-encoding is not UTF-8 was read with replacement characters (review s30)
    twice = sorted(name for name in set(request.query_params) if len(request.query_params.getlist(name)) > 1)
    if twice:
        times = len(request.query_params.getlist(twice[0]))
        raise HTTPException(422, f"query.{twice[0]}: given {times} times; give it once")
    for piece in request.scope.get("query_string", b"").decode("latin-1").split("&"):
        name, _, value = piece.partition("=")
        try:
            unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            shown = unquote_plus(name, errors="replace")
            raise HTTPException(422, f"query.{shown}: its percent-encoding is not UTF-8 text") from None

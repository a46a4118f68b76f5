"""The HTTP layer of ``mgfrec serve``: FastAPI routes over one loaded :class:`~mgfrec.recommend.Recommender`.

Routes (the OpenAPI schema is FastAPI's own, at ``/openapi.json`` and ``/docs``):

* ``POST /v1/recommend``: ``{"history": [...]}`` or ``{"user_id": ..., "split": "test"}``, ``"k"``,
  ``"feedback": "simulated" | "none"`` -> the top-k items and, for an agent, the whole trajectory;
* ``POST /v1/sessions`` (same body; ``"feedback"`` may also be ``"human"``) -> a conversation id;
  ``GET /v1/sessions/{id}/events``: its events as server-sent events, turn by turn;
  ``POST /v1/sessions/{id}/feedback``: the person's feedback; ``DELETE /v1/sessions/{id}``: cancel;
* ``GET /v1/items?q=...&k=10``: grounding as a service; ``GET /v1/users``: users to pick;
* ``GET /healthz``; ``GET /``: the web page.

Bad requests get a 4xx with a one-line ``error``; nothing of the run's config (where API key variable names
live) is ever returned, and the access log shows paths only (query strings cut).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Query as Q
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from mgfrec.data.protocol import SPLITS
from mgfrec.recommend import Recommender
from mgfrec.recommendation import Query, item_dict
from mgfrec.serve.access_log import path_only
from mgfrec.serve.guard import STOPPING, Guard
from mgfrec.serve.request_checks import body_keys_once, only_parameters, shown_part, validation_line
from mgfrec.serve.work import Batcher, Busy, Conversation, Mode, client_error_text, error_text
from mgfrec.text.terminal import terminal_safe
from mgfrec.validation import is_blank, shown_name

MAX_TITLE_CHARS = 300
MAX_HISTORY = 50
MAX_K = 100
Title = Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS)]


class ServeOptions(BaseModel):
    """How ``mgfrec serve`` runs: every field is a flag of the command."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch: int = Field(8, ge=1, description="most requests answered by one batched rollout")
    queue_size: int = Field(64, ge=1, description="requests waiting before new ones get 503")
    timeout_s: float = Field(120.0, gt=0, description="longest wait for one /v1/recommend answer (then 504)")
    feedback_timeout_s: float = Field(600.0, gt=0, description="longest wait for a person's feedback")
    max_sessions: int = Field(32, ge=1, description="open conversations before new ones get 503")


class RecommendRequest(BaseModel):
    """Whom to recommend for, how many items, and who gives the feedback."""

    model_config = ConfigDict(extra="forbid")
    history: list[Title] | None = Field(
        None,
        max_length=MAX_HISTORY,
        description=f"item titles, oldest first (each at most {MAX_TITLE_CHARS} characters)",
    )
    user_id: str | None = Field(None, max_length=200, description="a user of the run's data set")
    split: Literal["train", "valid", "test"] | None = Field(
        None, description="with user_id: that user's sample of the split (its target's place is reported)"
    )
    k: int = Field(10, ge=1, le=MAX_K, strict=True, description="how many ranked items to return")
    feedback: Literal["simulated", "none", "human"] = Field(
        "simulated", description="'simulated': the run's user agent; 'none': no feedback; 'human' (sessions only)"
    )
    sample: bool = Field(False, strict=True, description="sample at rollout.temperature instead of greedy decoding")
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True)
    sample_id: int | None = Field(
        None, strict=True, description="with split: which of the user's samples of the split (default: the latest)"
    )


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(
        None, max_length=2000, description="the feedback; empty or null: the simulated user answers"
    )
    answer_now: bool = Field(False, strict=True, description="ask the agent to give its final answer now")


FINISHED_KEPT = 4
"""Finished conversations kept for their reader, per ``--max-sessions`` slot (the oldest are forgotten first)."""


def create_app(recommender: Recommender, options: ServeOptions | None = None) -> FastAPI:
    """The FastAPI app over a loaded run; the caller serves it (uvicorn) and closes nothing else."""
    options = options or ServeOptions()
    batcher = Batcher(recommender, max_batch=options.max_batch, queue_size=options.queue_size)
    sessions: dict[str, tuple[Conversation, asyncio.Queue]] = {}
    readers: set[str] = set()  # sessions whose event stream is open
    # conversations whose stream ended at a cancel while their batch runs on: no events are left to read (a second
    # GET kept a stream of keep-alives open for good; review s36), but each holds its slot until its batch ends
    unseen: dict[str, Conversation] = {}

    def running() -> int:
        """Conversations that hold a --max-sessions slot: those still running, read or not."""
        for sid, conversation in list(unseen.items()):
            if conversation.done.is_set():
                unseen.pop(sid, None)
        held = [conv for conv, _ in list(sessions.values())] + list(unseen.values())
        return sum(not conv.done.is_set() for conv in held)

    all_users = set(recommender.users())
    # every split read (and checked against the data set's manifest) once, now: a request never reads the data
    # folder, so a file replaced or removed while serving can neither change an answer nor fail a request
    split_users: dict[str, set[str]] = {split: set(recommender.users(split)) for split in SPLITS}

    stopping = threading.Event()  # set by the first Ctrl-C / SIGTERM: waiting requests get 503 at once

    def stop_conversations() -> None:
        stopping.set()
        for conversation, _ in list(sessions.values()):
            conversation.cancel("the server is stopping")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        stop_conversations()
        await asyncio.to_thread(batcher.close)

    app = FastAPI(
        dependencies=[Depends(only_parameters), Depends(body_keys_once)],
        title="mgfrec",
        version="1",
        lifespan=lifespan,
        description="An MGFRec recommendation agent: it thinks, grounds titles in the catalogue, hears "
        "feedback and answers. See docs/serve.md.",
    )
    app.state.stop_conversations = stop_conversations  # the server's first Ctrl-C ends open streams
    app.add_middleware(Guard, listen_host=options.host)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        content_type = request.headers.get("content-type", "")
        lines = [validation_line(e, content_type) for e in errors]
        # the offending input is not echoed: a client may have put a key in a field it should not have
        detail = [{"type": e["type"], "loc": [shown_part(p) for p in e["loc"]], "msg": e["msg"]} for e in errors]
        return JSONResponse({"error": "; ".join(lines), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own and the router's (404, 405, an unreadable body)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail
        if not isinstance(exc, HTTPException):  # raised by Starlette, with its generic phrase
            message = {
                404: f"{request.url.path}: no such route (the API is described at /docs)",
                405: f"{request.method} {request.url.path}: method not allowed here",
                400: "body: could not be read as JSON (not UTF-8, nested too deeply, or a number too long); send "
                "a JSON object as UTF-8, content-type: application/json",
            }.get(exc.status_code, message)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def query_of(body: RecommendRequest) -> tuple[Query, Mode]:
        if (body.history is None) == (body.user_id is None):
            raise HTTPException(422, "give exactly one of 'history' (a list of titles) or 'user_id'")
        if body.history is not None and all(is_blank(t) for t in body.history):
            raise HTTPException(422, "history: give at least one non-blank title")
        if body.split is not None and body.user_id is None:
            raise HTTPException(422, "split: needs user_id (a typed history has no held-out target)")
        if body.sample_id is not None and body.split is None:
            raise HTTPException(422, "sample_id: needs split (it names one of the user's samples of a split)")
        if body.feedback == "human" and recommender.kind != "agent":
            raise HTTPException(422, f"feedback: 'human' needs an agent run; this is a {recommender.kind} run")
        if body.k > recommender.ds.num_items:
            raise HTTPException(422, f"k: {body.k} is more than the catalogue's {recommender.ds.num_items} items")
        if body.user_id is not None:
            if body.split is None:
                known = all_users
            else:
                known = split_users[body.split]
            if body.user_id not in known:
                where = f" with a sample in split '{body.split}'" if body.split else ""
                # a key a client put in the wrong field is not echoed (the access log redacts it too; review s32)
                raise HTTPException(
                    404, f"user_id {shown_name(body.user_id)!r}: no such user{where} in the run's data set"
                )
        history = tuple(t for t in body.history if not is_blank(t)) if body.history is not None else None
        query = Query(body.user_id, history, body.split, body.k, body.sample_id)
        if query.sample_id is not None:  # (the split is in memory) refused before the queue, where a client's error
            try:  # took a batch slot and was counted as a failed recommendation in /healthz (review s32)
                recommender.history_of(query)
            except (KeyError, ValueError) as exc:
                raise HTTPException(422, error_text(exc)) from None
        # greedy decoding draws nothing: a seed sent with it split the requests into batches of one (review s36)
        return query, Mode(body.feedback, body.sample, body.seed if body.sample else 0)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("mgfrec.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness and what is served: the run's kind and method, catalogue size, queue and conversations."""
        return {
            "status": "ok",
            "kind": recommender.kind,
            "method": recommender.method,
            "items": recommender.ds.num_items,
            "users": len(all_users),
            "splits": [s for s in SPLITS],
            "queue": {"waiting": batcher.queued(), "capacity": batcher.capacity, **batcher.stats},
            "sessions": len(sessions),  # held: running, and finished ones whose events are still readable
            "open_sessions": running(),
        }

    # HEAD too, out of the schema: one route for both gave two operations of one id, and FastAPI warned
    # ("Duplicate Operation ID") whenever /openapi.json or /docs was opened
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)

    async def answer_or_gone(future: Any, request: Request) -> Any:
        """The batch's answer; a client that closed its connection, or a wait beyond --timeout, cancels the job
        (a job still queued leaves the queue: nobody would read its answer)."""
        answer = asyncio.ensure_future(asyncio.wrap_future(future))  # cancelling it cancels the queued job
        deadline = asyncio.get_running_loop().time() + options.timeout_s
        while not answer.done():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                answer.cancel()
                raise asyncio.TimeoutError
            await asyncio.wait({answer}, timeout=min(left, DISCONNECT_POLL_S))
            if not answer.done() and stopping.is_set():  # answered now, not cut off by the shutdown's grace
                answer.cancel()
                raise Busy(STOPPING)
            if not answer.done() and await request.is_disconnected():
                answer.cancel()
                raise ClientGone
        return answer.result()

    @app.post("/v1/recommend")
    async def recommend(body: RecommendRequest, request: Request) -> dict[str, Any]:
        """Top-k items and, for an agent run, the whole trajectory (thoughts, groundings, feedback, answer)."""
        query, mode = query_of(body)
        if mode.feedback == "human":
            raise HTTPException(
                422, "feedback: 'human' needs a conversation: POST /v1/sessions, then stream its events"
            )
        try:
            future = batcher.submit(query, mode)
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None
        try:
            rec = await answer_or_gone(future, request)
        except Busy as exc:
            raise HTTPException(503, str(exc)) from None
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within {options.timeout_s:g} s (--timeout)") from None
        except ClientGone:
            raise HTTPException(499, "the client closed the connection") from None  # nobody reads it
        except (ValueError, KeyError, LookupError) as exc:
            raise HTTPException(422, error_text(exc)) from None
        except Exception as exc:  # noqa: BLE001 - one line, no traceback, no config (the message is logged)
            raise HTTPException(500, client_error_text(exc)) from None
        return rec.to_dict(recommender.ds)

    @app.post("/v1/sessions", status_code=201)
    async def open_session(body: RecommendRequest) -> dict[str, Any]:
        """Start a streamed conversation; read it from ``events``, answer it at ``feedback`` (human mode)."""
        query, mode = query_of(body)
        now = time.monotonic()
        finished = [sid for sid, (conv, _) in sessions.items() if conv.done.is_set()]
        for n, sid in enumerate(finished):  # forget finished conversations nobody came back for: the old ones,
            # and beyond the newest FINISHED_KEPT per open slot, whatever their age (their events stay readable)
            if now - sessions[sid][0].created > 600 or len(finished) - n > FINISHED_KEPT * options.max_sessions:
                sessions.pop(sid, None)
        if running() >= options.max_sessions:  # a finished conversation holds no slot
            raise HTTPException(503, f"{options.max_sessions} conversations are open (--max-sessions); try again later")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        conversation = Conversation(recommender, query, mode, emit, feedback_timeout_s=options.feedback_timeout_s)
        sessions[conversation.id] = (conversation, events)
        try:
            conversation.start(batcher)
        except Busy as exc:
            sessions.pop(conversation.id, None)
            raise HTTPException(503, str(exc)) from None
        base = f"/v1/sessions/{conversation.id}"
        return {"session_id": conversation.id, "events": f"{base}/events", "feedback": f"{base}/feedback"}

    def session(sid: str) -> tuple[Conversation, asyncio.Queue]:
        found = sessions.get(sid)  # one lookup: sync routes run in threads while the loop removes sessions
        if found is None:
            shown = shown_name(sid)  # a key a client put in the URL is not echoed (review s32); an id is 32
            shown = shown if len(shown) <= 64 else f"{shown[:64]}... ({len(sid)} characters)"
            raise HTTPException(404, f"session {shown!r}: no such conversation (finished, cancelled or never opened)")
        return found

    @app.get("/v1/sessions/{sid}/events")
    async def events(sid: str, request: Request) -> StreamingResponse:
        """Server-sent events: ``turn``, ``feedback_wanted`` (human mode), ``observation``, then ``done``/``error``."""
        conversation, queue = session(sid)
        if sid in readers:
            raise HTTPException(409, f"session {sid!r}: its events are already being read (one reader per session)")
        readers.add(sid)

        async def stream():
            finished = False
            try:
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), 15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if event["type"] not in ("done", "error") and conversation.cancelled:
                        continue  # emitted before a DELETE, read after it: a feedback box nobody can answer (s37)
                    yield f"event: {event['type']}\ndata: {json.dumps(event, default=str)}\n\n"
                    if event["type"] in ("done", "error"):
                        finished = True
                        return
            finally:
                if not finished:  # the reader went away: nobody will answer this conversation
                    conversation.cancel("the page was closed")
                if finished and conversation.running_unseen:  # nothing left to read; its batch still runs
                    unseen[sid] = conversation
                if finished or conversation.done.is_set():
                    sessions.pop(sid, None)
                # else it keeps its slot (--max-sessions) until its rollout ends, and is forgotten as a finished
                # one: dropped at once, a client that opened and closed streams in a loop got past the limit
                readers.discard(sid)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/sessions/{sid}/feedback")
    def feedback(sid: str, body: FeedbackBody) -> dict[str, str]:
        """The person's feedback on the grounding shown last (human mode)."""
        conversation, _ = session(sid)
        if body.answer_now and body.text and body.text.strip():  # one would be lost: the answer request wins
            raise HTTPException(422, "give text or answer_now, not both (answer_now sends its own feedback)")
        try:
            conversation.reply(body.text, answer_now=body.answer_now)
        except LookupError as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"status": "accepted"}

    @app.delete("/v1/sessions/{sid}")
    def cancel(sid: str) -> dict[str, str]:
        """Cancel a conversation (a person waiting to type is released at once)."""
        conversation, _ = session(sid)
        if conversation.done.is_set():
            raise HTTPException(409, f"session {sid!r}: already finished; nothing to cancel")
        conversation.cancel("cancelled by the client")
        return {"status": "cancelled"}

    @app.get("/v1/items")
    def items(
        q: Annotated[str, Q(min_length=1, max_length=MAX_TITLE_CHARS)],
        k: Annotated[int, Q(ge=1, le=MAX_K)] = 10,
    ) -> dict[str, Any]:
        """Grounding as a service: the ``k`` catalogue items nearest to the text ``q`` (L2 distance)."""
        if is_blank(q):  # a zero-width space too
            raise HTTPException(422, "query.q: give a non-blank title")
        found = recommender.search(q, min(k, recommender.ds.num_items))
        return {"query": q, "items": [{**item_dict(recommender.ds, i), "distance": d} for i, d in found]}

    @app.get("/v1/users")
    def users(
        split: Literal["train", "valid", "test"] | None = None,
        limit: Annotated[int, Q(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        """Users to pick (``split``: those with a sample there, whose target's place can be shown)."""
        known = sorted(all_users if split is None else split_users[split])
        return {"split": split, "users": known[:limit], "total": len(known)}  # total: how many there are

    # HEAD on the other plain GET routes too (RFC 9110 asks it of GET routes; they answered 405), out of the schema;
    # not on a session's event stream, which is read once
    app.add_api_route("/v1/items", items, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/v1/users", users, methods=["HEAD"], include_in_schema=False)

    app.state.batcher = batcher
    return app


class ClientGone(Exception):
    """The client of a /v1/recommend closed its connection before the answer."""


DISCONNECT_POLL_S = 0.5  # how often a waiting /v1/recommend checks that its client is still there
SHUTDOWN_GRACE_S = 5.0  # seconds a stopping server waits for open connections


def serve(run_dir: str, options: ServeOptions, sets: tuple[str, ...] = (), say: Any = print) -> None:
    """Load ``run_dir`` and serve it with uvicorn until interrupted (what ``mgfrec serve`` runs)."""
    import uvicorn

    from mgfrec.recommend import load_recommender

    # before loading the model: a busy port is one line, at once; --port 0 becomes the free port it found. The
    # socket is held from now on (it was a probe, closed again: a server started meanwhile took the port, and this
    # one said "serving" after loading, then failed to bind, exit 3)
    with _listening_socket(options.host, options.port) as listening:
        port = int(listening.getsockname()[1])
        recommender = load_recommender(run_dir, sets)
        try:
            app = create_app(recommender, options)
            config = uvicorn.Config(
                app,
                host=options.host,
                port=port,
                log_level="info",
                access_log=True,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S,  # then open connections are closed, not waited for
            )

            class Server(uvicorn.Server):
                stopped_by: int | None = None

                def handle_exit(self, sig: int, frame: Any) -> None:
                    self.stopped_by = sig
                    if self.should_exit:  # the second Ctrl-C: quit at once, not after the running batch
                        say("stopped at once (second signal): the running batch was dropped")
                        os._exit(128 + sig)
                    again = "Ctrl-C" if sig == signal.SIGINT else f"{signal.Signals(sig).name}"  # no terminal (s40)
                    say(
                        "stopping: waiting requests get 503; the running batch ends first "
                        f"({again} again to quit at once)"
                    )
                    # an open event stream never closes by itself: end its conversation so that it can
                    app.state.stop_conversations()
                    super().handle_exit(sig, frame)

            server = Server(config)
            logging.getLogger("uvicorn.access").addFilter(path_only)
            host = f"[{options.host}]" if ":" in options.host else options.host  # an IPv6 address in a URL
            # the folder's name and run.json's model are untrusted: no escape sequence reaches the terminal
            say(terminal_safe(f"serving {run_dir} ({recommender.kind}, {recommender.method}) at http://{host}:{port}/"))
            server.run(sockets=[listening])
            if server.stopped_by == signal.SIGINT and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
                # started with Ctrl-C ignored (a shell script's background job): the signal uvicorn raises again
                # after its shutdown was ignored too, and the server exited 0 as if it had ended by itself
                raise KeyboardInterrupt
        finally:
            try:
                recommender.close()  # waits for a user agent's requests in flight
            except KeyboardInterrupt as stop:  # a Ctrl-C (or SIGTERM) while it waits: quit at once
                os._exit(getattr(stop, "exit_code", 130))


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (``0``: a free port the system picks now), for uvicorn to serve on;
    an address this process cannot listen on (in use, not this machine's) is refused naming the flags. Connections
    made before the server starts wait in the backlog."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a restart is not refused
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog; listening holds the port (a bound socket alone does not)
    except OSError as exc:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    return sock

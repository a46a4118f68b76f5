"""``mgfrec serve RUN``: the run over HTTP (JSON API, server-sent events, a web page); see docs/serve.md."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import (
    SET_HELP,
    TRAINED_RUN_NOT_READ,
    TRAINED_RUN_READ,
    TRAINED_RUN_SECTIONS,
    console,
    feedback_timeout_option,
    finite_in,
    note_unread_fields,
    print_error,
    user_errors,
)
from mgfrec.cli.quiet import library_output


def serve(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="An agent run (mgfrec sft / fit) or a baseline run."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most requests answered by one batched rollout."),
    queue_size: int = typer.Option(64, "--queue-size", min=1, help="Requests waiting before new ones get 503."),
    timeout: float = typer.Option(
        120.0,
        "--timeout",
        callback=finite_in(0.001),
        help="Seconds one /v1/recommend may wait, at least 0.001 (then 504).",
    ),
    feedback_timeout: float = feedback_timeout_option(
        "Seconds a conversation waits for a person's feedback, 0.001 to a week (604800)."
    ),
    max_sessions: int = typer.Option(32, "--max-sessions", min=1, help="Open conversations before new ones get 503."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Serve a run: POST /v1/recommend, streamed conversations, GET /v1/items and /v1/users, /healthz and a web page
    at /."""
    try:
        from mgfrec.serve.app import ServeOptions
        from mgfrec.serve.app import serve as run_server
    except ImportError as exc:
        print_error(f"mgfrec serve needs the 'serve' extra: pip install 'mgfrec[serve]' ({exc})")
        raise typer.Exit(2) from None
    from mgfrec.signals import sigterm_stops

    # SIGTERM: uvicorn's graceful shutdown, then the run's clean-up (a user agent's requests in flight), exit 143
    with sigterm_stops(), user_errors(), library_output():  # library progress bars only with --verbose
        note_unread_fields(set_, "mgfrec serve", TRAINED_RUN_SECTIONS, TRAINED_RUN_NOT_READ, TRAINED_RUN_READ)
        options = ServeOptions(
            host=host,
            port=port,
            max_batch=max_batch,
            queue_size=queue_size,
            timeout_s=timeout,
            feedback_timeout_s=feedback_timeout,
            max_sessions=max_sessions,
        )
        try:
            run_server(
                str(run_dir),
                options,
                tuple(set_),
                # soft_wrap: the line naming the URL is one line whatever its length (--port 0's port is read from it)
                say=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True),
            )
        except KeyboardInterrupt as stop:  # uvicorn raises the signal again once it has shut down
            raise typer.Exit(getattr(stop, "exit_code", 130)) from None

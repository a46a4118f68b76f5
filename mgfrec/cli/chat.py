"""``mgfrec chat RUN``: the conversation in the terminal; the person is the user agent.

After each grounding the person types feedback, presses Enter to let the run's simulated user answer, or
types ``/answer`` to ask the agent for its final answer now (``/quit`` ends). The agent runs in a worker
thread through :meth:`Recommender.recommend <mgfrec.recommend.Recommender.recommend>` with a ``human`` user
agent; this thread only reads the keyboard and prints the events.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from mgfrec.cli.common import (
    GREEDY_NOT_READ,
    HISTORY_HELP,
    SAMPLE_ID_HELP,
    SET_HELP,
    TRAINED_RUN_NOT_READ,
    TRAINED_RUN_READ,
    TRAINED_RUN_SECTIONS,
    check_history,
    check_split,
    check_user_id,
    console,
    feedback_timeout_option,
    note_other_samples,
    note_short_top,
    note_typed_history,
    note_unread_fields,
    out,
    print_error,
    shown_score,
    split_titles,
    stopped,
    terminal_safe,
    top_title,
    user_errors,
)
from mgfrec.cli.quiet import library_output
from mgfrec.signals import Terminated
from mgfrec.validation import is_blank, not_utf8_at


def chat(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="An agent run folder (from mgfrec sft / fit)."),
    user: str | None = typer.Option(None, "--user", help="A user id of the run's data set."),
    history: str | None = typer.Option(None, "--history", help=HISTORY_HELP),
    split: str | None = typer.Option(
        None,
        "--split",
        help="With --user: that user's latest sample of this split (or --sample-id's); the target's place in the "
        "ranking is shown.",
    ),
    sample_id: int | None = typer.Option(None, "--sample-id", help=SAMPLE_ID_HELP),
    top_k: int = typer.Option(10, "--top-k", min=1, help="How many ranked items to show."),
    timeout: float = feedback_timeout_option("Seconds to wait for your feedback, 0.001 to a week (604800)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Talk to the agent: after each grounding, type your feedback (Enter: the simulated user; /answer: ask for its
    answer now)."""
    from mgfrec.signals import sigterm_stops

    # SIGTERM ends the talk as Ctrl-C does (the agent's turn and a user agent's request end first), exit 143
    with sigterm_stops(), library_output():  # library progress bars only with --verbose, as every command
        try:
            _converse(run_dir, user, history, split, sample_id, top_k, timeout, set_)
        except KeyboardInterrupt as stop:  # while the run loads: nothing to end yet
            stopped(stop)


def _converse(
    run_dir: Path,
    user: str | None,
    history: str | None,
    split: str | None,
    sample_id: int | None,
    top_k: int,
    timeout: float,
    set_: list[str],
) -> None:
    from rich.panel import Panel
    from rich.text import Text

    from mgfrec.config.schema import UserAgentConfig
    from mgfrec.recommend import Query, checked_run_config, load_recommender
    from mgfrec.runs import read_run_info
    from mgfrec.user_agents.base import UserAgentContext, load_user_agent
    from mgfrec.user_agents.human import FeedbackCancelled

    # a stdin that decodes strictly (an en_US.UTF-8 locale) raised on a non-UTF-8 byte at the history prompt (exit 2)
    # and lost the whole buffered chunk at the feedback prompt; kept as surrogates, each line is checked alone
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="surrogateescape")
    with user_errors():
        check_split(split)  # before loading the model
        check_user_id(user)
        check_history(history)
        note_unread_fields(set_, "mgfrec chat", TRAINED_RUN_SECTIONS, TRAINED_RUN_NOT_READ, TRAINED_RUN_READ)
        note_unread_fields(set_, "mgfrec chat", GREEDY_NOT_READ, "it decodes greedily")
        info = read_run_info(run_dir)  # a wrong folder is refused before asking for a history
        if info.kind != "agent":  # refused after the history was typed and the run had loaded (review s30)
            raise ValueError(
                f"{run_dir}: a {info.kind} run has no agent to talk to; chat needs an agent run (sft / fit)"
            )
        # the flags' own combination (--split without --user, --sample-id without --split), before the prompt
        Query(user, None if user is not None else ("a title",), split, top_k, sample_id)
        checked_run_config(run_dir, tuple(set_))  # a plugin the run needs, not installed: named before the prompt
        while user is None and history is None:
            try:
                history = typer.prompt("history (titles separated by ';', oldest first; '\\;' inside a title)")
            except (KeyboardInterrupt, EOFError, typer.Abort) as exc:  # as at the feedback prompt: code 130
                if input_ended(exc):  # piped input that ran out is no Ctrl-C
                    raise ValueError("history: the input ended before a history was given") from None
                if (stop := terminated(exc)) is not None:
                    stopped(stop)
                out.print("\ninterrupted", highlight=False, markup=False)
                raise typer.Exit(130) from None
            if history.strip().lower() == "/quit":  # it was read as a title, and the talk began
                out.print("conversation ended", highlight=False, markup=False)
                raise typer.Exit(0)
            if re.fullmatch(r"/[A-Za-z]+", history.strip()):  # '/answer' was read as a title, and the talk began
                console.print(
                    terminal_safe(
                        f"error: history: {history.strip()!r} is not a title; type the titles the user has had "
                        "(or /quit)"
                    ),
                    highlight=False,
                    markup=False,
                )
                history = None
                continue
            if all(is_blank(t) for t in split_titles(history)):  # ';;': refused after the model had loaded
                console.print("error: history: no title given; type it again", highlight=False, markup=False)
                history = None
            elif (at := not_utf8_at(history)) is not None:  # refused once the model had loaded, and the chat ended
                console.print(
                    f"error: history: not valid UTF-8 text (character {at}); type it again as UTF-8",
                    highlight=False,
                    markup=False,
                )
                history = None
        query = Query(user, tuple(split_titles(history)) if history is not None else None, split, top_k, sample_id)
        console.print(terminal_safe(f"loading {run_dir} ..."), highlight=False, markup=False)
        rec = load_recommender(run_dir, tuple(set_), query)  # an unknown user: refused before the policy loads
        read, _ = rec.history_of(query)  # an empty history is refused here, before the talk
        note_typed_history(query.history_titles and list(query.history_titles), [rec.ds.titles[i] for i in read])
        # the person plays this user: they were asked for feedback on a history they were never shown (review s35)
        shown = terminal_safe([rec.ds.titles[i] for i in read])
        out.print(Panel(Text("\n".join(f"{n}. {t}" for n, t in enumerate(shown, 1))), title="history"))
        if split is not None and sample_id is None:
            note_other_samples(rec.ds, split, user, rec.sample_of(query))
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    waker = _Waker(events)

    def post(event: dict[str, Any]) -> None:  # an event while the person is asked ends the prompt
        events.put(event)
        waker.wake()

    human = load_user_agent(
        UserAgentConfig(backend="human", options={"timeout_s": timeout}),
        UserAgentContext(
            ask=lambda r: post({"type": "feedback_wanted", "note": human.take_note()}),
            fallback=rec.run_user_agent,
        ),
    )

    def work() -> None:
        try:
            result = rec.recommend(query, user_agent=human, listener=lambda n, e: post(e))
            post({"type": "done", "result": result.to_dict(rec.ds)})
        except FeedbackCancelled:
            post({"type": "cancelled"})
        except Exception as exc:  # noqa: BLE001 - shown as one line
            from mgfrec.serve.work import failure_text

            post({"type": "error", "error": failure_text(exc)})

    worker = threading.Thread(target=work, name="mgfrec-chat", daemon=True)
    worker.start()
    code = 0
    try:
        while True:
            event = terminal_safe(events.get())  # untrusted titles and text: shown, never acted on
            kind = event["type"]
            if kind == "turn":
                body = Text()
                if event["think"]:
                    body.append("think: ", style="bold").append(event["think"] + "\n")
                if event["kind"] == "error":
                    body.append(f"format error: {event['error']}", style="red")
                else:
                    body.append(f"{event['kind']}: ", style="bold").append(str(event["title"]))
                out.print(Panel(body, title=f"agent, turn {event['n'] + 1}"))
            elif kind == "feedback_wanted":
                if event.get("note"):  # asked again: the run's user agent failed to stand in
                    out.print(Text(event["note"], style="yellow"))
            elif kind == "observation":
                if event["feedback"] is not None:
                    out.print(Text("feedback: ", style="bold") + Text(event["feedback"] or "(none)"))
            elif kind == "done":
                _result(event["result"])
                note_short_top(event["result"], top_k, rec.ds.num_items)
                break
            elif kind == "cancelled":
                out.print("conversation ended", highlight=False, markup=False)
                break
            else:
                print_error(event["error"])
                code = 1
                break
            if kind == "feedback_wanted":
                _items(human.waiting)
                _ask(human, waker, _enter_answers(rec.cfg.user_agent.backend))
    except (KeyboardInterrupt, EOFError, typer.Abort) as exc:
        if input_ended(exc):  # a script's piped feedback ran out: the conversation ends as with /quit, code 0
            human.cancel("the input ended")
            out.print("\ninput ended: conversation ended", highlight=False, markup=False)
        elif (stop := terminated(exc)) is not None:
            human.cancel("stopped by SIGTERM")
            out.print("\nstopped by SIGTERM", highlight=False, markup=False)
            code = stop.exit_code
        else:
            human.cancel("interrupted")
            out.print("\ninterrupted (Ctrl-C again to quit at once)", highlight=False, markup=False)
            code = 130
    finally:
        waker.close()
        try:  # the agent's turn and a simulated user's request in flight end first
            worker.join(timeout=5)
            rec.close()
        except KeyboardInterrupt as stop:  # a second Ctrl-C (or SIGTERM) while they do: quit at once
            os._exit(getattr(stop, "exit_code", 130))
    if code:
        raise typer.Exit(code)


def terminated(exc: BaseException) -> Terminated | None:
    """The SIGTERM stop behind ``exc``, if it is one: click's prompt turns it into ``Abort``, keeping it as the
    context."""
    for cause in (exc, exc.__context__):
        if isinstance(cause, Terminated):
            return cause
    return None


def input_ended(exc: BaseException) -> bool:
    """Whether a prompt stopped because its input ended (EOF: a pipe ran out) rather than by Ctrl-C; click's
    prompt raises ``Abort`` for both, the EOFError kept as its context."""
    return isinstance(exc, EOFError) or isinstance(exc.__context__, EOFError)


class _Wake(Exception):
    """Raised in the main thread while it waits at the feedback prompt and the agent's side has an event (the wait
    for feedback ran out): the prompt ends, and the event is shown."""


class _Waker:
    """Ends a blocked feedback prompt when the worker posts an event: the prompt ran on until a line was typed, so
    a chat nobody answered sat at it forever after ``--feedback-timeout`` had passed (holding the model). The
    worker signals the main thread (SIGUSR1), whose handler raises :class:`_Wake` only while a prompt waits. Where
    threads cannot be signalled (Windows), the prompt ends when a line is typed, as before."""

    def __init__(self, events: queue.Queue | None = None) -> None:
        self.events = events  # an event already posted when the prompt starts: no signal came for it
        self.prompting = threading.Event()
        self.main = threading.main_thread().ident
        self.usable = hasattr(signal, "pthread_kill") and hasattr(signal, "SIGUSR1")
        self.before: Any = None
        if self.usable and threading.current_thread() is threading.main_thread():
            self.before = signal.signal(signal.SIGUSR1, self._handle)
        else:
            self.usable = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.prompting.is_set():  # read and cleared in this thread: a late signal does nothing
            self.prompting.clear()
            raise _Wake

    def wake(self) -> None:
        if self.usable and self.prompting.is_set():
            signal.pthread_kill(self.main, signal.SIGUSR1)

    def close(self) -> None:
        self.prompting.clear()
        if self.usable:
            signal.signal(signal.SIGUSR1, self.before if self.before is not None else signal.SIG_DFL)
            self.usable = False


def _enter_answers(backend: str) -> str:
    """Who answers an empty reply in ``chat``'s prompt: the run's user agent, named when it is not the simulated
    user (review s39)."""
    if backend == "none":  # no automatic user: an empty reply is no feedback
        return "no feedback"
    return "simulated user" if backend == "simulated" else f"the run's user agent, '{backend}'"


def _ask(human: Any, waker: _Waker | None = None, enter: str = "simulated user") -> None:
    """Prompt until the person's feedback is taken: one that is too long is refused in one line and asked again;
    one typed after the wait ran out is dropped (the agent's next event says what happened). An event of the
    agent's side while the prompt waits (``waker``: the wait ran out) ends the prompt without a reply. ``enter`` says
    who answers an empty reply: the run's user agent (a hosted model's call is paid; it said "simulated user")."""
    while True:
        try:
            if waker is not None:
                waker.prompting.set()
                if waker.events is not None and not waker.events.empty():  # posted before the flag was up
                    waker.prompting.clear()
                    raise _Wake
            try:
                text = typer.prompt(
                    f"your feedback (Enter: {enter}, /answer: ask for the answer, /quit)",
                    default="",
                    show_default=False,
                )
            finally:
                if waker is not None:
                    waker.prompting.clear()
        except _Wake:
            out.print()  # the prompt's line ends; the event that ended it is shown next
            return
        except UnicodeDecodeError as exc:  # a terminal that decodes strictly: it was a traceback, the talk lost
            console.print(
                f"error: feedback: not valid UTF-8 text (byte {exc.start + 1}); type it again as UTF-8",
                highlight=False,
                markup=False,
            )
            continue
        command = text.strip().lower()
        if command.startswith("/") and not command.startswith("//") and command not in ("/quit", "/answer"):
            console.print(
                terminal_safe(
                    f"error: unknown command {text.strip()!r}; the commands are /answer and /quit (start "
                    "feedback with '//' to send text that begins with '/')"
                ),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            continue
        try:
            if command == "/quit":
                human.cancel("you ended the conversation")
            elif command == "/answer":
                human.answer_now()
            else:
                human.reply((text.lstrip()[1:] if command.startswith("//") else text) or None)
        except ValueError as exc:  # too long: the grounding still waits
            console.print(f"error: {exc}; type it again", highlight=False, markup=False, soft_wrap=True)
            continue
        except LookupError:  # nothing waits any more (the feedback timeout passed)
            console.print("too late: the agent stopped waiting for this feedback", highlight=False, markup=False)
        return


def _items(request: Any) -> None:
    from rich.text import Text

    if request is None:
        return
    body = Text(f"grounded: {terminal_safe(request.grounded_title)}\n", style="bold")
    for n, title in enumerate(terminal_safe(list(request.item_titles)), 1):
        body.append(f"  {n}. {title}\n", style="")
    out.print(body)


def _result(p: dict[str, Any]) -> None:
    from rich.table import Table

    out.print(
        f"end: {p['end_reason']} (format {'ok' if p['format_ok'] else 'invalid'}), {p['groundings']} groundings"
        + (f": {p['end_detail']}" if p.get("end_detail") else ""),
        highlight=False,
        markup=False,
    )
    target = p.get("target")
    if not p["top"]:
        out.print("no answer, so no ranking", highlight=False, markup=False)
    else:
        table = Table(title=top_title(p))
        for col in ("#", "item_id", "title", "score"):
            table.add_column(col)
        for n, item in enumerate(p["top"], 1):
            mark = " (target)" if target and item["item_idx"] == target["item_idx"] else ""
            table.add_row(str(n), item["item_id"], item["title"] + mark, shown_score(item["score"]))
        out.print(table)
    if target:
        out.print(
            f"target: {target['title']} at place {target['rank']} (sample {target['sample_id']})",
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line, whatever the terminal's width: scripts read it
        )

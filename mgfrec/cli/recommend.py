"""``mgfrec recommend RUN --user ID | --history "title; title"``: one whole trajectory, shown with rich."""

from __future__ import annotations

import contextlib
from pathlib import Path

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
    note_other_samples,
    note_short_top,
    note_typed_history,
    note_unread_fields,
    out,
    print_json,
    run,
    shown_score,
    split_titles,
    terminal_safe,
    top_title,
)


def recommend(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="An agent run (mgfrec sft / fit) or a baseline run."),
    user: str | None = typer.Option(None, "--user", help="A user id of the run's data set: their latest history."),
    history: str | None = typer.Option(None, "--history", help=HISTORY_HELP),
    split: str | None = typer.Option(
        None,
        "--split",
        help="With --user: that user's latest sample of this split (or --sample-id's); the target's place in the "
        "ranking is reported.",
    ),
    sample_id: int | None = typer.Option(
        None,
        "--sample-id",
        help=SAMPLE_ID_HELP,
    ),
    top_k: int = typer.Option(10, "--top-k", min=1, help="How many ranked items to show."),
    sample: bool = typer.Option(False, "--sample", help="Sample at rollout.temperature instead of greedy."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed for --sample."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Also write the trajectory as a markdown case study (the paper's Fig. 4) to this file."
    ),
) -> None:
    """Run the agent once: its thoughts, grounded titles, item lists, feedback, answer and final top-k."""
    from mgfrec.recommend import recommend as run_recommend

    run(lambda: (check_split(split), check_user_id(user), check_history(history)))
    note_unread_fields(set_, "mgfrec recommend", TRAINED_RUN_SECTIONS, TRAINED_RUN_NOT_READ, TRAINED_RUN_READ)
    titles = split_titles(history) if history is not None else None
    made: list[Path] = []
    if markdown is not None:
        made = run(lambda: _check_file_path(markdown, "--markdown"))  # before the rollout, whose work it would lose
    try:
        rec, ds = run(
            lambda: run_recommend(
                run_dir,
                user=user,
                history_titles=titles,
                split=split,
                sets=tuple(set_),
                top_k=top_k,
                sample=sample,
                seed=seed,
                sample_id=sample_id,
            )
        )
        payload = rec.to_dict(ds)
        _note_unread_sampling(payload["kind"], sample, seed, set_)
        note_typed_history(titles, [h["title"] for h in payload["history"]])
        note_short_top(payload, top_k, ds.num_items)
        if split is not None and sample_id is None:
            note_other_samples(ds, split, user, rec.sample_id)
        if markdown is not None:
            from mgfrec.eval.case_study import write_trajectory_markdown

            who = f"user {user}" if user is not None else "a typed history"
            run(lambda: write_trajectory_markdown(payload, markdown, title=f"Case study: {who}"))
    except BaseException:  # refused, failed or interrupted: the case study's folders made for it go again
        _remove_empty(made)
        raise
    if as_json:
        print_json(payload)
        return
    _show(payload)


def _note_unread_sampling(kind: str, sample: bool, seed: int, set_: list[str]) -> None:
    """Notes on the sampling settings a run did not read: a baseline run reads neither --sample nor --seed, a
    greedy rollout neither --seed nor rollout.temperature / top_p."""
    if kind == "baseline":
        if sample or seed != 0:  # it ranks; nothing is drawn
            typer.echo("note: --sample and --seed are not read for a baseline run (it ranks without drawing)", err=True)
    elif not sample:
        if seed != 0:  # greedy decoding draws nothing: the seed changed nothing, without a word (s32)
            typer.echo("note: --seed is read only with --sample (greedy decoding draws nothing)", err=True)
        note_unread_fields(set_, "mgfrec recommend without --sample", GREEDY_NOT_READ, "it decodes greedily")


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are still empty: made for a file the command did not write."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_file_path(path: Path, flag: str) -> list[Path]:
    """Refuse a path that cannot become a file (a folder, or one under a file), and an existing file that is not
    an earlier case study: a run's config.yaml or a user's notes are never written over. Returns the folders made
    for it (deepest first), to remove again if the command ends before writing it."""
    from mgfrec.eval.case_study import is_case_study

    if path.is_dir():
        raise ValueError(f"{flag} {path}: a folder; give the path of a file to write")
    # only a regular file is read to tell: /dev/stdout, a pipe or a FIFO is written to as it is (reading it waited
    # for the keyboard, or for a writer that never came; /dev/full was read until the process was killed; s37)
    if path.is_file() and not is_case_study(path):
        raise ValueError(
            f"{flag} {path}: exists and is not a case study mgfrec wrote; give a new file (an earlier case study "
            "is replaced)"
        )
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, not a folder")
    made: list[Path] = []
    if existing is not None and existing != path.parent:  # its folder is made now: it failed after the rollout
        made = [p for p in path.parents if not p.exists()]  # deepest first
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _remove_empty(made)  # a part of it may have been made
            raise ValueError(f"{flag} {path}: its folder cannot be made ({exc.strerror or exc})") from None
    try:  # can a file be made there? (/proc, a read-only mount, a name too long: exists() raises for that)
        if not path.exists():
            path.open("x", encoding="utf-8").close()
            path.unlink()
    except OSError as exc:
        _remove_empty(made)
        raise ValueError(f"{flag} {path}: cannot be written ({exc.strerror or exc})") from None
    return made


def _show(p: dict) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    p = terminal_safe(p)  # titles, thoughts and feedback are untrusted: no escape sequence reaches the terminal
    out.print(Panel(Text("\n".join(f"{n + 1}. {h['title']}" for n, h in enumerate(p["history"]))), title="history"))
    if p["recall"]:
        out.print(Panel(Text(", ".join(r["title"] for r in p["recall"])), title=f"recalled ({len(p['recall'])})"))
    for n, turn in enumerate(p["turns"], 1):
        body = Text()
        if turn["think"]:
            body.append("think: ", style="bold").append(turn["think"] + "\n")
        if turn["kind"] == "error":
            body.append(f"format error: {turn['error']}", style="red")
        else:
            body.append(f"{turn['kind']}: ", style="bold").append(str(turn["title"]))
        for i, item in enumerate(turn.get("items", []), 1):
            body.append(f"\n  {i}. {item['title']}")
        if turn.get("feedback"):
            body.append("\nfeedback: ", style="bold").append(turn["feedback"])
        out.print(Panel(body, title=f"turn {n}"))
    if p["kind"] == "baseline":
        out.print("a baseline run: ranked by its scorer, no trajectory", highlight=False, markup=False)
    else:
        fmt = "ok" if p["format_ok"] else "invalid"
        detail = f": {p['end_detail']}" if p.get("end_detail") else ""
        out.print(
            f"end: {p['end_reason']} (format {fmt}), {p['groundings']} groundings{detail}",
            highlight=False,
            markup=False,
        )
    if p["top"]:
        table = Table(title=top_title(p))
        for col in ("#", "item_id", "title", "score"):
            table.add_column(col)
        for n, item in enumerate(p["top"], 1):
            table.add_row(str(n), item["item_id"], item["title"], shown_score(item["score"]))
        out.print(table)
    else:
        out.print("no answer, so no ranking", highlight=False, markup=False)
    if p.get("target"):
        target = p["target"]
        out.print(
            f"target: {target['title']} at place {target['rank']} (sample {target['sample_id']})",
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line, whatever the terminal's width: scripts read it
        )

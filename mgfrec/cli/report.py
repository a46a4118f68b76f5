"""``mgfrec report RUN...``: a Table-4-style comparison of runs with intervals and paired significance."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import (
    CONFIG_HELP,
    SET_HELP,
    check_split,
    console,
    note_unread_config,
    note_unread_sets,
    out,
    output_folder,
    print_json,
    run,
    secret_sets,
)
from mgfrec.cli.flags import load


def report(
    runs: list[Path] = typer.Argument(
        ..., metavar="RUN...", help="Run folders; the first is the reference unless --baseline."
    ),
    split: str | None = typer.Option(None, "--split", help="train, valid or test (default: eval.split, i.e. test)."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="Reference run for the paired tests (default: the first RUN)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", callback=output_folder, help="Also write report_<split>.md, .csv and .json here."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    bootstrap: int | None = typer.Option(
        None,
        "--bootstrap",
        min=0,
        help="Bootstrap resamples (eval.bootstrap_samples; default 1000; 0 = sign test only).",
    ),
    no_evaluate: bool = typer.Option(
        False, "--no-evaluate", help="Fail on a run without eval_<split>.json instead of evaluating it."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="Compare on a seeded subsample of this many samples (agents, and BIGRec, are rolled out on it only).",
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help=SET_HELP + " Only eval.* fields matter here, and a field the run recorded as <redacted> (given again).",
    ),
) -> None:
    """Combine runs' evaluations on SPLIT (evaluating any run that lacks one) into one table: H@K, N@K and
    N_full with bootstrap intervals; each run is paired with the reference on the same samples and a
    difference is marked only when it is significant at 1 - eval.confidence."""
    from mgfrec.eval.report import build_report

    def go():
        check_split(split)
        secrets = secret_sets(set_, [*runs, *([baseline] if baseline is not None else [])])
        note_unread_sets(set_, "mgfrec report", read=secrets)
        kept = [s for s in set_ if s not in secrets]  # a secret is the runs' alone, never this command's config
        cfg = load(config, kept, {"eval.split": split, "eval.bootstrap_samples": bootstrap})
        note_unread_config(config, "mgfrec report")
        with console.status(f"collecting {len(runs)} run(s) on {cfg.eval.split}"):
            rep = build_report(
                runs,
                cfg.eval.split,
                baseline,
                cfg.eval,
                evaluate_missing=not no_evaluate,
                limit=limit,
                secret_sets=secrets,
            )
        rep.terminal_notes()  # reads each agent's agent_<split>.json: a damaged one is a clean error here
        return rep, (rep.write(out_dir) if out_dir is not None else None)

    rep, written = run(go)
    if as_json:
        payload = rep.to_dict()
        if written:
            payload["files"] = {k: str(v) for k, v in written.items()}
        print_json(payload)
        return
    out.print(rep.table(console.width, files=written is not None))  # without --out no file holds the rest
    for note in rep.terminal_notes():
        console.print(note, highlight=False, markup=False)
    if written:
        console.print("wrote " + ", ".join(str(p) for p in written.values()), highlight=False)

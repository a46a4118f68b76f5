"""``mgfrec evaluate RUN``: full-ranking Hit@K / NDCG@K of a run on one split, with bootstrap intervals."""

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
    print_json,
    run,
    secret_sets,
)
from mgfrec.cli.flags import load


def evaluate(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder (holds run.json)."),
    split: str | None = typer.Option(None, "--split", help="train, valid or test (default: eval.split, i.e. test)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Samples scored at once (default eval.batch_size, 256)."
    ),
    rollout_batch_size: int | None = typer.Option(
        None,
        "--rollout-batch-size",
        min=1,
        help="Agent runs: samples rolled out at once (default eval.rollout_batch_size, 32).",
    ),
    bootstrap: int | None = typer.Option(
        None,
        "--bootstrap",
        min=0,
        help="Bootstrap resamples for intervals (eval.bootstrap_samples; default 1000; 0 = none).",
    ),
    no_exclude_history: bool = typer.Option(
        False,
        "--no-exclude-history",
        help="Rank history items too (eval.exclude_history=false; default: leave them out, except the target).",
    ),
    data: Path | None = typer.Option(None, "--data", help="Prepared data folder to use instead of the run's."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Agent runs (and BIGRec): evaluate a seeded subsample."
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help=SET_HELP + " Only eval.* fields matter here, and a field the run recorded as <redacted> (given again).",
    ),
) -> None:
    """Rank the whole catalogue for every sample of SPLIT and report Hit@K, NDCG@K (K from eval.ks),
    NDCG without cut-off and mean rank, each with a bootstrap interval. Writes RUN/eval_<split>.json,
    RUN/eval_<split>.csv and RUN/ranks_<split>.csv."""
    from mgfrec.eval.runs import evaluate_run, subsampled
    from mgfrec.runs import read_run_info
    from mgfrec.staleness import check_agent_current

    def go():
        check_split(split)
        secrets = secret_sets(set_, [run_dir])  # a URL's password the run's config.yaml does not record
        note_unread_sets(set_, "mgfrec evaluate", read=secrets)
        cfg = load(
            config,
            [s for s in set_ if s not in secrets],
            {
                "eval.split": split,
                "eval.bootstrap_samples": bootstrap,
                "eval.batch_size": batch_size,
                "eval.rollout_batch_size": rollout_batch_size,
                "eval.exclude_history": False if no_exclude_history else None,
            },
        )
        note_unread_config(config, "mgfrec evaluate")
        info = read_run_info(run_dir)
        cut = subsampled(info)  # --limit cuts an agent's and BIGRec's evaluation (it loads the retriever's class)
        if limit is not None and info.kind == "baseline" and not cut:
            console.print(
                f"note: --limit applies to agent runs; a baseline is scored on every sample of {cfg.eval.split} "
                "(cheap, and what 'mgfrec report --limit' cuts to the agent runs' subsample)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        if info.kind == "agent":  # refused before the note that its results are replaced
            check_agent_current(run_dir, info, rolling_out=True)
        if cut:  # BIGRec's too: a whole split of generated titles went without a word (review s38)
            _note_replaced(run_dir, cfg.eval.split, limit)
        with console.status(f"evaluating {run_dir} on {cfg.eval.split}"):
            return evaluate_run(
                run_dir,
                cfg.eval.split,
                cfg.eval,
                data=data,
                batch_size=cfg.eval.batch_size,
                exclude_history=cfg.eval.exclude_history,
                limit=limit,
                secret_sets=secrets,
            )

    result = run(go)
    if as_json:
        print_json({**result.to_dict(), "run": str(run_dir)})
        return
    table = result.table()
    table.caption = str(run_dir)
    out.print(table)
    files = ", ".join(
        f"{run_dir}/{name}_{result.split}.{ext}" for name, ext in (("eval", "json"), ("eval", "csv"), ("ranks", "csv"))
    )
    console.print(f"wrote {files}", highlight=False)


def _note_replaced(run_dir: Path, split: str, limit: int | None) -> None:
    """One note when a subsampled run's (an agent's, BIGRec's) stored evaluation of more samples is about to be
    replaced by a subsample's (``--limit``): the earlier files went without a word."""
    from mgfrec.ranking.results import result_paths

    ranks = result_paths(run_dir, split)["ranks"]
    if limit is None or not ranks.is_file():
        return
    with ranks.open(encoding="utf-8") as handle:
        stored = max(sum(1 for _ in handle) - 1, 0)
    if stored > limit:
        console.print(
            # "will be", and only once this one is saved: said before, it was false of an evaluation that then failed
            f"note: {run_dir}'s stored {split} evaluation of {stored} samples will be replaced by this one of {limit} "
            f"once it is done (without --limit, the whole split is evaluated again)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

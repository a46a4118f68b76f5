"""``mgfrec baseline``: train a classical retriever (pop, sasrec, gru4rec, caser, or a plugin's) into a run folder."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from mgfrec.cli.common import (
    CONFIG_HELP,
    DATA_NOT_READ,
    SET_HELP,
    console,
    finite,
    note_fields,
    note_unread_fields,
    output_folder,
    print_json,
    run,
    terminal_safe,
)
from mgfrec.cli.flags import load

app = typer.Typer(help="Train classical baselines / recall models (retrievers).", no_args_is_help=True)


def _check_option_flag(cls: type, field: str, flag: str, name: str) -> None:
    """A flag that maps to ``retriever.options.<field>`` must name a field the model's Options has."""
    fields = getattr(getattr(cls, "Options", None), "model_fields", {})
    if field not in fields:
        raise ValueError(f"{flag}: retriever '{name}' has no '{field}' option (it does not train with one)")


_NOT_TRAINING = ("retriever.model", "retriever.device")


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Prepared data set folder (from 'mgfrec data prepare')."),
    out_dir: Path = typer.Option(
        ..., "--out", callback=output_folder, help="Run folder to write (run.json, config.yaml, weights, log)."
    ),
    model: str | None = typer.Option(None, "--model", help="Retriever name (default: retriever.model, sasrec)."),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    lr: float | None = typer.Option(None, callback=finite, help="Learning rate (retriever.lr; paper 1e-3)."),
    weight_decay: float | None = typer.Option(
        None, callback=finite, help="L2 coefficient (retriever.weight_decay; paper: 1e-3..1e-7)."
    ),
    embedding_dim: int | None = typer.Option(None, help="Embedding size (retriever.embedding_dim; paper 64)."),
    batch_size: int | None = typer.Option(None, help="Training batch size (retriever.batch_size; paper 256)."),
    max_epochs: int | None = typer.Option(None, help="Epoch limit (retriever.max_epochs)."),
    patience: int | None = typer.Option(None, help="Epochs without a valid NDCG@10 gain before stopping."),
    max_steps: int | None = typer.Option(None, help="Stop after this many training steps (retriever.max_steps)."),
    max_seconds: float | None = typer.Option(
        None,
        callback=finite,
        help="Stop after this much training time, in seconds, then validate (retriever.max_seconds).",
    ),
    seed: int | None = typer.Option(None, help="Seed (retriever.seed) for initialisation, shuffling and negatives."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:<i>, mps or auto (retriever.device)."),
    progress: bool = typer.Option(
        False, "--progress", help="Also show Lightning's own progress bar (mgfrec's progress line is always on stderr)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's summary as JSON."),
) -> None:
    """Train a retriever on the train split, early-stopping on valid NDCG@10, and save it to --out."""
    from mgfrec.data.prepared import PreparedDataset
    from mgfrec.registry import registry
    from mgfrec.retrievers.fit import fit_baseline

    def go():
        reg = registry()
        # --set data.history_length=3 was recorded in the run's config.yaml as if the model had used it
        note_unread_fields(set_, "mgfrec baseline fit", ("data",), DATA_NOT_READ)
        note_fields(  # recorded in config.yaml, read by no one: the ranking is the evaluating command's
            set_,
            ["eval.exclude_history"],
            "mgfrec baseline fit validates with the history left out; how a run is ranked is chosen when it is "
            "evaluated (evaluate --no-exclude-history; report, recommend and serve --set eval.exclude_history=false)",
        )
        values = {
            "retriever.model": model,
            "retriever.lr": lr,
            "retriever.weight_decay": weight_decay,
            "retriever.embedding_dim": embedding_dim,
            "retriever.batch_size": batch_size,
            "retriever.max_epochs": max_epochs,
            "retriever.patience": patience,
            "retriever.max_steps": max_steps,
            "retriever.max_seconds": max_seconds,
            "retriever.device": device,
            "retriever.seed": seed,
        }
        cfg = load(config, set_, values)
        cls = reg.load("retriever", cfg.retriever.model)
        read = getattr(cls, "reads_settings", ())  # those it does read though it trains on its own (BIGRec's cap)
        given = [
            f"--{k.split('.')[1].replace('_', '-')}"
            for k, v in values.items()
            if v is not None and k not in _NOT_TRAINING and k not in read
        ]
        reused = cfg.retriever.model == "hybrid" and (cfg.retriever.options or {}).get("collaborative_run")
        side = (cfg.retriever.options or {}).get("collaborative", "sasrec")  # a hybrid's collaborative side
        if given and reused:  # nothing is trained: the reused run's model is blended as it is
            console.print(
                f"note: {', '.join(given)}: the hybrid blends the fitted run retriever.options.collaborative_run "
                "as it is and trains nothing, so they change nothing",
                highlight=False,
                soft_wrap=True,
            )
        elif given and not getattr(cls, "reads_training_settings", True):
            console.print(
                f"note: {', '.join(given)}: retriever '{cfg.retriever.model}' does not read retriever.* training "
                "settings, so they change nothing; its own options are set with --set retriever.options.<field>=...",
                highlight=False,
                soft_wrap=True,
            )
        elif (
            given and cfg.retriever.model == "hybrid" and not reg.declares("retriever", side, "reads_training_settings")
        ):
            console.print(  # the hybrid's own flag said it reads them: its side was judged, not it (review s35)
                f"note: {', '.join(given)}: the hybrid's collaborative side '{side}' does not read retriever.* "
                "training settings, so they change nothing",
                highlight=False,
                soft_wrap=True,
            )
        from mgfrec.config.components import config_value

        device_setting = getattr(cls, "device_setting", None)
        if device is not None and device_setting and not reused:  # bigrec trained on the CPU under --device cuda
            console.print(
                f"note: --device: retriever '{cfg.retriever.model}' trains where {device_setting} says "
                f"({config_value(cfg, device_setting)}), not on retriever.device; set it with --set "
                f"{device_setting}=...",
                highlight=False,
                soft_wrap=True,
            )
        extra = {}
        options = dict(cfg.retriever.options or {})
        if progress and "collaborative_options" in getattr(getattr(cls, "Options", None), "model_fields", {}):
            # a hybrid that trains its own collaborative side: the bar is that model's (it was refused, "it does not
            # train with one", review s30)
            if reused:
                raise ValueError("--progress: the hybrid blends retriever.options.collaborative_run and trains nothing")
            side = options.get("collaborative", "sasrec")
            _check_option_flag(reg.load("retriever", side), "progress_bar", "--progress", side)
            options["collaborative_options"] = {**options.get("collaborative_options", {}), "progress_bar": True}
            cfg = cfg.model_copy(update={"retriever": cfg.retriever.model_copy(update={"options": options})})
        elif progress:
            _check_option_flag(cls, "progress_bar", "--progress", cfg.retriever.model)
            extra["retriever.options.progress_bar"] = True
        if extra:
            cfg = load(config, set_, {**values, **extra})
        ds = PreparedDataset(data)
        from mgfrec.output_folders import check_not_own_subrun, check_output_run

        check_not_own_subrun(out_dir)
        check_output_run(out_dir, "baseline", data=ds.root)  # before saying it fits (fit_baseline checks it too)
        console.print(f"fitting {cfg.retriever.model} on {data} -> {out_dir}", highlight=False)
        return fit_baseline(ds, cfg, out_dir, reg)

    result = run(go)
    from mgfrec.runs import read_run_info

    summary = {
        # the registered name, as run.json has it: a plugin's `name` attribute is optional (a traceback without it,
        # after the run was written), or says something else
        "model": read_run_info(result.run_dir).model,
        "run": str(out_dir),
        "valid_ndcg@10": result.valid_ndcg10,
        "best_epoch": getattr(result.retriever, "best_epoch", None),
        "seconds": round(result.seconds, 2),
        "stopped": getattr(result.retriever, "stopped", None),
        # an earlier finished fit kept because a stop cut this refit short (baseline restore puts it back), else null
        "previous_fit": str(result.previous) if result.previous is not None else None,
    }
    if as_json:
        print_json(summary)
        return
    best = summary["best_epoch"]  # on screen counted from 1, as the progress line counts; run.json keeps its own count
    epoch = f" (best epoch {best + 1 - getattr(result.retriever, 'first_epoch', 0)})" if best is not None else ""
    if summary["stopped"] == "user":
        from mgfrec.signals import stopped_by

        by = stopped_by(getattr(result.retriever, "stop_signal", None))
        console.print(
            f"stopped by {by}: {out_dir} holds the best epoch so far{epoch} and its run.json "
            "(marked stopped: user); rerun the same command to train from the start",
            highlight=False,
        )
        if result.previous is not None:  # a refit cut short: the earlier fit was deleted (review s39)
            console.print(
                f"the earlier fit of {out_dir} is kept in {result.previous}: 'mgfrec baseline restore {out_dir}' "
                "puts it back in place of this one (the next fit there deletes it)",
                highlight=False,
            )
    elif summary["stopped"] in ("time cap", "step cap"):
        console.print(f"stopped at the {summary['stopped']} (retriever.max_seconds / max_steps)", highlight=False)
    valid = "n/a (the valid split has no sample)" if math.isnan(result.valid_ndcg10) else f"{result.valid_ndcg10:.4f}"
    typer.echo(terminal_safe(f"valid NDCG@10 {valid}{epoch}; {summary['seconds']} s; run folder {out_dir}"))


@app.command()
def restore(
    run_dir: Path = typer.Argument(..., help="A baseline run folder whose refit was stopped by Ctrl-C or SIGTERM."),
    as_json: bool = typer.Option(False, "--json", help="Print what was restored as JSON."),
):
    """Put back the earlier fit that a refit stopped by Ctrl-C or SIGTERM kept in RUN/.previous-fit (the stopped
    fit's files go; a user's own files stay)."""
    from mgfrec.retrievers.fit import restore_previous

    info = run(lambda: restore_previous(run_dir))
    valid = info.extra.get("valid_ndcg@10")
    if as_json:
        print_json({"run": str(run_dir), "model": info.model, "valid_ndcg@10": valid, "created": info.created})
        return
    shown = f"{valid:.4f}" if isinstance(valid, float) and not math.isnan(valid) else "n/a"
    said = f"restored the earlier {info.model} fit of {run_dir} (created {info.created}; valid NDCG@10 {shown})"
    typer.echo(terminal_safe(said))

"""``mgfrec demo``: the whole pipeline on the embedded synthetic data set (or ``--data``), on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import CONFIG_HELP, SET_HELP, console, load, out, run


def demo(
    data: str = typer.Option(
        "synthetic", "--data", help="'synthetic' (the embedded default), another source name, or a data folder."
    ),
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the data, runs, report."),
    retriever_epochs: int = typer.Option(
        20, "--retriever-epochs", min=1, help="Epoch limit for SASRec/GRU4Rec/Caser (the demo's CPU budget)."
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP + " Default: configs' CPU defaults."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Prepare data, build the title index, fit the baselines (Pop, last-title, SASRec, GRU4Rec, Caser,
    hybrid), evaluate them all with one full-ranking evaluator and print a Table-4-style report with
    intervals and paired tests. Re-running reuses finished stages."""
    from mgfrec.cli.data import detect_source
    from mgfrec.config.load import write_resolved
    from mgfrec.demo import run_demo
    from mgfrec.registry import registry

    def go():
        name, path = detect_source(data, registry().names("data_source"))
        cfg = load(
            config,
            set_,
            {"data.source": name, "data.path": path, "retriever.max_epochs": retriever_epochs, "retriever.patience": 3},
        )
        write_resolved(cfg, out_dir)
        return run_demo(cfg, out_dir, say=lambda msg: console.print(msg, highlight=False, markup=False))

    result = run(go)
    out.print(result.report.table())
    console.print(
        "The agent stages are not part of the demo yet: run them with 'mgfrec sft', 'mgfrec fit' and "
        "'mgfrec evaluate' (docs/sft.md, docs/fit.md). This table holds the baselines. "
        f"Report files: {', '.join(str(p) for p in result.written.values())}",
        highlight=False,
    )

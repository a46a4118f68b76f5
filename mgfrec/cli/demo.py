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
    agent: bool = typer.Option(True, "--agent/--no-agent", help="Run the agent stages (SFT, GRPO, ablations) after the baselines."),
    fit_steps: int = typer.Option(3, "--fit-steps", min=1, help="GRPO steps of the demo's short fit."),
    sft_samples: int = typer.Option(200, "--sft-samples", min=1, help="Train samples the SFT trajectories are synthesized from."),
    eval_samples: int = typer.Option(
        100, "--eval-samples", min=0, help="Seeded test subsample every method is compared on (0 = the whole split)."
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP + " Default: configs' CPU defaults."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Prepare data, build the title index, fit the baselines (Pop, last-title, SASRec, GRU4Rec, Caser,
    hybrid, BIGRec-style), warm-start the small policy (SFT), train it briefly with GRPO, evaluate MGFRec,
    its SFT start and three ablations beside the baselines with one full-ranking evaluator, print a
    Table-4-style report with intervals and paired tests, and write the figures. Re-running reuses
    finished stages."""
    from mgfrec.data.prepared import detect_source
    from mgfrec.demo import DemoOptions, run_demo

    def go():
        name, path = detect_source(data)
        cfg = load(
            config,
            set_,
            {"data.source": name, "data.path": path, "retriever.max_epochs": retriever_epochs, "retriever.patience": 3},
        )
        options = DemoOptions(agent=agent, fit_steps=fit_steps, sft_train_samples=sft_samples,
                              eval_samples=eval_samples or None)  # fmt: skip
        return run_demo(cfg, out_dir, options=options, say=lambda msg: console.print(msg, highlight=False, markup=False))

    result = run(go)
    out.print(result.report.table())
    limit = f"on a seeded subsample of {eval_samples} test samples" if eval_samples else "on the whole test split"
    console.print(
        f"All rows are compared {limit}; agents are sampled at temperature 1. The ablation rows apply each "
        "ablation to the trained policy at evaluation time (the paper retrains each: mgfrec fit --ablation). "
        f"Files: {', '.join(str(p) for p in result.written.values())}",
        highlight=False,
    )

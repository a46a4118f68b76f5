"""``mgfrec``: the table of subcommands. Each module holds one command group; heavy imports stay inside
the command functions so that ``mgfrec --help`` stays fast."""

from __future__ import annotations

import typer

from mgfrec.cli import baseline, data, demo, evaluate, figures, fit, index, plugins, recommend, report, sft, sweep

app = typer.Typer(
    name="mgfrec",
    help="Reasoning recommenders that think inside the real item space (MGFRec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(plugins.app, name="plugins")
app.add_typer(data.app, name="data")
app.add_typer(index.app, name="index")
app.add_typer(baseline.app, name="baseline")
app.command("evaluate")(evaluate.evaluate)
app.command("report")(report.report)
app.command("sft")(sft.sft)
app.command("fit")(fit.fit)
app.command("recommend")(recommend.recommend)
app.command("sweep")(sweep.sweep)
app.command("figures")(figures.figures)
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

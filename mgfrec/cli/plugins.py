"""``mgfrec plugins list``: every component kind and name, built-in or from a plugin package."""

from __future__ import annotations

import typer
from rich.text import Text

from mgfrec.cli.common import print_json, run

app = typer.Typer(help="Inspect registered components (built-ins and plugin packages).", no_args_is_help=True)


@app.command("list")
def list_(
    kind: str | None = typer.Option(None, "--kind", help="Only this kind."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List components by kind, with the package each comes from. Nothing is imported."""
    from rich import box
    from rich.table import Table

    from mgfrec.cli.common import out
    from mgfrec.registry import KINDS, registry

    reg = run(registry)
    kinds = [kind] if kind else list(KINDS)
    entries = {k: run(lambda k=k: reg.entries(k)) for k in kinds}
    if as_json:
        print_json(
            {k: [{"name": e.name, "target": e.target, "origin": e.origin} for e in es] for k, es in entries.items()}
        )
        return
    # Kind once per group, no vertical rules, the package under the name and the target broken after its
    # module: whole at 80 columns.
    table = Table(title="mgfrec components", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("kind", no_wrap=True)
    table.add_column("name (provided by)", no_wrap=True)
    table.add_column("target (module: object)", overflow="fold")
    for k, es in entries.items():
        if not es:
            table.add_row(k, Text("(none)", style="dim"), "")
        for i, e in enumerate(es):
            module, _, obj = e.target.partition(":")
            table.add_row(
                k if i == 0 else "",
                Text.assemble(f"{e.name}\n", (e.origin, "dim")),
                f"{module}:\n  {obj}" if obj else module,
            )
    out.print(table)

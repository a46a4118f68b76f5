"""``mgfrec plugins list``: every component kind and name, built-in or from a plugin package; ``plugins show``: one
component and its options."""

from __future__ import annotations

import typer
from rich.text import Text

from mgfrec.cli.common import print_json, run, terminal_safe

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
    from mgfrec.registry import KINDS, RegistryError, check_kind, installed_entries, registry, stray_groups

    try:
        reg = registry()
        clash = None
    except RegistryError as exc:  # two packages claim one name: list everything anyway, then say so
        reg, clash = None, str(exc)
    if kind is not None:
        run(lambda: check_kind(kind))  # an unknown --kind is one line, clash or not
    kinds = [kind] if kind else list(KINDS)
    if reg is not None:
        entries = {k: run(lambda k=k: reg.entries(k)) for k in kinds}
    else:
        found = run(installed_entries)  # a damaged plugin package: one line
        entries = {k: sorted((e for e in found if e.kind == k), key=lambda e: e.name) for k in kinds}
    if as_json:
        print_json(
            {k: [{"name": e.name, "target": e.target, "origin": e.origin} for e in es] for k, es in entries.items()}
        )
        _strays(stray_groups(), kind)
        _end(clash)
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
            # a package's names and targets are its text: shown, never acted on (an escape sequence in a name)
            name, origin, target = terminal_safe([e.name, e.origin, e.target])
            module, _, obj = target.partition(":")
            table.add_row(
                k if i == 0 else "",
                Text.assemble(f"{name}\n", (origin, "dim")),
                f"{module}:\n  {obj}" if obj else module,
            )
    out.print(table)
    _strays(stray_groups(), kind)
    _end(clash)


@app.command("show")
def show(
    kind: str = typer.Argument(..., help="The component's kind: data_source, embedder, grounder, retriever, ..."),
    name: str = typer.Argument(..., help="Its name, as 'mgfrec plugins list' gives it."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show one component: where it comes from, what it is, and every option it takes (type, default, bounds,
    meaning). Imports that component."""
    from rich import box
    from rich.table import Table

    from mgfrec.cli.common import out
    from mgfrec.config.component_card import component_card

    card = run(lambda: component_card(kind, name))
    if as_json:
        print_json(card)
        return
    # a package's names, text and defaults are its own: shown, never acted on (an escape sequence in a docstring)
    head, summary, where = terminal_safe([f"{card['kind']} '{card['name']}'", card["summary"], card["options_at"]])
    target, origin = terminal_safe([card["target"], card["origin"]])
    out.print(Text.assemble((head, "bold"), f"  {target}  (from {origin})"), soft_wrap=True)
    if summary:
        out.print(summary, highlight=False, soft_wrap=True)
    if card["options"] is None:
        out.print(Text(f"It takes no options ({where} must be empty).", style="dim"), soft_wrap=True)
        return
    if not card["options"]:
        out.print(Text(f"Its options model has no fields ({where} must be empty).", style="dim"), soft_wrap=True)
        return
    table = Table(title=f"options, set as {where}.FIELD", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for column in ("field", "type", "default", "bounds", "meaning"):
        table.add_column(column, overflow="fold", no_wrap=column == "field")
    for row in card["options"]:
        table.add_row(*terminal_safe([row[c] for c in ("name", "type", "default", "bounds", "meaning")]))
    out.print(table)


def _strays(strays: list, kind: str | None) -> None:
    """A warning on stderr for each package whose entry points sit under a group mgfrec does not read (a typo in
    its ``pyproject.toml``): they are in no list above, and nothing else would say why. With ``--kind``, the
    groups close to that kind's, and those close to none."""
    from mgfrec.cli.common import console
    from mgfrec.registry import GROUP_PREFIX

    for stray in strays:
        if kind is not None and stray.closest not in (None, GROUP_PREFIX + kind):
            continue
        line = terminal_safe([stray.describe()])[0]  # a package's names are its text: shown, never acted on
        console.print(Text.assemble(("warning:", "bold yellow"), " ", line), highlight=False, soft_wrap=True)


def _end(clash: str | None) -> None:
    """After the list: a name claimed twice is still an error (every other command refuses it)."""
    if clash is not None:
        from mgfrec.cli.common import print_error

        print_error(clash)
        raise typer.Exit(2)

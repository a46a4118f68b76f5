"""``mgfrec index``: embed a catalogue's titles (cached on disk), build the grounding index, look titles up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mgfrec.cli.common import CONFIG_HELP, SET_HELP, console, out, print_error, print_json, run, terminal_safe
from mgfrec.cli.flags import load

app = typer.Typer(help="Embed item titles and build or query the grounding index.", no_args_is_help=True)

DATA_HELP = "A prepared data set folder (mgfrec data prepare)."


def _config(
    config: str | None,
    set_: list[str],
    embedder: str | None,
    model: str | None,
    grounder: str | None,
    device: str | None,
    batch_size: int | None,
) -> Any:
    return load(
        config,
        set_,
        {
            "embedding.embedder": embedder,
            "embedding.model": model,
            "embedding.device": device,
            "embedding.batch_size": batch_size,
            "grounding.grounder": grounder,
        },
    )


def _dataset(data: Path) -> Any:
    from mgfrec.data.prepared import PreparedDataset

    return PreparedDataset(data)


def _prepare(ds: Any, cfg: Any, progress: bool) -> Any:
    """:func:`mgfrec.grounding.engine.build_index` of a ``PreparedDataset`` with a spinner; a missing extra as one
    line."""
    from mgfrec.grounding.engine import build_index
    from mgfrec.registry import MissingExtraError

    def on_miss(titles: int, path: Path) -> None:  # on stderr, so also with --json
        console.print(
            f"no cached title vectors for this catalogue and model yet: embedding {titles:,} titles "
            f"first (once; later commands read {path.parent})",
            highlight=False,
        )

    try:
        return build_index(ds, cfg, progress=progress, status=console.status, on_miss=on_miss)
    except MissingExtraError as exc:  # not an ImportError traceback: the user has a clear fix
        raise ValueError(str(exc)) from None


@app.command()
def build(
    data: Path = typer.Argument(..., help=DATA_HELP),
    embedder: str | None = typer.Option(None, "--embedder", help="embedder component (default sentence-transformers)."),
    model: str | None = typer.Option(
        None, "--model", help="Embedding model: hub id, local folder, or bundled:all-MiniLM-L6-v2."
    ),
    grounder: str | None = typer.Option(
        None,
        "--grounder",
        help="grounder component: exact (default), faiss, hnswlib or a plugin's (mgfrec plugins list).",
    ),
    device: str | None = typer.Option(None, "--device", help="Embedding device, e.g. cpu or cuda."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Titles per embedding batch."),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as one JSON object."),
) -> None:
    """Embed the catalogue's titles (or read them from the cache) and build the configured grounder."""
    cfg = run(lambda: _config(config, set_, embedder, model, grounder, device, batch_size))
    report = run(lambda: _prepare(_dataset(data), cfg, progress=not as_json)).report
    if report["titles_sharing_a_vector"]:
        cased = report["titles_differing_only_in_case"]
        case = f"; {cased:,} of them differ from another only in letter case" if cased else ""
        console.print(
            f"note: {report['titles_sharing_a_vector']:,} distinct titles share their vector with another title (the "
            f"embedder reads them alike{_why_alike(cfg)}{case}); each such group grounds and ranks as one",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"index for {data}", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")  # long cache paths wrap instead of being cut
    table.add_row("items", f"{report['items']:,}")
    if report["distinct_vectors"] is not None:
        table.add_row("distinct vectors", f"{report['distinct_vectors']:,}")
    table.add_row("dim", str(report["dim"]))
    table.add_row("model", report["model_id"])
    table.add_row("cache", f"{report['cache']} in {report['embedding_seconds']:.2f} s")
    table.add_row("cache path", report["cache_path"])
    # A grounder says whether its search is approximate if it wants to (built-ins do); one that does not is
    # reported as such, not as something wrong.
    kind = {True: "approximate search", False: "exact search", None: "search kind not declared"}[report["approximate"]]
    table.add_row("grounder", f"{report['grounder']}, {kind}, built in {report['grounder_build_seconds']:.2f} s")
    out.print(table)


@app.command()
def query(
    data: Path = typer.Argument(..., help=DATA_HELP),
    titles: list[str] = typer.Argument(..., help="One or more free-text titles to ground."),
    k: int | None = typer.Option(
        None,
        "-k",
        "--top-k",
        min=1,
        help="Items per title (default grounding.top_k, 10, at most the catalogue's size).",
    ),
    embedder: str | None = typer.Option(None, "--embedder", help="embedder component."),
    model: str | None = typer.Option(None, "--model", help="Embedding model."),
    grounder: str | None = typer.Option(None, "--grounder", help="grounder component."),
    device: str | None = typer.Option(None, "--device", help="Embedding device."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Titles per embedding batch."),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Ground titles as the agent's <ground> call does: the nearest catalogue items (by L2 distance with the
    built-in grounders; a plugin grounder's own measure otherwise)."""
    import numpy as np

    from mgfrec.validation import is_blank

    # a zero-width space or a BOM alone shows nothing either (str.strip keeps them): serve's /v1/items refuses it
    blank = [n for n, title in enumerate(titles, 1) if is_blank(title)]
    if blank:  # serve refuses a blank title too; it grounds to arbitrary items
        print_error(f"TITLES: title {blank[0]} is blank; give the text to ground")
        raise typer.Exit(2)
    cfg = run(lambda: _config(config, set_, embedder, model, grounder, device, batch_size))
    ds = run(lambda: _dataset(data))
    # checked before the catalogue is embedded: that cost 28 s (a first run) to refuse a -k it could never answer
    num_items = run(lambda: ds.num_items)
    if k is not None and k > num_items:
        print_error(f"-k/--top-k {k}: the catalogue of {data} has {num_items} items; give at most that")
        raise typer.Exit(2)
    built = run(lambda: _prepare(ds, cfg, progress=not as_json))
    engine, items = built.grounding, built.ds.items
    if k is None:  # grounding.top_k, but never more than a small catalogue holds
        k = min(engine.top_k, len(items))
    indices, distances = run(lambda: engine.search(titles, k))
    results = [
        {
            "query": title,
            "items": [
                {
                    "rank": r + 1,
                    "item_idx": int(i),
                    "item_id": str(items["item_id"].iat[i]),
                    "title": engine.titles[i],
                    # the float32 value's shortest round-trip text: round(d, 6) showed two distances as equal and
                    # out of index order, though the tie rule orders them (review s39)
                    "distance": float(str(np.float32(d))),
                }
                for r, (i, d) in enumerate(zip(row_idx, row_dist, strict=False))
            ],
        }
        for title, row_idx, row_dist in zip(titles, indices, distances, strict=False)
    ]
    if as_json:
        print_json(results)
        return
    from rich.table import Table

    for result in terminal_safe(results):  # catalogue titles are untrusted: no escape sequence reaches the terminal
        table = Table(title=f"<ground>{result['query']}</ground>")
        for column in ("rank", "item_idx", "item_id", "distance", "title"):
            table.add_column(column, justify="right" if column in ("rank", "item_idx", "distance") else "left")
        for row in result["items"]:
            table.add_row(
                str(row["rank"]), str(row["item_idx"]), row["item_id"], f"{row['distance']:.4f}", row["title"]
            )
        out.print(table)


def _why_alike(cfg) -> str:
    """Why the built-in sentence-transformers embedder reads titles alike (its tokenizer's unknown token); another
    embedder's reasons are its own."""
    if cfg.embedding.embedder == "sentence-transformers":  # it cuts a title at its max_seq_length (MiniLM: 256)
        return ": emoji-only titles, one long unknown word, long titles alike up to where the model stops reading"
    return ""

"""``mgfrec figures RUN_OR_SWEEP...``: the paper's section-5 figures as PNG files."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import console, output_folder, print_json, run


def figures(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="RUN_OR_SWEEP...",
        help="Run folders (metrics.csv, agent_<split>_samples.csv) or sweep folders (sweep.json).",
    ),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        callback=output_folder,
        help="Folder for the PNG files (prefixed with each folder's name).",
    ),
    split: str = typer.Option(
        "valid",
        "--split",
        help="Evaluated split of the difficulty-band and mean-rank figures.",
    ),
    metric: str = typer.Option(
        "ndcg_full",
        "--metric",
        help="Summary metric of the sweep curves (ndcg_full, ndcg@10, mean_rank).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the written files as a JSON list."),
) -> None:
    """Reward and response-length curves (Fig. 6) of runs; metric vs swept value (Figs. 7-8) and mean rank vs grounding
    limit (Fig. 5-like: limits trained, not the paper's inference-time ones) of sweeps; mean difficulty per grounding
    band (Fig. 3) of evaluated agent runs."""
    from mgfrec.eval.figures import check_figure_args, figures_for, is_agent_run, other_split_samples, unfinished_notes

    def go():
        check_figure_args(paths, split, metric)  # every folder first: no figure written before an error
        names: dict[str, Path] = {}
        for path in paths:  # files are prefixed with the folder's name: two folders of one name would overwrite
            name = Path(path).resolve().name
            if name in names and names[name].resolve() == Path(path).resolve():  # it was drawn twice
                raise ValueError(f"{names[name]} and {path} are one folder; give each folder once")
            other = names.setdefault(name, Path(path))
            if other.resolve() != Path(path).resolve():
                raise ValueError(
                    f"{other} and {path} have the same folder name, so their figures would overwrite each other "
                    "in --out; draw them into two --out folders"
                )
        written = [str(p) for path in paths for p in figures_for(path, out_dir, split, metric)]
        for note in (note for path in paths for note in unfinished_notes(path)):  # drawn all the same, said
            console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        for path in paths:  # an agent run evaluated on another split only: its difficulty figure was left out
            found, other = other_split_samples(path)
            if (Path(path) / f"agent_{split}_samples.csv").is_file():
                continue
            if other:
                hint = f"{found} found: --split {other} draws it"
            elif is_agent_run(path):  # never evaluated: only its curves were drawn, without a word (review s38)
                hint = f"mgfrec evaluate {path} --split {split} writes it"
            else:
                continue
            console.print(
                f"note: {path} has no agent_{split}_samples.csv, so no difficulty figure ({hint})",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        return written

    written = run(go)
    if as_json:
        print_json(written)
        return
    for path in written:
        console.print(path, highlight=False, markup=False)

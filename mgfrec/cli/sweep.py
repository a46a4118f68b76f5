"""``mgfrec sweep``: one ``mgfrec fit`` + ``mgfrec evaluate`` per cell of a grid of config values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mgfrec.cli.common import (
    CONFIG_HELP,
    DATA_NOT_READ,
    SET_HELP,
    console,
    note_unread_fields,
    out,
    output_folder,
    print_json,
    run,
    terminal_safe,
)
from mgfrec.cli.flags import check_ablation, load
from mgfrec.config.schema import DEFAULT_RECALL_MODEL


def _never_read(field: str, init: Path | None) -> str | None:
    """Why a sweep's cells never read ``field`` (the rest of the message after the field), or None when they do:
    ``eval.split`` (each cell is evaluated on --eval-split) and, with ``--init``, the policy and the recall model's
    settings, which are --init's (only ``retriever.recall_size``, how much of its list is shown, is read)."""
    if field == "eval.split":
        return ": the cells are evaluated on --eval-split; give the splits there"
    if init is not None and field == "policy.model":
        return f" with --init {init}: every cell starts from --init's policy"
    if init is not None and field.startswith("retriever.") and field != "retriever.recall_size":
        return (
            f" with --init {init}: every cell uses --init's recall run; only retriever.recall_size (how much of its "
            "list is shown) is read"
        )
    return None


def _fields_given(field: str, values: list[Any]) -> list[str]:
    """The dotted fields a ``--grid`` entry gives: ``field`` itself, or, for a mapping given whole, each field inside
    it (a mapping merges: ``retriever={embedding_dim: 32}`` sets retriever.embedding_dim alone); an empty mapping,
    which replaces, is ``field`` itself (:func:`~mgfrec.config.load.flat_fields`). The checks below read these: a
    section given whole got past every one of them (review s40)."""
    from mgfrec.config.load import flat_fields

    return list(dict.fromkeys(key for value in values for key in flat_fields(value, f"{field}.")))


def _set_fields(text: str) -> list[str]:
    """The dotted fields one ``--set section.field=value`` gives, as :func:`_fields_given` reads a grid entry."""
    from mgfrec.config.load import flat_fields, parse_override

    return list(flat_fields(parse_override(text)))


def sweep(
    data: Path = typer.Option(..., "--data", help="Prepared data set folder (from 'mgfrec data prepare')."),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        callback=output_folder,
        help="Sweep folder: one run folder per cell, sweep.json, summary.csv/.md.",
    ),
    grid: list[str] = typer.Option(
        [],
        "--grid",
        help="section.field=v1,v2,... (repeatable; cells are the cartesian product).",
    ),
    grid_file: Path | None = typer.Option(
        None,
        "--grid-file",
        help="YAML mapping section.field -> list of values; a --grid of the same field replaces its values.",
    ),
    init: Path | None = typer.Option(None, "--init", help="SFT/agent run folder every cell starts from."),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP + " Applies to every cell; the grid wins."),
    ablation: str | None = typer.Option(
        None,
        "--ablation",
        help="Ablation preset for every cell: full, no-multi-grounding, no-feedback, no-recall.",
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="trainer.max_steps of every cell."),
    eval_split: list[str] = typer.Option(
        ["valid"],
        "--eval-split",
        help="Splits to evaluate each cell on (repeatable); the first feeds the summary.",
    ),
    eval_limit: int | None = typer.Option(
        None,
        "--eval-limit",
        min=1,
        help="Evaluate a seeded subsample of this many samples.",
    ),
    recall_model: str | None = typer.Option(
        None,
        "--recall-model",
        help=f"Retriever fitted into each cell without --init (retriever.model; default {DEFAULT_RECALL_MODEL}; "
        "--grid retriever.model=... sweeps it).",
    ),
    max_train_samples: int | None = typer.Option(None, min=1, help="Seeded subsample of the train split."),
    valid_samples: int = typer.Option(
        100, min=0, help="Valid samples of each run's validation (greedy unless eval.greedy=false)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary rows as JSON."),
) -> None:
    """Train and evaluate one run per grid cell into OUT/<field>=<value>; a failed cell is recorded in
    OUT/sweep.json and the sweep goes on. Run it again to skip finished cells and resume the others."""
    from mgfrec.data.prepared import PreparedDataset
    from mgfrec.experiments.ablations import apply_ablation
    from mgfrec.experiments.grid import build_grid
    from mgfrec.experiments.summary import summary_table
    from mgfrec.experiments.sweep import fit_and_evaluate, run_sweep
    from mgfrec.rl.fit import FitOptions, start_point
    from mgfrec.rl.init_run import init_note
    from mgfrec.runs import read_run_info

    def go():
        from mgfrec.data.protocol import SPLITS

        if recall_model is not None and init is not None:  # taken, recorded, and never read: the cells read --init's
            raise ValueError(
                f"--recall-model {recall_model} and --init {init}: the cells' fit reads --init's recall run; give one"
            )
        wrong = [s for s in eval_split if s not in SPLITS]
        if wrong:  # found before any cell trains, not after the first one has
            raise ValueError(f"--eval-split {wrong[0]!r}: choose one of {', '.join(SPLITS)}")
        cells_grid = build_grid(
            grid, grid_file, say=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True)
        )
        # fields every cell would take without reading them, refused in --grid (each cell named for a value it never
        # used) and in --set (taken without a word) alike
        swept = [f for field, cell_values in cells_grid.items() for f in _fields_given(field, cell_values)]
        for flag, fields in (("--grid", swept), ("--set", [f for t in set_ for f in _set_fields(t)])):
            for field in fields:
                if (why := _never_read(field, init)) is not None:
                    raise ValueError(f"{flag} {field}{why}")
        unread = next((field for field in swept if field.split(".")[0] == "data"), None)
        if unread is not None:  # every cell trained on --data: identical cells, each config.yaml claiming its value
            raise ValueError(f"--grid {unread}: the cells' fit does not read data.*; {DATA_NOT_READ}, one per value")
        values = {"trainer.max_steps": max_steps, "retriever.model": recall_model}
        flags = {"trainer.max_steps": "--max-steps", "retriever.model": "--recall-model"}
        for dotted, value in values.items():  # the grid's values won, the flag's was lost and recorded (review s33)
            given = next((f for f in swept if dotted == f or dotted.startswith(f + ".")), None)
            if value is None or given is None:
                continue
            if dotted == "retriever.model":  # noted, not refused: a sweep made so records the flag, and its rerun
                # needs it given again (refused without it: "other settings (--recall-model ...)")
                console.print(
                    f"note: --recall-model {value} is not read: each cell fits the recall model --grid {given} "
                    "gives it (the flag is recorded with the sweep's settings, as before)",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
                continue
            raise ValueError(
                f"{flags[dotted]} {value} and --grid {given} set {dotted} to two values (each cell takes the "
                "grid's); give one of them"
            )
        cfg = load(config, set_, values)
        note_unread_fields(set_, "mgfrec sweep", ("data",), DATA_NOT_READ)
        if any(not isinstance(ks, list) or 10 not in ks for ks in cells_grid.get("eval.ks", [list(cfg.eval.ks)])):
            # the summary's ndcg@10 columns were null in every row without a word (review s31)
            console.print(
                "note: eval.ks holds no 10, so the summary's ndcg@10 columns stay empty (ndcg_full and mean_rank are "
                "there; figures --metric ndcg_full)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        if ablation is not None:
            check_ablation(ablation, values, set_, tuple(swept))
            cfg = apply_ablation(cfg, ablation)
        if init is not None and (note := init_note(init, cfg, swept=tuple(swept), what="the cells'")):
            # fit --init says it; every cell of a sweep trained on prompts of another shape without a word (s40)
            console.print(terminal_safe(note), highlight=False, markup=False, soft_wrap=True)
        options = FitOptions(
            init=str(init) if init is not None else None,
            recall_model=None,  # each cell's retriever.model: --recall-model, --set or the grid
            max_train_samples=max_train_samples,
            valid_samples=valid_samples,
        )
        ds = PreparedDataset(data)
        start_point(options, ds)  # a wrong --data or --init is refused once, not in every cell

        def say(s: str) -> None:
            console.print(s, highlight=False, markup=False)

        runner = fit_and_evaluate(data, options, tuple(eval_split), eval_limit, say=say)
        settings = {
            "data": str(Path(data).resolve()),
            "fit": {
                "init": str(Path(init).resolve()) if init is not None else None,
                # the cells' own, unless the grid sweeps it; with --init, the init's recall run (none read here)
                "recall_model": cfg.retriever.model if init is None else None,
                "max_train_samples": max_train_samples,
                "valid_samples": valid_samples,
            },
            "eval_splits": list(eval_split),
            "eval_limit": eval_limit,
            # the data set prepared again, or --init trained again, in place: the cells of before were mixed with
            # the new ones in one summary and one figure (compared per cell; outside the settings' digest)
            "inputs": {
                "data_checksum": ds.checksum,
                **({"init_created": read_run_info(init).created} if init is not None else {}),
            },
        }
        return run_sweep(cfg, cells_grid, out_dir, runner, settings=settings, say=say)

    rows = run(go)
    if as_json:
        print_json(rows)
    else:
        out.print(summary_table(rows, title=f"sweep {out_dir} ({eval_split[0] if eval_split else 'valid'} split)"))
    failed = [r["cell"] for r in rows if r["status"] != "finished"]
    if failed:
        console.print(
            f"{len(failed)} cell(s) failed: {', '.join(failed)} (each one's error is above and in "
            f"{out_dir / 'sweep.json'}); fix what it names and run the same command again: finished cells are kept",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)

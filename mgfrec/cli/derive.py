"""``mgfrec derive RUN OUT``: an evaluation-only run folder reading a trained agent another way."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import console, output_folder, override_section, print_json, run


def derive(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A trained agent run (mgfrec sft / fit)."),
    out_dir: Path = typer.Argument(
        ..., metavar="OUT", callback=output_folder, help="The folder to write (created; reused if it exists)."
    ),
    ablation: str | None = typer.Option(
        None, "--ablation", help="Remove one part at evaluation: no-multi-grounding, no-feedback, no-recall, full."
    ),
    variant: str | None = typer.Option(
        None, "--variant", help="Another reading of the same answers: answer-first, joint-l2."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a field of the derived run's config after the preset, e.g. --set agent.joint_title_weight=0.5 "
        "(repeatable).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Write OUT: RUN's policy and recall run with one ablation (--ablation) or evaluation variant (--variant)
    applied at evaluation only, nothing trained or copied. Then 'mgfrec evaluate OUT' or 'mgfrec report RUN OUT'
    treat it like any agent run (the demo's mgfrec-no-feedback, mgfrec-joint-l2, ... rows are made this way)."""
    from mgfrec.config.load import redacted_override
    from mgfrec.experiments.ablations import derive_ablation_run, derive_variant_run

    def go() -> Path:
        if (ablation is None) == (variant is None):
            raise ValueError("give exactly one of --ablation or --variant")
        if ablation is not None:
            return derive_ablation_run(run_dir, ablation, out_dir, set_)
        return derive_variant_run(run_dir, str(variant), out_dir, set_)

    written = run(go)
    # a derive clears earlier results unless OUT already held this very derivation (review s31): then they are kept
    kept = sorted(p.name for p in Path(written).glob("eval_*.json"))
    evaluation = [s for s in set_ if override_section(s) == "eval"]
    if evaluation:  # mgfrec evaluate / report read eval.* from their own flags, never from a run's config.yaml
        console.print(
            f"note: --set {' '.join(evaluation)}: recorded in {written}/config.yaml, but mgfrec evaluate and report "
            "take eval.* from their own --set (e.g. mgfrec evaluate OUT --set eval.greedy=false)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if as_json:
        kind, name = ("ablation", ablation) if ablation is not None else ("variant", variant)
        print_json(
            {
                "run": str(written),
                "trained_run": str(run_dir),
                kind: name,
                "overrides": [redacted_override(s) for s in set_],
                "kept_evaluations": kept,
            }
        )
        return
    if kept:
        console.print(
            f"{written} holds this derivation already; its evaluations ({', '.join(kept)}) are kept, and "
            f"mgfrec report reads them",
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(f"wrote {written}; evaluate it with: mgfrec evaluate {written}", highlight=False, soft_wrap=True)

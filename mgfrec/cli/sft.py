"""``mgfrec sft``: warm-start the policy on synthesized trajectories so it knows the format before GRPO."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from mgfrec.cli.common import (
    CONFIG_HELP,
    DATA_NOT_READ,
    SET_HELP,
    console,
    finite,
    note_unread_fields,
    output_folder,
    print_json,
    run,
    terminal_safe,
    unused_recall_sets,
)
from mgfrec.cli.flags import load
from mgfrec.config.schema import DEFAULT_RECALL_MODEL


def sft(
    data: Path = typer.Option(..., "--data", help="Prepared data set folder (from 'mgfrec data prepare')."),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        callback=output_folder,
        help="Run folder to write (policy/, run.json, config.yaml, sft_metrics.csv).",
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    policy: str | None = typer.Option(
        None, "--policy", help="Policy to warm-start (policy.model; default preset:tiny)."
    ),
    gradient_checkpointing: bool = typer.Option(
        False,
        "--gradient-checkpointing",
        help="Recompute activations in the backward pass: less memory, more compute (policy.gradient_checkpointing).",
    ),
    recall_model: str | None = typer.Option(
        None,
        "--recall-model",
        help="Retriever fitted into OUT/recall for the prompt's recall list (retriever.model; default "
        f"{DEFAULT_RECALL_MODEL}).",
    ),
    recall_run: Path | None = typer.Option(
        None, "--recall-run", help="Use this baseline run folder's recall lists instead."
    ),
    epochs: int = typer.Option(3, min=0, help="Passes over the synthesized trajectories."),
    lr: float = typer.Option(2e-3, callback=finite, help="AdamW learning rate."),
    batch_size: int = typer.Option(8, min=1, help="Trajectories per optimizer step."),
    max_train_samples: int | None = typer.Option(
        300, min=1, help="Seeded subsample of train samples to synthesize from (CPU-sized; raise it on a GPU)."
    ),
    valid_samples: int = typer.Option(
        100, min=0, help="Valid samples the agent is evaluated on per epoch (greedy unless eval.greedy=false)."
    ),
    fallback: str = typer.Option(
        "recall", help="Answer when the target was never shown: 'recall' (the recall list's best) or 'nearest'."
    ),
    second_grounding: bool = typer.Option(True, help="Let the teacher ground twice when the first list misses."),
    teacher: str = typer.Option(
        "target",
        help="What the demonstrations answer: 'target' (the target when it was shown) or 'recall' (always the "
        "recall list's first item, after grounding it).",
    ),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seeds subsampling, initialisation and batch order."),
    progress: bool = typer.Option(True, help="Show the training progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
) -> None:
    """Synthesize trajectories from train samples (ground on listed titles, answer with a copied title),
    train the policy on its own tokens, evaluate it on valid (greedy, or sampled with --set eval.greedy=false),
    and save it to OUT/policy."""
    from mgfrec.output_folders import removed_if_left_empty
    from mgfrec.rl.sft import SFTOptions, run_sft

    def go():
        if fallback not in ("recall", "nearest"):
            raise ValueError(f"--fallback: '{fallback}' is not one of recall, nearest")
        if teacher not in ("target", "recall"):
            raise ValueError(f"--teacher: '{teacher}' is not one of target, recall")
        if recall_model is not None and recall_run is not None:  # it was taken and overwritten by the run's model
            raise ValueError(
                f"--recall-model {recall_model} and --recall-run {recall_run}: the recall lists come from "
                "--recall-run's run; give one"
            )
        sets = set_ if recall_run is None else unused_recall_sets(set_, f"--recall-run {recall_run}")
        cfg = load(
            config,
            sets,
            {
                "policy.model": policy,
                "policy.gradient_checkpointing": True if gradient_checkpointing else None,
                "retriever.model": recall_model,  # was kept apart: --set retriever.model was overwritten, silently
            },
        )
        note_unread_fields(
            sets,
            "mgfrec sft",
            ("data", "grpo", "trainer"),
            f"its own flags set the training (--lr, --epochs, --batch-size); {DATA_NOT_READ}",
            read=("trainer.accelerator",),
        )
        options = SFTOptions(
            recall_model=None,  # the config's retriever.model, which --recall-model sets
            recall_run=str(recall_run) if recall_run is not None else None,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            max_train_samples=max_train_samples,
            valid_samples=valid_samples,
            seed=seed,
            fallback=fallback,  # type: ignore[arg-type]
            teacher=teacher,  # type: ignore[arg-type]
            second_grounding=second_grounding,
            progress=progress,
        )
        console.print(f"sft {cfg.policy.model} on {data} -> {out_dir}", highlight=False)
        with removed_if_left_empty(out_dir):  # an SFT refused half-way leaves no empty folder
            return run_sft(data, out_dir, cfg, options, say=lambda s: console.print(s, highlight=False))

    result = run(go)
    summary = {
        "run": str(out_dir),
        "policy": str(Path(out_dir) / "policy"),
        "synthesis": result.synthesis,
        "untrained": result.history[0],
        "final": result.history[-1],
        "seconds": round(result.seconds, 1),
    }
    if as_json:
        print_json(summary)
        return
    final = result.history[-1]
    # --valid-samples 8 on a data set whose valid split is empty said "(--valid-samples 0)" (review s32)
    why = "--valid-samples 0" if valid_samples == 0 else f"the valid split of {data} holds no sample"
    valid = (
        f"no validation ({why})"
        if math.isnan(final["format_valid"])
        else f"format-valid {final['format_valid']:.3f}, ndcg_full {final['ndcg_full']:.4f}, "
        f"NDCG@10 {final['ndcg@10']:.4f}"
    )
    typer.echo(terminal_safe(f"valid: {valid}; policy {summary['policy']}; {summary['seconds']} s"))

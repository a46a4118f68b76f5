"""``mgfrec fit``: train the agent with GRPO (paper section 3.3), from an SFT warm start or a fresh policy."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mgfrec.cli.common import (
    CONFIG_HELP,
    DATA_NOT_READ,
    SET_HELP,
    console,
    finite,
    finite_in,
    note_unread_fields,
    output_folder,
    print_json,
    run,
    terminal_safe,
    unused_recall_sets,
)
from mgfrec.cli.flags import check_ablation, load
from mgfrec.config.schema import DEFAULT_RECALL_MODEL
from mgfrec.validation import shown_name


def fit(
    data: Path = typer.Option(..., "--data", help="Prepared data set folder (from 'mgfrec data prepare')."),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        callback=output_folder,
        help="Run folder (policy/, best_policy/, metrics.csv, checkpoints/, run.json).",
    ),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP + " With --resume: OUT/config.yaml."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    init: Path | None = typer.Option(
        None, "--init", help="SFT/agent run folder: start from its policy/ and reuse its recall run."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt (after a kill)."),
    policy: str | None = typer.Option(None, "--policy", help="policy.model without --init (default preset:tiny)."),
    gradient_checkpointing: bool = typer.Option(
        False,
        "--gradient-checkpointing",
        help="Recompute activations in the backward pass: less memory, more compute (policy.gradient_checkpointing).",
    ),
    grounder: str | None = typer.Option(
        None, "--grounder", help="grounding.grounder: exact, faiss, hnswlib, or a plugin."
    ),
    embedder: str | None = typer.Option(
        None, "--embedder", help="embedding.embedder: sentence-transformers, or a plugin."
    ),
    user_agent: str | None = typer.Option(
        None, "--user-agent", help="user_agent.backend: simulated, openai, anthropic, hf, none, or a plugin."
    ),
    no_feedback: bool = typer.Option(False, "--no-feedback", help="No <feedback> block (user_agent.backend=none)."),
    no_recall: bool = typer.Option(
        False, "--no-recall", help="Leave the recall list out of the prompt (agent.use_recall=false)."
    ),
    ablation: str | None = typer.Option(
        None, "--ablation", help="Ablation preset (Table 5): full, no-multi-grounding, no-feedback, no-recall."
    ),
    rollout_engine: str | None = typer.Option(None, "--rollout-engine", help="rollout.engine: hf, vllm, or a plugin."),
    reward: list[str] = typer.Option(
        [],
        "--reward",
        help="grpo.rewards, repeatable; replaces the list, so name every reward (default: ndcg and format, eq. 8).",
    ),
    max_groundings: int | None = typer.Option(None, "--max-groundings", min=0, help="agent.max_groundings."),
    items_per_grounding: int | None = typer.Option(None, "--items-per-grounding", min=1, help="grounding.top_k."),
    group_size: int | None = typer.Option(None, "--group-size", min=2, help="grpo.group_size (G)."),
    kl_beta: float | None = typer.Option(
        None, "--kl-beta", callback=finite_in(0.0), help="grpo.kl_beta, at least 0 (0 drops the reference policy)."
    ),
    lr: float | None = typer.Option(None, "--lr", callback=finite, help="trainer.lr."),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help=(
            "trainer.strategy: auto, ddp, deepspeed_stage_2, deepspeed_stage_3 (GPUs), "
            "deepspeed_stage_2_cpu / deepspeed_stage_3_cpu (DeepSpeed on the CPU, for development)."
        ),
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="trainer.max_steps (training steps)."),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Also log every step to OUT/tensorboard (trainer.tensorboard)."
    ),
    recall_model: str | None = typer.Option(
        None,
        "--recall-model",
        help=f"Retriever fitted into OUT/recall without --init (retriever.model; default {DEFAULT_RECALL_MODEL}).",
    ),
    max_train_samples: int | None = typer.Option(None, min=1, help="Seeded subsample of the train split."),
    valid_samples: int = typer.Option(
        100, min=0, help="Valid samples of the validation (greedy unless eval.greedy=false)."
    ),
    checkpoint_every: int = typer.Option(1, min=1, help="Training steps between OUT/checkpoints/last.ckpt writes."),
    progress: bool = typer.Option(True, help="Show the progress bar with the live reward."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Roll the agent out G times per train sample, reward the grounded answer (NDCG, format), and update the
    policy with the clipped GRPO loss; validate (greedy unless eval.greedy=false), keep the best and the last policy."""
    from mgfrec.output_folders import removed_if_left_empty
    from mgfrec.rl.distributed import launched_as_main
    from mgfrec.rl.fit import FitOptions, run_fit, starting_config
    from mgfrec.rl.init_run import init_note

    def go():
        if no_feedback and user_agent not in (None, "none"):
            raise ValueError(f"--no-feedback and --user-agent {shown_name(user_agent)} contradict each other: give one")
        if policy is not None and init is not None:  # it was taken, recorded in config.yaml, and never read
            raise ValueError(f"--policy {policy} and --init {init}: the fit starts from --init's policy; give one")
        if init is not None and (given := _policy_model_set(set_)) is not None:  # the same, as --set (review s39)
            raise ValueError(f"--set {given} and --init {init}: the fit starts from --init's policy; give one")
        if recall_model is not None and init is not None:  # it was taken and overwritten by --init's recall model
            raise ValueError(
                f"--recall-model {recall_model} and --init {init}: the fit reads --init's recall run; give one"
            )
        base = starting_config(out_dir, resume, config)
        values = {
            "policy.model": policy,
            "policy.gradient_checkpointing": True if gradient_checkpointing else None,
            "grounding.grounder": grounder,
            "embedding.embedder": embedder,
            "user_agent.backend": "none" if no_feedback else user_agent,
            "user_agent.options": {} if no_feedback else None,  # the config's are its backend's: "none" takes none
            "agent.use_recall": False if no_recall else None,
            "rollout.engine": rollout_engine,
            "grpo.rewards": list(reward) or None,
            "agent.max_groundings": max_groundings,
            "grounding.top_k": items_per_grounding,
            "grpo.group_size": group_size,
            "grpo.kl_beta": kl_beta,
            "trainer.lr": lr,
            "trainer.strategy": strategy,
            "trainer.max_steps": max_steps,
            "trainer.tensorboard": True if tensorboard else None,
            "retriever.model": recall_model,  # was kept apart: --set retriever.model was overwritten, silently
        }
        sets = set_ if init is None else unused_recall_sets(set_, f"--init {init}'s recall run")
        cfg = load(base, sets, values)
        note_unread_fields(sets, "mgfrec fit", ("data",), DATA_NOT_READ)
        if reward and (left := [r for r in ("ndcg", "format") if r not in cfg.grpo.reward_names]):
            whole = [*(["ndcg"] if "ndcg" in left else []), *reward, *(["format"] if "format" in left else [])]
            # --reward replaces the list: a plugin's reward given alone dropped the ranking reward and the format
            # gate of eq. 8 without a word (review s42)
            console.print(
                f"note: --reward replaces grpo.rewards, which now leaves out {' and '.join(left)}; name them too "
                f"(--reward {' --reward '.join(whole)}) to keep them",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        if ablation is not None:
            from mgfrec.experiments.ablations import apply_ablation

            check_ablation(ablation, values, sets)

            cfg = apply_ablation(cfg, ablation)  # after --set: the preset is what the run is named for
        options = FitOptions(
            init=str(init) if init is not None else None,
            resume=resume,
            recall_model=None,  # the config's retriever.model, which --recall-model sets
            max_train_samples=max_train_samples,
            valid_samples=valid_samples,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
        main = launched_as_main()  # the other processes of a multi-process fit print nothing (rank 0 speaks)

        def say(text: str) -> None:
            if main:
                console.print(text, highlight=False)

        say(f"fit {init or cfg.policy.model} on {data} -> {out_dir}")
        if init is not None and main and (note := init_note(init, cfg)):
            console.print(terminal_safe(note), highlight=False, markup=False, soft_wrap=True)
        began = time.time()
        try:
            with removed_if_left_empty(out_dir):  # a fit refused half-way leaves no empty folder
                return run_fit(data, out_dir, cfg, options, say=say)
        except KeyboardInterrupt as stop:
            if not main:  # rank 0 says it was stopped, and how to resume
                raise typer.Exit(getattr(stop, "exit_code", 130)) from None
            last, whole = Path(out_dir) / "checkpoints" / "last.ckpt", Path(out_dir) / "run.json"
            finished = whole.is_file() and whole.stat().st_mtime >= began  # the signal came as it ended: complete
            # this fit's checkpoint (a fresh fit stopped while loading still has an earlier fit's: not to resume)
            if not finished and last.exists() and (resume or last.stat().st_mtime >= began):
                console.print(_kept_line(Path(out_dir)), highlight=False, markup=False, soft_wrap=True)
            raise

    result = run(go)
    if not result.main:  # another process of a multi-process run: rank 0 reports
        return
    summary = {"run": str(out_dir), **result.extra}
    if as_json:
        print_json(summary)
        return
    last, steps = result.extra["last"], result.extra["steps"]
    typer.echo(
        f"{steps} step{'' if steps == 1 else 's'}: reward {last.get('reward/mean', float('nan')):.4f}, "
        "best valid NDCG@10 "
        f"{result.extra['best_valid_ndcg@10']}; policy {Path(out_dir) / 'policy'}; {result.extra['seconds']} s"
    )


def _kept_line(out: Path) -> str:
    """What a stopped fit keeps, and the command that continues it: the steps its checkpoint holds, the steps logged
    after it (``--checkpoint-every`` above 1: they run again, though metrics.csv showed them), and the command as
    typed with ``--resume`` (a ``--set`` secret redacted). It was "keeps its last checkpoint: the same command with
    --resume continues it", whatever that held (review s37)."""
    import shlex
    import sys

    from mgfrec.config.load import redacted_override
    from mgfrec.rl.resume import steps_done
    from mgfrec.runs import read_metrics
    from mgfrec.validation import REDACTED

    held, logged = steps_done(out), None
    try:  # the steps metrics.csv holds, read as a resume reads them
        steps = [int(row["step"]) for row in read_metrics(out / "metrics.csv", before=sys.maxsize) if "step" in row]
        logged = max(steps, default=None)
    except (OSError, ValueError):
        pass
    kept = f"its checkpoint of {held} step{'s' if held != 1 else ''}" if held is not None else "its last checkpoint"
    if held is not None and logged is not None and logged > held:
        again = f"step {logged}" if logged == held + 1 else f"steps {held + 1}-{logged}"
        kept += f" ({again}, logged after it, will run again)"
    argv = sys.argv[1:]
    script = Path(sys.argv[0])
    ours = script.name == "mgfrec" or script.parts[-2:] in (("cli", "main.py"), ("mgfrec", "__main__.py"))
    if not ours or "fit" not in argv[:2]:  # (--verbose fit); a library caller's argv is not a command to repeat
        return f"{out} keeps {kept}: the same command with --resume continues it"
    shown = [
        redacted_override(a)
        if i and argv[i - 1] == "--set"
        else f"--set={redacted_override(a[6:])}"
        if a.startswith("--set=")
        else a
        for i, a in enumerate(argv)
    ]
    # as it was run: `python -m mgfrec` where mgfrec is not on PATH
    prog = [sys.executable, "-m", "mgfrec"] if script.parts[-2:] == ("mgfrec", "__main__.py") else ["mgfrec"]
    command = shlex.join([*prog, *shown, *([] if "--resume" in argv else ["--resume"])])
    secret = " (give the redacted values again)" if REDACTED in command and REDACTED not in shlex.join(argv) else ""
    return f"{out} keeps {kept}; to continue it{secret}: {command}"


def _policy_model_set(sets: list[str]) -> str | None:
    """The ``--set`` that gives ``policy.model`` (itself, or inside ``policy={...}``), None when none does."""
    from mgfrec.config.load import ConfigError, flat_fields, parse_override

    for text in sets:
        try:
            fields = flat_fields(parse_override(text))
        except ConfigError:
            continue  # refused where the config is read, with its own line
        if "policy.model" in fields:
            return text
    return None

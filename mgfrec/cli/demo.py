"""``mgfrec demo``: the whole pipeline on the embedded synthetic data set (or ``--data``), on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from mgfrec.cli.common import CONFIG_HELP, SET_HELP, console, finite_in, out, output_folder, run
from mgfrec.cli.flags import load


def demo(
    data: str = typer.Option(
        "synthetic", "--data", help="'synthetic' (the embedded default), another source name, or a data folder."
    ),
    out_dir: Path = typer.Option(
        Path("runs/demo"), "--out", callback=output_folder, help="Folder for the data, runs, report."
    ),
    retriever_epochs: int = typer.Option(
        20,
        "--retriever-epochs",
        min=1,
        help="Epoch limit for SASRec/GRU4Rec/Caser (retriever.max_epochs; the demo's CPU budget).",
    ),
    baselines: str = typer.Option(
        "demo",
        "--baselines",
        help="Baselines to fit: 'demo' (pop, last-title, sasrec, hybrid), 'all' (adds gru4rec, caser, bigrec) "
        "or a comma-separated list of retriever names.",
    ),
    baseline_seconds: float = typer.Option(
        60.0,
        "--baseline-seconds",
        callback=finite_in(0),
        help="Training-time cap of each learned baseline, in seconds, 0 or more (0: no cap; epochs and early "
        "stopping only).",
    ),
    baseline_steps: int = typer.Option(
        300,
        "--baseline-steps",
        min=0,
        help="Training-step cap of SASRec/GRU4Rec/Caser (0: no cap); whichever cap comes first ends the fit.",
    ),
    agent: bool = typer.Option(
        True, "--agent/--no-agent", help="Run the agent stages (SFT, GRPO, ablations) after the baselines."
    ),
    fit_steps: int = typer.Option(3, "--fit-steps", min=1, help="GRPO steps of the demo's short fit."),
    policy: str = typer.Option(
        "preset:tiny-items",
        "--policy",
        help="The agent's policy (policy.model): one token per catalogue title by default (docs/agent-cpu.md).",
    ),
    recall_prior: float = typer.Option(
        4.0,
        "--recall-prior",
        callback=finite_in(0, 1000),
        help="agent.recall_prior of the agent: answers sampled under a prior rank**-B over the recall list, B "
        "from 0 to 1000 (0: the policy alone; docs/agent.md).",
    ),
    sft_samples: int = typer.Option(
        200, "--sft-samples", min=1, help="Train samples the SFT trajectories are synthesized from."
    ),
    eval_samples: int = typer.Option(
        100,
        "--eval-samples",
        min=0,
        help="Seeded subsample of the evaluated split (eval.split, test by default) every method is compared on "
        "(0 = the whole split).",
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=0,
        help="torch CPU threads (0: torch's default, one per core). One by default: on a machine whose cores are "
        "busy, more threads than free cores made SASRec 36x slower (docs/experiments.md).",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        help=CONFIG_HELP + " Default: configs' CPU defaults. The demo's baseline budget (--retriever-epochs, "
        "retriever.patience 2, retriever.min_delta 0.002) wins over the file's; --set wins over both (a typed "
        "--retriever-epochs and a --set of retriever.max_epochs to another value are refused).",
    ),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Prepare data, build the title index, fit the baselines (Pop, last-title, SASRec and the hybrid;
    --baselines all adds GRU4Rec, Caser and BIGRec), warm-start the small policy (SFT), train it briefly with GRPO,
    evaluate MGFRec, its SFT start, three ablations and two other readings of its answers (answer-first, joint-l2)
    beside the baselines with one full-ranking evaluator, print a
    Table-4-style report with intervals and paired tests, and write the figures. Re-running reuses
    finished stages."""
    from mgfrec.data.prepared import detect_source
    from mgfrec.demo import DemoOptions, run_demo
    from mgfrec.registry import registry

    def go():
        if agent:  # without the agent stages the flags set nothing; policy.model is BIGRec's then, from --set
            _check_agent_sets(
                set_, {"policy.model": ("--policy", policy), "agent.recall_prior": ("--recall-prior", recall_prior)}
            )
        if threads:
            import torch

            torch.set_num_threads(threads)
        reg = registry()
        chosen = _baselines(baselines, reg.names("retriever"))
        hint = "the demo reads csv and amazon2023 folders, or a data source's name (--data NAME)"
        name, path = detect_source(data, reg.names("data_source"), flag="--data", hint=hint)
        budget = {"retriever.max_epochs": retriever_epochs, "retriever.patience": 2, "retriever.min_delta": 0.002}
        cfg = load(config, set_, {"data.source": name, "data.path": path, **budget})
        _note_budget_over_file(config, set_, budget)
        options = DemoOptions(
            agent=agent,
            fit_steps=fit_steps,
            policy=policy,
            recall_prior=recall_prior,
            sft_train_samples=sft_samples,
            eval_samples=eval_samples or None,
            baseline_seconds=baseline_seconds or None,
            baseline_steps=baseline_steps or None,
        )
        try:
            return run_demo(
                cfg,
                out_dir,
                baselines=chosen,
                options=options,
                say=lambda msg: console.print(msg, highlight=False, markup=False),
            )
        except KeyboardInterrupt as stop:  # SFT, GRPO, an evaluation: a baseline's stop says this itself (s40)
            if not getattr(stop, "demo_said", False):
                console.print(
                    f"[demo] stopped: the finished stages in {out_dir} are kept; rerun the same command to go on "
                    "(the stopped stage runs again)",
                    highlight=False,
                    markup=False,
                )
            raise

    result = run(go)
    out.print(result.report.table(console.width))
    for note in result.report.terminal_notes():
        console.print(note, highlight=False, markup=False)
    closing = compared_on(eval_samples, {row.result.samples for row in result.report.rows}, result.report.split)
    ablations = readings_line({row.name for row in result.report.rows}) if agent else ""
    console.print(f"{closing}.{ablations}", highlight=False)
    console.print(f"Files: {', '.join(str(p) for p in result.written.values())}", highlight=False)


def readings_line(rows: set[str]) -> str:
    """What the agent's derived rows are, naming only the readings the report holds."""
    readings = [
        text
        for name, text in (
            (
                "mgfrec-answer-first",
                "mgfrec-answer-first ranks the same answers with the answered item first and the rest in the recall "
                "model's order",
            ),
            (
                "mgfrec-joint-l2",
                "mgfrec-joint-l2 by L2 over the title embedding joined to the recall model's item embedding",
            ),
        )
        if name in rows
    ]
    said = f" {', '.join(readings)}; the mgfrec row is the paper's rule (L2 over titles)." if readings else ""
    return (
        " The ablation rows apply each ablation to the trained policy at evaluation time (the paper retrains each: "
        f"mgfrec fit --ablation).{said}"
    )


def _baselines(value: str, known: list[str]) -> tuple[str, ...]:
    """``--baselines``: 'demo', 'all' or a comma-separated list of registered retriever names."""
    from mgfrec.demo import ALL_BASELINES, DEMO_BASELINES

    if value.strip() in ("demo", "all"):
        return DEMO_BASELINES if value.strip() == "demo" else ALL_BASELINES
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:  # "," read as "nothing named is not a retriever"
        raise ValueError(
            f"--baselines {value!r} names no retriever; use 'demo', 'all' or names from: {', '.join(sorted(known))}"
        )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"--baselines: {', '.join(unknown)} is not a retriever; "
            f"use 'demo', 'all' or names from: {', '.join(sorted(known))}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # every stage ran, then the report refused "a run folder is named twice", naming no flag
        raise ValueError(f"--baselines names {', '.join(twice)} twice; name each retriever once")
    return names


def compared_on(eval_samples: int, sizes: set[int], split: str = "test") -> str:
    """The closing line (without its full stop): what the rows were compared on, a seeded subsample, or the whole
    split when ``--eval-samples`` is 0 or at least the split's size (``sizes``: the sample counts of the report's
    rows); rows of several sizes are said to be so (it said "the whole test split" beside rows of 100; review
    s31)."""
    if len(sizes) > 1:
        shown = " and ".join(f"{n:,}" for n in sorted(sizes))
        return (
            f"The rows do not all hold the same samples ({shown} by row): a row without marks is not compared (see "
            "the notes)"
        )
    if not eval_samples:
        return f"All rows are compared on the whole {split} split"
    if sizes and next(iter(sizes)) < eval_samples:
        return (
            f"All rows are compared on the whole {split} split ({next(iter(sizes)):,} samples, fewer than "
            f"--eval-samples {eval_samples:,})"
        )
    # eval.split named: --set eval.split=valid was closed as "... test samples" (review s40)
    return f"All rows are compared on a seeded subsample of {eval_samples:,} {split} samples"


def _check_agent_sets(sets: list[str], flags: dict[str, tuple[str, object]]) -> None:
    """A ``--set`` of a field the demo's own flag sets (``--set policy.model=preset:tiny`` beside the default
    ``--policy preset:tiny-items``), to another value, refused naming the flag: a value equal to the schema's
    default was taken as "not given" and replaced by the flag's without a word (a config file's is judged by
    :func:`mgfrec.demo.demo_policy` and :func:`~mgfrec.demo.demo_recall_prior`)."""
    from mgfrec.cli.flags import ABSENT, RESET, given_by_set
    from mgfrec.config.load import redacted_override

    for dotted, (flag, value) in flags.items():
        for text in sets:
            node = given_by_set(text, dotted)
            if node is ABSENT or node is RESET or node == value or str(node) == str(value):
                continue
            raise ValueError(
                f"--set {redacted_override(text)}: the demo sets {dotted} with {flag} ({value}); pass {flag} {node} "
                "to use it"
            )


def _note_budget_over_file(config: str | None, sets: list[str], budget: dict[str, object]) -> None:
    """The demo's retriever budget is a typed flag's value, so it wins over --config FILE: say so when the file
    set one of those fields (--set still wins over both)."""
    if not config:
        return
    from mgfrec.config.load import parse_override, read_yaml

    section = read_yaml(config).get("retriever")
    set_here = {f"retriever.{k}" for k in section} if isinstance(section, dict) else set()
    for text in sets:
        node = parse_override(text).get("retriever")
        set_here -= {f"retriever.{k}" for k in node} if isinstance(node, dict) else set()
    over = [f"{k}={v}" for k, v in budget.items() if k in set_here]
    if over:
        console.print(
            f"note: the demo's baseline budget sets {', '.join(over)} over {config}'s values "
            "(--retriever-epochs or --set retriever.<field>=... change them)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

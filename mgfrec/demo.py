"""The demo pipeline: data -> item space -> baselines -> agent (SFT, GRPO) -> one evaluator -> report, figures.

``mgfrec demo`` runs this on the embedded synthetic data set (or any folder given with ``--data``) so a
newcomer sees the whole idea on a laptop CPU. Each stage is a library call that the CLI commands also use;
this module only strings them together and reuses what an earlier (interrupted) demo already made.

Stages: prepare, index (title embeddings), the baselines (by default Pop, last-title, SASRec and the hybrid;
``ALL_BASELINES`` adds GRU4Rec, Caser and the BIGRec-style LLM baseline), each learned one held to a
training-time cap, then the agent: ``mgfrec sft`` warm start of the small policy on trajectories synthesized
with the recall list of the strongest fitted baseline (``DemoOptions.agent_recall``: hybrid first), a short
``mgfrec fit`` (GRPO), and three ablations of the trained agent applied at evaluation time
(:func:`~mgfrec.experiments.ablations.derive_ablation_run`: the paper retrains each; ``mgfrec fit --ablation``
does that). The agent decodes with constrained turns (``agent.decoding: constrained``, the CPU default): it
always writes the tag grammar and answers one of the titles it was shown. Everything is compared on the same
seeded test subsample (``DemoOptions.eval_samples``; agents are rolled out on it greedily, as
``eval.greedy`` says), then the figures are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgfrec.config.load import write_resolved
from mgfrec.config.schema import MGFRecConfig, PolicyConfig
from mgfrec.data.prepared import PreparedDataset, prepare, row_lines
from mgfrec.demo_settings import (  # noqa: F401 (DemoOptions and the settings' names are mgfrec.demo's too)
    SETTINGS_FILE,
    DemoOptions,
    agent_stage_reusable,
    baseline_reusable,
    check_data_current,
    check_demo_output,
    check_same_settings,
    demo_settings,
)
from mgfrec.embed.cache import cached_item_embeddings
from mgfrec.eval.report import Report, build_report
from mgfrec.locks import only_one_in
from mgfrec.output_folders import removed_if_left_empty
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.runs import RUN_FILE, created_stamp, read_run_info, recall_run_of
from mgfrec.signals import stop_exception, stopped_by

DEMO_BASELINES: tuple[str, ...] = ("pop", "last-title", "sasrec", "hybrid")  # the cheap default set
ALL_BASELINES: tuple[str, ...] = (
    "pop",
    "last-title",
    "sasrec",
    "gru4rec",
    "caser",
    "hybrid",
    "bigrec",
)  # --baselines all
# Rough wall times, in seconds on 2 idle cores, of the stages no cap bounds, for the estimate the demo prints
# first (from the measurements in docs/baselines.md and docs/experiments.md, rounded up); a learned baseline
# counts its time cap (DemoOptions.baseline_seconds) plus FIT_OVERHEAD (loading, validation, ranking valid).
FIXED_SECONDS: dict[str, float] = {"prepare": 5, "index": 25, "pop": 3, "last-title": 3, "hybrid": 15}
FIT_OVERHEAD: dict[str, float] = {"sasrec": 15, "gru4rec": 15, "caser": 15, "bigrec": 45}
# AGENT_SECONDS is the agent stages' time at DemoOptions' defaults (SFT 65 s measured for 200 samples x 1 epoch,
# GRPO 31 s for 3 steps x 2 prompts, evaluation of every row 62 s on 100 samples: docs/experiments.md); all but
# AGENT_FIXED of it scales with the work the options ask for (agent_seconds). Update both with the defaults.
AGENT_SECONDS: dict[str, float] = {"sft": 75, "fit": 40, "evaluate": 60, "figures": 5}
AGENT_FIXED: dict[str, float] = {"sft": 10, "fit": 10, "evaluate": 10, "figures": 5}  # loading, writing
REFERENCE = "last-title"  # the content floor every other method is paired against
DEMO_ABLATIONS: tuple[str, ...] = ("no-multi-grounding", "no-feedback", "no-recall")
# Evaluation variants shown beside the paper's row (mgfrec.experiments.ablations.EVAL_VARIANTS): the same
# answers with the answered item first and the rest in the recall model's order, and ranked by L2 over the
# title embedding joined to the recall model's item embedding (only where the recall model has one).
DEMO_VARIANTS: tuple[str, ...] = ("answer-first", "joint-l2")


DEFAULT_OPTIONS = DemoOptions()  # frozen: one shared default is safe


@dataclass
class DemoResult:
    out: Path
    report: Report
    written: dict[str, Path]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    config: MGFRecConfig,
    out: str | Path,
    *,
    baselines: Sequence[str] = DEMO_BASELINES,
    options: DemoOptions = DEFAULT_OPTIONS,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Prepare ``config.data`` into ``out/data``, cache the title embeddings, fit each baseline into
    ``out/<name>``, evaluate all on ``config.eval.split`` and write ``out/report_<split>.{md,csv,json}``.

    Finished stages are reused: a prepared folder whose manifest exists, a run folder with ``run.json``.
    ``out/config.yaml`` is the resolved ``config``, written first.
    """
    out = Path(out)
    if options.agent:  # refuse a conflicting or unknown policy.model, or recall prior, before any stage runs
        from mgfrec.models.policy import check_policy_source
        from mgfrec.rl.distributed import require_one_process

        check_policy_source(demo_policy(config, options))  # a typo was found after the data, index and baselines
        demo_recall_prior(config, options)
        if options.recall_prior and config.agent.decoding != "constrained":  # it was dropped without a word (s40)
            say(
                f"note: --recall-prior {options.recall_prior:g} is not used: agent.decoding is "
                f"{config.agent.decoding}, and the prior acts on constrained answers"
            )
        # trainer.devices=2 was refused after the data, index and every baseline, and the folder then refused the
        # corrected rerun as made with other settings (review s40)
        require_one_process(config.trainer.devices, config.trainer.num_nodes, "mgfrec demo")
    check_demo_output(out)  # nothing of another kind is written into, before anything is
    with removed_if_left_empty(out):
        out.mkdir(parents=True, exist_ok=True)
        # two demos into one folder trained into the same run folders at once and both reported success
        with only_one_in(out, "mgfrec demo"):
            return _run_demo(config, out, baselines, options, say)


def _run_demo(
    config: MGFRecConfig,
    out: Path,
    baselines: Sequence[str],
    options: DemoOptions,
    say: Callable[[str], None],
) -> DemoResult:
    """:func:`run_demo`'s stages, run under the folder's lock."""
    check_same_settings(out, config, options)  # finished stages are reused: only under the settings that made them
    if not (out / SETTINGS_FILE).is_file() and (out / "data" / "manifest.json").is_file():
        say(f"note: {out} has no {SETTINGS_FILE} (an older demo): its finished stages are reused as they are")
    else:  # a new folder, or one made with these settings
        out.mkdir(parents=True, exist_ok=True)
        (out / SETTINGS_FILE).write_text(json.dumps(demo_settings(config, options), indent=2), encoding="utf-8")
    write_resolved(config, out)
    seconds: dict[str, float] = {}
    say(estimate_line(baselines, options, finished_stages(out, baselines, options.agent)))

    def stage(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        say(f"[{name}] done in {seconds[name]:.1f} s")
        return value

    data_dir = out / "data"
    if (data_dir / "manifest.json").is_file():
        check_data_current(data_dir, config.data, out)  # the files read may have been edited since
        ds = PreparedDataset(data_dir)
        say(f"[prepare] reusing {data_dir}")
    else:
        ds = stage("prepare", lambda: prepare(config.data, data_dir))
    for line in row_lines(ds.manifest["rows"]):  # read = kept + dropped, as data prepare prints it
        say(f"[prepare] {line}")
    counts = ds.counts
    say(
        f"[prepare] {counts['users']} users, {counts['items']} items, {counts['interactions']} interactions; "
        f"samples {counts['samples']['train']}/{counts['samples']['valid']}/{counts['samples']['test']}"
    )
    emb = stage("index", lambda: cached_item_embeddings(ds, config.embedding, progress=True))
    say(f"[index] {ds.num_items} titles -> {emb.vectors.shape[1]}-d vectors ({'cache hit' if emb.hit else 'built'})")

    runs = []
    for name in baselines:
        run_dir = out / name
        if baseline_reusable(run_dir, name, say):
            say(f"[{name}] reusing {run_dir}")
        else:
            # each baseline takes the retriever.options its own options have: given to every baseline, a --set of
            # SASRec's failed in pop, naming none, after the baselines before it had trained; the options SASRec,
            # GRU4Rec and Caser share (layers, eval_batch_size) reach all three (review s40)
            own, cannot = _options_for(name, config.retriever.options)
            if cannot and name != "bigrec":
                say(f"note: [{name}] takes no {', '.join(cannot)} of retriever.options; it is fitted without them")
            update: dict = {"model": name, "options": own}
            if name == "hybrid" and "sasrec" in baselines:  # blend the SASRec run above; don't train it twice
                update["options"] = {**own, "collaborative": "sasrec", "collaborative_run": str(out / "sasrec")}
            if name == "bigrec":
                update["options"] = dict(options.bigrec)
            # a hybrid without the SASRec run trains its own collaborative side: the same caps as SASRec's
            capped = name in FIT_OVERHEAD or own_collaborative(name, baselines)
            if capped and options.baseline_seconds is not None:
                update["max_seconds"] = options.baseline_seconds
            if capped and name != "bigrec" and options.baseline_steps is not None:
                update["max_steps"] = options.baseline_steps
            cfg = config.model_copy(update={"retriever": config.retriever.model_copy(update=update)})
            result = stage(name, lambda cfg=cfg, run_dir=run_dir: fit_baseline(ds, cfg, run_dir))
            stopped = getattr(result.retriever, "stopped", None)
            why = f" (stopped: {stopped})" if stopped in ("time cap", "step cap", "early stopping") else ""
            score = result.valid_ndcg10  # nan: no valid sample, said as baseline fit says it
            valid = "n/a (the valid split has no sample)" if score != score else f"{score:.4f}"
            say(f"[{name}] valid NDCG@10 {valid}{why}")
            if stopped == "user":  # a signal ended this fit cleanly; the user wants the demo to stop, not go on
                by = stopped_by(getattr(result.retriever, "stop_signal", None))
                say(
                    f"[demo] stopped by {by}: {run_dir} is finished from its best checkpoint; rerun the same "
                    "command to go on from the next stage"
                )
                stop = stop_exception(getattr(result.retriever, "stop_signal", None))
                stop.demo_said = True  # type: ignore[attr-defined]  # the CLI's own stop line would repeat it
                raise stop
        runs.append(run_dir)

    agent_runs: list[Path] = []
    if options.agent:
        recall = next((name for name in options.agent_recall if name in baselines), None)
        agent_runs = agent_stages(config, ds, out, options, recall, stage, say)
    reference = out / REFERENCE if REFERENCE in baselines else None
    # agents are evaluated as eval.greedy says (greedy by default): constrained turns keep greedy decoding
    # well formed, which the small policy's free greedy decoding was not
    # the whole split is a limit of its size: with no limit the report took any stored result, so a rerun with
    # --eval-samples 0 kept the agent's 100-sample results beside whole-split rows (review s31)
    whole = int(ds.counts["samples"][config.eval.split])
    limit = whole if options.eval_samples is None else options.eval_samples
    compared = [*runs, *agent_runs]
    before = [_stored_stamp(run, config.eval.split) for run in compared]
    report = stage(
        "evaluate",
        lambda: build_report(compared, config.eval.split, reference, config.eval, limit=limit),
    )
    kept = sum(
        b is not None and b == _stored_stamp(run, config.eval.split) for run, b in zip(compared, before, strict=True)
    )
    if kept:  # every other stage says what it reused; this one said only "done in 0.2 s" (review s38)
        say(f"[evaluate] reused the stored {config.eval.split} evaluations of {kept} of the {len(compared)} runs")
    written = report.write(out)
    if agent_runs:
        written.update(stage("figures", lambda: demo_figures(out, ds, config.eval.split, say)))
    return DemoResult(out, report, written, seconds)


def _stored_stamp(run: Path, split: str) -> int | None:
    """When ``run``'s stored evaluation of ``split`` was written (None when there is none)."""
    from mgfrec.ranking.results import result_paths

    path = result_paths(run, split)["json"]
    return path.stat().st_mtime_ns if path.is_file() else None


def own_collaborative(name: str, baselines: Sequence[str]) -> bool:
    """Whether the demo's ``name`` trains a collaborative model of its own: a hybrid fitted without the SASRec
    run to blend (``--baselines pop,hybrid``). It gets SASRec's caps and SASRec's place in the estimate."""
    return name == "hybrid" and "sasrec" not in baselines


def estimate_seconds(
    baselines: Sequence[str], options: DemoOptions, finished: Collection[str] = ()
) -> dict[str, float]:
    """Each stage's expected wall time on 2 idle cores (an upper bound where a time cap holds the stage). A learned
    baseline without a time cap is left out: its time is its epochs', which the data set's size decides (300 s
    each was counted, 5x what the shared CDs data took). ``finished``: stages a rerun reuses, left out too."""
    stages = {"prepare": FIXED_SECONDS["prepare"], "index": FIXED_SECONDS["index"]}
    for name in baselines:
        if name in finished:
            continue
        if name in FIT_OVERHEAD or own_collaborative(name, baselines):
            if not options.baseline_seconds:
                continue
            stages[name] = options.baseline_seconds + FIT_OVERHEAD.get(name, FIT_OVERHEAD["sasrec"])
            stages[name] += FIXED_SECONDS.get(name, 0.0)
        else:
            stages[name] = FIXED_SECONDS.get(name, 30.0)
    if options.agent:
        stages.update(agent_seconds(options))
    else:
        stages["evaluate"] = 10.0
    return {name: seconds for name, seconds in stages.items() if name not in finished}


def finished_stages(out: Path, baselines: Sequence[str], agent: bool) -> list[str]:
    """The stages of the demo in ``out`` that a rerun will find finished (its data set, a baseline's or agent
    stage's run): what :func:`estimate_line` leaves out of its time (a rerun that reused everything said "about
    6 min"; review s40). A finished run that the rerun trains again after all (its recall run refitted) is
    counted as finished: the line is an estimate."""
    done = ["prepare"] if (out / "data" / "manifest.json").is_file() else []
    done += [name for name in baselines if (out / name / RUN_FILE).is_file()]
    if agent:
        done += [stage for stage, folder in (("sft", "sft"), ("fit", "mgfrec")) if (out / folder / RUN_FILE).is_file()]
    return done


def agent_seconds(options: DemoOptions) -> dict[str, float]:
    """The agent stages' expected wall times: AGENT_SECONDS scaled by the work the options ask for against the
    defaults' (SFT samples x epochs, GRPO steps x prompts, evaluated samples). The evaluation of the whole split
    (``eval_samples`` None) is left out: the split's size is known only once the data set is read."""
    default = DemoOptions()
    work = {
        "sft": (options.sft_train_samples * options.sft_epochs) / (default.sft_train_samples * default.sft_epochs),
        "fit": (options.fit_steps * options.fit_batch) / (default.fit_steps * default.fit_batch),
        "figures": 1.0,
    }
    if options.eval_samples is not None and default.eval_samples is not None:
        work["evaluate"] = options.eval_samples / default.eval_samples
    return {k: AGENT_FIXED[k] + (AGENT_SECONDS[k] - AGENT_FIXED[k]) * ratio for k, ratio in work.items()}


def _options_for(name: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The part of ``given`` (``retriever.options``) that baseline ``name``'s own options take (its ``Options``
    fields), and the keys it cannot take."""
    from mgfrec.registry import registry

    model = getattr(registry().get("retriever", name).load(), "Options", None)
    fields = set(model.model_fields) if model is not None else set()
    return {k: v for k, v in given.items() if k in fields}, sorted(k for k in given if k not in fields)


def estimate_line(baselines: Sequence[str], options: DemoOptions, finished: Collection[str] = ()) -> str:
    """The line the demo opens with: what it will run and about how long that takes; ``finished``: the stages a
    rerun reuses (:func:`finished_stages`), named and left out of the time."""
    from mgfrec.progress import format_seconds

    stages = estimate_seconds(baselines, options, finished)
    total = sum(stages.values())
    learned = [name for name in baselines if name in FIT_OVERHEAD or own_collaborative(name, baselines)]
    uncapped = [name for name in learned if name not in stages and name not in finished]
    agent = "; then SFT, GRPO, evaluation, figures" if options.agent else ""
    limits = [
        f"{options.baseline_steps} steps" if options.baseline_steps else "",
        f"{options.baseline_seconds:g} s" if options.baseline_seconds else "",
    ]
    # BIGRec takes no step cap (its steps are an LLM's): the line said it did (review s40)
    by_time = f"; bigrec at {options.baseline_seconds:g} s" if options.baseline_seconds else "; bigrec uncapped"
    alone = by_time if "bigrec" in learned and options.baseline_steps else ""
    capped_at = " or ".join(x for x in limits if x)
    caps = f" (learned ones capped at {capped_at} each{alone})" if any(limits) and learned else ""
    about = f"{round(total / 60)} min" if total >= 120 else format_seconds(total)  # no false precision
    bound = f"at most {options.baseline_steps} steps each, " if options.baseline_steps else ""
    plus = f" plus the training of {', '.join(uncapped)} ({bound}no time cap)" if uncapped else ""
    if options.agent and "evaluate" not in stages:  # --eval-samples 0: the split's size is not known yet
        per = (AGENT_SECONDS["evaluate"] - AGENT_FIXED["evaluate"]) / (DemoOptions().eval_samples or 1)
        plus += f"{' and' if plus else ' plus'} the evaluation of the whole test split (about {per:.1f} s a sample)"
    if finished:
        return (
            f"[demo] baselines {', '.join(baselines)}{caps}{agent}: {', '.join(finished)} finished and reused; the "
            f"rest about {about}{plus} on 2 idle cores, longer on a busy machine"
        )
    return (
        f"[demo] baselines {', '.join(baselines)}{caps}{agent}: about {about}{plus} on 2 idle cores, "
        "longer on a busy machine; finished stages are reused on a rerun"
    )


def agent_stages(
    config: MGFRecConfig,
    ds: PreparedDataset,
    out: Path,
    options: DemoOptions,
    recall: str | None,
    stage: Callable[[str, Callable[[], object]], object],
    say: Callable[[str], None],
) -> list[Path]:
    """SFT, a short GRPO fit and the ablation folders; returns the agent run folders to evaluate."""
    from mgfrec.experiments.ablations import derive_ablation_run, derive_variant_run
    from mgfrec.rl.distributed import require_one_process
    from mgfrec.rl.fit import FitOptions, run_fit
    from mgfrec.rl.sft import SFTOptions, run_sft

    require_one_process(config.trainer.devices, config.trainer.num_nodes, "mgfrec demo")
    sft_dir, fit_dir = out / "sft", out / "mgfrec"
    config = config.model_copy(
        update={
            "retriever": config.retriever.model_copy(update={"recall_size": options.recall_size}),
            "agent": config.agent.model_copy(
                update={"prompt_history": options.prompt_history, "recall_prior": demo_recall_prior(config, options)}
            ),
            "policy": config.policy.model_copy(update={"model": demo_policy(config, options)}),
        }
    )
    if agent_stage_reusable(sft_dir, "sft", say):
        say(f"[sft] reusing {sft_dir}")
        sft_info = read_run_info(sft_dir)
        made_over = recall_run_of(sft_dir, sft_info)
        # a demo folder copied whole: its agent runs name the original's recall run, the very run beside them
        # (the same created stamp); the note invited deleting the copy's agent stages (review s33)
        stamp = sft_info.extra.get("recall_created")
        copied = recall is not None and stamp is not None and stamp == created_stamp(out / recall)
        if recall and not copied and (made_over is None or Path(made_over).resolve() != (out / recall).resolve()):
            say(
                f"[sft] note: the reused agent stages were trained over the recall run {made_over or 'none'}, not "
                f"{out / recall if recall else 'none'} that this rerun's baselines pick; they are reported as they "
                f"are (delete {sft_dir} and {fit_dir} to train them over it)"
            )
    else:
        sft_opts = SFTOptions(
            recall_run=str(out / recall) if recall else None,
            epochs=options.sft_epochs,
            batch_size=options.sft_batch_size,
            max_train_samples=options.sft_train_samples,
            valid_samples=options.valid_samples,
            progress=True,
        )
        result = stage("sft", lambda: run_sft(ds.root, sft_dir, config, sft_opts, say=lambda m: say(f"[sft] {m}")))
        say(f"[sft] {len(result.history) - 1} epochs; valid format-valid {result.history[-1]['format_valid']:.2f}")
    if agent_stage_reusable(fit_dir, "fit", say):
        say(f"[fit] reusing {fit_dir}")
    else:
        fit_cfg = config.model_copy(
            update={
                "trainer": config.trainer.model_copy(
                    update={
                        "max_steps": options.fit_steps,
                        "global_batch_size": options.fit_batch,
                        "val_check_interval": options.fit_steps,
                    }
                ),
            }
        )
        fit = stage(
            "fit",
            lambda: run_fit(
                ds.root,
                fit_dir,
                fit_cfg,
                FitOptions(init=str(sft_dir), valid_samples=options.valid_samples, progress=True),
                say=lambda m: say(f"[fit] {m}"),
            ),
        )
        say(f"[fit] {fit.extra['steps']} GRPO steps in {fit.seconds:.0f} s")
    ablations = [derive_ablation_run(fit_dir, name, out / f"mgfrec-{name}") for name in DEMO_ABLATIONS]
    variants = [derive_variant_run(fit_dir, name, out / f"mgfrec-{name}") for name in demo_variants(fit_dir)]
    return [sft_dir, fit_dir, *ablations, *variants]


def demo_variants(fit_dir: Path) -> list[str]:
    """The readings of the fit the demo adds as rows: ``joint-l2`` only when the fit's own recall run (a reused fit
    may predate this run's baselines) has item embeddings."""
    recall = recall_run_of(fit_dir, read_run_info(fit_dir))
    return [n for n in DEMO_VARIANTS if n != "joint-l2" or (recall is not None and has_item_vectors(Path(recall)))]


def has_item_vectors(run_dir: Path) -> bool:
    """Whether the baseline run's model has item embeddings (sasrec, gru4rec, caser, a hybrid of one), which
    the ``joint-l2`` reading needs."""
    from mgfrec.retrievers.fit import load_scorer

    return hasattr(load_scorer(run_dir).scorer, "item_vectors")


def demo_recall_prior(config: MGFRecConfig, options: DemoOptions) -> float:
    """The agent's ``agent.recall_prior``: ``options.recall_prior`` unless None, or 0 under free decoding (the
    prior acts on constrained answers). A config that sets another non-zero prior is refused, not overridden."""
    if options.recall_prior is None or config.agent.decoding != "constrained":
        return config.agent.recall_prior
    if config.agent.recall_prior not in (0.0, options.recall_prior):
        raise ValueError(
            f"agent.recall_prior is {config.agent.recall_prior:g} in the config, but the demo's is "
            f"{options.recall_prior:g}; pass --recall-prior {config.agent.recall_prior:g} to use it"
        )
    return options.recall_prior


def demo_policy(config: MGFRecConfig, options: DemoOptions) -> str:
    """The agent's ``policy.model``: ``options.policy`` unless None. A config that sets another policy.model
    is refused rather than silently overridden."""
    if options.policy is None:
        return config.policy.model
    if config.policy.model not in (PolicyConfig().model, options.policy):
        raise ValueError(
            f"policy.model is '{config.policy.model}' in the config, but the demo's policy is '{options.policy}'; "
            f"pass --policy {config.policy.model} to use it"
        )
    return options.policy


def demo_figures(out: Path, ds: PreparedDataset, split: str, say: Callable[[str], None] = print) -> dict[str, Path]:
    """Training curves of the GRPO run, Fig. 3's difficulty bands and a Fig. 4 case study into out/figures."""
    from mgfrec.eval.case_study import write_trajectory_markdown
    from mgfrec.eval.figures import nonempty_bands, plot_difficulty_bands, plot_training_curves
    from mgfrec.recommend import recommend

    figures = out / "figures"
    written = {f"figure_{k}": v for k, v in plot_training_curves(out / "mgfrec", figures).items()}
    written["figure_difficulty"] = plot_difficulty_bands(out / "mgfrec", figures, split=split, ds=ds)
    if nonempty_bands(out / "mgfrec", split, ds) <= 1:
        say(
            f"[figures] {written['figure_difficulty'].name}: every trajectory falls in one grounding band, so it "
            "compares nothing yet (the figure says so); a longer fit spreads the agent over the bands"
        )
    user = str(ds.split(split)["user_id"].iloc[0])
    rec, rec_ds = recommend(out / "mgfrec", user=user, sample=True)
    written["case_study"] = write_trajectory_markdown(
        rec.to_dict(rec_ds), figures / "case_study.md", title=f"Case study: user {user}"
    )
    return written

"""``mgfrec fit``: a GRPO run from a prepared data set to a run folder, resumable after a kill.

:func:`run_fit` builds what :class:`~mgfrec.rl.module.GRPOModule` needs and runs a Lightning ``Trainer``:

* the initial policy: ``INIT/policy`` of an SFT (or earlier agent) run with ``init``, else ``policy.model``;
* recall lists: ``INIT``'s recall run with ``init``, else a retriever fitted into ``OUT/recall`` as ``mgfrec
  sft`` does (:func:`~mgfrec.agent.samples.recall_for`);
* checkpoints: :class:`~mgfrec.rl.callbacks.LastCheckpoint` writes ``OUT/checkpoints/last.ckpt`` (weights,
  optimizer, loop counters, RNG states, data position) every ``checkpoint_every`` training steps and at the end;
  ``resume=True`` continues from it, with the settings the run started with (``OUT/config.yaml``) unless a
  config is given (:func:`~mgfrec.rl.resume.starting_config` is the rule ``mgfrec fit`` layers its flags on).

The run folder: ``OUT/policy`` (last), ``OUT/best_policy`` (best valid NDCG@10), ``OUT/metrics.csv``,
``OUT/config.yaml`` (written first, so a resume reuses it), ``OUT/run.json`` (``kind: agent``, ``model:
mgfrec``; written last: it marks a finished run).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from mgfrec.agent.environment import build_environment
from mgfrec.agent.final_ranking import FinalRanking
from mgfrec.agent.samples import RecallOptions, recall_samples
from mgfrec.config.components import check_components, check_importable, plugins_named
from mgfrec.config.load import load_config, write_resolved
from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.embed.base import check_embedder_loadable
from mgfrec.grounding.engine import check_top_k, load_grounding
from mgfrec.locks import only_one_in, refuse_if_held
from mgfrec.models.policy import check_policy_source, load_policy
from mgfrec.output_folders import check_output_run, retire_if_recall_inside, retire_run
from mgfrec.registry import Registry, registry, with_registry
from mgfrec.retrievers.training import lightning_ctrl_c, quiet_lightning
from mgfrec.rewards.compose import build_reward
from mgfrec.rl.callbacks import (  # noqa: F401 (importable from here as before the split)
    LastCheckpoint,
    StepProgress,
    build_logger,
    check_logger,
)
from mgfrec.rl.distributed import barrier, check_batch_split, launched_as_main
from mgfrec.rl.init_run import (  # noqa: F401 (importable from here)
    INIT_SHAPED,
    check_start_ranking,
    init_differences,
    start_point,
)
from mgfrec.rl.module import GRPOModule
from mgfrec.rl.peers import ChildWatch, as_peer_failure
from mgfrec.rl.resume import (  # noqa: F401 - RESUMABLE: importable from here as before the split
    CHECKPOINT_STEPS,
    RESUMABLE,
    START_FILE,
    check_resume_config,
    check_resume_options,
    resume_checkpoint,
    starting_config,
    steps_done,
    write_start_record,
)
from mgfrec.rl.stop import StopOnSignal, stop_exception
from mgfrec.rl.strategy import (
    build_strategy,
    check_engine_copy,
    check_master_weights,
    check_nodes,
    check_strategy,
    trainer_accelerator,
)
from mgfrec.rollout.base import check_engine
from mgfrec.runs import (
    RUN_FILE,
    RunInfo,
    created_stamp,
    plugins_of_run,
    write_run_info,
)
from mgfrec.seeding import kept_global_rng
from mgfrec.text.prompts import AgentPrompts, keep_run_prompts, run_prompts
from mgfrec.user_agents.base import check_user_agent, with_run_cache


@dataclass(frozen=True)
class FitOptions:
    """Settings of a GRPO run that are not part of the run config (the CLI's flags)."""

    init: str | None = None  # an SFT/agent run folder: its policy/ and recall run
    resume: bool = False
    recall_model: str | None = None  # None: the config's retriever.model (--recall-model sets it)
    max_train_samples: int | None = None
    valid_samples: int = 100
    checkpoint_every: int = 1  # training steps between checkpoints
    progress: bool = False


@dataclass
class FitResult:
    out: Path
    module: GRPOModule
    seconds: float
    extra: dict[str, Any]
    main: bool = True  # global rank 0 (the others of a multi-process run return too, having written nothing)


class WeightsDiverged(RuntimeWarning):
    """The processes of a multi-process fit ended with different policy weights: OUT/policy is rank 0's."""


# What a fresh fit into a used folder removes first (the recall run is kept: it is reused when it fits).
STALE_AT_START = ("checkpoints", "policy", "best_policy", "prompts", "metrics.csv", "tensorboard")


def check_fit_config(cfg: MGFRecConfig, options: FitOptions, reg: Registry, ds: PreparedDataset | None = None) -> None:
    """Everything a fit can tell of ``cfg`` before any work, each wrong value in one line: the group size and the
    rollout temperature, the strategy and batch split, every component's name and options, the reward, the engine
    and logger libraries, the policy source (without ``--init``), the user agent, the prompt templates and, given
    ``ds``, ``grounding.top_k`` against its catalogue. ``mgfrec sweep`` runs it for every cell before the first
    trains (a value found in cell 2 was found after cell 1 had trained)."""
    if cfg.grpo.group_size < 2:  # every advantage of a group of one is 0: the fit spent its budget training nothing
        raise ValueError(
            f"grpo.group_size (--group-size) {cfg.grpo.group_size}: GRPO compares each rollout with its group's; "
            "give at least 2"
        )
    if cfg.rollout.temperature == 0:  # G greedy copies: every group's rewards equal, every advantage 0
        raise ValueError(
            "rollout.temperature 0: a group of greedy rollouts is G copies of one trajectory, so every advantage is "
            "0 and the fit trains nothing; give a temperature above 0 (validation's greedy decoding is eval.greedy)"
        )
    check_strategy(cfg.trainer.strategy, cfg.trainer.accelerator)
    check_master_weights(cfg)
    check_engine_copy(cfg)
    check_nodes(cfg.trainer.num_nodes)
    if isinstance(cfg.trainer.devices, int):  # early, before any work; the module checks again at fit start
        check_batch_split(cfg.trainer.global_batch_size, cfg.trainer.devices * cfg.trainer.num_nodes)
    # names and options, before the recall model, the policy or any embedding; data.* is not read (--data is)
    check_components(cfg, reg, data=False)
    check_importable(cfg, reg)  # a plugin that fails on import: named before the recall fit, not after it
    build_reward(cfg.grpo.rewards, reg=reg)  # a reward that cannot be built (or none): named before the recall fit
    check_engine(cfg.rollout, reg)  # vLLM missing: one line now, not once an earlier run in OUT was retired
    check_logger(cfg)  # tensorboard missing: the same
    if options.init is None:
        check_policy_source(cfg.policy.model)
    check_start_ranking(cfg, options, reg)  # final_ranking l2_joint over pop: found at the fit's start
    check_embedder_loadable(cfg.embedding, reg)  # its device and, offline, its cached model: before the recall fit
    check_user_agent(cfg.user_agent, "GRPO training", reg)  # before any data work: a person cannot answer a rollout
    AgentPrompts.from_config(cfg.agent)  # a template that cannot be read is named before OUT is cleared
    if ds is not None:
        check_top_k(cfg.grounding.top_k, ds.num_items, cfg.agent.max_groundings)  # else found at the first <ground>


def _check_epochs_budget(out: Path, epochs: int, max_steps: int, done: int) -> None:
    """As ``--max-steps`` is checked on a resume, for a budget in epochs (``trainer.max_steps: null``): fewer steps
    than the checkpoint holds, or a finished run with nothing left to train, are refused before the run's
    ``run.json`` and results are retired (a resume of a finished epochs run deleted its evaluations and trained
    nothing)."""
    if max_steps < done:
        raise ValueError(
            f"--resume: {out}'s checkpoint holds {done} steps already; trainer.epochs {epochs} makes {max_steps}: "
            f"give more (--set trainer.epochs=N), or --max-steps of at least {done}"
        )
    if max_steps == done and (out / RUN_FILE).is_file():
        raise ValueError(
            f"--resume: {out} finished at {done} step{'s' if done != 1 else ''}, which trainer.epochs {epochs} "
            "makes: nothing to train, and the run is kept as it is; give more epochs to extend it (--set "
            f"trainer.epochs={epochs + 1}) or --max-steps"
        )


@with_registry
@kept_global_rng()  # it seeds itself; the caller's generators and PL_ variables are theirs again after it (s35)
def run_fit(
    data: str | Path,
    out: str | Path,
    cfg: MGFRecConfig | None = None,
    options: FitOptions = FitOptions(),
    *,
    reg: Registry | None = None,
    embedder: Any | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> FitResult:
    """Train the agent with GRPO on ``data``'s train split for ``trainer.max_steps`` steps; write ``out``.

    ``cfg`` None: the config of :func:`starting_config` (``OUT/config.yaml`` when resuming), else the defaults.
    """
    # a plugin --init's run (or its recall run) was made with, missing here: named with its package (review s37)
    with plugins_of_run(options.init) if options.init else contextlib.nullcontext():
        return _run_fit(data, out, cfg, options, reg=reg, embedder=embedder, say=say)


def _run_fit(
    data: str | Path,
    out: str | Path,
    cfg: MGFRecConfig | None,
    options: FitOptions,
    *,
    reg: Registry | None,
    embedder: Any | None,
    say: Callable[[str], None],
) -> FitResult:
    """:func:`run_fit`'s work."""
    started = time.perf_counter()
    if cfg is None:
        path = starting_config(out, options.resume)
        cfg = load_config(path) if path is not None else MGFRecConfig()
    reg = reg or registry()
    if options.resume:
        # a run moved (or copied) with its folder reads its own template copies: config.yaml names the old folder's
        # (gone: "template file not found"; or another run's), and its resume was refused (review s33)
        cfg = run_prompts(cfg, out)
    if options.recall_model is None and options.init is None:  # the recall model is the config's retriever.model
        options = replace(options, recall_model=cfg.retriever.model)  # as fit_start.json records it
    check_fit_config(cfg, options, reg)
    ds, out = PreparedDataset(data), Path(out)
    check_top_k(cfg.grounding.top_k, ds.num_items, cfg.agent.max_groundings)  # else found at the first <ground>
    if launched_as_main():  # (the launch's other processes find OUT held by the first: theirs)
        refuse_if_held(out)  # before its checks and notes read what another command is writing there
    check_output_run(out, "mgfrec", data=ds.root)  # before anything in OUT is touched
    if options.resume:
        check_resume_options(out, options, ds)  # first: "resume with the same --init" says more than a bad --init
    recall_opts, policy_dir = start_point(options, ds)  # --init checked before OUT is touched
    if options.init is not None and not options.resume and Path(options.init).resolve() == out.resolve():
        raise ValueError(f"--init {options.init} and --out are one folder; write the fit to another folder")
    ckpt = resume_checkpoint(out) if options.resume else out / "checkpoints" / "last.ckpt"  # checked, OUT untouched
    if not options.resume and (out / "checkpoints").exists():
        held = steps_done(out)
        steps = "steps checkpointed unknown" if held is None else f"{held} step{'s' if held != 1 else ''} checkpointed"
        say(  # a fit into a used folder replaces the earlier one, as documented; it was done without a word
            f"note: {out} holds an earlier fit ({steps}); this fit replaces it (--resume would continue it)"
        )
    first = launched_as_main()  # with several processes, only the first prepares OUT; the others reuse it
    done: int | None = None  # the steps a resumed run's checkpoint holds, when known
    if options.resume:
        # over --init's recall run, retriever.* is that run's whatever the config says (the recall list's length aside)
        check_resume_config(out, cfg, from_recall_run=recall_opts.recall_run is not None)
        done = steps_done(out)
        if done is None:  # the check was skipped without a word: steps_done read 0 for a missing last.json
            say(
                f"note: {out / 'checkpoints' / CHECKPOINT_STEPS} is missing or damaged, so the steps the checkpoint "
                "holds are unknown and --max-steps is not checked against them (below them, the fit ends at once)"
            )
        elif cfg.trainer.max_steps is not None and cfg.trainer.max_steps < done:
            raise ValueError(  # it "finished" at step {done}, with a config.yaml that said otherwise
                f"--resume: {out}'s checkpoint holds {done} steps already; --max-steps (trainer.max_steps) "
                f"{cfg.trainer.max_steps} is fewer: "
                + (  # a finished run has nothing to train at {done} itself (review s38: the hint named it)
                    f"give more than {done} to extend the finished run"
                    if (out / RUN_FILE).is_file()
                    else f"give at least {done} (more extends the run)"
                )
            )
        elif cfg.trainer.max_steps == done and (out / RUN_FILE).is_file():
            # a finished run with nothing left to train: the resume retired its run.json and evaluation results,
            # then trained nothing
            raise ValueError(
                f"--resume: {out} finished at {done} step{'s' if done != 1 else ''}, which --max-steps "
                "(trainer.max_steps) asks for: nothing "
                f"to train, and the run is kept as it is; give more steps to extend it (--max-steps {done + 1} or more)"
            )
    out.mkdir(parents=True, exist_ok=True)
    # two fits into one folder at once wrote one checkpoint, metrics file and policy over the other's, and each
    # retired what the other had written (note s31); the first process alone takes it, its others reuse OUT
    # Lightning's banners and tips reached a library caller's screen, where baseline fit's never did (review s35)
    with (
        only_one_in(out, "mgfrec fit or sft") if first else contextlib.nullcontext(),
        quiet_lightning(),
        contextlib.ExitStack() as closing,  # the user agent, closed when the fit ends however it ends
    ):
        if first:  # again, holding OUT: a run another command made there since the check above was replaced (s33)
            check_output_run(out, "mgfrec", data=ds.root)
        return _fit_into(
            ds,
            out,
            cfg,
            options,
            recall_opts=recall_opts,
            policy_dir=policy_dir,
            ckpt=ckpt,
            done=done,
            first=first,
            reg=reg,
            embedder=embedder,
            say=say,
            started=started,
            closing=closing,
        )


def _fit_into(
    ds: PreparedDataset,
    out: Path,
    cfg: MGFRecConfig,
    options: FitOptions,
    *,
    recall_opts: RecallOptions,
    policy_dir: Path | None,
    ckpt: Path,
    done: int | None,
    first: bool,
    reg: Registry,
    embedder: Any | None,
    say: Callable[[str], None],
    started: float,
    closing: contextlib.ExitStack,
) -> FitResult:
    """:func:`run_fit` after its checks, holding ``out``'s lock: the recall samples, the policy, the trainer, then
    the earlier run retired and the fit run. ``closing``: what the caller closes when it returns or fails (the user
    agent)."""
    torch.manual_seed(cfg.trainer.seed)

    # before the recall fit: an embedder or grounder (a plugin's) that cannot be built over this catalogue was met
    # only after it (review s37). The recall fit keeps the caller's generators, so the seeded results are as before
    grounding = load_grounding(ds, cfg, embedder=embedder, reg=reg)
    cfg, recall_dir, train, valid = recall_samples(
        ds,
        cfg,
        recall_opts,
        out,
        reg,
        max_train=options.max_train_samples,
        max_valid=options.valid_samples,
        seed=cfg.trainer.seed,
        say=say,
        before_fit=lambda: retire_if_recall_inside(out),  # a new OUT/recall: an earlier run on it goes
        may_fit=first,  # the others wait for the first's OUT/recall, old or new, instead of fitting it beside it
    )
    recall_model = cfg.retriever.model
    if train and cfg.trainer.global_batch_size > len(train):  # the module takes every sample then, as documented
        say(
            f"note: trainer.global_batch_size {cfg.trainer.global_batch_size} is above the "
            f"{len(train)} train samples; each step takes all {len(train)}"
        )

    policy_cfg = cfg.policy if policy_dir is None else cfg.policy.model_copy(update={"model": str(policy_dir)})
    model, tokenizer = load_policy(policy_cfg, ds.titles, seed=cfg.trainer.seed)
    # a remote user agent's answers are cached in the run folder unless user_agent.cache_path says otherwise
    cfg = cfg.model_copy(update={"user_agent": with_run_cache(cfg.user_agent, out, reg)})
    environment = build_environment(grounding, tokenizer, cfg, reg)
    closing.callback(environment.close)
    final = FinalRanking.build(cfg.agent, grounding, recall_dir, str(out))  # the reward's rank, as evaluation's
    max_steps = cfg.trainer.max_steps or cfg.trainer.epochs * -(-len(train) // cfg.trainer.global_batch_size)
    if done is not None and cfg.trainer.max_steps is None:  # a budget in epochs: its steps are known only now
        _check_epochs_budget(out, cfg.trainer.epochs, max_steps, done)
    checkpoint = LastCheckpoint(out / "checkpoints", options.checkpoint_every)
    stop = StopOnSignal(checkpoint, sigterm_before=signal.getsignal(signal.SIGTERM))  # Ctrl-C and SIGTERM (rl.stop)
    callbacks: list[L.Callback] = [stop, checkpoint]
    if options.progress:
        callbacks.append(StepProgress(max_steps))
    try:  # before an earlier run in OUT goes: a setting Lightning refuses here is one line, and loses nothing
        trainer = L.Trainer(
            max_steps=max_steps * cfg.grpo.updates_per_batch,  # Lightning counts optimizer steps
            max_epochs=-1,
            strategy=build_strategy(cfg),
            accelerator=trainer_accelerator(cfg),
            devices=cfg.trainer.devices,
            num_nodes=cfg.trainer.num_nodes,
            precision=cfg.trainer.precision,
            callbacks=callbacks,
            logger=build_logger(cfg, out, resumed_at=done),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=cfg.trainer.log_every_n_steps,
            num_sanity_val_steps=0,
        )
    except (MisconfigurationException, ValueError, TypeError, ImportError, RuntimeError) as exc:
        raise ValueError(
            f"trainer.accelerator {cfg.trainer.accelerator!r}, devices {cfg.trainer.devices!r}, precision "
            f"{cfg.trainer.precision!r}, strategy {cfg.trainer.strategy!r}: Lightning cannot set this up here "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if first:  # everything has loaded: an earlier run goes now, not before (a typo here left it without its files)
        retire_run(out)
        if not options.resume:
            # an earlier fit's weights: --resume would continue it, and run.json would name its best_policy
            for stale in STALE_AT_START:
                if (out / stale).is_dir():
                    shutil.rmtree(out / stale)
                else:
                    (out / stale).unlink(missing_ok=True)
        cfg = keep_run_prompts(cfg, out)  # evaluation reads what it trained on
        cfg = ds.recorded_in(cfg)
        write_resolved(cfg, out)
        if not options.resume:  # with the settings as written: a resume after they were edited is refused (s33)
            write_start_record(out, options, ds)

    module = GRPOModule(
        cfg,
        model,
        tokenizer,
        environment,
        train,
        valid,
        out,
        max_steps=max_steps,
        reg=reg,
        final=final,
        policy_source=policy_cfg.model,
    )
    module.started_at = started  # a checkpoint records the session's time from the command's start
    # the first process under Lightning's launcher: the others it starts are watched (rl.peers)
    launcher = trainer.strategy.launcher
    watch = ChildWatch(launcher).start() if trainer.world_size > 1 and hasattr(launcher, "procs") else None
    try:
        # Ctrl-C: Lightning's silent exit 1 is the user's stop, as anywhere else (exit 130); the run can be resumed
        with lightning_ctrl_c(lambda: trainer.state.status == TrainerStatus.INTERRUPTED):
            # weights_only=False: the checkpoint holds numpy/python RNG states; it is this run's own file
            trainer.fit(module, ckpt_path=str(ckpt) if options.resume else None, weights_only=False)
    except KeyboardInterrupt:
        if stop.requested is None:
            raise
        raise stop_exception(stop.requested) from None  # SIGTERM is told apart from Ctrl-C (exit 143)
    except RuntimeError as exc:  # another process failed: one line here, not a collective's traceback
        failure = as_peer_failure(exc, trainer.global_rank, trainer.world_size, launcher, watch)
        if failure is None:
            raise
        raise failure from None
    finally:
        stop.restore()  # after the final checkpoint: a signal while it was written let the run finish
        if watch is not None:
            watch.stop()

    main = trainer.is_global_zero  # with several processes, every one gets here; rank 0 writes
    if stop.requested is not None and main:  # it came while the last checkpoint was written: nothing was cut short
        say(f"{signal.Signals(stop.requested).name} came as the fit ended: the run is complete, and the command stops")
    if module.replica_drift is None:  # on_train_end did not run: save here, as it would have
        module.save_final_policy()
    drift = module.replica_drift
    if math.isnan(drift) or drift > 0:
        warnings.warn(
            f"the processes ended with different policy weights (largest parameter-sum gap {drift:.3g}); "
            f"OUT/policy is global rank 0's",
            WeightsDiverged,
            stacklevel=2,
        )
    session = time.perf_counter() - started
    seconds = module.seconds_before + session  # a resumed run: the earlier sessions' time up to its checkpoint too
    last = module.rows[-1] if module.rows else {}
    extra = {
        "stage": "grpo",
        "policy": "policy",
        "best_policy": "best_policy" if (out / "best_policy").is_dir() else None,
        "init": str(Path(options.init).resolve()) if options.init else None,
        "base_policy": str(policy_cfg.model),
        "recall_model": recall_model,
        "recall_run": str(recall_dir.resolve()),
        "recall_created": created_stamp(recall_dir),  # a refit of it makes this run stale (check_recall_current)
        "steps": module.batches_done,
        "best_valid_ndcg@10": module.best_ndcg10 if module.best_ndcg10 > float("-inf") else None,
        "last": last,
        "seconds": round(seconds, 1),
        "seconds_this_session": round(session, 1),
        "processes": trainer.world_size,
        "replica_drift": drift,  # 0.0: every process ended with the same weights (data parallelism)
    }
    extra.update(plugins_named(cfg))  # a run given where a package is missing names it
    if main:
        write_run_info(
            out,
            RunInfo(kind="agent", model="mgfrec", data=str(ds.root.resolve()), data_checksum=ds.checksum, extra=extra),
        )
    barrier()  # the other processes return once the run folder is complete
    if stop.requested is not None:  # the run is whole, and the command still stops as told (a sweep or the demo
        raise stop_exception(stop.requested)  # went on to its next stage, and the command exited 0)
    return FitResult(out, module, seconds, extra, main)

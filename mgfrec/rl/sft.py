"""``mgfrec sft``: a supervised warm start that teaches the policy the agent's format before GRPO.

:func:`run_sft` strings the stages together; each is a function of its own:

1. train and valid samples with recall lists (:func:`~mgfrec.agent.samples.recall_samples`): a retriever
   fitted into ``OUT/recall/`` (or an existing run folder), top ``retriever.recall_size``;
2. trajectories synthesized from train samples through the real loop (:mod:`mgfrec.rl.sft_data`);
3. token-level cross-entropy on the action-mask tokens only (:func:`sft_loss`), AdamW, one epoch at a time
   (:func:`train_epoch`);
4. the real agent run (greedy unless ``eval.greedy`` is false) on a valid subsample
   (:func:`~mgfrec.eval.policy_eval.evaluate_policy`) before training and after each epoch: format-valid
   rate, groundings, answers copied from shown lists, NDCG of the grounded answer.

The run folder: ``OUT/policy/`` (:func:`~mgfrec.models.policy.save_policy`; what a later ``mgfrec fit --init
OUT`` starts from), ``OUT/run.json`` (``kind: agent``, ``model: mgfrec-sft``, ``extra.policy: policy``),
``OUT/config.yaml`` (``retriever.model`` is the recall model actually used), ``OUT/sft_metrics.csv``,
``OUT/recall/`` (unless ``recall_run`` was given).

This module does not sample with a temperature, compute rewards or run GRPO.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgfrec.agent.batching import TrajectoryBatch, collate
from mgfrec.agent.environment import build_environment
from mgfrec.agent.final_ranking import FinalRanking, check_start_recall
from mgfrec.agent.samples import RecallOptions, recall_samples
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.components import check_importable, plugins_named
from mgfrec.config.load import write_resolved
from mgfrec.config.schema import MGFRecConfig
from mgfrec.config.section import MAX_LR
from mgfrec.data.prepared import PreparedDataset
from mgfrec.embed.base import check_embedder_loadable
from mgfrec.eval.policy_eval import METRIC_COLUMNS, evaluate_policy
from mgfrec.grounding.engine import check_top_k, load_grounding
from mgfrec.locks import only_one_in, refuse_if_held
from mgfrec.models.logprobs import token_logprobs, vocab_width
from mgfrec.models.policy import check_policy_source, load_policy, recorded_preset, save_policy, training_device
from mgfrec.output_folders import check_output_run, retire_if_recall_inside, retire_run
from mgfrec.registry import Registry, registry, with_registry
from mgfrec.rl.sft_data import Fallback, SynthesisResult, Teacher, synthesize
from mgfrec.rollout.base import build_engine, check_engine, sync_weights
from mgfrec.runs import RUN_FILE, RunInfo, created_stamp, plugins_of_run, write_metrics, write_run_info
from mgfrec.seeding import kept_global_rng
from mgfrec.text.prompts import AgentPrompts, keep_run_prompts
from mgfrec.user_agents.base import RUN_CACHE_FILE, check_user_agent, with_run_cache


@dataclass(frozen=True)
class SFTOptions:
    """Settings of the warm start that are not part of the run config (the CLI's flags)."""

    recall_model: str | None = None  # None: the config's retriever.model (--recall-model sets it)
    recall_run: str | None = None  # an existing baseline run folder; overrides recall_model
    epochs: int = 3
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    max_train_samples: int | None = 300  # seeded subsample of the train split (CPU-sized)
    valid_samples: int = 100  # seeded subsample of the valid split for the per-epoch evaluation
    seed: int = 0
    second_grounding: bool = True
    fallback: Fallback = "recall"
    teacher: Teacher = "target"  # what the demonstrations answer (mgfrec.rl.sft_data.Teacher)
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "valid_samples"):
            if getattr(self, name) < 0 or (name == "batch_size" and self.batch_size < 1):
                raise ValueError(f"--{name.replace('_', '-')}: must be a positive number, got {getattr(self, name)}")
        if not 0 < self.lr <= MAX_LR:  # 1e300 was an optimizer's overflow traceback
            raise ValueError(f"--lr: must be > 0 and at most {MAX_LR:g}, got {self.lr}")

    @property
    def recall(self) -> RecallOptions:
        """Where the recall lists come from (:func:`~mgfrec.agent.samples.recall_samples`)."""
        return RecallOptions(recall_model=self.recall_model, recall_run=self.recall_run)


@dataclass
class SFTResult:
    """What :func:`run_sft` produced: the policy, per-epoch metrics (epoch 0 = untrained) and counters."""

    out: Path
    model: Any
    tokenizer: Any
    history: list[dict[str, float]]
    synthesis: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


# --- training --------------------------------------------------------------------------------------------


def sft_loss(model: torch.nn.Module, batch: TrajectoryBatch) -> torch.Tensor:
    """Mean cross-entropy of the policy's own tokens (``action_mask``); prompt and observations are context only.

    The output layer runs on the masked positions alone: the full ``[B, T, V]`` logits of long prompts would
    cost far more memory than the few dozen policy tokens per trajectory need. Under constrained decoding
    (``batch.constraints``) the cross-entropy is of the distribution renormalised over each position's allowed
    tokens, the one the policy samples from: the model learns the choices the grammar leaves open, not what it
    already enforces.
    """
    logprobs = token_logprobs(
        model, batch.input_ids, batch.attention_mask, constraints=batch.constraints, positions=batch.action_mask
    )
    wanted = batch.action_mask[:, 1:]  # token t is predicted at position t - 1 (column 0 has no prediction)
    return -logprobs[:, 1:][wanted].mean()  # the same positions, head and fallback as GRPO's log-probs


def length_batches(trajectories: Sequence[Trajectory], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar length (little padding), in a shuffled order; a new shuffle every call."""
    jitter = rng.random(len(trajectories))  # breaks ties between equal lengths differently each epoch
    order = sorted(range(len(trajectories)), key=lambda i: (len(trajectories[i]), jitter[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trajectories: Sequence[Trajectory],
    pad_token_id: int,
    batch_size: int,
    rng: np.random.Generator,
    *,
    on_step: Callable[[float], None] | None = None,
) -> float:
    """One pass over ``trajectories``; returns the token-weighted mean loss of the epoch."""
    model.train()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for idx in length_batches(trajectories, batch_size, rng):
        batch = collate([trajectories[i] for i in idx], pad_token_id, vocab_size=vocab_width(model)).to(device)
        loss = sft_loss(model, batch)
        if not math.isfinite(float(loss.detach())):  # it went on, and failed later as a grammar error
            lr = optimizer.param_groups[0]["lr"]
            raise ValueError(
                f"the SFT loss became {float(loss.detach())} (the training diverged; the policy's weights are no "
                f"longer usable): give a smaller --lr (now {lr:g})"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # early steps on a random init spike
        optimizer.step()
        n = int(batch.action_mask[:, 1:].sum())
        value = loss.item()
        total, tokens = total + value * n, tokens + n
        if on_step is not None:
            on_step(value)
    model.eval()
    return total / max(tokens, 1)


# --- the whole run ---------------------------------------------------------------------------------------


def _train(
    model: Any,
    tokenizer: Any,
    trajectories: Sequence[Trajectory],
    options: SFTOptions,
    out: Path,
    validate: Callable[[], dict[str, float]],
    say: Callable[[str], None],
) -> list[dict[str, float]]:
    """Validate, then train ``options.epochs`` epochs validating after each; the rows of ``sft_metrics.csv``."""
    history = [{"epoch": 0, "train_loss": float("nan"), **validate()}]
    say(_row_text(history[-1]))
    # at once, not after epoch 1: a one-epoch SFT stopped in its epoch left a folder read as "not a run folder ...
    # train one with 'mgfrec baseline fit'", not as an SFT that did not finish (review s36)
    write_metrics(out / "sft_metrics.csv", history)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    rng = np.random.default_rng(options.seed)
    steps_per_epoch = -(-len(trajectories) // options.batch_size)
    with _progress(options.progress, options.epochs * steps_per_epoch) as advance:
        for epoch in range(1, options.epochs + 1):
            loss = train_epoch(
                model,
                optimizer,
                trajectories,
                tokenizer.pad_token_id,
                options.batch_size,
                rng,
                on_step=lambda value, e=epoch: advance(e, value),
            )
            history.append({"epoch": epoch, "train_loss": loss, **validate()})
            say(_row_text(history[-1]))
            write_metrics(out / "sft_metrics.csv", history)
    write_metrics(out / "sft_metrics.csv", history)
    return history


def _prompt_texts(prompts: AgentPrompts) -> tuple[Any, ...]:
    """What a prompt shows: its templates' texts (not their files: the run's copies are other paths, and every run
    with a template file of its own synthesized twice) and settings."""
    return prompts.system.text, prompts.first.text, prompts.use_recall, prompts.max_history


def no_trajectory_text(data: str | Path, stats: dict[str, Any]) -> str:
    """Why synthesis kept nothing, by cause: it said every sample "exceeded the turn budgets" when the constrained
    grammar had refused every plan, and the counts were printed only after this check (review s30)."""
    grammar = int(stats.get("dropped_off_grammar", 0))
    unanswered = int(stats.get("dropped", 0)) - grammar
    causes = []
    if grammar:
        causes.append(
            f"{grammar} refused by the constrained turn grammar (agent.decoding: constrained; its room for a title "
            "after agent.max_think_tokens within agent.max_new_tokens_per_turn, and for an answer turn after a "
            "grounding within agent.max_new_tokens_total)"
        )
    if unanswered:
        causes.append(
            f"{unanswered} ended without an answer (agent.max_groundings, agent.max_new_tokens_per_turn, "
            "agent.max_new_tokens_total or the model's context)"
        )
    return f"{data}: no trajectory could be synthesized from {stats.get('samples', 0)} train samples: " + (
        "; ".join(causes) or "none was kept"
    )


@with_registry
@kept_global_rng()  # it seeds itself; the caller's generators and PL_ variables are theirs again after it (s35)
def run_sft(
    data: str | Path,
    out: str | Path,
    cfg: MGFRecConfig,
    options: SFTOptions = SFTOptions(),
    *,
    reg: Registry | None = None,
    embedder: Any | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> SFTResult:
    """Warm-start ``cfg.policy.model`` on trajectories synthesized from ``data``'s train split; write ``out``.

    See the module docstring for the stages and the files written. ``embedder`` reuses an already loaded
    embedder (default: built from ``cfg.embedding``).
    """
    if not isinstance(options, SFTOptions):  # a dict was an AttributeError after OUT was made (review s35)
        raise TypeError(f"options: give an SFTOptions (SFTOptions(epochs=1, ...)), got {type(options).__name__}")
    # a plugin retriever --recall-run was made with, missing here: named with its package (review s37)
    with plugins_of_run(options.recall_run) if options.recall_run else contextlib.nullcontext():
        return _run_sft(data, out, cfg, options, reg=reg, embedder=embedder, say=say)


def _run_sft(
    data: str | Path,
    out: str | Path,
    cfg: MGFRecConfig,
    options: SFTOptions,
    *,
    reg: Registry | None,
    embedder: Any | None,
    say: Callable[[str], None],
) -> SFTResult:
    """:func:`run_sft`'s work."""
    started = time.perf_counter()
    reg = reg or registry()
    check_policy_source(cfg.policy.model)
    if embedder is None:  # its device and, offline, its cached model: before the recall fit (review s35)
        check_embedder_loadable(cfg.embedding, reg)
    check_user_agent(cfg.user_agent, "SFT", reg)  # before any data work: a person cannot answer a rollout
    check_engine(cfg.rollout, reg)  # vLLM missing: one line now, not once an earlier run in OUT was retired
    check_importable(cfg, reg)  # a plugin that fails on import: named before the recall fit, not after it
    recall = options.recall  # final_ranking l2_joint over pop: refused after the recall fit (review s37)
    model = recall.recall_model or cfg.retriever.model
    check_start_recall(cfg.agent, recall.recall_run, model, f"--recall-run {recall.recall_run}", reg)
    ds, out = PreparedDataset(data), Path(out)
    check_top_k(cfg.grounding.top_k, ds.num_items, cfg.agent.max_groundings)  # else found at the first <ground>
    refuse_if_held(out)  # before its checks read what another command is writing there
    check_output_run(out, "mgfrec-sft", data=ds.root)  # before anything in OUT is touched
    AgentPrompts.from_config(cfg.agent)  # a template that cannot be read is named before OUT is cleared
    out.mkdir(parents=True, exist_ok=True)
    # two SFTs into one folder at once each retired the other's files and saved one policy over the other's
    with only_one_in(out, "mgfrec fit or sft"), contextlib.ExitStack() as closing:  # the user agent closed at the end
        check_output_run(out, "mgfrec-sft", data=ds.root)  # again, holding OUT: a run made there meanwhile (s33)
        return _sft_into(
            data, ds, out, cfg, options, reg=reg, embedder=embedder, say=say, started=started, closing=closing
        )


def _mark_started(out: Path) -> None:
    """An ``sft_metrics.csv`` of no rows: what marks ``out`` as an SFT that has not finished until the first
    validation writes its row. A stop before then (a validation takes minutes) left only ``prompts/`` or the user
    agent's cache, and the same command was refused as "not empty and not a run folder" (review s41)."""
    write_metrics(out / "sft_metrics.csv", [])


def _sft_into(
    data: str | Path,
    ds: PreparedDataset,
    out: Path,
    cfg: MGFRecConfig,
    options: SFTOptions,
    *,
    reg: Registry,
    embedder: Any | None,
    say: Callable[[str], None],
    started: float,
    closing: contextlib.ExitStack,
) -> SFTResult:
    """:func:`run_sft` after its checks, holding ``out``'s lock: synthesize, retire the earlier run, train, save."""
    torch.manual_seed(options.seed)

    # before the recall fit: an embedder or grounder (a plugin's) that cannot be built over this catalogue was met
    # only after it (review s37). The recall fit keeps the caller's generators, so the seeded results are as before
    grounding = load_grounding(ds, cfg, embedder=embedder, reg=reg)
    cfg, recall_dir, train, valid = recall_samples(
        ds,
        cfg,
        options.recall,
        out,
        reg,
        max_train=options.max_train_samples,
        max_valid=options.valid_samples,
        seed=options.seed,
        say=say,
        before_fit=lambda: retire_if_recall_inside(out),  # a new OUT/recall: an earlier run on it no longer matches
    )
    recall_model = cfg.retriever.model

    model, tokenizer = load_policy(cfg.policy, ds.titles, seed=options.seed)
    model = model.to(training_device(cfg.trainer.accelerator))
    # a remote user agent's answers are cached in the run folder unless user_agent.cache_path says otherwise
    cfg = cfg.model_copy(update={"user_agent": with_run_cache(cfg.user_agent, out, reg)})
    environment = build_environment(grounding, tokenizer, cfg, reg)
    closing.callback(environment.close)
    if (out / RUN_CACHE_FILE).exists() and not (out / RUN_FILE).is_file() and not (out / "sft_metrics.csv").exists():
        # the user agent's cache in OUT holds paid answers from here on: the folder is an SFT that has not finished
        _mark_started(out)
    final = FinalRanking.build(cfg.agent, grounding, recall_dir, str(out))  # what validation's NDCG reads
    max_context = getattr(model.config, "max_position_embeddings", None)

    def synthesized(prompts: AgentPrompts) -> SynthesisResult:
        return synthesize(
            train,
            environment,
            cfg.agent,
            prompts=prompts,
            second_grounding=options.second_grounding,
            fallback=options.fallback,
            teacher=options.teacher,
            max_context=max_context,
        )

    # synthesized before an earlier run in OUT is retired: a config no trajectory can be made under
    # (agent.max_groundings 0, a turn budget too small for any title) retired a finished run first (review s30)
    prompts = AgentPrompts.from_config(cfg.agent)
    synth = synthesized(prompts)
    if not synth.trajectories:
        raise ValueError(no_trajectory_text(data, synth.stats))
    # everything has loaded: an earlier run's run.json (it marks a finished run) and results go now, not before
    # (a typo in this run's config left the earlier one without them)
    if (out / RUN_FILE).is_file() or (out / "policy").is_dir():
        # it went without a word, a finished warm start of minutes (review s36), where fit says so
        say(f"note: {out} holds an earlier SFT run; this SFT replaces it (its policy and results are removed now)")
    retire_run(out)
    # the earlier run's policy and metrics too: a stopped SFT left its new epochs' sft_metrics.csv beside the
    # earlier run's policy/, a folder of two runs whose policy looked like this one's (review s30)
    shutil.rmtree(out / "policy", ignore_errors=True)
    _mark_started(out)  # the earlier run's metrics go; the header alone marks this run until its first row
    # the templates it trains on, copied now and read from the copies: copied at the end, a file edited during
    # training was recorded as the one trained on, and evaluation and `fit --init` prompted with it
    cfg = keep_run_prompts(cfg, out)
    if _prompt_texts(AgentPrompts.from_config(cfg.agent)) != _prompt_texts(prompts):  # edited meanwhile
        prompts = AgentPrompts.from_config(cfg.agent)
        synth = synthesized(prompts)
        if not synth.trajectories:
            raise ValueError(no_trajectory_text(data, synth.stats))
    say(
        "synthesized: "
        + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in synth.stats.items())
    )

    # one rollout engine for every validation (a vllm engine starts once), given the trained weights before each
    engine = build_engine(cfg.rollout, model, tokenizer, reg=reg)

    def validate() -> dict[str, float]:
        sync_weights(engine, model)
        return evaluate_policy(
            model, tokenizer, environment, valid, cfg, prompts=prompts, seed=options.seed, final=final, engine=engine
        )

    try:
        history = _train(model, tokenizer, synth.trajectories, options, out, validate, say)
    finally:
        close = getattr(engine, "close", None)
        if callable(close):
            close()

    save_policy(model, tokenizer, out / "policy", preset=recorded_preset(cfg.policy.model))
    write_resolved(ds.recorded_in(cfg), out)
    seconds = time.perf_counter() - started
    extra = {
        "stage": "sft",
        "policy": "policy",
        "base_policy": cfg.policy.model,
        "recall_model": recall_model,
        "recall_run": str(recall_dir.resolve()),
        "recall_created": created_stamp(recall_dir),  # a refit of it makes this run stale (check_recall_current)
        "synthesis": synth.stats,
        "options": {k: getattr(options, k) for k in options.__dataclass_fields__},
        "valid": history[-1],
        "untrained_valid": history[0],
        "seconds": round(seconds, 1),
    }
    extra.update(plugins_named(cfg))  # a run given where a package is missing names it
    write_run_info(
        out,
        RunInfo(kind="agent", model="mgfrec-sft", data=str(ds.root.resolve()), data_checksum=ds.checksum, extra=extra),
    )
    return SFTResult(out, model, tokenizer, history, synth.stats, seconds, extra)


def _row_text(row: dict[str, float]) -> str:
    """One epoch's line: its mean train loss and the valid metrics after it. Epoch 0 is the evaluation of
    the untrained policy, before any training step, so it has no loss."""
    if all(math.isnan(row[k]) for k in METRIC_COLUMNS):  # --valid-samples 0: "nan" for every metric said nothing
        valid = "no validation (no valid samples)"
    else:
        valid = "valid " + ", ".join(f"{k} {row[k]:.4f}" for k in METRIC_COLUMNS)
    if row["epoch"] == 0:
        return f"before training (epoch 0, no train loss yet): {valid}"
    return f"epoch {row['epoch']}: train loss (epoch mean) {row['train_loss']:.4f}; {valid}"


class _progress:
    """The live progress line of SFT (:mod:`mgfrec.progress`: a rich bar on a terminal, a plain line every
    few seconds in a log) with the last batch's loss, or nothing (tests, ``--no-progress``)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, max(total, 1)

    def __enter__(self) -> Callable[[int, float], None]:
        if not self.enabled:
            return lambda epoch, loss: None
        from contextlib import ExitStack

        from mgfrec import progress

        self.stack = ExitStack()
        if not progress.enabled():  # a library caller asked for progress: show it on stderr
            self.stack.enter_context(progress.reporting())
        task = self.stack.enter_context(progress.task("sft"))
        done = 0

        def advance(epoch: int, loss: float) -> None:
            nonlocal done
            done += 1
            task.update(done / self.total, f"epoch {epoch}, step {done}/{self.total}, batch loss {loss:.4f}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stack.close()

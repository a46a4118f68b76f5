"""``GRPOModule``: one GRPO training step of the MGFRec agent (paper sections 3-4) as a Lightning module.

Every ``training_step`` takes the next ``trainer.global_batch_size`` train samples of a seeded per-epoch
permutation and runs, each arrow a function of its own module:

1. ``rollout`` (:mod:`mgfrec.agent.loop`): ``grpo.group_size`` trajectories per sample through the engine
   (``rollout.engine``). The hf engine shares the policy module by default, so it always samples from the
   current weights; an engine with its own copy gets ``engine.load_weights`` before each rollout and after
   each update;
2. rewards: :func:`~mgfrec.agent.final_ranking.reward_inputs` then ``grpo.rewards`` composed
   (:func:`~mgfrec.rewards.compose.build_reward`; eq. 8 with ``ndcg`` + ``format``); the target's rank is read
   by the run's ``agent.final_ranking`` (the paper's L2 by default), as evaluation reads it;
3. advantages (eq. 2): :func:`~mgfrec.rl.advantages.advantages_from_config`;
4. old log-probs are **recomputed** by a teacher-forced forward pass of the policy under ``no_grad``, before
   any update, at the sampling temperature. They equal the engine's sampled log-probs up to rounding
   (KV-cache decoding vs one full pass); recomputing makes the ratio of the first update exactly 1, as verl
   and TRL do. Reference log-probs come from a frozen copy of the initial policy (skipped when
   ``grpo.kl_beta`` is 0);
5. ``grpo.updates_per_batch`` optimizer steps, each accumulating gradients over micro-batches of
   ``trainer.micro_batch_size`` trajectories; :func:`~mgfrec.rl.grpo.grpo_loss` gets the token (or sequence)
   count of the whole batch as ``normalizer`` so the accumulated loss is the mean over the batch; gradients
   are clipped to norm ``grpo.max_grad_norm``. Under a DeepSpeed strategy the engine owns the gradients:
   the micro-batches are one accumulation window of the DeepSpeed engine (its boundary set on the last one)
   and DeepSpeed clips (``gradient_clipping`` in its config, set by :func:`mgfrec.rl.strategy.build_strategy`).

Counting: Lightning's ``global_step`` counts optimizer steps (``updates_per_batch`` per training step);
``batches_done`` counts training steps and is what ``--max-steps``, validation and checkpoints count in.

Validation runs inside the training step every ``trainer.val_check_interval`` batches (``eval.greedy``
:func:`~mgfrec.eval.policy_eval.evaluate_policy` on a fixed valid subsample); the best policy by valid NDCG@10 is saved
to ``RUN/best_policy``. Metrics go to ``self.log`` and to ``RUN/metrics.csv`` (one row per batch).

Several processes (``trainer.devices`` > 1, several nodes): each takes its shard of the global batch and of
the valid subsample, the loss is normalised so that the processes' averaged gradient is the single-process
gradient of the whole batch, logged numbers cover the whole batch and global rank 0 writes the files
(:mod:`mgfrec.rl.distributed`). It builds no data, recall or policy (:mod:`mgfrec.rl.fit` does), owns no Trainer.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mgfrec.agent.batching import collate
from mgfrec.agent.environment import Environment
from mgfrec.agent.final_ranking import FinalRanking, reward_inputs
from mgfrec.agent.loop import rollout
from mgfrec.agent.samples import AgentSample, to_rollout_sample
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.schema import MGFRecConfig
from mgfrec.eval.policy_eval import METRIC_COLUMNS, evaluate_policy
from mgfrec.models.logprobs import token_logprobs, token_logprobs_and_entropy, vocab_width
from mgfrec.models.policy import disable_dropout, recorded_preset, save_policy
from mgfrec.registry import Registry
from mgfrec.rewards.compose import build_reward
from mgfrec.rl.advantages import advantages_from_config
from mgfrec.rl.distributed import all_sum, check_batch_split, replica_drift, shard, world
from mgfrec.rl.grpo import grpo_loss
from mgfrec.rl.sample_order import drawn
from mgfrec.rl.step_metrics import END_REASONS, step_row  # noqa: F401 (END_REASONS as before)
from mgfrec.rl.strategy import begin_micro_batch, deepspeed_engine, full_weights, generation_weights
from mgfrec.rollout.base import build_engine, context_limit, shares_model, sync_weights
from mgfrec.runs import read_metrics, write_metrics
from mgfrec.text.prompts import AgentPrompts
from mgfrec.user_agents.base import agent_stats


class GRPOModule(L.LightningModule):
    """The policy trained with GRPO; see the module docstring for one step.

    ``policy``/``tokenizer``: the initial policy (its frozen copy is the KL reference). ``train``/``valid``:
    samples with recall lists (:func:`~mgfrec.agent.samples.recall_samples`). ``out``: the run folder.
    ``final``: the run's ``agent.final_ranking`` (:meth:`FinalRanking.build
    <mgfrec.agent.final_ranking.FinalRanking.build>`), which the reward's rank and validation read; needed
    unless it is the paper's ``l2``.
    """

    def __init__(
        self,
        cfg: MGFRecConfig,
        policy: torch.nn.Module,
        tokenizer: Any,
        environment: Environment,
        train: Sequence[AgentSample],
        valid: Sequence[AgentSample],
        out: str | Path,
        *,
        max_steps: int,
        reg: Registry | None = None,
        final: FinalRanking | None = None,
        policy_source: str | None = None,
    ):
        """``policy_source``: where ``policy`` was loaded from (``--init``'s policy folder), recorded as its
        preset in the policies it saves (default: ``cfg.policy.model``)."""
        super().__init__()
        if not train:
            raise ValueError("the train split has no samples to roll out")
        self.automatic_optimization = False  # rollouts, several updates and accumulation per step
        # no dropout: the ratio of the first update is exactly 1 only if the trained forward is the sampling one
        self.cfg, self.policy, self.tokenizer, self.environment = cfg, disable_dropout(policy), tokenizer, environment
        self.train_samples, self.valid_samples = list(train), list(valid)
        self.out, self.max_steps = Path(out), max_steps
        self.preset = recorded_preset(policy_source or cfg.policy.model)
        self.prompts = AgentPrompts.from_config(cfg.agent)
        self.reg = reg  # None: the process-wide registry; a given one also serves the rewards and the engine
        self.reward = build_reward(cfg.grpo.rewards, reg=reg)
        # agent.final_ranking: what the reward's rank and validation's NDCG are read by (the paper's L2 by default)
        if final is None and cfg.agent.final_ranking != "l2":
            raise ValueError(
                f"agent.final_ranking: {cfg.agent.final_ranking} needs its FinalRanking (built from the recall run)"
            )
        self.final = final  # None: the paper's L2 (what reward_inputs and evaluate_policy read without one)
        # A list hides the reference from Lightning: it is not trained, not checkpointed (a resumed run rebuilds
        # it from the same initial policy) and not counted as a parameter of the module.
        self._ref: list[torch.nn.Module] = []
        if cfg.grpo.kl_beta > 0:
            self._ref.append(copy.deepcopy(policy).eval().requires_grad_(False))
        self.engine: Any = None
        self.batches_done = 0
        self.best_ndcg10 = -math.inf
        self.rows: list[dict[str, float]] = []
        self._agent_base: dict[str, float] = {}  # user-agent counters of the run this one resumes
        self.replica_drift: float | None = None  # set when the final policy is saved
        self._grad_norm: torch.Tensor | None = None  # the last step's norm, from on_before_optimizer_step
        # wall time: this process's start (run_fit sets its own), and the earlier sessions' up to the checkpoint a
        # resume starts from, so a resumed run's run.json seconds are the whole run's
        self.started_at, self.seconds_before = time.perf_counter(), 0.0

    # --- data ------------------------------------------------------------------------------------------

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """One item per training step; the samples themselves are drawn by :meth:`next_samples`, so the data
        position is ``batches_done`` (checkpointed), whatever Lightning's loader restarts from."""
        return torch.utils.data.DataLoader(range(self.max_steps), batch_size=None)

    def batch_samples(self) -> int:
        """Samples per training step: ``global_batch_size``, or every train sample when there are fewer."""
        return min(self.cfg.trainer.global_batch_size, len(self.train_samples))

    def data_position(self) -> int:
        """Index into the endless sequence of per-epoch permutations of the train samples."""
        return self.batches_done * self.batch_samples()

    def next_samples(self) -> list[AgentSample]:
        """The next :meth:`batch_samples` samples (:func:`~mgfrec.rl.sample_order.drawn`): every sample comes once
        per epoch; with fewer train samples than the batch, each step is one whole epoch."""
        return drawn(self.train_samples, self.cfg.trainer.seed, self.data_position(), self.batch_samples())

    # --- lightning hooks -------------------------------------------------------------------------------

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip to ``grpo.max_grad_norm`` and keep the norm for the step's row. Lightning calls this inside
        ``opt.step()`` after a loss-scaling precision (``16-mixed`` on GPUs) has unscaled the gradients, so the
        clip and the logged norm are of the true gradients (clipping before ``opt.step()`` measured the scaled
        ones). Under DeepSpeed the engine clips to its own ``gradient_clipping``."""
        if self.deepspeed_engine() is None:
            self._grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grpo.max_grad_norm)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainer = self.cfg.trainer
        return torch.optim.AdamW(self.policy.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay)

    @property
    def is_main(self) -> bool:
        """Global rank 0: the process that writes metrics.csv and the policies."""
        return world()[0] == 0

    def on_fit_start(self) -> None:
        check_batch_split(min(self.cfg.trainer.global_batch_size, len(self.train_samples)), world()[1])
        if self._ref:  # grpo.reference_device: colocated with the policy, or offloaded to the CPU
            device = self.device if self.cfg.grpo.reference_device == "policy" else torch.device("cpu")
            # and in the dtype the strategy gave the policy (DeepSpeed's bf16, a *-true precision): a float32 copy
            # of a policy trained in bfloat16 made the KL nonzero at step 1 and pulled towards the float32 model
            # rather than the policy's own start (4e-6 at step 1 on an H200), at twice the memory (review s40)
            dtypes = {p.dtype for p in self.policy.parameters()}
            self._ref[0].to(device, dtype=dtypes.pop()) if len(dtypes) == 1 else self._ref[0].to(device)
        with self.full_weights():  # ZeRO-3: an engine with its own copy (vLLM) saved empty, partitioned tensors
            self.engine = build_engine(self.cfg.rollout, self.policy, self.tokenizer, reg=self.reg)
        self.sync_engine()

    def on_train_start(self) -> None:
        # Here, not in on_fit_start: under DeepSpeed, Lightning restores a checkpoint after on_fit_start, and a
        # resumed run must neither validate step 0 again nor overwrite metrics.csv before reading it back.
        if self.batches_done == 0 and not self.rows and self.valid_samples:
            # Step 0: the starting policy on the same valid subsample, so the log shows what training changed.
            # with the user agent's counters as of the row: step 0's validation calls were counted in step 1's
            # (review s31)
            self.rows.append({"step": 0.0, **self.validate_now(), **self.user_agent_stats(summed=True)})
            self.log_row(self.rows[-1])
            if self.is_main:
                write_metrics(self.out / "metrics.csv", self.rows)

    def on_train_end(self) -> None:
        self.save_final_policy()  # here, before the strategy's teardown, while DeepSpeed's engine is whole

    def teardown(self, stage: str) -> None:
        """Close the rollout engine however the fit ends (vLLM's temporary copy of the policy outlived it; s37)."""
        if callable(close := getattr(self.engine, "close", None)):  # (kept: a caller may read what it held)
            close()

    def save_final_policy(self) -> None:
        """``RUN/policy`` from global rank 0, and :func:`~mgfrec.rl.distributed.replica_drift` over processes."""
        with self.full_weights():  # entered by every process: under ZeRO-3 it gathers parameters
            self.replica_drift = replica_drift(list(self.policy.parameters()))
            if self.is_main:
                save_policy(self.policy, self.tokenizer, self.out / "policy", preset=self.preset)

    def sync_engine(self) -> None:
        """Give the engine the policy's current weights; nothing to do when it shares the module. Under ZeRO-3 the
        weights are gathered first (every process enters): the engine was given empty partitions."""
        if shares_model(self.engine, self.policy):  # nothing to gather
            return
        with self.full_weights():
            sync_weights(self.engine, self.policy)

    def deepspeed_engine(self) -> Any:
        """The DeepSpeed engine wrapping this module under a DeepSpeed strategy, else None."""
        return deepspeed_engine(self._trainer)

    def full_weights(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which ``self.policy``'s parameters are whole (:func:`~mgfrec.rl.strategy.full_weights`)."""
        return full_weights(self.deepspeed_engine(), self.policy)

    def generation_weights(self) -> contextlib.AbstractContextManager[Any]:
        """A context for generating with ``self.policy`` (rollouts, validation);
        :func:`~mgfrec.rl.strategy.generation_weights`."""
        return generation_weights(self.deepspeed_engine())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["mgfrec"] = {
            "batches_done": self.batches_done,
            "data_position": self.data_position(),
            "best_ndcg10": self.best_ndcg10,
            "rng": rng,
            "seconds": self.seconds_before + time.perf_counter() - self.started_at,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["mgfrec"]
        self.batches_done, self.best_ndcg10 = int(state["batches_done"]), float(state["best_ndcg10"])
        self.seconds_before = float(state.get("seconds", 0.0))  # a checkpoint of before: this session's only
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.rows = read_metrics(self.out / "metrics.csv", before=self.batches_done)
        last = next((r for r in reversed(self.rows) if any(k.startswith("user_agent/") for k in r)), {})
        self._agent_base = {k: v for k, v in last.items() if k.startswith("user_agent/") and not k.endswith("_mean")}

    # --- one step --------------------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> None:
        started = time.perf_counter()
        cfg = self.cfg
        rank, size = world()
        samples = shard(self.next_samples(), rank, size)  # a group never spans processes
        self.sync_engine()
        with self.generation_weights():
            result = rollout(
                self.engine,
                self.environment,
                [to_rollout_sample(s, self.environment.grounding.titles) for s in samples],
                group_size=cfg.grpo.group_size,
                agent=cfg.agent,
                temperature=cfg.rollout.temperature,
                top_p=cfg.rollout.top_p,
                seed=(cfg.trainer.seed * 1_000_003 + self.batches_done) * size + rank,
                prompts=self.prompts,
                max_context=context_limit(self.engine, self.policy),
            )
        trajs = result.trajectories
        g = cfg.grpo.group_size
        inputs = reward_inputs(
            trajs,
            self.environment.grounding,
            [s.target for s in samples for _ in range(g)],
            [s.history for s in samples for _ in range(g)],
            exclude_history=cfg.eval.exclude_history,
            device=self.device,
            final=self.final,
        )
        parts = [self.reward.breakdown(i) for i in inputs]
        rewards = torch.tensor([p["total"] for p in parts], dtype=torch.float32)
        advantages = advantages_from_config(rewards, cfg.grpo)
        t_train = time.perf_counter()
        train_metrics = self.update(trajs, advantages)
        self.sync_engine()
        self.batches_done += 1
        now = time.perf_counter()

        times = [  # rollout, environment, reward, train
            result.stats.generation_s + result.stats.prompt_s,
            result.stats.environment_s,
            t_train - started - result.stats.total_s,
            now - t_train,
        ]
        row = step_row(
            self.batches_done, rewards, trajs, parts, g, times, train_metrics, self.user_agent_stats(summed=True)
        )
        if self.batches_done % cfg.trainer.val_check_interval == 0 or self.batches_done == self.max_steps:
            row.update(self.validate_now())
            row.update(self.user_agent_stats(summed=True))  # the counters as of the row, validation included
        row["time/step"] = time.perf_counter() - started
        if self.device.type == "cuda":
            row["memory/gpu_peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.record(row)

    def update(self, trajs: list[Trajectory], advantages: torch.Tensor) -> dict[str, float]:
        """``updates_per_batch`` optimizer steps over micro-batches; the batch's mean metrics."""
        cfg, opt = self.cfg, self.optimizers()
        temperature = cfg.rollout.temperature or 1.0  # greedy rollouts are scored at T = 1 (rollout.base)
        pad = self.tokenizer.pad_token_id
        size = cfg.trainer.micro_batch_size
        micro = []
        self.policy.eval()  # old log-probs: the sampling policy, so no dropout
        with torch.no_grad():
            for start in range(0, len(trajs), size):
                batch = collate(trajs[start : start + size], pad, vocab_size=vocab_width(self.policy)).to(self.device)
                old = token_logprobs(
                    self.policy,
                    batch.input_ids,
                    batch.attention_mask,
                    temperature,
                    batch.constraints,
                    batch.action_mask,
                )
                ref = self.reference_logprobs(batch, temperature) if self._ref else None
                micro.append((batch, old, ref, advantages[start : start + size].to(self.device)))
        self.policy.train()
        # The whole global batch's token and trajectory counts: with several processes, each normalises by them
        # and scales its loss by the number of processes, which DDP/DeepSpeed's gradient averaging divides out.
        size = world()[1]
        n_tokens, n_trajs = all_sum([sum(float(b.action_mask.sum()) for b, *_ in micro), float(len(trajs))])
        n_tokens = max(n_tokens, 1.0)
        normalizer = n_trajs if cfg.grpo.loss_aggregation == "sequence-mean" else n_tokens
        sums: dict[str, float] = {}
        ds_engine = self.deepspeed_engine()
        for _ in range(cfg.grpo.updates_per_batch):
            opt.zero_grad(set_to_none=True)
            for i, (batch, old, ref, adv) in enumerate(micro):
                if ds_engine is not None:  # one accumulation window: DeepSpeed reduces and steps at its end
                    ds_engine.set_gradient_accumulation_boundary(i == len(micro) - 1)
                    begin_micro_batch(ds_engine)
                mask = batch.action_mask  # the policy's own tokens only: prompt and observations get no loss
                logp, entropy = token_logprobs_and_entropy(  # at the policy's tokens only: no [B, T, V] logits
                    self.policy, batch.input_ids, batch.attention_mask, temperature, batch.constraints, mask
                )
                loss, m = grpo_loss(
                    logp,
                    old,
                    ref,
                    adv,
                    mask,
                    clip_epsilon=cfg.grpo.clip_epsilon,
                    kl_beta=cfg.grpo.kl_beta,
                    aggregation=cfg.grpo.loss_aggregation,
                    normalizer=normalizer,
                    kl_importance_correction=cfg.grpo.kl_importance_correction,
                )
                self.manual_backward(loss * size if size > 1 else loss)
                share = float(mask.sum()) / n_tokens  # token-weighted means over the global batch
                m = {**m, "entropy": entropy[mask].mean() if mask.any() else entropy.new_zeros(())}
                for k in ("loss", "policy_loss"):
                    sums[k] = sums.get(k, 0.0) + float((loss if k == "loss" else m[k]).detach())
                for k in ("kl", "entropy", "clip_fraction/total", "ratio/mean", "approx_kl_old"):
                    if k in m:
                        sums[k] = sums.get(k, 0.0) + float(m[k]) * share
            if ds_engine is None:
                self._grad_norm = None
                opt.step()  # clips in on_before_optimizer_step, after the precision plugin unscaled the gradients
                if self._grad_norm is None:
                    raise RuntimeError("the optimizer stepped without on_before_optimizer_step: nothing was clipped")
                norm = self._grad_norm
            else:
                opt.step()  # DeepSpeed clips to its gradient_clipping and knows the norm it measured
                norm = ds_engine.get_global_grad_norm()
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(norm if norm is not None else float("nan"))
        self.policy.eval()
        grad_norm = sums.pop("grad_norm")  # the same in every process (measured after averaging)
        keys = sorted(sums)  # partial sums and token-weighted shares: their sums over processes are the batch's
        totals = dict(zip(keys, all_sum([sums[k] for k in keys]), strict=False))
        if not math.isfinite(totals.get("loss", 0.0)):  # every process sees the same sum: all stop together
            raise ValueError(
                f"the GRPO loss became {totals['loss']} at step {self.batches_done + 1} (the training diverged; the "
                f"policy's weights are no longer usable): a smaller trainer.lr (--lr, now {cfg.trainer.lr:g}) is the "
                "usual cure"
            )
        return {
            **{k: v / cfg.grpo.updates_per_batch for k, v in totals.items()},
            "grad_norm": grad_norm / cfg.grpo.updates_per_batch,
        }

    def reference_logprobs(self, batch: Any, temperature: float) -> torch.Tensor:
        """Per-token log-probs of the frozen reference on its own device, returned on the policy's."""
        ref = self._ref[0]
        device = next(ref.parameters()).device
        constraints = batch.constraints
        if constraints is not None:
            constraints = (constraints[0].to(device), constraints[1].to(device))
        out = token_logprobs(
            ref,
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
            temperature,
            constraints,
            batch.action_mask.to(device),
        )
        return out.to(self.device)

    def user_agent_stats(self, *, summed: bool = False) -> dict[str, float]:
        """Cumulative user-agent counters (calls, cache hits, ...) when the backend reports them; ``summed``:
        over every process (counters added, ``latency_s_mean`` recomputed from the sums). Every process has
        the same backend, so the same keys; they are sorted so the processes' sums line up."""
        agent = getattr(self.environment, "user_agent", None)
        stats = agent_stats(agent) if agent is not None else {}
        counters = {
            k: float(v) for k, v in sorted(stats.items()) if isinstance(v, (int, float)) and not k.endswith("_mean")
        }
        if summed:
            counters = dict(zip(counters, all_sum(list(counters.values())), strict=False))
            # a resumed run continues the counts of the run it resumes (its last metrics row), not from zero
            counters = {k: v + self._agent_base.get(f"user_agent/{k}", 0.0) for k, v in counters.items()}
        if "latency_s_mean" in stats:
            calls = counters.get("calls", 0.0)
            counters["latency_s_mean"] = counters.get("latency_s_total", 0.0) / calls if calls else 0.0
        return {f"user_agent/{k}": v for k, v in counters.items()}

    def validate_now(self) -> dict[str, float]:
        """The agent (greedy or sampled, ``eval.greedy``) on the fixed valid subsample, each process on its shard;
        saves ``RUN/best_policy`` when NDCG@10 improves."""
        if not self.valid_samples:
            return {}
        rank, size = world()
        mine = shard(self.valid_samples, rank, size)
        with self.generation_weights():  # entered by every process: under ZeRO-3 it gathers parameters
            metrics = (
                evaluate_policy(
                    self.policy,
                    self.tokenizer,
                    self.environment,
                    mine,
                    self.cfg,
                    prompts=self.prompts,
                    seed=self.cfg.trainer.seed * size + rank,
                    reg=self.reg,
                    engine=self.engine,  # synced with the policy; a second vLLM would not start in-process
                    final=self.final,
                )
                if mine
                else {}
            )
        # Sample-weighted means over processes (a shard may be empty when there are fewer samples than processes).
        sums = all_sum([len(mine), *(metrics[k] * len(mine) if mine else 0.0 for k in METRIC_COLUMNS)])
        metrics = {k: v / sums[0] for k, v in zip(METRIC_COLUMNS, sums[1:], strict=False)}
        if metrics["ndcg@10"] > self.best_ndcg10:  # the same decision in every process
            self.best_ndcg10 = metrics["ndcg@10"]
            with self.full_weights():
                if self.is_main:
                    save_policy(self.policy, self.tokenizer, self.out / "best_policy", preset=self.preset)
        return {f"valid/{k}": v for k, v in metrics.items()}

    def record(self, row: dict[str, float]) -> None:
        """Rewrite ``RUN/metrics.csv`` with ``row`` added, and give it to the run's logger (TensorBoard)."""
        self.rows.append(row)
        self.log_row(row)
        if self.is_main:
            write_metrics(self.out / "metrics.csv", self.rows)

    def log_row(self, row: dict[str, float]) -> None:
        """``row`` to the run's logger at its own step, the step metrics.csv gives it: ``self.log`` wrote it at
        Lightning's step counter, one behind (a point at x=1 was the csv's step 2), and step 0's validation not at
        all. ``reward`` repeats ``reward/mean`` (the name the progress bar showed)."""
        logger = self.logger
        every, step = self.cfg.trainer.log_every_n_steps, int(row["step"])
        if logger is None or (step % every and not any(k.startswith("valid/") for k in row)):
            return  # trainer.log_every_n_steps, as Lightning applied it; a validation row always
        metrics = {k: float(v) for k, v in row.items() if k != "step"}
        if "reward/mean" in metrics:
            metrics["reward"] = metrics["reward/mean"]
        logger.log_metrics(metrics, step=step)  # Lightning's loggers write from global rank 0 only

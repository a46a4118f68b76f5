"""``trainer.strategy``: the name a run config gives, turned into what Lightning's ``Trainer`` takes.

* ``auto``, ``ddp``, ... pass through to Lightning.
* ``deepspeed_stage_2``, ``deepspeed_stage_3`` and their ``_offload`` forms are Lightning's DeepSpeed
  strategies, for CUDA GPUs. mgfrec trains with manual optimization, so it hands DeepSpeed what Lightning
  cannot: ``grpo.max_grad_norm`` as DeepSpeed's ``gradient_clipping`` and ``trainer.micro_batch_size`` as its
  micro-batch size. Without CUDA they are refused with a message, not Lightning's traceback.
* ``deepspeed_stage_2_cpu`` and ``deepspeed_stage_3_cpu`` run the same DeepSpeed engine on DeepSpeed's CPU
  accelerator (one process, gloo). They are for developing and testing the ZeRO code paths on a machine
  without a GPU (they are slower than ``auto`` and save no memory there); Lightning refuses DeepSpeed on CPU,
  so :class:`CPUDeepSpeedStrategy` lifts its two CUDA-only checks. DeepSpeed compiles a small C++ op on the
  first launch (about 20 s on 2 cores; needs a C++ compiler).

DeepSpeed's engine is also reached below its public API here, in one place: :func:`generation_weights`
(ZeRO-3's per-module hooks off while generating) and :func:`begin_micro_batch` (the ZeRO optimizer's
per-micro-batch bookkeeping that ``engine.forward`` would do). tests/rl/test_deepspeed_cpu.py checks both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, StrategyRegistry

from mgfrec.config.schema import MGFRecConfig

CUDA_ONLY_MESSAGE = (
    "DeepSpeed strategies need CUDA GPUs; on CPU use --strategy auto, "
    "or deepspeed_stage_2_cpu / deepspeed_stage_3_cpu to exercise DeepSpeed's engine on the CPU"
)
CPU_DEEPSPEED = {"deepspeed_stage_2_cpu": 2, "deepspeed_stage_3_cpu": 3}


def _starts_by_forking(strategy: str) -> bool:
    """Whether Lightning's ``strategy`` starts its processes by fork or spawn (by its name, its registered start
    method, or its class: xla's fork by their class, and their names say neither)."""
    registered = StrategyRegistry[strategy] if strategy in StrategyRegistry else {}
    start = registered.get("init_params", {}).get("start_method", "popen")
    forks = start != "popen" or _forks_itself(registered.get("strategy"))
    return "fork" in strategy or "spawn" in strategy or forks


def check_strategy(strategy: str, accelerator: str = "auto") -> None:
    """Refuse what cannot run here with a message: a CUDA DeepSpeed strategy without CUDA, a CPU DeepSpeed
    strategy on another accelerator, any DeepSpeed strategy without the deepspeed package, and a name neither
    Lightning nor mgfrec knows (before any work, not when the Trainer is built)."""
    known = {"auto", *CPU_DEEPSPEED, *StrategyRegistry.available_strategies()}
    if strategy not in known:
        # only Lightning's strategies mgfrec runs: the list named ddp_spawn, ddp_fork and xla, refused next (review
        # s31)
        usable = sorted(s for s in StrategyRegistry.available_strategies() if not _starts_by_forking(s))
        raise ValueError(
            f"trainer.strategy (--strategy): unknown strategy {strategy!r}; use auto, ddp, deepspeed_stage_2, "
            f"deepspeed_stage_3, deepspeed_stage_2_cpu, deepspeed_stage_3_cpu or another of Lightning's: "
            f"{', '.join(usable)}"
        )
    if _starts_by_forking(strategy):  # the fit's process watch and its summary need
        # Lightning's subprocess launcher (ddp) or torchrun: under fork/spawn a child's failure went unseen, and
        # run.json said 0 (ddp_notebook forks too, and xla's strategies fork by their class: names say neither)
        raise ValueError(
            f"trainer.strategy (--strategy) {strategy}: mgfrec runs several processes with ddp (or torchrun), not "
            "fork or spawn; give ddp"
        )
    if not strategy.startswith("deepspeed"):
        return
    if strategy in CPU_DEEPSPEED:
        if accelerator not in ("cpu", "auto"):
            raise ValueError(  # the way out was not said, and a config's strategy was named as a flag (s35)
                f"trainer.strategy (--strategy) {strategy} runs on the CPU; trainer.accelerator is '{accelerator}': "
                f"give --set trainer.accelerator=cpu, or --strategy {strategy.removesuffix('_cpu')} on GPUs"
            )
    elif not torch.cuda.is_available():
        raise ValueError(f"trainer.strategy (--strategy) {strategy}: {CUDA_ONLY_MESSAGE}")
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ValueError(
            f"trainer.strategy (--strategy) {strategy} needs the deepspeed package: pip install -e '.[deepspeed]'"
        ) from None


# Lightning precisions that convert the policy's weights themselves to half precision (lightning.fabric.connector)
HALF_WEIGHT_PRECISIONS = ("16-true", "bf16-true", "transformer-engine", "transformer-engine-float16")


def check_master_weights(cfg: MGFRecConfig) -> None:
    """Refuse half-precision policy weights trained without DeepSpeed, whether ``policy.dtype`` (bfloat16, float16)
    loads them so or ``trainer.precision`` (``bf16-true``, ``16-true``, transformer-engine) converts them: AdamW then
    steps the half-precision weights themselves, and at the paper's lr of 1e-6 almost every update rounds away
    (measured: 2% of bf16 weights changed in 100 steps, all of them in float32; 2.0% in one step under
    ``bf16-true``, review s40) while the metrics look normal. DeepSpeed keeps float32 master weights; elsewhere the
    policy must be float32 (``trainer.precision`` ``bf16-mixed`` still computes in bfloat16)."""
    if cfg.trainer.strategy.startswith("deepspeed"):
        return
    if cfg.trainer.precision in HALF_WEIGHT_PRECISIONS:
        raise ValueError(
            f"trainer.precision {cfg.trainer.precision} with trainer.strategy {cfg.trainer.strategy}: Lightning "
            f"converts the policy's weights to half precision, AdamW would update them directly, and at trainer.lr "
            f"{cfg.trainer.lr:g} most updates round away; give --set trainer.precision=bf16-mixed (float32 weights, "
            "bfloat16 compute), or a DeepSpeed strategy, which keeps float32 master weights"
        )
    if cfg.policy.dtype == "float32":
        return
    raise ValueError(
        f"policy.dtype {cfg.policy.dtype} with trainer.strategy {cfg.trainer.strategy}: AdamW would update "
        f"{cfg.policy.dtype} weights directly, and at trainer.lr {cfg.trainer.lr:g} most updates round away; give "
        "--set policy.dtype=float32 (trainer.precision bf16-mixed still computes in bfloat16), or a DeepSpeed "
        "strategy, which keeps float32 master weights"
    )


def check_engine_copy(cfg: MGFRecConfig) -> None:
    """Refuse the hf engine's ``copy_model`` under ZeRO-3: a deep copy of a partitioned policy carries DeepSpeed's
    hooks and parameter state, and its first rollout failed in a traceback ("'Parameter' object has no attribute
    'ds_status'"). The hf engine shares the policy by default, which ZeRO-3 serves (its weights are gathered for
    generation); vLLM keeps its own copy, given the gathered weights."""
    if "stage_3" in cfg.trainer.strategy and cfg.rollout.engine == "hf" and cfg.rollout.options.get("copy_model"):
        raise ValueError(
            f"rollout.options.copy_model with trainer.strategy {cfg.trainer.strategy}: a copy of a ZeRO-3 policy is "
            "not a model of its own; leave copy_model out (the hf engine then shares the policy), or use stage 2"
        )


def _forks_itself(cls: object) -> bool:
    """Whether a strategy class starts its processes by forking whatever its registry entry says (XLA's)."""
    from lightning.pytorch.strategies import XLAStrategy

    return isinstance(cls, type) and issubclass(cls, XLAStrategy)


# What a multi-node launcher sets (torchrun, SLURM, Lightning's own); without any, a second node is never coming
NODE_ENVIRONMENT = ("MASTER_ADDR", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID")


def check_nodes(num_nodes: int) -> None:
    """Refuse ``trainer.num_nodes`` above 1 in a process no multi-node launcher started: it waited forever in
    torch's rendezvous for nodes that were never started, deaf to Ctrl-C and SIGTERM."""
    if num_nodes > 1 and not any(os.environ.get(name) for name in NODE_ENVIRONMENT):
        raise ValueError(
            f"trainer.num_nodes {num_nodes}: this process was not started by a multi-node launcher (none of "
            f"{', '.join(NODE_ENVIRONMENT)} is set), so the other nodes would be waited for forever; start every "
            "node with torchrun or SLURM (docs/gpu.md), or give trainer.num_nodes=1"
        )


def build_strategy(cfg: MGFRecConfig) -> Any:
    """``trainer.strategy`` as Lightning takes it: a name, or a configured DeepSpeed strategy object."""
    name = cfg.trainer.strategy
    check_strategy(name, cfg.trainer.accelerator)
    if not name.startswith("deepspeed"):
        return name
    if name in CPU_DEEPSPEED:
        strategy = CPUDeepSpeedStrategy(stage=CPU_DEEPSPEED[name])
    else:
        strategy = StrategyRegistry.get(name)
    strategy.config["gradient_clipping"] = cfg.grpo.max_grad_norm
    strategy.config["train_micro_batch_size_per_gpu"] = cfg.trainer.micro_batch_size
    if (strategy.config.get("zero_optimization") or {}).get("offload_optimizer"):
        # the _offload strategies: DeepSpeed refused the module's own AdamW ("ZeRO-Offload with a client provided
        # optimizer") in a traceback; torch's AdamW steps the offloaded float32 master weights on the CPU
        strategy.config["zero_force_ds_cpu_optimizer"] = False
    return strategy


def trainer_accelerator(cfg: MGFRecConfig) -> str:
    """The accelerator to give Lightning: ``cpu`` under a CPU DeepSpeed strategy, else ``trainer.accelerator``."""
    return "cpu" if cfg.trainer.strategy in CPU_DEEPSPEED else cfg.trainer.accelerator


def use_cpu_accelerator() -> None:
    """Make DeepSpeed use its CPU accelerator in this process, also where CUDA is present (DeepSpeed would
    pick CUDA and move the model there while Lightning keeps the batches on the CPU)."""
    from deepspeed.accelerator import get_accelerator, set_accelerator

    if get_accelerator().device_name() != "cpu":
        from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

        set_accelerator(CPU_Accelerator())


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy on a CPU device. The device has index 0 because DeepSpeed reads the index
    as the local device rank."""

    def setup_environment(self) -> None:
        use_cpu_accelerator()
        DDPStrategy.setup_environment(self)  # skips DeepSpeedStrategy's "only supported on CUDA GPUs"

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()  # skips the check that device indices are CUDA ranks

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", 0)


# --- DeepSpeed's engine during a GRPO step ----------------------------------------------------------------


def deepspeed_engine(trainer: Any) -> Any:
    """The DeepSpeed engine of ``trainer``'s strategy under a DeepSpeed strategy, else None."""
    return getattr(trainer.strategy, "deepspeed_engine", None) if trainer is not None else None


def full_weights(engine: Any, model: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
    """A context in which ``model``'s parameters are whole: ZeRO-3 partitions them, so saving the policy
    gathers them first; every other strategy (``engine`` None or another stage) keeps them whole already."""
    if engine is not None and engine.zero_optimization_stage() == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    return contextlib.nullcontext()


def generation_weights(engine: Any) -> contextlib.AbstractContextManager[Any]:
    """A context for generating with the engine's module (rollouts, validation). Under ZeRO-3 the parameters
    are gathered once and DeepSpeed's per-module fetch/release hooks are off until the context ends, as in
    DeepSpeed's ``unwrap_model_for_generation`` (here the hooks come back even when generation raises): with
    the hooks on, every decoding step of every layer goes through the parameter coordinator, whose trace the
    training step's forward has recorded, and a rollout after the first optimizer step ran 40x slower than
    under stage 2 (CPU, docs/gpu.md)."""
    if engine is not None and engine.zero_optimization_stage() == 3:
        return zero3_generation(engine)
    return contextlib.nullcontext()


@contextlib.contextmanager
def zero3_generation(engine: Any) -> Iterator[None]:
    """Whole parameters and no ZeRO-3 module hooks inside; hooks re-registered on the way out, always."""
    import deepspeed

    offload = engine.optimizer.parameter_offload
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        for hook in (*offload.forward_hooks, *offload.backward_hooks):
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)  # also invalidates the coordinator's trace


def begin_micro_batch(ds_engine: Any) -> None:
    """What DeepSpeed's ``engine.forward`` does first for each micro-batch: clear the ZeRO optimizer's backward
    bookkeeping. Stage 3 advances its micro-step counter there, and that counter decides whether a
    micro-batch's gradient partition is added to the accumulated one or overwrites it. All of mgfrec's
    micro-batches run inside one ``engine.forward`` (Lightning's ``training_step``), so without this call ZeRO-3
    kept only the last micro-batch's gradient (caught by tests/rl/test_deepspeed_cpu.py)."""
    from deepspeed.runtime.base_optimizer import ZeROOptimizer

    if isinstance(ds_engine.optimizer, ZeROOptimizer):
        ds_engine.optimizer.clear_backward_seen_flag()

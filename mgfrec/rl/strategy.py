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
"""

from __future__ import annotations

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


def check_strategy(strategy: str, accelerator: str = "auto") -> None:
    """Refuse what cannot run here with a message: a CUDA DeepSpeed strategy without CUDA, a CPU DeepSpeed
    strategy on another accelerator, any DeepSpeed strategy without the deepspeed package, and a name neither
    Lightning nor mgfrec knows (before any work, not when the Trainer is built)."""
    known = {"auto", *CPU_DEEPSPEED, *StrategyRegistry.available_strategies()}
    if strategy not in known:
        raise ValueError(
            f"trainer.strategy (--strategy): unknown strategy {strategy!r}; use auto, ddp, deepspeed_stage_2, "
            f"deepspeed_stage_3, deepspeed_stage_2_cpu, deepspeed_stage_3_cpu or another of Lightning's: "
            f"{', '.join(sorted(StrategyRegistry.available_strategies()))}"
        )
    if not strategy.startswith("deepspeed"):
        return
    if strategy in CPU_DEEPSPEED:
        if accelerator not in ("cpu", "auto"):
            raise ValueError(f"--strategy {strategy} runs on the CPU; trainer.accelerator is '{accelerator}'")
    elif not torch.cuda.is_available():
        raise ValueError(f"--strategy {strategy}: {CUDA_ONLY_MESSAGE}")
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ValueError(f"--strategy {strategy} needs the deepspeed package: pip install -e '.[deepspeed]'") from None


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

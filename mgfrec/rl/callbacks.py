"""The Lightning callbacks and logger of a GRPO fit (:func:`mgfrec.rl.fit.run_fit`): the live progress line, the
checkpoint written every few steps and at the end (atomically: a kill mid-write leaves the previous one), and the
optional TensorBoard logger. They read the module's counters; none of them changes what is trained."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L

from mgfrec.atomic import atomic_write_text
from mgfrec.config.schema import MGFRecConfig
from mgfrec.rl.resume import CHECKPOINT_STEPS


def check_logger(cfg: MGFRecConfig) -> None:
    """``trainer.tensorboard`` without the tensorboard package: refused before an earlier run in OUT is retired."""
    if not cfg.trainer.tensorboard:
        return
    try:
        import tensorboard  # noqa: F401 (is it installed?)
    except ImportError:
        raise ValueError("trainer.tensorboard=true needs the tensorboard package: pip install tensorboard") from None


def build_logger(cfg: MGFRecConfig, out: Path, resumed_at: int | None = None) -> Any:
    """``RUN/metrics.csv`` is always written by the module; ``trainer.tensorboard`` adds Lightning's
    TensorBoard logger writing to ``RUN/tensorboard`` (every metric of the step, under the same names).
    ``resumed_at``: the steps a resumed fit's checkpoint holds; what the earlier session logged after them (its
    steps run again) is purged, as metrics.csv drops them: TensorBoard showed those steps twice (review s37)."""
    if not cfg.trainer.tensorboard:
        return False
    check_logger(cfg)
    from lightning.pytorch.loggers import TensorBoardLogger

    purge = {"purge_step": resumed_at + 1} if resumed_at is not None else {}
    return TensorBoardLogger(save_dir=str(out), name="tensorboard", version="", default_hp_metric=False, **purge)


class StepProgress(L.Callback):
    """The live progress line of a GRPO fit (:mod:`mgfrec.progress`): steps done of ``max_steps`` and the
    last step's mean reward. It replaces Lightning's bar, whose "Epoch 0/-2" says nothing for a step-budgeted
    fit."""

    def __init__(self, max_steps: int):
        self.max_steps = max(1, max_steps)
        self._context: Any = None
        self._task: Any = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from contextlib import ExitStack

        from mgfrec import progress

        self._context = ExitStack()
        if not progress.enabled():  # a library caller asked for progress: show it on stderr
            self._context.enter_context(progress.reporting())
        self._task = self._context.enter_context(progress.task("grpo"))
        done = getattr(module, "batches_done", trainer.global_step)  # a resumed fit's steps before this session
        if done:
            self._task.resumed_at(done / self.max_steps)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        steps = getattr(module, "batches_done", trainer.global_step)
        rows = getattr(module, "rows", None) or [{}]
        reward = rows[-1].get("reward/mean")
        text = f"step {steps}/{self.max_steps}" + (f", reward {reward:.3f}" if reward is not None else "")
        self._task.update(steps / self.max_steps, text)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, module)


class LastCheckpoint(L.Callback):
    """``DIR/last.ckpt`` every ``every`` training steps and at the end, written atomically (a kill -9 during
    the write leaves the previous checkpoint)."""

    def __init__(self, directory: Path, every: int):
        self.directory, self.every = Path(directory), max(1, every)
        self.saved_at: int | None = None  # the steps the last checkpoint holds (a resumed fit: its checkpoint's)

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.saved_at = pl_module.batches_done

    def save_unless_saved(self, trainer: L.Trainer, steps: int) -> None:
        """Before a stop on a signal: the steps done since the last checkpoint are kept."""
        if steps != self.saved_at:
            self.save(trainer, steps)

    def save(self, trainer: L.Trainer, steps: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp, target = self.directory / "last.ckpt.tmp", self.directory / "last.ckpt"
        try:
            trainer.save_checkpoint(tmp)  # every process: DeepSpeed writes each one's shards
        except OSError as exc:  # a full disk: "[Errno 27] File too large", naming no file
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
        trainer.strategy.barrier("mgfrec-checkpoint-written")
        if trainer.is_global_zero:
            self.replace(tmp, target)
            # what the checkpoint holds, readable without loading it (a resume's --max-steps is checked against it);
            # written after the checkpoint, so it never claims more than the checkpoint has
            atomic_write_text(self.directory / CHECKPOINT_STEPS, json.dumps({"steps": steps}))
        trainer.strategy.barrier("mgfrec-checkpoint-moved")
        if trainer.local_rank == 0 and not trainer.is_global_zero and tmp.exists():
            self.replace(tmp, target)  # another node with its own disk: its shards are in its own folder
        trainer.strategy.barrier("mgfrec-checkpoint-moved-on-every-node")
        self.saved_at = steps

    def replace(self, tmp: Path, target: Path) -> None:
        if tmp.is_dir():  # DeepSpeed writes a folder of shards: a folder cannot replace another in one step
            old = self.directory / "last.ckpt.old"
            if target.exists():  # else old is the one whole checkpoint (a resume read it): kept until tmp is in place
                shutil.rmtree(old, ignore_errors=True)  # (deleted first, a kill in the rmtree left none; review s37)
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.batches_done % self.every == 0:
            self.save(trainer, pl_module.batches_done)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.save(trainer, pl_module.batches_done)

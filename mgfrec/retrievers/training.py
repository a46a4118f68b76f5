"""The training loop every sequential retriever shares (SASRec, GRU4Rec, Caser).

A model subclasses :class:`SequentialRetriever` and supplies only its layers and ``encode(seq) -> [B, D]``,
the representation of a padded history (see :mod:`mgfrec.retrievers.sequences`). Everything else lives
here once: the loss (cross-entropy over the whole catalogue, or BCE with one sampled negative), Adam with
``weight_decay`` as the L2 coefficient, validation NDCG@10 by full ranking with the history excluded and
pessimistic ties (:mod:`mgfrec.ranking.metrics`), early stopping on it, the best checkpoint, the per-epoch
``metrics.csv``, and saving/loading ``model.pt``.

A run folder written by :meth:`SequentialRetriever.fit`::

    RUN/model.pt            weights of the best epoch + everything needed to rebuild the model
    RUN/metrics.csv         epoch, train_loss, valid_ndcg@10, seconds (one row per epoch)
    RUN/checkpoints/best.ckpt  Lightning's checkpoint of the best epoch

This module must not know any particular architecture.
"""

from __future__ import annotations

import csv
import logging
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from mgfrec import progress
from mgfrec.config.components import RETRIEVER_DEVICE
from mgfrec.config.schema import MGFRecConfig, RetrieverConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.devices import visible_devices
from mgfrec.ranking.metrics import history_mask, per_sample, target_ranks
from mgfrec.retrievers.sequences import (
    SequenceDataModule,
    history_window,
    pad_left,
    unpad,
)
from mgfrec.seeding import kept_global_rng
from mgfrec.signals import FirstSignalStop
from mgfrec.validation import validation_text

VALID_METRIC = "valid_ndcg@10"
MODEL_FILE = "model.pt"
LOG_FILE = "metrics.csv"
FORMAT_VERSION = 1


class TrainOptions(BaseModel):
    """Options every sequential retriever takes; each model's ``Options`` adds its architecture's fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Until RetrieverConfig has a seed of its own, the seed of a baseline lives with its options.
    progress_bar: bool = Field(False, description="show Lightning's progress bar while training")
    eval_batch_size: int = Field(1024, ge=1, description="histories scored at once (validation, scores())")


def lightning_device(device: str) -> tuple[str, Any]:
    """``RetrieverConfig.device`` ("cpu", "cuda", "cuda:1", "mps", "auto") -> Lightning (accelerator, devices)."""
    kind, colon, index = device.partition(":")
    if not RETRIEVER_DEVICE.fullmatch(device):  # the config check's own pattern, for a library caller
        if not colon:
            raise ValueError(f"retriever.device: '{device}' is not cpu, cuda, cuda:<index>, mps or auto")
        # `cpu:1` trained on the CPU (Lightning has no CPU index) and `cuda:x` was int()'s own message (review s40)
        why = "only cuda takes an index" if kind != "cuda" else "its index is not a number"
        raise ValueError(f"retriever.device: '{device}': {why}; give cpu, cuda, cuda:<index>, mps or auto")
    if kind == "auto":
        return "auto", "auto"
    if kind == "mps":
        if not visible_devices("mps"):
            raise ValueError(f"retriever.device '{device}': no MPS device here; use retriever.device=cpu")
        return kind, 1
    if kind == "cuda":
        visible = visible_devices("cuda")
        if visible <= (int(index) if index else 0):
            raise ValueError(
                f"retriever.device '{device}': {visible} CUDA device(s) visible; use retriever.device=cpu"
                + (" or a visible index" if visible else "")
            )
        return "gpu", [int(index)] if index else 1
    return kind, 1  # cpu


@contextmanager
def lightning_ctrl_c(stopped_by_user: Callable[[], bool]) -> Iterator[None]:
    """Around a Lightning ``trainer.fit``: Lightning answers Ctrl-C with a silent ``sys.exit(1)`` and leaves SIGINT
    ignored. When ``stopped_by_user()`` says the user stopped the fit, that exit is the stop Lightning caught: a
    ``KeyboardInterrupt`` (the CLI's "stopped by the user", exit 130) or, for SIGTERM, a
    :class:`~mgfrec.signals.Terminated` (exit 143); the SIGINT handler of before is put back either way."""
    sigint = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as exit_:
        if not stopped_by_user():
            raise
        caught = exit_.__context__  # what Lightning caught before it exited
        raise (type(caught)() if isinstance(caught, KeyboardInterrupt) else KeyboardInterrupt()) from None
    finally:
        if threading.current_thread() is threading.main_thread() and sigint is not None:
            signal.signal(signal.SIGINT, sigint)


@contextmanager
def quiet_lightning():
    """Silence Lightning's start-up banners and hints that are noise for small single-device fits.

    Also puts back torch's deterministic-algorithms switch, which ``Trainer(deterministic=True)`` turns on
    for the whole process: later work in the same process (the agent's training) must not inherit it.
    """
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*number of training batches.*log_every_n_steps.*")
            warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
            # torch 2.13 deprecates a pytree class that Lightning 2.6 still builds for every batch.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
            yield
    finally:
        logger.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


class EpochLog(Callback):
    """Writes one CSV row per epoch: the mean train loss and the valid NDCG@10 of that epoch."""

    def __init__(self, path: Path):
        self.path = path
        self._start = 0.0

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        with self.path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(["epoch", "train_loss", VALID_METRIC, "seconds"])

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # Validation of this epoch has already run (it runs at the end of the epoch's last batch).
        valid = trainer.callback_metrics.get(VALID_METRIC)
        row = [
            trainer.current_epoch,
            f"{module.epoch_train_loss:.6f}",
            "" if valid is None else f"{float(valid):.6f}",
            f"{time.perf_counter() - self._start:.2f}",
        ]
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(row)


class Budget(FirstSignalStop, Callback):
    """Keeps a fit within ``retriever.max_steps`` / ``retriever.max_seconds``, stops it cleanly on Ctrl-C or
    SIGTERM, and reports its progress (:mod:`mgfrec.progress`).

    Each stop sets ``trainer.should_stop`` at the end of a batch; Lightning then validates before it ends
    the epoch, so the best checkpoint always includes the work done. ``stopped`` says why the fit ended:
    "time cap", "step cap", "user" (a signal), or None (the epoch limit or early stopping decided).
    A second Ctrl-C interrupts at once, as usual.
    """

    def __init__(self, settings: RetrieverConfig, task: progress.Task):
        FirstSignalStop.__init__(self)  # ``signal``: that of a stop by the user (SIGINT or SIGTERM)
        self.settings, self.task = settings, task
        self.stopped: str | None = None
        self._start = 0.0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopped = "user"
        super()._on_signal(signum, frame)  # recorded; a second signal acts as usual (Ctrl-C twice: stop at once)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self.install_signals()  # after Lightning registered its own handlers, which this replaces for the fit

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.restore_signals()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        elapsed = time.perf_counter() - self._start
        steps, limits = trainer.global_step, self.settings
        if self.stopped is None and limits.max_seconds is not None and elapsed >= limits.max_seconds:
            self.stopped = "time cap"
        if self.stopped is None and limits.max_steps is not None and steps >= limits.max_steps:
            self.stopped = "step cap"
        if self.stopped is not None:
            trainer.should_stop = True
        batches = trainer.num_training_batches if isinstance(trainer.num_training_batches, int) else 0
        fractions = []
        if batches:
            fractions.append((trainer.current_epoch + (args[-1] + 1) / batches) / max(trainer.max_epochs or 1, 1))
        if limits.max_steps:
            fractions.append(steps / limits.max_steps)
        if limits.max_seconds:
            fractions.append(elapsed / limits.max_seconds)
        best = trainer.callback_metrics.get(VALID_METRIC)
        text = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, step {steps}"
        if best is not None:
            text += f", valid NDCG@10 {float(best):.4f}"
        self.task.update(max(fractions) if fractions else None, text)


def sample_negatives(seq: torch.Tensor, target: torch.Tensor, num_items: int, redraws: int = 20) -> torch.Tensor:
    """One negative per row for ``loss: bce``: uniform over the items that are neither the target nor in the row's
    history window ``seq`` (``item + 1``, 0-padded), SASRec's rule. A history item drawn as a negative taught the
    model to push down what the user had chosen (noted in review s40). A row still drawing from its history after
    ``redraws`` redraws (a history covering nearly the whole catalogue) keeps its last draw."""

    def draw() -> torch.Tensor:  # uniform over the N - 1 items other than the target: draw from N - 1, step over it
        negative = torch.randint(0, num_items - 1, target.shape, device=target.device)
        return negative + (negative >= target).long()

    negative = draw()
    for _ in range(redraws):
        seen = (seq == (negative + 1).unsqueeze(1)).any(dim=1)
        if not bool(seen.any()):
            break
        negative = torch.where(seen, draw(), negative)
    return negative


class SequentialRetriever(L.LightningModule):
    """Base of the sequential retrievers: a Lightning module that is also a ``retriever`` component."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[TrainOptions]] = TrainOptions
    first_epoch: ClassVar[int] = 0  # best_epoch (run.json's extra.best_epoch) counts as Lightning does, from 0
    reads_titles: ClassVar[bool] = False  # item ids only: embedding.* does not change a fit (agent.samples._same_fit)

    def __init__(self, num_items: int, window: int, settings: RetrieverConfig, options: TrainOptions):
        super().__init__()
        if num_items < 2:
            raise ValueError(f"a sequential retriever needs at least 2 items, the catalogue has {num_items}")
        self.num_items, self.window = num_items, window
        self.settings, self.options = settings, options
        # Row 0 is padding; item i is row i + 1. Scores are dot products with rows 1..N.
        self.item_embedding = nn.Embedding(num_items + 1, settings.embedding_dim, padding_idx=0)
        self.best_epoch: int | None = None
        self.best_valid_ndcg: float | None = None
        # Why the last fit ended: "time cap", "step cap", "user" (see Budget), "early stopping", "epoch limit";
        # for "user", the signal that stopped it (SIGINT or SIGTERM)
        self.stopped: str | None = None
        self.stop_signal: int | None = None
        self._loss_sum = torch.zeros(())
        self._loss_count = 0
        self._valid_ranks: list[torch.Tensor] = []

    # ---- what a model supplies -------------------------------------------------------------------
    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, window]`` padded histories -> ``[B, embedding_dim]``."""
        raise NotImplementedError

    # ---- scoring ---------------------------------------------------------------------------------
    def logits(self, seq: torch.Tensor) -> torch.Tensor:
        return self.encode(seq) @ self.item_embedding.weight[1:].T

    def item_vectors(self) -> torch.Tensor:
        """The learned item embeddings, ``[N, embedding_dim]`` float on the CPU, row ``i`` for item ``i``
        (``agent.final_ranking: l2_joint`` joins them to the title embeddings)."""
        return self.item_embedding.weight[1:].detach().float().cpu()

    @torch.no_grad()
    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        """Float ``[B, N]`` scores (on the CPU) for histories of item indices, oldest first."""
        was_training = self.training
        self.eval()
        parts = []
        step = self.options.eval_batch_size
        for start in range(0, len(histories), step):
            seq = pad_left(histories[start : start + step], self.window).to(self.device)
            parts.append(self.logits(seq).float().cpu())
        self.train(was_training)
        return torch.cat(parts) if parts else torch.zeros(0, self.num_items)

    # ---- Lightning hooks -------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Adam's weight_decay adds weight_decay * w to the gradient: the L2 coefficient the paper grids.
        return torch.optim.Adam(self.parameters(), lr=self.settings.lr, weight_decay=self.settings.weight_decay)

    def loss(self, seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over every item, or (``loss: bce``) BCE on the target and one random other item."""
        hidden = self.encode(seq)
        if self.settings.loss == "ce":
            return F.cross_entropy(hidden @ self.item_embedding.weight[1:].T, target)
        negative = sample_negatives(seq, target, self.num_items)
        pos = (hidden * self.item_embedding(target + 1)).sum(-1)
        neg = (hidden * self.item_embedding(negative + 1)).sum(-1)
        return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
            neg, torch.zeros_like(neg)
        )

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        seq, target = batch
        loss = self.loss(seq, target)
        if not torch.isfinite(loss.detach()):  # the fit went on and saved a model of NaN, as if it were good
            first = self.current_epoch == 0 and batch_idx == 0 and self.global_step == 0
            raise ValueError(
                f"the training loss became {float(loss.detach())} at epoch {self.current_epoch + 1}, batch "
                f"{batch_idx + 1} "
                + (  # before any step the learning rate has done nothing yet: the model as built (review s40)
                    "(before any training step: the model as built; check its retriever.options, e.g. its "
                    "initialisation)"
                    if first
                    else f"(the fit diverged): give a smaller retriever.lr (now {self.settings.lr:g}; --lr of baseline "
                    "fit, --set retriever.lr=... elsewhere)"
                )
            )
        self._loss_sum = self._loss_sum + loss.detach() * len(target)
        self._loss_count += len(target)
        return loss

    @property
    def epoch_train_loss(self) -> float:
        """Mean train loss per sample over the current epoch so far."""
        return float(self._loss_sum) / max(self._loss_count, 1)

    def on_validation_epoch_start(self) -> None:
        self._valid_ranks = []

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        seq, target = batch
        exclude = history_mask(unpad(seq), self.num_items, device=seq.device)
        self._valid_ranks.append(target_ranks(self.logits(seq), target, exclude).cpu())

    def on_validation_epoch_end(self) -> None:
        ranks = torch.cat(self._valid_ranks).numpy()
        self.log(VALID_METRIC, float(per_sample(ranks, [10])["ndcg@10"].mean()), prog_bar=True)

    # ---- fit / save / load ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, ds: PreparedDataset, config: MGFRecConfig, out: Path, options: TrainOptions | None = None
    ) -> SequentialRetriever:
        """Train on ``ds``'s train split with early stopping on valid NDCG@10; save the best epoch to ``out``."""
        options = options or cls.Options()
        settings = config.retriever
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # a previous fit's best must not survive
        accelerator, devices = lightning_device(settings.device)
        # kept_global_rng: seed_everything seeds the process; a caller's own generators are theirs again after it
        with quiet_lightning(), kept_global_rng(), progress.task(cls.name or "retriever") as task:
            L.seed_everything(settings.seed, workers=True, verbose=False)
            window = history_window(ds)
            model = cls(ds.num_items, window, settings, options)
            data = SequenceDataModule(ds, window, settings.batch_size, options.eval_batch_size, settings.seed)
            best = ModelCheckpoint(
                dirpath=out / "checkpoints",
                filename="best",
                monitor=VALID_METRIC,
                mode="max",
                save_top_k=1,
                save_weights_only=True,
                enable_version_counter=False,
            )
            budget = Budget(settings, task)
            early = EarlyStopping(VALID_METRIC, mode="max", patience=settings.patience, min_delta=settings.min_delta)
            trainer = L.Trainer(
                accelerator=accelerator,
                devices=devices,
                max_epochs=settings.max_epochs,
                callbacks=[
                    best,
                    early,
                    EpochLog(out / LOG_FILE),
                    budget,
                ],
                logger=False,
                deterministic=True,
                num_sanity_val_steps=0,
                enable_progress_bar=options.progress_bar,
                enable_model_summary=False,
                default_root_dir=out,
            )
            with lightning_ctrl_c(lambda: budget.stopped == "user"):  # a second Ctrl-C: the fit is stopped
                try:
                    trainer.fit(model, datamodule=data)
                finally:
                    budget.restore_signals()
        if not best.best_model_path:
            raise RuntimeError(f"{out}: training stopped before its first validation; no model to save")
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        model.best_epoch = int(state["epoch"])
        model.best_valid_ndcg = float(best.best_model_score) if best.best_model_score is not None else None
        model.stopped = budget.stopped or ("early stopping" if early.stopped_epoch else "epoch limit")
        model.stop_signal = budget.signal
        model = model.cpu().eval()
        model.save(out, ds)
        return model

    def save(self, out: Path, ds: PreparedDataset) -> Path:
        """Write ``out/model.pt``: the weights and what :meth:`load` needs to rebuild this model."""
        path = Path(out) / MODEL_FILE
        torch.save(
            {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "num_items": self.num_items,
                "window": self.window,
                "data_checksum": ds.checksum,
                "settings": self.settings.model_dump(mode="json"),
                "options": self.options.model_dump(mode="json"),
                "best_epoch": self.best_epoch,
                "best_valid_ndcg@10": self.best_valid_ndcg,
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            },
            path,
        )
        return path

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> SequentialRetriever:
        """Rebuild the model :meth:`fit` saved in ``run_dir`` (on the CPU, in eval mode)."""
        path = Path(run_dir) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no saved {cls.name} model; train one with 'mgfrec baseline fit'")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format_version") != FORMAT_VERSION or saved.get("name") != cls.name:
            raise ValueError(
                f"{path}: holds a '{saved.get('name')}' model (format {saved.get('format_version')}), "
                f"not {cls.name} (format {FORMAT_VERSION})"
            )
        if saved["num_items"] != ds.num_items or saved["data_checksum"] != ds.checksum:
            raise ValueError(
                f"{path}: trained on data {saved['data_checksum']} with {saved['num_items']} items, "
                f"but {ds.root} is {ds.checksum} with {ds.num_items} items; retrain on that data set"
            )
        try:
            settings = RetrieverConfig.model_validate(saved["settings"])
            options = cls.Options.model_validate(saved["options"])
        except ValidationError as exc:
            raise ValueError(
                f"{path}: its saved settings do not fit this version of mgfrec ({validation_text(exc, limit=1)}); "
                "refit it with 'mgfrec baseline fit'"
            ) from None
        model = cls(saved["num_items"], saved["window"], settings, options)
        model.load_state_dict(saved["state_dict"])
        model.best_epoch, model.best_valid_ndcg = saved["best_epoch"], saved["best_valid_ndcg@10"]
        return model.eval()

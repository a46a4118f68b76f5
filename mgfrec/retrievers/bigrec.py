"""``bigrec``: the LLM baseline without reasoning or multiple groundings (BIGRec-style, Bao et al. 2023).

The policy (``policy.model``: a preset trained from scratch, or any causal LM by hub id or folder) is
fine-tuned to write the next item's title directly after a prompt that lists the history titles; the loss
is on the title's tokens (and the end token) only. At scoring time it writes one title per history
(greedy), the title is grounded once (L2 over the title embeddings, :mod:`mgfrec.grounding.ranking`) and
every item is ranked by its distance to it, so the one evaluator scores it like any other retriever.

The table row it gives answers "what does the MGFRec loop add over plain generation?". Expect a small
policy trained from scratch to be weak here: it cannot invent titles it was not trained to write.

Training keeps the epoch with the best valid ``ndcg_full`` on a seeded valid subsample (``valid_samples``),
the same selection rule the agent runs use. Files: ``RUN/policy/`` (model and tokenizer),
``RUN/bigrec.json`` (options), ``RUN/bigrec_metrics.csv`` (per epoch).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mgfrec import progress
from mgfrec.config.load import load_config
from mgfrec.config.schema import MGFRecConfig
from mgfrec.config.section import MAX_LR
from mgfrec.data.prepared import PreparedDataset
from mgfrec.data.protocol import subsample_rows
from mgfrec.grounding.engine import load_grounding
from mgfrec.models.policy import load_policy, preset_name, save_policy, training_device
from mgfrec.ranking.evaluator import rank_targets
from mgfrec.ranking.metrics import per_sample
from mgfrec.rollout.hf_engine import HFEngine
from mgfrec.seeding import kept_global_rng
from mgfrec.signals import FirstSignalStop

PROMPT = (
    "Below is a user's listening history, oldest first. Write the title of the item the user will choose next.\n"
    "History:\n{history}\nNext item title:"
)


class BigRecOptions(BaseModel):
    """``retriever.options`` for ``bigrec``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(4, ge=1, description="passes over the train samples (the best on the valid subsample is kept)")
    lr: float = Field(
        2e-3,
        gt=0,
        le=MAX_LR,
        description="AdamW learning rate (2e-3 suits a preset from scratch; use ~1e-5 for a pretrained LM)",
    )
    batch_size: int = Field(16, ge=1, description="train samples per optimizer step")
    max_train_samples: int | None = Field(None, ge=1, description="seeded subsample of train samples (CPU budgets)")
    valid_samples: int = Field(200, ge=1, description="seeded valid subsample that picks the best epoch")
    history_items: int = Field(10, ge=1, description="latest history titles in the prompt")
    max_new_tokens: int = Field(48, ge=1, description="longest title the policy may write")
    generate_batch_size: int = Field(32, ge=1, description="prompts whose titles are generated together")
    prompt: str = Field(
        PROMPT,
        description="the prompt before the title, with {history} where the history titles go (one '- title' line "
        "each); the default speaks of a listening history: name your catalogue's domain (review s38)",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="seeds the policy's initialisation, the subsamples and the shuffling; null: retriever.seed",
    )

    @field_validator("prompt")
    @classmethod
    def _one_history(cls, value: str) -> str:
        try:
            value.format(history="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"must hold {{history}} and no other placeholder ({{{{ and }}}} for braces): {exc}"
            ) from None
        if "{history}" not in value:
            raise ValueError("must hold {history}, where the history titles go")
        return value


class BigRecRetriever:
    """Scores = negative L2 distance from the generated title's embedding to every item's."""

    reads_training_settings = False  # retriever.lr, max_epochs, seed, ...: see mgfrec baseline fit's note
    # its time cap (_Budget) and, unless its options give one, its seed: left out of that note (the seed was noted as
    # unread, and a demo's --set retriever.seed reseeded every baseline but this one; review s38)
    reads_settings = ("retriever.max_seconds", "retriever.seed")
    device_setting = "trainer.accelerator"  # where it trains (its policy's device): --device is noted, not read

    name = "bigrec"
    Options = BigRecOptions
    generates = True  # one title per sample: --limit subsamples its evaluation as an agent's (mgfrec.eval.runs)
    first_epoch = 1  # best_epoch counts from 1, as its progress line and bigrec_metrics.csv do

    def __init__(self, model: Any, tokenizer: Any, ds: PreparedDataset, config: MGFRecConfig, options: BigRecOptions):
        self.model, self.tokenizer, self.ds, self.config, self.options = model, tokenizer, ds, config, options
        self.best_epoch: int | None = None
        self.stopped: str | None = None  # after fit: "time cap" (retriever.max_seconds), "user" or "epoch limit"
        self.stop_signal: int | None = None  # for "user": the signal that stopped it (SIGINT or SIGTERM)

    @cached_property
    def grounding(self) -> Any:

        return load_grounding(self.ds, self.config)

    # --- prompts and training data ---------------------------------------------------------------------

    def prompt(self, history: np.ndarray) -> str:
        titles = [self.ds.titles[int(i)] for i in history[-self.options.history_items :]]
        return self.options.prompt.format(history="\n".join(f"- {t}" for t in titles))

    def encode_pair(self, history: np.ndarray, target: int) -> tuple[list[int], int]:
        """Token ids of prompt + " title" + end token, and where the title starts (the loss starts there)."""
        prompt_ids = self.tokenizer(self.prompt(history), add_special_tokens=False)["input_ids"]
        title_ids = self.tokenizer(" " + self.ds.titles[int(target)], add_special_tokens=False)["input_ids"]
        return [*prompt_ids, *title_ids, self.tokenizer.eos_token_id], len(prompt_ids)

    # --- generation and scoring ------------------------------------------------------------------------

    @cached_property
    def engine(self) -> Any:
        """The hf rollout engine over the policy (batched, KV cache, stops at the end token)."""

        return HFEngine(self.model, self.tokenizer, HFEngine.Options(max_batch_size=self.options.generate_batch_size))

    def generate_titles(self, histories: list[np.ndarray]) -> list[str]:
        """One greedy title per history."""
        self.model.eval()
        prompts = [self.tokenizer(self.prompt(h), add_special_tokens=False)["input_ids"] for h in histories]
        out = self.engine.generate(prompts, max_new_tokens=self.options.max_new_tokens, temperature=0.0)
        return [" ".join(self.tokenizer.decode(row[0].token_ids, skip_special_tokens=True).split()) for row in out]

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        titles = self.generate_titles(histories)
        # An empty answer grounds to nothing in particular: every item ties (the evaluator's worst case).
        scores = self.grounding.full_scores([t if t else " " for t in titles])
        empty = torch.as_tensor([not t for t in titles])
        return scores.masked_fill(empty.unsqueeze(1), 0.0)

    # --- fit and load ----------------------------------------------------------------------------------

    @classmethod
    @kept_global_rng()  # it seeds torch; a caller's own generators are theirs again after it (review s35)
    def fit(
        cls, ds: PreparedDataset, config: MGFRecConfig, out: Path, options: BigRecOptions | None = None
    ) -> BigRecRetriever:
        """Fine-tune the policy on (history -> next title) pairs of the train split; keep the best epoch."""

        options, out = options or BigRecOptions(), Path(out)
        if ds.counts["samples"]["valid"] == 0:  # found after a whole epoch: "batch_size must be >= 1, got 0"
            raise ValueError(f"{ds.root}: the valid split is empty; BIGRec keeps its best epoch by valid samples")
        if options.seed is None:  # recorded as used in bigrec.json
            options = options.model_copy(update={"seed": config.retriever.seed})
        torch.manual_seed(options.seed)
        model, tokenizer = load_policy(config.policy, ds.titles, extra_texts=[options.prompt], seed=options.seed)
        model = model.to(training_device(config.trainer.accelerator))
        self = cls(model, tokenizer, ds, config, options)
        (out / "bigrec.json").write_text(options.model_dump_json(indent=2), encoding="utf-8")

        rng = np.random.default_rng(options.seed)
        train = ds.split("train")
        rows = np.arange(len(train))
        if options.max_train_samples is not None and options.max_train_samples < len(rows):
            rows = np.sort(rng.choice(rows, options.max_train_samples, replace=False))
        pairs = [self.encode_pair(np.asarray(train["history"].iloc[r]), int(train["target"].iloc[r])) for r in rows]
        valid = ds.split("valid")
        vrows = subsample_rows(len(valid), options.valid_samples, options.seed)
        v_hist = [np.asarray(valid["history"].iloc[r]) for r in vrows]
        v_target = valid["target"].to_numpy()[vrows]

        def valid_ndcg() -> float:

            ranks = rank_targets(self, v_hist, v_target, num_items=ds.num_items, batch_size=len(v_hist))
            return float(per_sample(ranks, [10])["ndcg_full"].mean())

        optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr)
        history: list[dict[str, Any]] = []
        budget = _Budget(config.retriever.max_seconds, options.epochs, -(-len(pairs) // options.batch_size))
        self.stopped = "epoch limit"
        budget.install_signals()
        try:
            self._epochs(pairs, optimizer, rng, budget, valid_ndcg, len(v_hist), out, history)
        finally:
            budget.restore_signals()
        stopped = self.stopped
        loaded = cls.load(out, ds, best_epoch=self.best_epoch)
        loaded.stopped, loaded.stop_signal = stopped, budget.signal
        return loaded

    def _epochs(
        self,
        pairs: list[tuple[list[int], int]],
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        budget: _Budget,
        valid_ndcg: Callable[[], float],
        n_valid: int,
        out: Path,
        history: list[dict[str, Any]],
    ) -> None:
        """The epochs of :meth:`fit`: train, validate, keep the best policy; stop early at the time cap or the
        user's signal (``self.stopped``: "time cap", "user" or "epoch limit")."""
        options, best = self.options, -np.inf
        for epoch in range(1, options.epochs + 1):
            started = time.perf_counter()
            with progress.task("bigrec") as task:
                task.resumed_at((epoch - 1) / options.epochs)  # the fraction is the whole fit's (review s38)
                loss = self._train_epoch(pairs, optimizer, rng, lambda batch, e=epoch, t=task: budget.step(t, e, batch))
                task.update(None, f"epoch {epoch}/{options.epochs}: validating on {n_valid} valid samples")
                score = valid_ndcg()
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": loss,
                    "valid_ndcg_full": score,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            if score > best:
                best, self.best_epoch = score, epoch
                save_policy(self.model, self.tokenizer, out / "policy", preset=preset_name(self.config.policy.model))
            with (out / "bigrec_metrics.csv").open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(history[0]))
                writer.writeheader()
                writer.writerows(history)
            if budget.signal is not None:
                self.stopped = "user"
                return
            if budget.spent:
                self.stopped = "time cap"
                return

    def _train_epoch(
        self,
        pairs: list[tuple[list[int], int]],
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        after_batch: Callable[[int], bool] = lambda batch: False,
    ) -> float:
        """One shuffled pass; cross-entropy on the title and end tokens only. Mean loss per token.
        ``after_batch(batch_index)`` returning True ends the pass early (the time cap)."""
        model, pad = self.model, self.tokenizer.pad_token_id
        device = next(model.parameters()).device
        model.train()
        total, tokens = 0.0, 0
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), self.options.batch_size):
            batch = [pairs[i] for i in order[start : start + self.options.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (seq, title_start) in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                labels[row, title_start : len(seq)] = torch.tensor(seq[title_start:])
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            loss_sum = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            n = int((target != -100).sum())
            optimizer.zero_grad(set_to_none=True)
            (loss_sum / max(n, 1)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, tokens = total + float(loss_sum.detach()), tokens + n
            if after_batch(start // self.options.batch_size):
                break
        model.eval()
        return total / max(tokens, 1)

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset, best_epoch: int | None = None) -> BigRecRetriever:

        run_dir = Path(run_dir)
        for needed in (run_dir / "policy", run_dir / "bigrec.json", run_dir / "config.yaml"):
            if not needed.exists():
                raise FileNotFoundError(f"{needed}: missing; fit with 'mgfrec baseline fit --model bigrec'")
        config = load_config(run_dir / "config.yaml")
        options = BigRecOptions.model_validate_json((run_dir / "bigrec.json").read_text(encoding="utf-8"))
        policy_cfg = config.policy.model_copy(update={"model": str(run_dir / "policy")})
        model, tokenizer = load_policy(policy_cfg)
        model = model.to(training_device(config.trainer.accelerator))
        self = cls(model, tokenizer, ds, config, options)
        self.best_epoch = best_epoch
        return self


class _Budget(FirstSignalStop):
    """BIGRec's share of ``retriever.max_seconds``, its progress and the user's first Ctrl-C or SIGTERM: ``step``
    after each batch reports it and says whether to stop (the epoch then ends early and is validated, and the fit
    finishes from its best epoch). BIGRec trains outside Lightning, so a signal threw away every finished epoch,
    where the other baselines finish from their best checkpoint (review s38)."""

    def __init__(self, max_seconds: float | None, epochs: int, batches: int):
        super().__init__()
        self.max_seconds, self.epochs, self.batches = max_seconds, epochs, max(batches, 1)
        self.start = time.perf_counter()
        self.spent = False

    def step(self, task: progress.Task, epoch: int, batch: int) -> bool:
        elapsed = time.perf_counter() - self.start
        fraction = (epoch - 1 + (batch + 1) / self.batches) / self.epochs
        if self.max_seconds:
            fraction = max(fraction, elapsed / self.max_seconds)
            self.spent = elapsed >= self.max_seconds
        task.update(fraction, f"epoch {epoch}/{self.epochs}, batch {batch + 1}/{self.batches}")
        return self.spent or self.signal is not None

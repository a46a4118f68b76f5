"""What an evaluation produces and how it is stored: :class:`EvalResult`.

A result is the per-sample ranks of one method on one split plus everything derived from them (metric
means with bootstrap intervals). Baselines get their ranks from :mod:`mgfrec.ranking.evaluator`; agents turn
their answers into ranks themselves and call :meth:`EvalResult.from_ranks`, so both are summarised by the
same code. In a run folder a result is three files::

    RUN/eval_<split>.json   flat metric keys (hit@5, ndcg@5, ..., ndcg_full, mean_rank, samples), ci, settings
    RUN/eval_<split>.csv    the same as one wide CSV row (metric, metric_lo, metric_hi columns)
    RUN/ranks_<split>.csv   sample_id, target, rank: the input of paired tests in ``mgfrec report``

This module computes no scores and loads no models.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgfrec.atomic import atomic_write, atomic_write_text
from mgfrec.config.schema import EvalConfig
from mgfrec.ranking.metrics import check_ranks, metric_names, per_sample
from mgfrec.ranking.stats import MismatchedSamplesError, PairedComparison, align, bootstrap_cis, compare_ranks

# Short column labels in the style of the paper's Table 4.
LABELS = {"ndcg_full": "N_full", "mean_rank": "MeanRank"}


def label(metric: str) -> str:
    """``hit@5`` -> ``H@5``, ``ndcg@10`` -> ``N@10``, ``ndcg_full`` -> ``N_full``."""
    if metric in LABELS:
        return LABELS[metric]
    name, _, k = metric.partition("@")
    return {"hit": "H", "ndcg": "N"}.get(name, name) + "@" + k


def result_paths(run_dir: str | Path, split: str) -> dict[str, Path]:
    """Where a run folder keeps its evaluation of ``split``."""
    run_dir = Path(run_dir)
    return {
        "json": run_dir / f"eval_{split}.json",
        "csv": run_dir / f"eval_{split}.csv",
        "ranks": run_dir / f"ranks_{split}.csv",
    }


@dataclass(frozen=True)
class EvalResult:
    """Per-sample ranks of one method on one split, their metric means and bootstrap intervals."""

    split: str
    method: str
    sample_ids: np.ndarray
    ranks: np.ndarray
    ks: tuple[int, ...]
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    confidence: float
    bootstrap_samples: int
    seed: int
    targets: np.ndarray | None = None
    num_items: int | None = None
    exclude_history: bool | None = None
    data_checksum: str = ""

    @classmethod
    def from_ranks(
        cls,
        ranks: np.ndarray,
        sample_ids: np.ndarray | None = None,
        *,
        split: str,
        method: str,
        config: EvalConfig | None = None,
        targets: np.ndarray | None = None,
        num_items: int | None = None,
        exclude_history: bool | None = None,
        data_checksum: str = "",
    ) -> EvalResult:
        """Summarise precomputed 1-based ranks (an agent's, or the evaluator's).

        ``sample_ids`` default to 0..n-1 and must be unique; intervals use ``config``'s bootstrap settings.
        """
        config = config or EvalConfig()
        ranks = check_ranks(ranks, num_items, where=f"{method} on {split}")
        if ranks.size == 0:
            raise ValueError(f"{method} on {split}: no samples to evaluate (is the split empty?)")
        ids = np.arange(len(ranks), dtype=np.int64) if sample_ids is None else np.asarray(sample_ids)
        if ids.shape != ranks.shape:
            raise ValueError(f"{method} on {split}: {len(ids)} sample ids for {len(ranks)} ranks")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{method} on {split}: sample ids repeat; each sample must be ranked once")
        if targets is not None:
            targets = np.asarray(targets, dtype=np.int64)
            if targets.shape != ranks.shape:
                raise ValueError(f"{method} on {split}: {len(targets)} targets for {len(ranks)} ranks")
        values = per_sample(ranks, config.ks)
        metrics = {m: float(values[m].mean()) for m in metric_names(config.ks)}
        ci = bootstrap_cis({m: values[m] for m in metrics}, config.bootstrap_samples, config.confidence, config.seed)
        return cls(
            split=split,
            method=method,
            sample_ids=ids,
            ranks=ranks,
            ks=tuple(config.ks),
            metrics=metrics,
            ci=ci,
            confidence=config.confidence,
            bootstrap_samples=config.bootstrap_samples,
            seed=config.seed,
            targets=targets,
            num_items=num_items,
            exclude_history=exclude_history,
            data_checksum=data_checksum,
        )

    @property
    def samples(self) -> int:
        return int(len(self.ranks))

    def per_sample(self) -> dict[str, np.ndarray]:
        """Every metric per sample, in ``sample_ids`` order."""
        return per_sample(self.ranks, self.ks)

    def compare(
        self,
        other: EvalResult,
        alpha: float | None = None,
        samples: int | None = None,
        seed: int | None = None,
        names: tuple[str, str] | None = None,
    ) -> dict[str, PairedComparison]:
        """Paired tests of this result (A) against ``other`` (B) on every metric both have.

        Refuses results of different splits, data sets or sample sets, or whose targets disagree, naming them by
        ``names`` (two runs, say) or else by their methods ("'pop' and 'pop'" told two runs of one method apart by
        nothing). ``alpha`` defaults to 1 - confidence; ``samples`` and ``seed`` to this result's bootstrap settings.
        """
        who = f"'{names[0]}' and '{names[1]}'" if names else f"'{self.method}' and '{other.method}'"
        if self.split != other.split:
            raise MismatchedSamplesError(f"{who} were evaluated on different splits ({self.split} vs {other.split})")
        if self.data_checksum and other.data_checksum and self.data_checksum != other.data_checksum:
            raise MismatchedSamplesError(
                f"{who} were evaluated on different data sets (checksums {self.data_checksum} vs {other.data_checksum})"
            )
        if (
            self.exclude_history is not None
            and other.exclude_history is not None
            and self.exclude_history != other.exclude_history
        ):

            def how(excluded: bool) -> str:
                return "history left out" if excluded else "history ranked too"

            raise MismatchedSamplesError(
                f"{who} were ranked differently ({how(self.exclude_history)} vs {how(other.exclude_history)}, "
                "eval.exclude_history); evaluate both the same way"
            )
        label_a, label_b = names or (self.method, other.method)  # two runs of one method: their names tell them apart
        pos_a, pos_b = align(self.sample_ids, other.sample_ids, label_a, label_b)
        if self.targets is not None and other.targets is not None:
            differ = self.targets[pos_a] != other.targets[pos_b]
            if differ.any():
                sid = self.sample_ids[pos_a][differ][0]
                raise MismatchedSamplesError(
                    f"{who} disagree on the target of {int(differ.sum())} samples (e.g. sample {sid}); "
                    "they were not evaluated on the same data set"
                )
        ks = tuple(k for k in self.ks if k in other.ks)
        return compare_ranks(
            self.sample_ids,
            self.ranks,
            other.sample_ids,
            other.ranks,
            ks,
            samples=self.bootstrap_samples if samples is None else samples,
            alpha=round(1.0 - self.confidence, 12) if alpha is None else alpha,
            seed=self.seed if seed is None else seed,
            names=(label_a, label_b),
        )

    # ---- serialisation -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Flat metric keys first (``hit@5``, ..., ``ndcg_full``, ``mean_rank``, ``samples``), then ``ci``
        (metric -> [lo, hi], null without a bootstrap) and the settings that produced them."""
        out: dict[str, Any] = {"method": self.method, "split": self.split}
        out.update({m: _num(v) for m, v in self.metrics.items()})
        out["samples"] = self.samples
        out["ci"] = {m: [_num(lo), _num(hi)] for m, (lo, hi) in self.ci.items()}
        out.update(
            {
                "confidence": self.confidence,
                "bootstrap_samples": self.bootstrap_samples,
                "seed": self.seed,
                "ks": list(self.ks),
                "num_items": self.num_items,
                "exclude_history": self.exclude_history,
                "data_checksum": self.data_checksum,
            }
        )
        return out

    def row(self) -> dict[str, Any]:
        """One flat row: split, method, samples, then per metric its mean, ``_lo`` and ``_hi``."""
        out: dict[str, Any] = {"method": self.method, "split": self.split, "samples": self.samples}
        for m, v in self.metrics.items():
            lo, hi = self.ci.get(m, (math.nan, math.nan))
            out.update({m: v, f"{m}_lo": lo, f"{m}_hi": hi})
        return out

    def ranks_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"sample_id": self.sample_ids})
        if self.targets is not None:
            frame["target"] = self.targets
        frame["rank"] = self.ranks
        return frame

    def save(self, run_dir: str | Path) -> dict[str, Path]:
        """Write eval_<split>.json, eval_<split>.csv and ranks_<split>.csv into ``run_dir``."""
        paths = result_paths(run_dir, self.split)
        paths["json"].parent.mkdir(parents=True, exist_ok=True)
        payload = {**self.to_dict(), "ranks_file": paths["ranks"].name}
        # each file whole or not at all (a full disk truncated a valid ranks file in place, and named no file), the
        # JSON last: a save cut short leaves an old JSON whose sample count the new ranks do not match
        atomic_write(paths["ranks"], lambda handle: self.ranks_frame().to_csv(handle, index=False), text=True)
        atomic_write(paths["csv"], lambda handle: pd.DataFrame([self.row()]).to_csv(handle, index=False), text=True)
        atomic_write_text(paths["json"], json.dumps(payload, indent=2) + "\n")
        return paths

    @classmethod
    def load(cls, run_dir: str | Path, split: str) -> EvalResult:
        """Read what :meth:`save` wrote (the JSON and the per-sample ranks)."""
        paths = result_paths(run_dir, split)
        for path in (paths["json"], paths["ranks"]):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run 'mgfrec evaluate {run_dir} --split {split}'")
        again = "evaluate the run again"
        try:
            frame = pd.read_csv(paths["ranks"])
            sample_ids, ranks = frame["sample_id"].to_numpy(), frame["rank"].to_numpy()
        except UnicodeDecodeError:  # its repr held 200 bytes of the file
            raise ValueError(f"{paths['ranks']}: not a valid ranks file (not UTF-8 text); {again}") from None
        except (KeyError, ValueError, pd.errors.ParserError) as exc:
            raise ValueError(f"{paths['ranks']}: not a valid ranks file ({exc!r}); {again}") from None
        # text here was reported as samples the runs do not share; a header alone (no rows) has no typed column,
        # and was "not whole numbers": its row count is checked against the JSON below
        for column in ("sample_id", "target", "rank") if len(frame) else ():
            if column in frame and not pd.api.types.is_integer_dtype(frame[column]):
                raise ValueError(f"{paths['ranks']}: column {column} holds values that are not whole numbers; {again}")
        if frame["sample_id"].duplicated().any():
            first = frame["sample_id"][frame["sample_id"].duplicated()].iat[0]
            raise ValueError(f"{paths['ranks']}: sample {first} appears more than once; {again}")
        try:
            payload = json.loads(paths["json"].read_text(encoding="utf-8"))
            stated = payload.get("samples")
            stated = None if stated is None else int(stated)
        except UnicodeDecodeError:
            raise ValueError(f"{paths['json']}: not a valid evaluation result (not UTF-8 text); {again}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{paths['json']}: not a valid evaluation result ({exc!r}); {again}") from None
        if stated is not None and stated != len(frame):
            raise ValueError(
                f"{paths['ranks']}: {len(frame)} rows, but {paths['json'].name} says {stated} samples (a save "
                f"that did not finish); {again}"
            )
        try:
            ks = tuple(int(k) for k in payload["ks"])
            names = metric_names(ks)
            num_items = payload.get("num_items")
            if num_items is not None and (type(num_items) is not int or num_items < 1):  # was a numpy traceback
                raise ValueError(f"num_items {num_items!r} is not a whole number of items")
            if num_items is not None and len(ranks) and int(np.max(ranks)) > num_items:  # named neither file
                raise ValueError(f"num_items {num_items}, below rank {int(np.max(ranks))} in {paths['ranks'].name}")
            result = cls(
                split=payload["split"],
                method=payload["method"],
                sample_ids=sample_ids,
                ranks=check_ranks(ranks, where=str(paths["ranks"])),
                ks=ks,
                metrics={m: float(payload[m]) for m in names},
                ci={m: (_float(lo), _float(hi)) for m, (lo, hi) in payload.get("ci", {}).items()},
                confidence=float(payload["confidence"]),
                bootstrap_samples=int(payload["bootstrap_samples"]),
                seed=int(payload["seed"]),
                targets=frame["target"].to_numpy() if "target" in frame else None,
                num_items=num_items,
                exclude_history=payload.get("exclude_history"),
                data_checksum=payload.get("data_checksum", ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if str(paths["ranks"]) in str(exc):  # check_ranks named the ranks file itself
                raise
            raise ValueError(f"{paths['json']}: not a valid evaluation result ({exc!r}); {again}") from None
        if result.samples:  # a rank edited by hand: report recomputed from the ranks and disagreed with the file
            values = per_sample(result.ranks, result.ks)
            for m in names:
                got, said = float(values[m].mean()), result.metrics[m]
                if not math.isclose(got, said, rel_tol=1e-9, abs_tol=1e-12):
                    raise ValueError(
                        f"{paths['ranks']}: its ranks give {m} {got:.6g}, but {paths['json'].name} says {said:.6g} "
                        f"(one of the two was edited, or they are two evaluations'); {again}"
                    )
        return result

    def table(self, title: str | None = None):
        """A rich table: one row per metric with its mean and interval."""
        from rich.table import Table

        pct = f"{self.confidence:.0%} CI"
        ranked = {True: ", history excluded", False: ", history ranked too"}.get(self.exclude_history, "")  # (s32)
        table = Table(title=title or f"{self.method} on {self.split} ({self.samples:,} samples{ranked})")
        for col in ("metric", "value", pct):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for m, v in self.metrics.items():
            lo, hi = self.ci.get(m, (math.nan, math.nan))
            digits = 1 if m == "mean_rank" else 4
            interval = "-" if math.isnan(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"
            table.add_row(label(m), f"{v:.{digits}f}", interval)
        return table


def _num(value: float) -> float | None:
    """JSON has no NaN: missing intervals are written as null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)

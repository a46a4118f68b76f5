"""``hybrid``: a collaborative model's scores blended with content similarity, the weight tuned on valid.

    score = (1 - w) * z(collaborative scores) + w * z(last-title scores)

where ``z`` standardises each row (the two models' scores live on unrelated scales: logits against negative
L2 distances). ``w`` is picked from ``weights`` by the valid split's ``tune_metric`` (no-cut-off NDCG by
default: on sparse splits NDCG@10 is a handful of hits and picks noise). Where targets are cold the content
side carries the ranking; where the log is dense the collaborative side does.

Run folder: ``RUN/hybrid.json`` (the chosen weight and the whole valid sweep) and the collaborative model
in ``RUN/collaborative/``, unless ``collaborative_run`` names an existing run to reuse (``mgfrec demo`` reuses
its SASRec run that way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.embed.cache import item_embeddings
from mgfrec.ranking.metrics import comparable, history_mask, per_sample, target_ranks
from mgfrec.registry import registry
from mgfrec.registry.blame import call_component
from mgfrec.retrievers.last_title import LastTitleOptions, LastTitleRetriever, run_embedding_config

STATE_FILE = "hybrid.json"
CF_DIR = "collaborative"


class HybridOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    collaborative: str = Field("sasrec", description="retriever name of the collaborative side")
    collaborative_options: dict[str, Any] = Field(
        default_factory=dict, description="the collaborative retriever's own options (as retriever.options)"
    )
    collaborative_run: str | None = Field(
        None, description="reuse this already trained baseline run folder instead of fitting the collaborative side"
    )
    content: LastTitleOptions = Field(
        LastTitleOptions(), description="the content side's options: last-title's (last_n, decay)"
    )
    weights: tuple[Annotated[float, Field(ge=0.0, le=1.0)], ...] = Field(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), min_length=1, description="content shares w to try"
    )
    tune_metric: Literal["ndcg_full", "ndcg@10", "hit@10"] = Field(
        "ndcg_full", description="the valid-split metric whose best weight is kept"
    )


def _standardise(scores: torch.Tensor) -> torch.Tensor:
    """Each row's z-scores over its finite entries, in the precision the rankings compare scores in
    (:func:`~mgfrec.ranking.metrics.comparable`: a plugin's float64 scores stay float64; cutting them to float32
    made scores that differ into ties, review s42). NaN ranks last, as everywhere; +inf stays first, -inf last (every
    non-finite score was sent last, +inf too)."""
    scores = comparable(scores)
    finite = torch.isfinite(scores)
    safe = torch.where(finite, scores, torch.zeros_like(scores))
    count = finite.sum(1, keepdim=True).clamp_min(1)
    mean = safe.sum(1, keepdim=True) / count
    var = (torch.where(finite, scores - mean, torch.zeros_like(scores)) ** 2).sum(1, keepdim=True) / count
    z = (safe - mean) / var.sqrt().clamp_min(1e-12)
    z = torch.where(finite, z, scores)  # +inf and -inf as they were
    return torch.where(torch.isnan(scores), torch.full_like(z, -torch.inf), z)


def blend(cf: torch.Tensor, content: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * cf + weight * content``, the two standardised parts; a side weighted 0 is left out rather
    than multiplied (0 * inf is NaN: an item one side scores +inf would have ranked last)."""
    if weight == 0.0:
        return cf
    if weight == 1.0:
        return content
    return (1.0 - weight) * cf + weight * content


class HybridRetriever:
    name = "hybrid"
    Options = HybridOptions
    nested_components: ClassVar[dict[str, str]] = {"collaborative": "retriever"}  # recorded with a run's plugins

    def __init__(self, collaborative: Any, content: LastTitleRetriever, weight: float, options: HybridOptions):
        self.collaborative, self.content, self.weight, self.options = collaborative, content, weight, options

    def _parts(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return _standardise(call_component(self.collaborative, "scores", histories)), _standardise(
            self.content.scores(histories)
        )

    def item_vectors(self) -> torch.Tensor:
        """The collaborative side's item embeddings (see ``SequentialRetriever.item_vectors``)."""
        if not hasattr(self.collaborative, "item_vectors"):
            raise ValueError(f"the hybrid's collaborative side ({self.options.collaborative}) has no item embeddings")
        return self.collaborative.item_vectors()

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        cf, content = self._parts(histories)
        return blend(cf, content, self.weight)

    @classmethod
    def fit(
        cls, ds: PreparedDataset, config: MGFRecConfig, out: Path, options: HybridOptions | None = None
    ) -> HybridRetriever:
        """Fit the collaborative side into ``out/collaborative``, then pick the weight on valid."""
        options = options or HybridOptions()
        if options.collaborative in (cls.name, "bigrec"):
            raise ValueError(
                f"retriever.options.collaborative: {options.collaborative} cannot be a hybrid's collaborative side; "
                "name a scoring model such as sasrec, gru4rec, caser or pop"
            )
        if ds.counts["samples"].get("valid", 0) == 0:
            raise ValueError(f"{ds.root}: the valid split is empty; the hybrid tunes its weight on valid samples")
        created = None
        if options.collaborative_run is not None:
            _check_reused(Path(options.collaborative_run), Path(out))
            collaborative = _load_collaborative(Path(options.collaborative_run), ds, options.collaborative)
            created = _fit_stamp(Path(options.collaborative_run))
        else:
            (Path(out) / CF_DIR).mkdir(parents=True, exist_ok=True)  # as baseline fit gives a retriever its OUT (s37)
            collaborative = registry().build(
                "retriever",
                options.collaborative,
                options.collaborative_options,
                ds,
                config,
                Path(out) / CF_DIR,
                method="fit",
                where="retriever.options.collaborative_options",
            )
        content = LastTitleRetriever(item_embeddings(ds, config.embedding, progress=True), options.content)
        sweep = tune_weight(collaborative, content, ds, options)
        weight = max(sweep, key=lambda w: (sweep[w], -abs(w - 0.5)))  # ties: the more balanced blend
        state = {
            "weight": weight,
            # where the reused run lies, relative to this run: loads from any folder, moves with its parent
            "collaborative_dir": (
                os.path.relpath(Path(options.collaborative_run).resolve(), Path(out).resolve())
                if options.collaborative_run is not None
                else CF_DIR
            ),
            # the reused run's fit (run.json 'created'): a refit of it after tuning is refused at load
            "collaborative_created": created,
            "tune_metric": options.tune_metric,
            "valid": {str(w): v for w, v in sweep.items()},
            "options": options.model_dump(mode="json"),
        }
        (Path(out) / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        hybrid = cls(collaborative, content, weight, options)
        if options.collaborative_run is None:
            # the side it trained says why training ended (a cap, early stopping, Ctrl-C: "user", which stops a
            # longer command such as sft or the demo) and its best epoch; run.json records both, as for SASRec
            for mark in ("stopped", "stop_signal", "best_epoch"):
                setattr(hybrid, mark, getattr(collaborative, mark, None))
        return hybrid

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> HybridRetriever:
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; fit with 'mgfrec baseline fit --model hybrid'")
        from mgfrec.runs import read_json_object

        again = "fit the hybrid again (mgfrec baseline fit --model hybrid)"
        state = read_json_object(path, again)  # a list or a number there was a TypeError traceback
        options = HybridOptions.model_validate(state["options"])
        weight = state.get("weight")
        # a weight outside [0, 1] (an edit) ranked by -6 cf + 7 content without a word; null was a traceback
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"{path}: field weight {weight!r} is not a content share in [0, 1]; {again}")
        cls.check_current(run_dir)
        collaborative = _load_collaborative(_collaborative_dir(run_dir, state, options), ds, options.collaborative)
        content = LastTitleRetriever(item_embeddings(ds, run_embedding_config(run_dir)), options.content)
        return cls(collaborative, content, float(weight), options)

    @classmethod
    def check_current(cls, run_dir: str | Path) -> None:
        """Refuse a hybrid whose reused collaborative run was fitted again after its weight was tuned: the
        weight (and any stored result) belong to the old model."""
        from mgfrec.retrievers.damage import damaged_run_files
        from mgfrec.runs import read_json_object

        state = read_json_object(
            Path(run_dir) / STATE_FILE, "fit the hybrid again (mgfrec baseline fit --model hybrid)"
        )
        expected = state.get("collaborative_created")
        if not expected:
            return  # its own collaborative side, or a run from before this check
        with damaged_run_files(run_dir, "hybrid"):
            cf_dir = _collaborative_dir(Path(run_dir), state, HybridOptions.model_validate(state["options"]))
        now = _fit_stamp(cf_dir)
        if now is not None and now != expected:
            raise ValueError(
                f"{run_dir}: its collaborative run {cf_dir} was fitted again ({expected} -> {now}) after the "
                f"hybrid's weight was tuned; fit the hybrid again (mgfrec baseline fit --model hybrid ...)"
            )


def _collaborative_dir(run_dir: Path, state: dict[str, Any], options: HybridOptions) -> Path:
    if "collaborative_dir" in state:
        return Path(run_dir) / state["collaborative_dir"]
    # older runs kept only the path as given, relative to the folder they were fitted from
    return Path(options.collaborative_run) if options.collaborative_run else Path(run_dir) / CF_DIR


def _fit_stamp(run_dir: Path) -> str | None:
    """When a reused baseline run was fitted (run.json 'created'); None for a folder without run.json."""
    from mgfrec.runs import RUN_FILE, read_run_info

    return read_run_info(run_dir).created if (run_dir / RUN_FILE).is_file() else None


def _check_reused(run_dir: Path, out: Path) -> None:
    """A ``collaborative_run`` must be a finished baseline run (its ``run.json`` says which model and data set, and
    dates the fit the hybrid's staleness check compares), and not the hybrid's own ``--out``, whose files the fit
    has just set aside."""
    from mgfrec.runs import PREVIOUS_FIT, RUN_FILE

    if run_dir.resolve() in (out.resolve(), (out / PREVIOUS_FIT).resolve()):
        raise ValueError(
            f"retriever.options.collaborative_run: {run_dir} is the hybrid's own --out; give the run folder of a "
            "fitted baseline, or leave it unset to fit the collaborative side inside the hybrid's run"
        )
    if run_dir.is_dir() and not (run_dir / RUN_FILE).is_file():
        raise ValueError(
            f"retriever.options.collaborative_run: {run_dir} holds no {RUN_FILE} (not a finished baseline run: its "
            "model and data set cannot be checked, a pop model's counts from another split among them); give a "
            "folder made by mgfrec baseline fit"
        )


def _load_collaborative(run_dir: Path, ds: PreparedDataset, name: str) -> Any:
    """The collaborative model in ``run_dir``; a reused baseline run (one with run.json) must be of model
    ``name`` and trained on ``ds``, as every run that is evaluated must (a pop run's counts from another
    split would carry test-period interactions)."""
    from mgfrec.runs import RUN_FILE, read_run_info

    if not run_dir.is_dir():
        raise FileNotFoundError(f"retriever.options.collaborative_run: {run_dir} is not a run folder")
    if (run_dir / RUN_FILE).is_file():
        info = read_run_info(run_dir)
        if info.model != name:
            raise ValueError(
                f"retriever.options.collaborative_run: {run_dir} holds a '{info.model}' run, but "
                f"retriever.options.collaborative is '{name}'"
            )
        if info.data_checksum and info.data_checksum != ds.checksum:
            raise ValueError(
                f"retriever.options.collaborative_run: {run_dir} was trained on another data set (data_checksum "
                f"{info.data_checksum} in its run.json; {ds.root} is {ds.checksum}); fit it on this one"
            )
    return registry().load("retriever", name).load(run_dir, ds)


def tune_weight(
    collaborative: Any, content: LastTitleRetriever, ds: PreparedDataset, options: HybridOptions, batch_size: int = 512
) -> dict[float, float]:
    """Valid ``tune_metric`` for every weight; both score matrices are computed once per batch."""
    frame = ds.split("valid")
    histories = [np.array(h, dtype=np.int64) for h in frame["history"]]
    targets = torch.as_tensor(frame["target"].to_numpy(dtype=np.int64, copy=True))
    ranks: dict[float, list[np.ndarray]] = {w: [] for w in options.weights}
    hybrid = HybridRetriever(collaborative, content, 0.0, options)
    for start in range(0, len(histories), batch_size):
        hist = histories[start : start + batch_size]
        cf, cb = hybrid._parts(hist)
        exclude = history_mask(hist, ds.num_items)
        for w in options.weights:
            ranks[w].append(target_ranks(blend(cf, cb, w), targets[start : start + batch_size], exclude).numpy())
    return {
        w: float(per_sample(np.concatenate(r) if r else np.zeros(0), [10])[options.tune_metric].mean())
        for w, r in ranks.items()
    }

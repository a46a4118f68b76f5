"""``last-title``: the content floor. Ground the last history title and rank every item by L2 distance.

It needs no training and reaches items no ID-based model can: on the shared CDs split 388 of the 491 test
targets never occur as a training target, so SASRec and friends cannot score them above chance, while a
title close to the last one can. Any LLM variant must beat this floor to be worth its cost.

The query is the catalogue vector of the last history item (a recency-weighted mean of the last
``last_n`` items, when ``last_n > 1``), so no text is re-embedded. Item vectors come from the embedding
cache keyed by ``embedding.*`` in the run's config; ``load`` reads them back from there.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from mgfrec.config.load import load_config
from mgfrec.config.schema import EmbeddingConfig, MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.embed.cache import item_embeddings
from mgfrec.grounding.ranking import full_scores
from mgfrec.grounding.ties import UniqueVectors


class LastTitleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    last_n: int = Field(1, ge=1, description="how many of the latest history items form the query")
    decay: float = Field(0.5, gt=0, le=1, description="weight of each older item relative to the next newer one")


class LastTitleRetriever:
    """Scores = negative L2 distance from the (last) history title's vector to every item's."""

    reads_training_settings = False  # retriever.lr, max_epochs, seed, ...: see mgfrec baseline fit's note

    name = "last-title"
    Options = LastTitleOptions

    def __init__(self, vectors: np.ndarray, options: LastTitleOptions | None = None):
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.options = options or LastTitleOptions()

    @cached_property
    def _unique(self) -> UniqueVectors:
        return UniqueVectors.build(self.vectors)

    @classmethod
    def fit(
        cls, ds: PreparedDataset, config: MGFRecConfig, out: Path, options: LastTitleOptions | None = None
    ) -> LastTitleRetriever:
        """Nothing to learn: make sure the item vectors are cached, and remember the options."""
        options = options or LastTitleOptions()
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "last_title.json").write_text(options.model_dump_json(), encoding="utf-8")
        return cls(item_embeddings(ds, config.embedding, progress=True), options)

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> LastTitleRetriever:
        options_file = Path(run_dir) / "last_title.json"
        if not options_file.is_file():
            raise FileNotFoundError(f"{options_file}: missing; fit with 'mgfrec baseline fit --model last-title'")
        options = LastTitleOptions.model_validate_json(options_file.read_text(encoding="utf-8"))
        return cls(item_embeddings(ds, run_embedding_config(run_dir)), options)

    def queries(self, histories: list[np.ndarray]) -> np.ndarray:
        """One query vector per history: the last item's, or a recency-weighted mean of the last few."""
        n, decay = self.options.last_n, self.options.decay
        out = np.zeros((len(histories), self.vectors.shape[1]), dtype=np.float32)
        for row, hist in enumerate(histories):
            recent = np.asarray(hist[-n:], dtype=np.int64)
            if len(recent):
                weights = decay ** np.arange(len(recent) - 1, -1, -1, dtype=np.float64)
                out[row] = (weights[:, None] * self.vectors[recent]).sum(0) / weights.sum()
        return out

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        scores = full_scores(self._unique, self.queries(histories))
        empty = torch.as_tensor([len(h) == 0 for h in histories])
        return scores.masked_fill(empty.unsqueeze(1), 0.0)  # no history: every item ties


def run_embedding_config(run_dir: Path) -> EmbeddingConfig:
    """The ``embedding`` section a run was fitted with (its resolved config.yaml), or the defaults."""
    path = Path(run_dir) / "config.yaml"
    return load_config(path).embedding if path.is_file() else EmbeddingConfig()

"""What a ``retriever`` component is: a model that scores every item for a sample's history.

Retrievers serve twice: as the classical baselines of the paper's Table 4 (scored by the one evaluator)
and as the recall model that puts the top-N items into the agent's first prompt.

A trained retriever lives in a run folder::

    RUN/run.json      {"kind": "baseline", "model": <registry name>, "data": <prepared folder>, ...}
    RUN/config.yaml   the resolved config
    RUN/...           whatever the model saves (weights, metrics.csv, recall_<split>.npy)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mgfrec.config.schema import MGFRecConfig
from mgfrec.data.prepared import PreparedDataset


class Retriever(Protocol):
    """Scores items for histories; higher is better. ``Options`` (pydantic) is optional."""

    name: str

    @classmethod
    def fit(cls, ds: PreparedDataset, config: MGFRecConfig, out: Path, options: Any = None) -> Retriever:
        """Train on ``ds``'s train split (early stopping on valid where the model trains) and save to ``out``."""
        ...

    @classmethod
    def load(cls, run_dir: Path, ds: PreparedDataset) -> Retriever:
        """Load what ``fit`` saved."""
        ...

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        """Float [B, N] scores over the whole catalogue for a batch of histories (item indices); higher is better.
        float64 is ranked at its own precision, anything else as float32 (:func:`mgfrec.ranking.metrics.comparable`)."""
        ...

"""Fixtures for the grounding tests: the shared CDs catalogue with its real MiniLM vectors, clustered vectors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgfrec.config.schema import DataConfig, EmbeddingConfig
from mgfrec.data.prepared import PreparedDataset, prepare
from mgfrec.embed.cache import item_embeddings

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MGFREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Catalogue:
    """What the embedding cache needs of a prepared data set: titles and a folder."""

    root: Path
    titles: list[str]


@pytest.fixture(scope="session")
def cds(minilm):
    """The shared Amazon 2023 CDs catalogue (4,634 titles, 367 duplicated) and its real MiniLM vectors."""
    items = SHARED_DATA / "amazon2023-cds" / "items.csv"
    if not items.is_file():
        pytest.skip(f"{items} is absent: the shared data sets live beside the repository in ../shared/data")
    titles = pd.read_csv(items, dtype=str, keep_default_na=False)["title"].tolist()
    # The real embedding cache, kept in the repository's ignored .mgfrec-cache/ so that only the first session
    # pays for encoding; its key (model + sha256 of the titles) makes a stale hit impossible.
    cache = EmbeddingConfig(cache_dir=str(REPO / ".mgfrec-cache" / "embeddings"))
    vectors = item_embeddings(Catalogue(items.parent, titles), cache, minilm)
    return titles, vectors


@pytest.fixture(scope="session")
def clustered():
    """Synthetic normalised vectors around random centres: the shape real title embeddings have."""

    def make(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(clusters, dim))
        points = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)

    return make


@pytest.fixture
def make_dataset(tmp_path):
    """Factory of real prepared folders (csv source) whose catalogue has the given titles, in order."""

    def make(titles: list[str], name: str = "data") -> PreparedDataset:
        raw = tmp_path / name / "raw"
        raw.mkdir(parents=True)
        rows = "".join(f'i{n},"{t}"\n' for n, t in enumerate(titles))
        (raw / "items.csv").write_text("item_id,title\n" + rows, encoding="utf-8")
        log = "".join(f"u{n % 2},i{n},{n}\n" for n in range(len(titles)))
        (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log, encoding="utf-8")
        return prepare(DataConfig(source="csv", path=str(raw)), tmp_path / name / "prepared")

    return make

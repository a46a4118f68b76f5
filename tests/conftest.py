"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# The suite's models are tiny: a second thread buys nothing, and on a shared 2-core machine torch's thread
# pool measured 30x slower than one thread (docs/benchmarks.md, rollout section).
torch.set_num_threads(int(os.environ.get("MGFREC_TEST_THREADS", "1")))

# A suite started in the background (``pytest ... &``, a CI runner's job) inherits SIGINT ignored, as POSIX shells
# do for background jobs, and so do the commands it starts: Ctrl-C then reaches none of them, and the tests of what a
# Ctrl-C does (a fit stopped with 130) saw a fit run to its end with exit 0. They test a command run in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MGFREC_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path to ``../shared/data/<name>``, or skip the test saying why."""
    path = SHARED_DATA / name
    if not (path / "items.csv").is_file():
        pytest.skip(f"{path} is absent: the shared data sets live beside the repository in ../shared/data")
    return path


@pytest.fixture
def cds_dir() -> Path:
    return shared_dataset("amazon2023-cds")


@pytest.fixture
def ml100k_dir() -> Path:
    return shared_dataset("ml-100k")


@pytest.fixture(scope="session")
def minilm():
    """The default embedder (bundled all-MiniLM-L6-v2 on CPU), built through the registry, loaded once."""
    from mgfrec.config.schema import EmbeddingConfig
    from mgfrec.embed.base import load_embedder

    embedder = load_embedder(EmbeddingConfig())
    assert embedder.dim == 384  # loads the model once, here
    return embedder

"""Library chatter stays out of a command's output unless ``mgfrec --verbose`` asks for it.

Real subprocesses at COLUMNS=80 (what a user's terminal or log gets): ``index build`` loads the embedding
model through transformers, ``baseline fit --model bigrec`` loads, trains and saves the small policy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHATTER = (
    "Loading weights",
    "Writing model shards",
    "GPU available",
    "TPU available",
    "litlogger",
    "LeafSpec",
    "module(s) in eval mode",
    "weights_only",
    "Epoch 0/-2",
    "HPU available",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quiet")
    proc = mgfrec(
        "data",
        "prepare",
        "synthetic",
        "--out",
        str(root / "data"),
        "--set",
        "data.options={n_users: 40, n_items: 80, n_artists: 10, max_length: 6}",
    )
    assert proc.returncode == 0, proc.stderr
    return root


def mgfrec(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )


def chatter(text: str) -> list[str]:
    return [c for c in CHATTER if c in text]


def test_index_build_and_a_bigrec_fit_print_no_library_chatter(data):
    cache = f"embedding.cache_dir={data / 'emb'}"
    index = mgfrec("index", "build", str(data / "data"), "--set", cache)
    assert index.returncode == 0, index.stderr
    fit = mgfrec(
        "baseline",
        "fit",
        "--model",
        "bigrec",
        "--data",
        str(data / "data"),
        "--out",
        str(data / "bigrec"),
        "--set",
        cache,
        "--set",
        "retriever.options={epochs: 1, batch_size: 16, max_train_samples: 32, valid_samples: 4, max_new_tokens: 4}",
    )
    assert fit.returncode == 0, fit.stderr
    for proc in (index, fit):
        text = proc.stdout + proc.stderr
        assert chatter(text) == [], text
        assert "Traceback" not in text and "Warning" not in text, text
    assert re.search(r"valid NDCG@10 \d\.\d{4}", fit.stdout)


def test_verbose_brings_the_chatter_back(data):
    cache = f"embedding.cache_dir={data / 'emb-verbose'}"
    proc = mgfrec("--verbose", "index", "build", str(data / "data"), "--set", cache)
    assert proc.returncode == 0, proc.stderr
    # transformers' own bar, hidden without --verbose
    assert "Loading weights" in proc.stderr

"""A seeded stage leaves its caller's generators as they were (review s35): Python's, NumPy's, torch's and the
environment's seed variables, whether it finishes or fails; the stage's own draws do not change."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from rngkit import assert_caller_rng_kept, draws_after

from mgfrec.config.schema import DataConfig, MGFRecConfig, RetrieverConfig
from mgfrec.data.prepared import prepare
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.seeding import kept_global_rng

pytestmark = pytest.mark.reliability


def test_every_generator_and_seed_variable_is_put_back_when_the_block_fails(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)

    def seeded_and_failing():
        with kept_global_rng():
            random.seed(0)
            np.random.seed(0)
            torch.manual_seed(0)
            os.environ["PL_GLOBAL_SEED"] = "0"
            os.environ["PL_SEED_WORKERS"] = "1"
            raise RuntimeError("stopped")

    def call():
        with pytest.raises(RuntimeError):
            seeded_and_failing()

    assert draws_after(call) == draws_after(lambda: None)
    assert os.environ["PL_GLOBAL_SEED"] == "7" and "PL_SEED_WORKERS" not in os.environ


def test_the_block_draws_what_it_would_draw_without_it():
    def seeded():
        torch.manual_seed(5)
        return float(torch.rand(())), float(torch.rand(()))

    plain = seeded()
    with kept_global_rng():
        kept = seeded()
    assert kept == plain


def test_a_baseline_fit_leaves_the_callers_generators_and_gives_the_same_model(tmp_path):
    ds = prepare(
        DataConfig(source="synthetic", options={"n_users": 30, "n_items": 40, "n_artists": 8, "max_length": 6}),
        tmp_path / "data",
    )
    cfg = MGFRecConfig(retriever=RetrieverConfig(model="sasrec", max_epochs=1, batch_size=16))
    first = assert_caller_rng_kept(lambda: fit_baseline(ds, cfg, tmp_path / "a"))
    second = fit_baseline(ds, cfg, tmp_path / "b")
    assert first.valid_ndcg10 == second.valid_ndcg10  # the fit is seeded by its settings, whatever ran before

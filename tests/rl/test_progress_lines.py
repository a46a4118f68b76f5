"""SFT and GRPO show a live progress line (mgfrec.progress) while they train: plain lines in a log, with
the steps done, the loss or reward, and an estimate of the time left; never Lightning's "Epoch 0/-2"."""

from __future__ import annotations

import io

import pytest

from mgfrec import progress
from mgfrec.config.load import load_config
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.rl.fit import FitOptions, run_fit
from mgfrec.rl.sft import SFTOptions, run_sft

pytestmark = pytest.mark.slow

SHORT_SYSTEM = "Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>."


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    prepare(
        DataConfig(source="synthetic", options={"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}),
        root / "data",
    )
    (root / "system.txt").write_text(SHORT_SYSTEM, encoding="utf-8")
    return root


def config(root):
    return load_config(
        None,
        [
            f"agent.template={root / 'system.txt'}",
            "agent.max_new_tokens_total=160",
            "trainer.global_batch_size=2",
            "retriever.recall_size=3",
            "grpo.group_size=2",
            "trainer.max_steps=2",
            "trainer.val_check_interval=100",
            "retriever.max_epochs=1",
        ],
    )


def test_sft_and_grpo_print_progress_lines(root, capfd, caplog):
    import logging

    stream = io.StringIO()
    with progress.reporting(stream, interval=0.0, plain=True), caplog.at_level(logging.INFO):
        run_sft(
            root / "data",
            root / "sft",
            config(root),
            SFTOptions(recall_model="pop", epochs=1, batch_size=4, max_train_samples=8, valid_samples=2, progress=True),
            say=lambda m: None,
        )
        run_fit(
            root / "data",
            root / "fit",
            config(root),
            FitOptions(init=str(root / "sft"), valid_samples=2, progress=True),
            say=lambda m: None,
        )
    lines = stream.getvalue().splitlines()
    sft = [line for line in lines if line.startswith("[sft] ")]
    grpo = [line for line in lines if line.startswith("[grpo] ")]
    assert sft and "step 2/2" in sft[-1] and "batch loss" in sft[-1] and "100%" in sft[-1]
    assert grpo and grpo[-1].startswith("[grpo] step 2/2, reward ") and "elapsed" in grpo[-1]
    assert "Epoch 0/-2" not in stream.getvalue()
    # Lightning's banners reached a library caller's screen (its own handler; here, pytest's; review s35)
    printed = capfd.readouterr()
    assert "GPU available" not in printed.out + printed.err + caplog.text


def test_an_sft_epoch_without_valid_samples_says_so_instead_of_nan():
    """`sft --valid-samples 0` printed "valid format_valid nan, ... ndcg_full nan" for every epoch."""
    from mgfrec.rl.sft import METRIC_COLUMNS, _row_text

    nan = float("nan")
    line = _row_text({"epoch": 1, "train_loss": 0.5, **{k: nan for k in METRIC_COLUMNS}})
    assert line == "epoch 1: train loss (epoch mean) 0.5000; no validation (no valid samples)"
    assert "nan" not in _row_text({"epoch": 0, "train_loss": nan, **{k: 0.25 for k in METRIC_COLUMNS}})

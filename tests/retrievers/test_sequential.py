"""SASRec, GRU4Rec and Caser through the shared training loop, and Pop through the same fit path.

Fits are a few epochs on a 60-item chain log (item i is always followed by i+1), a second or so each.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mgfrec.config.load import load_config
from mgfrec.ranking.metrics import per_sample
from mgfrec.retrievers.fit import fit_baseline, load_retriever, split_ranks
from mgfrec.retrievers.recall import top_items
from mgfrec.retrievers.sasrec import SASRecRetriever

pytestmark = pytest.mark.slow

ALL = ["pop", "sasrec", "gru4rec", "caser"]
SEQUENTIAL = ["sasrec", "gru4rec", "caser"]


def fit(ds, out: Path, model: str, **values):
    values = {"retriever.model": model, "retriever.max_epochs": 2, **values}
    return fit_baseline(ds, load_config(values=values), out)


def read_log(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(chain_ds, tmp_path_factory):
    """Each model fitted once (2 epochs) into its own run folder."""
    root = tmp_path_factory.mktemp("runs")
    return {name: fit(chain_ds, root / name, name) for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_saved_model_loads_with_identical_scores(runs, chain_ds, name):
    result = runs[name]
    histories = [np.array([5, 6, 7]), np.array([], dtype=np.int64), np.arange(30)]
    histories += chain_ds.split("test")["history"].tolist()
    fitted = result.retriever.scores(histories)
    loaded = load_retriever(result.run_dir, chain_ds)
    assert loaded is not result.retriever
    assert fitted.shape == (len(histories), chain_ds.num_items)
    assert torch.isfinite(fitted).all()
    assert torch.equal(loaded.scores(histories), fitted)


@pytest.mark.parametrize("name", ALL)
def test_run_folder_says_what_was_trained(runs, chain_ds, name):
    run = runs[name].run_dir
    info = json.loads((run / "run.json").read_text())
    assert (info["kind"], info["model"], info["data_checksum"]) == ("baseline", name, chain_ds.checksum)
    assert info["data"] == str(chain_ds.root.resolve())
    assert info["extra"]["valid_ndcg@10"] == pytest.approx(runs[name].valid_ndcg10)
    assert yaml.safe_load((run / "config.yaml").read_text())["retriever"]["model"] == name


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_metrics_csv_has_one_row_per_epoch(runs, name):
    rows = read_log(runs[name].run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(float(r["train_loss"]) > 0 and 0 <= float(r["valid_ndcg@10"]) <= 1 for r in rows)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_scores_read_only_the_most_recent_window(runs, name):
    model = runs[name].retriever
    long = np.arange(40) % 60
    assert torch.equal(model.scores([long]), model.scores([long[-model.window :]]))


def test_sasrec_learns_that_i_is_followed_by_i_plus_1(chain_ds, tmp_path):
    result = fit(chain_ds, tmp_path, "sasrec", **{"retriever.max_epochs": 10})
    # Random ranking among ~57 candidates gives NDCG@10 of about 0.08.
    assert result.valid_ndcg10 > 0.8
    test = per_sample(split_ranks(result.retriever, chain_ds, "test"), [10])
    assert test["ndcg@10"].mean() > 0.8
    # Direction matters: after [i] alone, i+1 (not i-1, equally "similar") must come first.
    top = top_items(result.retriever, [np.array([i]) for i in range(60)], 60, 1)[:, 0]
    assert (top == (np.arange(60) + 1) % 60).mean() > 0.8


def test_bce_with_one_negative_also_learns(chain_ds, tmp_path):
    result = fit(chain_ds, tmp_path, "gru4rec", **{"retriever.max_epochs": 6, "retriever.loss": "bce"})
    assert result.valid_ndcg10 > 0.5


def test_early_stopping_keeps_the_best_epoch(chain_ds, tmp_path):
    # lr 1e-2 reaches its best within a few epochs and then wobbles; patience 1 stops at the first wobble.
    values = {"retriever.max_epochs": 30, "retriever.patience": 1, "retriever.lr": 1e-2}
    result = fit(chain_ds, tmp_path, "sasrec", **values)
    valid = [float(r["valid_ndcg@10"]) for r in read_log(tmp_path)]
    assert len(valid) < 30, "early stopping never triggered"
    best = int(np.argmax(valid))
    assert result.retriever.best_epoch == best
    # The saved weights are the best epoch's, not the last epoch's (compare the recomputed metric).
    assert valid[-1] < valid[best], "the last epoch must differ from the best for this test to discriminate"
    assert result.valid_ndcg10 == pytest.approx(valid[best], abs=1e-6)


def test_same_seed_same_weights_other_seed_other_weights(chain_ds, tmp_path):
    def weights(seed: int, out: str):
        values = {"retriever.max_epochs": 1, "retriever.seed": seed}
        result = fit(chain_ds, tmp_path / out, "sasrec", **values)
        return result.retriever.state_dict()

    first, again, other = weights(3, "a"), weights(3, "b"), weights(4, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_fit_is_quiet_and_leaves_torch_settings_as_it_found_them(chain_ds, tmp_path, capfd):
    assert not torch.are_deterministic_algorithms_enabled()
    fit(chain_ds, tmp_path, "gru4rec", **{"retriever.max_epochs": 1})
    assert not torch.are_deterministic_algorithms_enabled()
    printed = capfd.readouterr()
    assert "GPU available" not in printed.out + printed.err
    assert "Epoch 0" not in printed.out + printed.err  # no progress bar unless asked for


def test_bad_options_name_the_field(chain_ds, tmp_path):
    with pytest.raises(ValueError, match=r"retriever\.options\.heads=3 must divide retriever\.embedding_dim=64"):
        fit(chain_ds, tmp_path, "sasrec", **{"retriever.options": {"heads": 3}})
    with pytest.raises(ValueError, match=r"retriever\.options\.layer"):
        fit(chain_ds, tmp_path, "sasrec", **{"retriever.options": {"layer": 3}})


def test_a_caser_window_above_the_history_length_is_noted(chain_ds, tmp_path):
    """It was capped at the history length without a word, config.yaml recording the window asked for (review s32)."""
    from mgfrec.retrievers.fit import load_retriever
    from mgfrec.retrievers.sequences import history_window

    window = history_window(chain_ds)
    with pytest.warns(UserWarning, match=rf"retriever.options.window {window + 30} is above .* length {window}"):
        fit(chain_ds, tmp_path / "wide", "caser", **{"retriever.options": {"window": window + 30}})
    with pytest.warns(UserWarning, match="Caser reads the last"):  # and each time the run loads
        assert load_retriever(tmp_path / "wide", chain_ds).length == window


def test_loading_on_other_data_is_refused(runs, prepare_log):
    other = prepare_log([("u", f"i{i}", i) for i in range(12)], 60)
    with pytest.raises(ValueError, match="not the one the run was trained on"):
        load_retriever(runs["sasrec"].run_dir, other)
    with pytest.raises(ValueError, match="trained on data"):
        SASRecRetriever.load(runs["sasrec"].run_dir, other)


def test_a_model_saved_with_other_options_names_the_file(runs, chain_ds, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(runs["sasrec"].run_dir, run)
    saved = torch.load(run / "model.pt", weights_only=True)
    saved["options"]["retired_option"] = 1
    torch.save(saved, run / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt: its saved settings do not fit.*retired_option.*refit"):
        SASRecRetriever.load(run, chain_ds)

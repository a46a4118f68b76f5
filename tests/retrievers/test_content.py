"""The content retrievers: last-title (the floor) and hybrid (collaborative + content, weight tuned on valid)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mgfrec.config.load import load_config
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.ranking.metrics import per_sample
from mgfrec.retrievers.fit import fit_baseline, load_retriever, split_ranks
from mgfrec.retrievers.hybrid import HybridOptions, HybridRetriever, _standardise
from mgfrec.retrievers.last_title import LastTitleOptions, LastTitleRetriever


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A small synthetic data set: titles carry artist and genre, and users follow artists and series."""
    root = tmp_path_factory.mktemp("synth")
    options = {"n_users": 120, "n_items": 200, "n_artists": 30, "max_length": 10}
    return prepare(DataConfig(source="synthetic", options=options), root / "data")


def _config(model: str, tmp_path, *extra: str):
    return load_config(None, [f"retriever.model={model}", f"embedding.cache_dir={tmp_path / 'emb'}", *extra])


def _pop_hybrid(tmp_path, run):
    """A hybrid config blending the fitted pop run ``run``."""
    return _config("hybrid", tmp_path, f"retriever.options={{collaborative: pop, collaborative_run: {run}}}")


def test_last_title_ranks_by_title_distance(minilm):
    vectors = minilm.encode(["Blue Train - Jazz", "Blue Train - Jazz Live", "Heavy Metal Thunder", "Blue Train - Jazz"])
    model = LastTitleRetriever(vectors)
    scores = model.scores([np.array([2, 0])])[0]
    # the nearest other item to "Blue Train - Jazz" is its duplicate (an exact tie), then the live album
    assert scores[0] == scores[3] == scores.max()
    assert scores[1] > scores[2]
    assert torch.equal(model.scores([np.array([], dtype=np.int64)]), torch.zeros(1, 4))


def test_last_n_weights_recent_items_more(minilm):
    vectors = np.eye(3, dtype=np.float32)
    model = LastTitleRetriever(vectors, LastTitleOptions(last_n=2, decay=0.5))
    query = model.queries([np.array([0, 1])])[0]
    np.testing.assert_allclose(query, [1 / 3, 2 / 3, 0], rtol=1e-6)


def test_last_title_beats_random_on_synthetic_and_reloads(synth, tmp_path):
    result = fit_baseline(synth, _config("last-title", tmp_path), tmp_path / "run")
    ranks = split_ranks(result.retriever, synth, "test")
    random_ndcg = per_sample(np.random.default_rng(0).integers(1, synth.num_items + 1, len(ranks)), [10])[
        "ndcg_full"
    ].mean()
    assert per_sample(ranks, [10])["ndcg_full"].mean() > 1.5 * random_ndcg
    reloaded = load_retriever(tmp_path / "run", synth)
    hist = [np.array(h) for h in synth.split("test")["history"][:5]]
    assert torch.equal(reloaded.scores(hist), result.retriever.scores(hist))


def test_hybrid_tunes_the_weight_on_valid_and_reloads(synth, tmp_path):
    cfg = _config("hybrid", tmp_path, "retriever.options={collaborative: pop}")
    result = fit_baseline(synth, cfg, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "hybrid.json").read_text())
    sweep = {float(w): v for w, v in state["valid"].items()}
    assert set(sweep) == set(HybridOptions().weights)
    assert state["weight"] in sweep and sweep[state["weight"]] == max(sweep.values())
    # content matters here, so neither pure side should win
    assert sweep[state["weight"]] > sweep[0.0]
    reloaded = load_retriever(tmp_path / "run", synth)
    hist = [np.array(h) for h in synth.split("test")["history"][:5]]
    assert torch.allclose(reloaded.scores(hist), result.retriever.scores(hist))
    assert (tmp_path / "run" / "collaborative" / "popularity.npy").is_file()


def test_hybrid_reuses_a_trained_collaborative_run(synth, tmp_path):
    pop = fit_baseline(synth, _config("pop", tmp_path), tmp_path / "pop")
    cfg = _pop_hybrid(tmp_path, tmp_path / "pop")
    result = fit_baseline(synth, cfg, tmp_path / "hybrid")
    assert not (tmp_path / "hybrid" / "collaborative").exists()
    assert np.array_equal(result.retriever.collaborative.counts, pop.retriever.counts)
    hist = [np.array(h) for h in synth.split("test")["history"][:5]]
    assert torch.allclose(load_retriever(tmp_path / "hybrid", synth).scores(hist), result.retriever.scores(hist))


def test_hybrid_refuses_to_blend_itself(synth, tmp_path):
    with pytest.raises(ValueError, match="hybrid cannot be a hybrid's collaborative side"):
        HybridRetriever.fit(synth, _config("hybrid", tmp_path), tmp_path / "run", HybridOptions(collaborative="hybrid"))


def test_standardise_rows():
    z = _standardise(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, -torch.inf]]))
    # Row [1, 2, 3]: mean 2, population variance (1 + 0 + 1) / 3, so z = (x - 2) / sqrt(2/3) = -+sqrt(3/2).
    np.testing.assert_allclose(z[0].numpy(), [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    assert z[1, 2] == -torch.inf and z[1, 0] == z[1, 1] == 0.0


def test_a_hybrid_reusing_a_relative_run_loads_from_any_folder(synth, tmp_path, monkeypatch):
    """The demo passes ``collaborative_run`` relative to the folder it runs in; loading the hybrid from
    another folder, or after moving the whole parent folder, must still find the reused run."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    fit_baseline(synth, _config("pop", work), Path("runs/pop"))
    cfg = _pop_hybrid(work, "runs/pop")
    result = fit_baseline(synth, cfg, Path("runs/hybrid"))
    state = json.loads(Path("runs/hybrid/hybrid.json").read_text())
    assert state["collaborative_dir"] == os.path.join("..", "pop")
    (work / "runs").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    hist = [np.array(h) for h in synth.split("test")["history"][:5]]
    reloaded = load_retriever(tmp_path / "moved" / "hybrid", synth)
    assert torch.allclose(reloaded.scores(hist), result.retriever.scores(hist))


@pytest.mark.reliability
def test_a_reused_run_of_another_data_set_or_model_is_refused(synth, tmp_path):
    """A pop run fitted on another split of the same catalogue carried test-period counts into the hybrid."""
    other = prepare(
        DataConfig(
            source="synthetic",
            split_ratios=(0.98, 0.01, 0.01),
            options={"n_users": 120, "n_items": 200, "n_artists": 30, "max_length": 10},
        ),
        tmp_path / "other",
    )
    assert other.num_items == synth.num_items and other.checksum != synth.checksum
    fit_baseline(other, _config("pop", tmp_path), tmp_path / "pop-other")
    cfg = _pop_hybrid(tmp_path, tmp_path / "pop-other")
    with pytest.raises(ValueError, match=r"pop-other was trained on another data set"):
        fit_baseline(synth, cfg, tmp_path / "hybrid")
    fit_baseline(synth, _config("last-title", tmp_path), tmp_path / "lt")
    cfg = _pop_hybrid(tmp_path, tmp_path / "lt")
    with pytest.raises(ValueError, match=r"holds a 'last-title' run, but retriever.options.collaborative is 'pop'"):
        fit_baseline(synth, cfg, tmp_path / "hybrid")


@pytest.mark.reliability
def test_refitting_the_reused_run_makes_the_hybrid_refuse_and_its_stored_results_too(synth, tmp_path):
    from mgfrec.config.schema import EvalConfig
    from mgfrec.eval.runs import evaluate_run, result_for_run

    fit_baseline(synth, _config("pop", tmp_path), tmp_path / "pop")
    cfg = _pop_hybrid(tmp_path, tmp_path / "pop")
    fit_baseline(synth, cfg, tmp_path / "hybrid")
    evaluate_run(tmp_path / "hybrid", "test", EvalConfig(bootstrap_samples=20))
    assert result_for_run(tmp_path / "hybrid", "test", EvalConfig(bootstrap_samples=20)).samples > 0
    fit_baseline(synth, _config("pop", tmp_path, "retriever.seed=3"), tmp_path / "pop")  # refitted after tuning
    for read in (
        lambda: load_retriever(tmp_path / "hybrid", synth),
        lambda: result_for_run(tmp_path / "hybrid", "test", EvalConfig(bootstrap_samples=20)),  # the old numbers
    ):
        with pytest.raises(ValueError, match=r"was fitted again .* fit the hybrid again"):
            read()


def test_hybrid_weights_must_be_shares_and_valid_samples_must_exist(synth, tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HybridOptions(weights=(-1.0, 2.5))
    empty_valid = prepare(
        DataConfig(
            source="synthetic", split_ratios=(0.9, 0.0, 0.1), options={"n_users": 40, "n_items": 80, "n_artists": 10}
        ),
        tmp_path / "novalid",
    )
    with pytest.raises(ValueError, match="the valid split is empty"):
        fit_baseline(empty_valid, _config("hybrid", tmp_path, "retriever.options={collaborative: pop}"), tmp_path / "h")
    with pytest.raises(ValueError, match="bigrec cannot be a hybrid's collaborative side"):
        fit_baseline(synth, _config("hybrid", tmp_path, "retriever.options={collaborative: bigrec}"), tmp_path / "h2")


@pytest.mark.reliability
def test_a_hybrid_records_why_its_own_collaborative_side_stopped(synth, tmp_path):
    """The SASRec a hybrid trains said why it stopped (a cap, Ctrl-C) and the hybrid dropped it: run.json had no
    `stopped`, and a hybrid recall run stopped by Ctrl-C inside sft neither stopped sft nor was refitted on a
    rerun (review s27)."""
    result = fit_baseline(synth, _config("hybrid", tmp_path, "retriever.max_steps=1"), tmp_path / "run")
    assert result.retriever.stopped == "step cap"
    extra = json.loads((tmp_path / "run" / "run.json").read_text())["extra"]
    assert extra["stopped"] == "step cap" and "best_epoch" in extra


@pytest.mark.reliability
def test_a_stale_hybrids_cached_recall_lists_are_refused(synth, tmp_path):
    """recall_lists checked the cache's data and samples only: after the reused collaborative run was fitted
    again, sft trained on lists of the old model without a word, where loading the hybrid refuses (review s27)."""
    from mgfrec.retrievers.recall import recall_file, recall_lists

    fit_baseline(synth, _config("pop", tmp_path), tmp_path / "pop")
    cfg = _pop_hybrid(tmp_path, tmp_path / "pop")
    fit_baseline(synth, cfg, tmp_path / "hybrid")
    first = recall_lists(synth, "valid", 10, tmp_path / "hybrid")
    assert recall_file(tmp_path / "hybrid", "valid").is_file()
    assert np.array_equal(recall_lists(synth, "valid", 10, tmp_path / "hybrid"), first)  # the cache, while current
    fit_baseline(synth, _config("pop", tmp_path, "retriever.seed=3"), tmp_path / "pop")  # refitted after tuning
    with pytest.raises(ValueError, match=r"was fitted again .* fit the hybrid again"):
        recall_lists(synth, "valid", 10, tmp_path / "hybrid")


def test_a_damaged_recall_cache_is_computed_again(synth, tmp_path):
    """np.savez wrote in place: a kill mid-write left a file every later run failed on (BadZipFile traceback)."""
    from mgfrec.retrievers.recall import recall_file, recall_lists

    fit_baseline(synth, _config("pop", tmp_path), tmp_path / "pop")
    first = recall_lists(synth, "valid", 10, tmp_path / "pop")
    path = recall_file(tmp_path / "pop", "valid")
    path.write_bytes(path.read_bytes()[:100])
    assert np.array_equal(recall_lists(synth, "valid", 10, tmp_path / "pop"), first)
    assert np.array_equal(np.load(path)["items"][:, :10], first)  # replaced whole
    assert not list((tmp_path / "pop").glob("*.tmp"))


@pytest.mark.reliability
def test_a_reused_collaborative_folder_must_be_a_finished_run_other_than_out(synth, tmp_path):
    """A folder without run.json skipped the model and data checks (pop counts of another split were blended, and
    its staleness never checked); the hybrid's own --out was "no saved sasrec model" (review s27)."""
    fit_baseline(synth, _config("hybrid", tmp_path, "retriever.options={collaborative: pop}"), tmp_path / "h1")
    own = tmp_path / "h1" / "collaborative"  # a hybrid's own side: no run.json
    cfg = _pop_hybrid(tmp_path, own)
    with pytest.raises(ValueError, match=r"collaborative_run: .* holds no run.json"):
        fit_baseline(synth, cfg, tmp_path / "h2")
    fit_baseline(synth, _config("pop", tmp_path), tmp_path / "p")
    cfg = _pop_hybrid(tmp_path, tmp_path / "p")
    with pytest.raises(ValueError, match=r"collaborative_run: .* is the hybrid's own --out"):
        fit_baseline(synth, cfg, tmp_path / "p")
    assert (tmp_path / "p" / "run.json").is_file() and (tmp_path / "p" / "popularity.npy").is_file()  # put back


def test_a_hybrids_collaborative_side_is_given_its_folder_made(synth, tmp_path, monkeypatch):
    """`baseline fit` makes OUT before a retriever's fit; the hybrid called its collaborative side's fit with
    OUT/collaborative not made, and a plugin retriever that works as a baseline failed there (review s37)."""
    from mgfrec.retrievers.pop import PopRetriever

    real, made = PopRetriever.fit.__func__, []

    def fit(cls, ds, config, out, options=None):
        made.append(Path(out).is_dir())
        return real(cls, ds, config, out, options)

    monkeypatch.setattr(PopRetriever, "fit", classmethod(fit))
    fit_baseline(synth, _config("hybrid", tmp_path, "retriever.options={collaborative: pop}"), tmp_path / "run")
    assert made == [True]


def test_a_hybrid_keeps_float64_scores_distinct_and_an_infinite_score_first():
    """The hybrid standardised its collaborative side in float32: a plugin's float64 scores (a count plus a small
    tie-breaker) became ties, and the hybrid at weight 0 ranked the collaborative model's first item 145th; every
    non-finite score went last, +inf too (review s42). Weight 0 or 1 now ranks as that side alone."""
    import torch

    from mgfrec.ranking.evaluator import rank_targets
    from mgfrec.retrievers.hybrid import HybridOptions, HybridRetriever, _standardise
    from mgfrec.retrievers.last_title import LastTitleRetriever

    n = 1000

    class CountsPlusTieBreak:  # item n - 1 first, then n - 2, ...
        def scores(self, histories):
            row = np.full(n, 3000.0) + np.arange(n) * 1e-6
            return torch.as_tensor(np.tile(row, (len(histories), 1)), dtype=torch.float64)

    content = LastTitleRetriever(np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32))
    histories, targets = [np.array([1, 2])] * 3, np.array([n - 1, n - 2, 500])
    alone = rank_targets(CountsPlusTieBreak(), histories, targets).tolist()
    assert alone == [1, 2, 500]
    assert (
        rank_targets(HybridRetriever(CountsPlusTieBreak(), content, 0.0, HybridOptions()), histories, targets).tolist()
        == alone
    )
    z = _standardise(torch.tensor([[0.1, float("inf"), 0.0, 0.2, float("nan"), -float("inf")]]))
    assert z[0, 1] == float("inf") and z[0, 4] == z[0, 5] == -float("inf") and z[0, 3] > z[0, 0] > z[0, 2]

    class OneInfinite:  # item 7 scored +inf: 0 * inf was NaN, and the item went last
        def scores(self, histories):
            row = torch.zeros(len(histories), n, dtype=torch.float64)
            row[:, 7] = float("inf")
            return row

    content_only, sevens = HybridRetriever(OneInfinite(), content, 1.0, HybridOptions()), np.array([7, 7, 7])
    assert rank_targets(content_only, histories, sevens).tolist() == rank_targets(content, histories, sevens).tolist()
    cf_only = HybridRetriever(OneInfinite(), content, 0.0, HybridOptions())
    assert rank_targets(cf_only, histories, np.array([7, 7, 7])).tolist() == [1, 1, 1]

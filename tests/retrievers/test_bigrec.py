"""The BIGRec-style baseline: a policy fine-tuned to write the next title, grounded once to rank every item."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mgfrec.config.load import load_config
from mgfrec.ranking.evaluator import rank_targets
from mgfrec.retrievers.bigrec import BigRecRetriever
from mgfrec.retrievers.fit import fit_baseline, load_retriever

SMALL = "{epochs: 3, batch_size: 16, max_train_samples: 48, valid_samples: 4, max_new_tokens: 4}"


def bigrec_config(root, options: str, *more: str):
    """A config fitting BIGRec with ``retriever.options`` ``options`` (a YAML mapping), its embedding cache in
    ``root``, then ``more`` overrides."""
    return load_config(
        None, [f"embedding.cache_dir={root / 'emb'}", "retriever.model=bigrec", *more, f"retriever.options={options}"]
    )


@pytest.fixture(scope="module")
def bigrec_run(tmp_path_factory, chain_ds):
    root = tmp_path_factory.mktemp("bigrec")
    cfg = bigrec_config(root, "{epochs: 2, batch_size: 16, max_train_samples: 96, valid_samples: 8, max_new_tokens: 8}")
    result = fit_baseline(chain_ds, cfg, root / "run")
    return result, chain_ds


def test_fit_writes_the_run_and_the_loss_falls(bigrec_run):
    result, _ = bigrec_run
    run = result.run_dir
    assert (
        (run / "policy" / "config.json").is_file() and (run / "bigrec.json").is_file() and (run / "run.json").is_file()
    )
    rows = list(csv.DictReader((run / "bigrec_metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert result.retriever.best_epoch in (1, 2)


def test_the_loss_covers_the_title_and_end_token_only(bigrec_run):
    retriever, ds = bigrec_run[0].retriever, bigrec_run[1]
    ids, start = retriever.encode_pair(np.array([0, 1, 2]), 3)
    tok = retriever.tokenizer
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[start:-1]).strip() == ds.titles[3]
    assert tok.decode(ids[:start]).endswith("Next item title:")
    assert ds.titles[2] in tok.decode(ids[:start])  # the history titles are in the prompt


def test_the_generated_title_is_grounded_to_rank_every_item(bigrec_run, monkeypatch):
    retriever, ds = bigrec_run[0].retriever, bigrec_run[1]
    monkeypatch.setattr(retriever, "generate_titles", lambda histories: [ds.titles[5], ""])
    scores = retriever.scores([np.array([0, 1]), np.array([2])])
    assert scores.shape == (2, ds.num_items)
    assert int(scores[0].argmax()) == 5  # the written title's own item is nearest
    assert torch.all(scores[1] == scores[1, 0])  # nothing written: every item ties (the worst case)


def test_a_loaded_run_scores_like_the_fitted_one(bigrec_run):
    result, ds = bigrec_run
    loaded = load_retriever(result.run_dir, ds)
    assert isinstance(loaded, BigRecRetriever)
    frame = ds.split("test")
    histories, targets = list(frame["history"])[:6], frame["target"].to_numpy()[:6]
    np.testing.assert_array_equal(
        rank_targets(result.retriever, histories, targets, num_items=ds.num_items),
        rank_targets(loaded, histories, targets, num_items=ds.num_items),
    )


def test_the_time_cap_ends_the_fit_after_one_validated_epoch(tmp_path, chain_ds):
    cfg = bigrec_config(tmp_path, SMALL, "retriever.max_seconds=0.000001", "retriever.seed=3")
    result = fit_baseline(chain_ds, cfg, tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "bigrec_metrics.csv").open()))
    assert len(rows) == 1 and result.retriever.best_epoch == 1
    assert result.retriever.stopped == "time cap"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["extra"]["stopped"] == "time cap"
    # retriever.seed seeds it where its options give none, as every other baseline (it stayed at 0; review s38)
    assert json.loads((tmp_path / "run" / "bigrec.json").read_text())["seed"] == 3


@pytest.mark.reliability
def test_a_signal_finishes_the_fit_from_its_best_epoch(tmp_path, chain_ds, monkeypatch):
    """BIGRec trains outside Lightning: a Ctrl-C or SIGTERM threw the whole fit away (no run folder), where every
    other baseline finishes from its best checkpoint with `stopped: user` (review s38). The signal comes in the
    first epoch's first batch: that epoch is cut there, validated and kept, and the next never starts."""
    import os
    import signal

    from mgfrec.retrievers import bigrec

    step = bigrec._Budget.step

    def signalled(self, task, epoch, batch):
        if epoch == 1 and batch == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, task, epoch, batch)

    monkeypatch.setattr(bigrec._Budget, "step", signalled)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    cfg = bigrec_config(tmp_path, SMALL)
    result = fit_baseline(chain_ds, cfg, tmp_path / "run")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # put back
    rows = list(csv.DictReader((tmp_path / "run" / "bigrec_metrics.csv").open()))
    assert len(rows) == 1 and result.retriever.best_epoch == 1
    assert (result.retriever.stopped, result.retriever.stop_signal) == ("user", signal.SIGTERM)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["extra"]["stopped"] == "user"
    assert (tmp_path / "run" / "policy" / "config.json").is_file()


@pytest.mark.reliability
def test_limit_subsamples_its_evaluation_as_an_agents(bigrec_run, tmp_path, monkeypatch):
    """`evaluate --limit` and `report --limit` scored BIGRec on every sample of the split (one generated title each;
    3,162 on MovieLens where a comparison used 100), saying it was cheap (review s38). Its evaluation now takes the
    agents' seeded subsample, and a stored one is reused."""
    import shutil
    import warnings

    import typer
    from typer.testing import CliRunner

    from mgfrec.cli.evaluate import evaluate as evaluate_command
    from mgfrec.data.protocol import subsample_ids
    from mgfrec.eval.runs import evaluate_run, result_for_run
    from mgfrec.ranking.results import EvalResult

    result, ds = bigrec_run
    run = tmp_path / "bigrec"
    shutil.copytree(result.run_dir, run)
    generated: list[int] = []
    titles = BigRecRetriever.generate_titles

    def counted(self, histories):
        generated.append(len(histories))
        return titles(self, histories)

    monkeypatch.setattr(BigRecRetriever, "generate_titles", counted)
    whole = len(evaluate_run(run, "test").ranks)
    assert sum(generated) == whole == len(ds.split("test"))
    # the CLI says the stored whole split is replaced (an agent's was named; BIGRec's went without a word)
    app = typer.Typer()
    app.command()(evaluate_command)
    said = CliRunner().invoke(app, [str(run), "--split", "test", "--limit", "7"])
    text = " ".join(said.output.split())
    assert said.exit_code == 0, text
    assert f"stored test evaluation of {whole} samples will be replaced by this one of 7 once it is done" in text, text
    assert "--limit applies to agent runs" not in text
    assert sum(generated) == whole + 7
    subsample = EvalResult.load(run, "test")
    wanted = subsample_ids(ds.split("test")["sample_id"].to_numpy(), 7, 0)
    assert np.array_equal(np.sort(subsample.sample_ids), wanted)  # the ids an agent's --limit 7 takes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = result_for_run(run, "test", limit=7)  # the stored subsample: reused, nothing generated
    assert sum(generated) == whole + 7 and np.array_equal(again.sample_ids, subsample.sample_ids)


def test_the_prompt_names_the_catalogues_domain_when_given(chain_ds):
    """The prompt spoke of "a user's listening history" on every data set, MovieLens included: a wrong cue for a
    pretrained LM (review s38). `retriever.options.prompt` replaces it; a prompt without `{history}`, or with
    another placeholder, is refused when the options are read."""
    from pydantic import ValidationError

    from mgfrec.retrievers.bigrec import PROMPT, BigRecOptions

    films = BigRecOptions(prompt="A viewer's films, oldest first:\n{history}\nNext film:")
    retriever = BigRecRetriever(None, None, chain_ds, None, films)
    assert retriever.prompt(np.array([0, 1])) == (
        f"A viewer's films, oldest first:\n- {chain_ds.titles[0]}\n- {chain_ds.titles[1]}\nNext film:"
    )
    assert BigRecOptions().prompt == PROMPT and "listening history" in PROMPT  # runs made before read the same
    for bad in ("Next film:", "{history} by {user}", "{history} {"):
        with pytest.raises(ValidationError, match="must hold {history}"):
            BigRecOptions(prompt=bad)

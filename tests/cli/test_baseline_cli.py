"""``mgfrec baseline fit`` through the real CLI app (typer's CliRunner), on a small prepared csv log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mgfrec.cli.main import app


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """40 users walking a 30-item chain, prepared with ``mgfrec data prepare``."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    rows = [
        f"u{u},i{(start + k) % 30},{t0 + k}"
        for u, start, t0 in zip(range(40), rng.integers(0, 30, 40), rng.uniform(0, 100, 40), strict=False)
        for k in range(6)
    ]
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},Item {i}\n" for i in range(30)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    result = invoke("data", "prepare", raw, "--out", tmp_path / "prepared")
    assert result.exit_code == 0, result.output
    return tmp_path / "prepared"


def test_fit_writes_run_json_config_and_weights(data, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "baseline",
        "fit",
        "--model",
        "sasrec",
        "--data",
        data,
        "--out",
        out,
        "--max-epochs",
        2,
        "--lr",
        0.005,
        "--weight-decay",
        1e-5,
        "--seed",
        7,
        "--set",
        "retriever.options.layers=1",
    )
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert (info["kind"], info["model"], info["data"]) == ("baseline", "sasrec", str(data.resolve()))
    config = yaml.safe_load((out / "config.yaml").read_text())["retriever"]
    assert (config["model"], config["lr"], config["weight_decay"], config["max_epochs"]) == ("sasrec", 0.005, 1e-5, 2)
    assert config["options"] == {"layers": 1} and config["seed"] == 7
    assert (out / "model.pt").is_file() and (out / "metrics.csv").is_file()
    assert f"valid NDCG@10 {info['extra']['valid_ndcg@10']:.4f}" in result.output
    # the summary counts epochs from 1, as the progress line's "epoch 1/2" does; run.json keeps Lightning's 0-based
    # count (it said "best epoch 0" of the epoch the progress line had called "epoch 1/2")
    assert f"(best epoch {info['extra']['best_epoch'] + 1})" in result.output


def test_pop_fits_and_prints_json(data, tmp_path):
    result = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", tmp_path / "pop", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["model"] == "pop" and 0 <= summary["valid_ndcg@10"] <= 1
    assert json.loads((tmp_path / "pop" / "run.json").read_text())["model"] == "pop"


def test_errors_name_the_flag_or_the_model(data, tmp_path):
    no_bar = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", tmp_path / "a", "--progress")
    assert no_bar.exit_code == 2 and "--progress" in flat(no_bar.output)
    typo = invoke("baseline", "fit", "--model", "sasrek", "--data", data, "--out", tmp_path / "b")
    assert typo.exit_code == 2 and "Did you mean 'sasrec'" in flat(typo.output)
    missing = invoke("baseline", "fit", "--model", "pop", "--data", tmp_path / "nowhere", "--out", tmp_path / "c")
    assert missing.exit_code == 2 and "not a prepared data set" in flat(missing.output)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_training_flags_of_a_hybrid_that_reuses_a_run_get_a_note(data, tmp_path):
    """A hybrid blending a fitted run trains nothing: --lr and --max-steps changed nothing, without a word."""
    pop = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", tmp_path / "pop")
    assert pop.exit_code == 0, pop.output
    reused = f"retriever.options={{collaborative: pop, collaborative_run: {tmp_path / 'pop'}}}"
    args = ("baseline", "fit", "--model", "hybrid", "--data", data, "--out", tmp_path / "hybrid", "--set", reused)
    result = invoke(*args, "--lr", 0.5, "--max-steps", 3)
    assert result.exit_code == 0, result.output
    assert "note: --lr, --max-steps: the hybrid blends the fitted run" in flat(result.output)
    # a hybrid fitting a pop side trains nothing either: its own flag was judged, not its side's (review s35)
    side = "retriever.options={collaborative: pop}"
    args = ("baseline", "fit", "--model", "hybrid", "--data", data, "--out", tmp_path / "hybrid-pop", "--set", side)
    fitted = invoke(*args, "--lr", 0.5, "--seed", 3)
    assert fitted.exit_code == 0, fitted.output
    assert "note: --lr, --seed: the hybrid's collaborative side 'pop' does not read" in flat(fitted.output)


def test_training_flags_a_model_does_not_read_get_a_note(data, tmp_path):
    """pop, last-title and bigrec took --max-epochs, --lr, --seed ... and silently changed nothing."""
    result = invoke(
        "baseline", "fit", "--model", "pop", "--data", data, "--out", tmp_path / "pop", "--max-epochs", 3, "--lr", 0.5
    )
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "note: --lr, --max-epochs: retriever 'pop' does not read retriever.* training settings" in text
    quiet = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", tmp_path / "pop2", "--device", "cpu")
    assert quiet.exit_code == 0 and "note:" not in quiet.output
    # a data.* it never reads (the model is fitted on --data as prepared) went into config.yaml without a word
    unread = invoke(
        "baseline",
        "fit",
        "--model",
        "pop",
        "--data",
        data,
        "--out",
        tmp_path / "pop3",
        "--set",
        "data.history_length=3",
        "--set",
        "eval.exclude_history=false",
    )
    assert unread.exit_code == 0 and "note: --set data.history_length=3: mgfrec baseline fit does not read data.*" in (
        flat(unread.output)
    )
    # the fit validates with the history left out whatever it says, and evaluate ranks as it is told (review s29)
    assert "note: --set eval.exclude_history=false: mgfrec baseline fit validates with the history left out" in (
        flat(unread.output)
    )
    # BIGRec reads its time cap (the note said it did not); with no valid sample it trained a whole epoch, then
    # failed with "batch_size must be >= 1, got 0"
    novalid = tmp_path / "novalid"
    made = invoke("data", "prepare", data.parent / "raw", "--out", novalid, "--set", "data.split_ratios=[0.9,0,0.1]")
    assert made.exit_code == 0, made.output
    big = invoke(
        "baseline", "fit", "--model", "bigrec", "--data", novalid, "--out", tmp_path / "big", "--max-seconds", 30,
        "--lr", 0.5, "--device", "cpu", "--seed", 3,
    )  # fmt: skip
    text = flat(big.output)
    assert big.exit_code == 2 and "the valid split is empty; BIGRec keeps its best epoch by valid samples" in text
    # ... and its seed, where its options give none: --seed was noted as unread (review s38)
    assert "note: --lr: retriever 'bigrec' does not read" in text and "epoch 1" not in text, text
    # --device cuda trained BIGRec on the CPU without a word: it trains where trainer.accelerator says (review s30)
    assert "note: --device: retriever 'bigrec' trains where trainer.accelerator says (cpu), not on retriever" in text


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is visible here")
def test_a_device_that_is_not_there_is_one_line(data, tmp_path):
    result = invoke("baseline", "fit", "--model", "sasrec", "--data", data, "--out", tmp_path / "s", "--device", "cuda")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output  # Lightning's traceback before
    assert "retriever.device 'cuda': 0 CUDA device(s) visible; use retriever.device=cpu" in flat(result.output)
    assert not (tmp_path / "s").exists()  # refused before the run folder (and its config.yaml) is written


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is visible here")
def test_a_device_typo_keeps_the_finished_run_at_out(data, tmp_path):
    """A refit over a finished run deletes its run.json and results first: a bad device must not get that far."""
    out = tmp_path / "g"
    first = invoke("baseline", "fit", "--model", "gru4rec", "--data", data, "--out", out, "--max-epochs", 1)
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = invoke("baseline", "fit", "--model", "gru4rec", "--data", data, "--out", out, "--device", "cuda:0")
    assert result.exit_code == 2 and "0 CUDA device(s) visible" in flat(result.output)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_metric_cut_offs_must_be_positive():
    from mgfrec.config.load import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"eval.ks.0: Input should be greater than or equal to 1"):
        load_config(None, ["eval.ks=[0,-3]"])


@pytest.mark.reliability
def test_a_diverging_or_overflowing_learning_rate_is_one_line_naming_it(data, tmp_path, monkeypatch):
    """--lr 1e10 "succeeded" (exit 0) with a model of NaN that evaluate and sft then used; --lr 1e300 was an
    optimizer's overflow traceback (review s28)."""
    from mgfrec.retrievers.training import SequentialRetriever

    out = tmp_path / "nan"
    common = ("baseline", "fit", "--model", "sasrec", "--data", data, "--out", out, "--max-epochs", 2)
    real = SequentialRetriever.loss

    def diverged(self, seq, target):  # what weights gone to inf give, at any learning rate that got them there
        loss = real(self, seq, target)
        return loss * float("nan") if self.global_step >= 1 else loss  # after one step of that rate

    monkeypatch.setattr(SequentialRetriever, "loss", diverged)
    result = invoke(*common, "--lr", "0.5")
    text = flat(result.output)
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert "the training loss became nan at epoch 2, batch 1 (the fit diverged)" in text, text  # one batch an epoch
    assert "give a smaller retriever.lr (now 0.5; --lr of baseline fit, --set retriever.lr=... elsewhere)" in text
    assert not (out / "run.json").exists()
    # NaN before any step is the model as built (--set retriever.options.init_std=1e30), not the rate (review s40)
    monkeypatch.setattr(SequentialRetriever, "loss", lambda self, seq, target: real(self, seq, target) * float("nan"))
    text = flat(invoke(*common, "--lr", "0.5").output)
    assert "batch 1 (before any training step: the model as built; check its retriever.options" in text, text
    assert "smaller retriever.lr" not in text
    monkeypatch.setattr(SequentialRetriever, "loss", real)
    result = invoke(*common, "--lr", "1e300")
    text = flat(result.output)
    assert result.exit_code == 2 and "--lr" in text and "less than or equal to 1000" in text, text
    sft = invoke("sft", "--data", data, "--out", tmp_path / "s", "--lr", "1e300")
    assert sft.exit_code == 2 and "--lr: must be > 0 and at most 1000, got 1e+300" in flat(sft.output), sft.output


@pytest.mark.reliability
def test_a_fit_that_fails_puts_the_earlier_run_back(data, tmp_path):
    # a hybrid over a collaborative run that is not there fails only once fitting starts: the pop run that was
    # in --out lost its run.json and evaluation, and its config.yaml said "hybrid"
    out = tmp_path / "pop"
    assert invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out).exit_code == 0
    assert invoke("evaluate", out, "--split", "test").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke(
        "baseline", "fit", "--model", "hybrid", "--data", data, "--out", out,
        "--set", f"retriever.options.collaborative_run={tmp_path / 'nowhere'}",
    )  # fmt: skip
    assert result.exit_code == 2 and "collaborative_run" in flat(result.output)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a fit that succeeds replaces it whole: nothing of the pop run (its evaluation) is left to be read
    assert invoke("baseline", "fit", "--model", "last-title", "--data", data, "--out", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last_title.json", "run.json"]


@pytest.mark.reliability
def test_an_agent_run_is_not_replaced_by_a_baseline(data, tmp_path):
    out = tmp_path / "agent"
    out.mkdir()
    (out / "run.json").write_text(
        json.dumps({"kind": "agent", "model": "mgfrec", "data": str(data), "data_checksum": "", "extra": {}})
    )
    result = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out)
    assert (
        result.exit_code == 2
        and "holds a GRPO run (mgfrec fit); a baseline run (mgfrec baseline fit) needs a folder of its own"
        in flat(result.output)
    )
    assert "fitting" not in result.output  # it announced the fit, then refused it
    assert json.loads((out / "run.json").read_text())["kind"] == "agent"


@pytest.mark.reliability
def test_a_hybrids_own_collaborative_model_is_not_refitted_from_outside(data, tmp_path):
    """`baseline fit --out HYBRID/collaborative` replaced the SASRec the hybrid's blend weight was tuned on; report
    then gave the hybrid's stored results as current, and evaluate blended the new model with the old weight."""
    hybrid = tmp_path / "hybrid"
    # --progress was refused ("it does not train with one") though the hybrid trains a SASRec: it is that model's
    fitted = invoke(
        "baseline", "fit", "--model", "hybrid", "--data", data, "--out", hybrid, "--max-epochs", 1, "--progress"
    )
    assert fitted.exit_code == 0, fitted.output
    options = yaml.safe_load((hybrid / "config.yaml").read_text())["retriever"]["options"]
    assert options["collaborative_options"]["progress_bar"] is True
    own = hybrid / "collaborative"
    before = {p.name: p.stat().st_mtime_ns for p in own.iterdir()}
    result = invoke("baseline", "fit", "--model", "sasrec", "--data", data, "--out", own, "--max-epochs", 1)
    text = flat(result.output)
    assert result.exit_code == 2 and f"the collaborative model of the run in {hybrid.resolve()}" in text, text
    assert "fitting" not in text and {p.name: p.stat().st_mtime_ns for p in own.iterdir()} == before


def test_a_config_given_from_the_out_folder_is_kept_not_deleted(data, tmp_path):
    """`--config OUT/config.yaml --out OUT`: the fit set the user's file aside with the folder and deleted it."""
    out = tmp_path / "pop"
    out.mkdir()
    mine = "# my settings, with comments\nretriever:\n  recall_size: 7\n"
    (out / "config.yaml").write_text(mine)
    with pytest.warns(UserWarning, match="kept as config.user.yaml"):  # `mgfrec` prints it as one warning line
        first = invoke(
            "baseline", "fit", "--model", "pop", "--data", data, "--config", out / "config.yaml", "--out", out
        )
    assert first.exit_code == 0, first.output
    assert (out / "config.user.yaml").read_text() == mine
    assert yaml.safe_load((out / "config.yaml").read_text())["retriever"]["recall_size"] == 7  # it was read
    again = invoke("baseline", "fit", "--model", "pop", "--data", data, "--config", out / "config.yaml", "--out", out)
    assert again.exit_code == 0, again.output
    assert "kept as" not in again.output and (out / "config.user.yaml").read_text() == mine
    assert not (out / "config.user.1.yaml").exists()


def test_a_folder_that_is_not_a_run_is_refused_and_kept(data, tmp_path):
    """It was set aside as "the earlier fit" and deleted once the fit succeeded: notes, code, a whole data set."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    result = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", mine)
    assert result.exit_code == 2 and "not empty (notes.txt) and not a run folder" in flat(result.output)
    assert (mine / "notes.txt").read_text() == "precious" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    into_data = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", data)
    assert into_data.exit_code == 2 and "is the data set given as --data" in flat(into_data.output)
    assert (data / "manifest.json").is_file()


@pytest.mark.reliability
def test_a_users_files_beside_a_run_survive_a_refit_a_killed_fit_and_a_failed_one(data, tmp_path):
    """The whole folder was set aside and deleted once the new fit succeeded: notes.md and analysis/ put beside a
    finished run were gone after `baseline fit --out` into it again (and beside an unfinished one too)."""
    out = tmp_path / "pop"
    assert invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out).exit_code == 0
    (out / "notes.md").write_text("mine")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.py").write_text("x")

    def mine_kept() -> bool:
        return (out / "notes.md").read_text() == "mine" and (out / "analysis" / "plot.py").read_text() == "x"

    assert invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out).exit_code == 0  # a refit
    assert mine_kept() and (out / "run.json").is_file()
    (out / "run.json").unlink()  # a fit killed before its run.json
    assert invoke("baseline", "fit", "--model", "last-title", "--data", data, "--out", out).exit_code == 0
    assert mine_kept() and not (out / "popularity.npy").exists()  # the old model's file was replaced
    failed = invoke(
        "baseline", "fit", "--model", "hybrid", "--data", data, "--out", out,
        "--set", f"retriever.options.collaborative_run={tmp_path / 'nowhere'}",
    )  # fmt: skip
    assert failed.exit_code == 2 and mine_kept() and (out / "last_title.json").is_file()


@pytest.mark.reliability
def test_a_fit_killed_over_an_earlier_run_is_named_and_the_next_fit_takes_the_folder(data, tmp_path):
    """SIGKILL while a fit ran over an earlier run left its set-aside copy in .previous-fit: every later `baseline
    fit` there was refused ("holds other runs or data sets (.previous-fit)"), and evaluate said only "not a run
    folder (no run.json; train one ...)"."""
    out = tmp_path / "pop"
    assert invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out).exit_code == 0
    aside = out / ".previous-fit"  # what _set_aside leaves once a fit is killed: the earlier run moved aside,
    aside.mkdir()  # the new fit's first files beside it, no run.json
    for entry in list(out.iterdir()):
        if entry != aside:
            entry.rename(aside / entry.name)
    (aside / ".whole").touch()  # every file of it moved (a fit stopped half-way there: test_fit_folder.py)
    (out / "metrics.csv").write_text("epoch\n")
    said = flat(invoke("evaluate", out, "--split", "test").output)
    assert "a baseline fit that did not finish (killed); its earlier run is kept in .previous-fit" in said, said
    sft = flat(invoke("sft", "--data", data, "--out", out, "--recall-model", "pop").output)
    assert "holds a baseline fit that did not finish (its earlier run is kept in .previous-fit)" in sft, sft
    again = invoke("baseline", "fit", "--model", "last-title", "--data", data, "--out", out)
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last_title.json", "run.json"]


@pytest.mark.reliability
def test_pop_refuses_an_empty_train_split_and_says_when_valid_has_no_sample(data, tmp_path):
    """pop wrote a model of zeros from an empty train split, and on an empty valid split printed numpy's two
    "Mean of empty slice" warnings with source lines, then "valid NDCG@10 nan"."""
    raw = tmp_path / "raw"
    for ratios, name in (("[0,0.5,0.5]", "no-train"), ("[0.9,0,0.1]", "no-valid")):
        result = invoke("data", "prepare", raw, "--out", tmp_path / name, "--set", f"data.split_ratios={ratios}")
        assert result.exit_code == 0, result.output
    result = invoke("baseline", "fit", "--model", "pop", "--data", tmp_path / "no-train", "--out", tmp_path / "p1")
    assert result.exit_code == 2 and "the train split is empty; nothing to fit" in result.output, result.output
    assert not (tmp_path / "p1").exists()
    result = invoke("baseline", "fit", "--model", "pop", "--data", tmp_path / "no-valid", "--out", tmp_path / "p2")
    assert result.exit_code == 0, result.output
    assert "valid NDCG@10 n/a (the valid split has no sample)" in result.output, result.output
    assert "RuntimeWarning" not in result.output and "Mean of empty slice" not in result.output
    assert json.loads((tmp_path / "p2" / "run.json").read_text())["extra"]["valid_ndcg@10"] is None


@pytest.mark.reliability
def test_baseline_restore_puts_back_the_fit_a_stopped_refit_kept(data, tmp_path):
    """``baseline restore``: one line when there is nothing to restore; the earlier fit back when there is."""
    import shutil

    out = tmp_path / "pop"
    assert invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out).exit_code == 0
    nothing = invoke("baseline", "restore", out)
    assert nothing.exit_code == 2 and "Traceback" not in nothing.output
    assert "holds no earlier fit to restore" in flat(nothing.output), nothing.output
    before = (out / "run.json").read_bytes()
    # what a refit stopped by Ctrl-C leaves (tests/retrievers/test_fit_folder.py makes one through fit_baseline)
    aside = out / ".previous-fit"
    shutil.copytree(out, tmp_path / "copy")
    aside.mkdir()
    for entry in (tmp_path / "copy").iterdir():
        entry.rename(aside / entry.name)
    (aside / ".whole").touch()
    (out / "run.json").write_text((out / "run.json").read_text().replace('"pop"', '"pop" '))
    result = invoke("baseline", "restore", out, "--json")
    assert result.exit_code == 0, result.output
    said = json.loads(result.output)
    assert said["model"] == "pop" and said["run"] == str(out)
    assert (out / "run.json").read_bytes() == before and not aside.exists()


@pytest.mark.reliability
def test_an_out_named_with_escape_sequences_is_shown_as_text(data, tmp_path):
    """``fitting pop on DATA -> OUT`` and ``run folder OUT`` wrote an --out's escape sequences raw: a folder's name
    recoloured or retitled the terminal (review s42)."""
    out = tmp_path / "e\x1b[31mRED\x1b]0;T\x07"
    result = invoke("baseline", "fit", "--model", "pop", "--data", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output, result.output
    joined = "".join(result.output.split())  # rich wraps the line where it likes
    assert "->" + str(tmp_path / "e\\x1b[31mRED\\x1b]0;T\\x07") in joined, result.output
    assert "runfolder" + str(tmp_path / "e\\x1b[31mRED") in joined
    # a table's caption (evaluate) and a report's row name (the folder's name) too (review s42's own review)
    for shown in (invoke("evaluate", out, "--bootstrap", "0"), invoke("report", out, "--bootstrap", "0")):
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.output and "\x07" not in shown.output, shown.output

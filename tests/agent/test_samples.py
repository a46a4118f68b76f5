"""``recall_for``: the recall run an SFT or GRPO run fits into ``OUT/recall`` is reused only when it was fitted
the way this run would fit it."""

from __future__ import annotations

import pytest
from csvkit import cyclic_dataset

from mgfrec.agent import samples as samples_mod
from mgfrec.agent.samples import RecallOptions, recall_for
from mgfrec.config.load import load_config


def test_the_recall_fit_is_reused_only_with_the_same_retriever_and_embedding_settings(tmp_path, monkeypatch):
    ds = cyclic_dataset(tmp_path)
    fits = []
    real = samples_mod.fit_baseline

    def counting(*args, **kwargs):
        fits.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(samples_mod, "fit_baseline", counting)

    def fitted(sets: list[str], model: str = "pop") -> bool:
        before = len(fits)
        out = tmp_path / model
        run_dir, named = recall_for(ds, load_config(None, sets), RecallOptions(recall_model=model), out)
        assert named == model and run_dir == out / "recall"
        return len(fits) > before

    assert fitted([])  # nothing to reuse yet
    assert not fitted([])
    assert not fitted(["retriever.recall_size=5", "retriever.device=cpu", "embedding.batch_size=8"])
    assert fitted(["retriever.max_epochs=3"])  # another fit would differ: not reused
    # pop reads no title: another embedder changes nothing, and it was fitted again (a SASRec fit of minutes; s35)
    assert not fitted(["retriever.max_epochs=3", "embedding.normalize=true"])
    assert fitted([], "last-title")
    assert fitted(["embedding.normalize=true"], "last-title")  # it ranks by the titles' vectors: fitted again
    assert not fitted(["embedding.normalize=true"], "last-title")  # the settings of the last fit: reused


def test_ctrl_c_in_the_recall_fit_stops_the_command_and_its_recall_run_is_not_reused(tmp_path, monkeypatch):
    """The recall fit's graceful Ctrl-C (for `mgfrec baseline fit`) stopped only that stage: sft / fit went on,
    exited 0, and later runs reused a recall model stopped at epoch 7 of 200."""
    import json

    import pytest

    ds = cyclic_dataset(tmp_path)
    real = samples_mod.fit_baseline
    stop = {"user": True}

    def interrupted(*args, **kwargs):
        result = real(*args, **kwargs)
        if stop["user"]:
            result.retriever.stopped = "user"  # what a SIGINT during the fit leaves
            info = json.loads((args[2] / "run.json").read_text())
            info["extra"]["stopped"] = "user"
            (args[2] / "run.json").write_text(json.dumps(info))
        return result

    monkeypatch.setattr(samples_mod, "fit_baseline", interrupted)
    options, cfg, out = RecallOptions(recall_model="pop"), load_config(None, []), tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        recall_for(ds, cfg, options, out)
    stop["user"] = False
    before = (out / "recall" / "run.json").stat().st_mtime_ns
    recall_for(ds, cfg, options, out)  # fitted again, not reused
    assert (out / "recall" / "run.json").stat().st_mtime_ns != before
    assert "stopped" not in json.loads((out / "recall" / "run.json").read_text())["extra"]


@pytest.mark.reliability
def test_sigterm_in_the_recall_fit_stops_the_command_as_sigterm_not_as_ctrl_c(tmp_path, monkeypatch):
    """The recall fit stops gracefully on SIGTERM too; the command then said "stopped by the user (Ctrl-C)" and
    exited 130, where every other SIGTERM stop says "stopped by SIGTERM" and exits 143."""
    import signal

    import pytest

    from mgfrec.signals import Terminated

    ds = cyclic_dataset(tmp_path)
    real = samples_mod.fit_baseline

    def terminated(*args, **kwargs):
        result = real(*args, **kwargs)
        result.retriever.stopped, result.retriever.stop_signal = "user", signal.SIGTERM  # what Budget leaves
        return result

    monkeypatch.setattr(samples_mod, "fit_baseline", terminated)
    with pytest.raises(Terminated):
        recall_for(ds, load_config(None, []), RecallOptions(recall_model="pop"), tmp_path / "out")


def test_a_process_that_may_not_fit_waits_for_the_first_ones_recall_fit_instead_of_reading_an_old_one(
    tmp_path, monkeypatch
):
    """Under torchrun the non-first ranks took any old OUT/recall/run.json as their cue: one not reusable (other
    settings, or stopped by Ctrl-C) made every rank fit OUT/recall at the same time as rank 0."""
    import threading

    import pytest

    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "out"
    options = RecallOptions(recall_model="pop")
    recall_for(ds, load_config(None, ["retriever.max_epochs=3"]), options, out)  # an old fit: other settings
    cfg = load_config(None, [])
    real = samples_mod.fit_baseline

    def refused(*args, **kwargs):
        raise AssertionError("a process that may not fit fitted OUT/recall")

    monkeypatch.setattr(samples_mod, "fit_baseline", refused)
    monkeypatch.setattr(samples_mod, "wait_until", _quick_wait(samples_mod.wait_until))
    with pytest.raises(TimeoutError, match="the recall run"):  # the old fit is not taken, and not refitted here
        recall_for(ds, cfg, options, out, may_fit=False)

    pop = cfg.model_copy(update={"retriever": cfg.retriever.model_copy(update={"model": "pop"})})
    failed = []

    def fit_first() -> None:
        try:
            real(ds, pop, out / "recall")
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            failed.append(exc)

    first = threading.Thread(target=fit_first)
    monkeypatch.setattr(samples_mod, "wait_until", _quick_wait(samples_mod.wait_until.__wrapped__, timeout_s=120))
    first.start()  # the first process's fit, as rank 0 runs it
    try:
        run_dir, model = recall_for(ds, cfg, options, out, may_fit=False)
    finally:
        first.join()
    assert not failed
    assert (run_dir, model) == (out / "recall", "pop")
    assert samples_mod._reusable(run_dir, ds, pop)


def _quick_wait(wait, timeout_s: float = 0.5):
    def quick(ready, what, path):
        return wait(ready, what, path, timeout_s=timeout_s, poll_s=0.05)

    quick.__wrapped__ = wait
    return quick


def test_the_recall_line_names_one_run_the_same_way_given_relative_or_absolute(tmp_path, monkeypatch):
    """The demo gave SFT its recall run relative and GRPO read it absolute from SFT's run.json: the two log lines
    named one folder two ways. Both now show it relative to the working folder when it lies under it."""
    ds = cyclic_dataset(tmp_path)
    cfg = load_config(None, [])
    recall_for(ds, cfg, RecallOptions(recall_model="pop"), tmp_path / "first")
    monkeypatch.chdir(tmp_path)
    lines = []
    for given in ("first/recall", str(tmp_path / "first" / "recall")):
        samples_mod.recall_samples(
            ds, cfg, RecallOptions(recall_run=given), tmp_path / "out", None,
            max_train=2, max_valid=2, seed=0, say=lines.append,
        )  # fmt: skip
    shown = [line for line in lines if line.startswith("recall:")]
    assert len(shown) == 2 and shown[0] == shown[1] and "(first/recall)" in shown[0]


@pytest.mark.reliability
def test_a_reused_recall_run_records_its_own_retriever_options_not_the_configs(tmp_path):
    """fit --init (and sft --recall-run) recorded the recall run's model beside the config's options for another
    model (``sasrec`` ``layers: 1`` under ``pop``): derive, evaluate and --resume then refused the run's own
    config.yaml."""
    from mgfrec.config.components import check_components

    ds = cyclic_dataset(tmp_path)
    recall_for(ds, load_config(None, ["retriever.model=pop"]), RecallOptions(), tmp_path / "first")
    cfg = load_config(None, ["retriever.model=sasrec", "retriever.options.layers=1", "retriever.recall_size=4"])
    used, _, _, _ = samples_mod.recall_samples(
        ds, cfg, RecallOptions(recall_run=str(tmp_path / "first" / "recall")), tmp_path / "out", None,
        max_train=2, max_valid=2, seed=0,
    )  # fmt: skip
    assert (used.retriever.model, used.retriever.options, used.retriever.recall_size) == ("pop", {}, 4)
    check_components(used)  # what the run's config.yaml holds is a config every later command reads


@pytest.mark.reliability
def test_a_recall_run_a_signal_stopped_gets_a_note(tmp_path):
    """`sft --recall-run` took a baseline Ctrl-C had stopped after one epoch without a word (review s28)."""
    from mgfrec.runs import read_run_info, write_run_info

    ds = cyclic_dataset(tmp_path)
    recall_for(ds, load_config(None, ["retriever.model=pop"]), RecallOptions(), tmp_path / "first")
    run = tmp_path / "first" / "recall"
    info = read_run_info(run)
    write_run_info(run, type(info)(**{**info.__dict__, "extra": {**info.extra, "stopped": "user"}}))
    said: list[str] = []
    samples_mod.recall_samples(
        ds, load_config(None), RecallOptions(recall_run=str(run)), tmp_path / "out", None,
        max_train=2, max_valid=2, seed=0, say=said.append,
    )  # fmt: skip
    assert any("was stopped (Ctrl-C or SIGTERM) before its training ended" in line for line in said), said


@pytest.mark.reliability
def test_a_wrong_recall_run_names_what_it_is(tmp_path):
    """--recall-run given an agent run said only "got kind 'agent'", and one of other data did not say which data
    it was: each now names the run's recall run and the run's data folder."""
    from mgfrec.runs import RunInfo, write_run_info

    ds = cyclic_dataset(tmp_path / "a")
    cfg, out = load_config(None, []), tmp_path / "out"
    recall_for(ds, cfg, RecallOptions(recall_model="pop"), out)
    agent = tmp_path / "agent"
    extra = {"recall_run": str(out / "recall"), "policy": "policy"}
    write_run_info(
        agent, RunInfo(kind="agent", model="mgfrec", data=str(ds.root), data_checksum=ds.checksum, extra=extra)
    )
    with pytest.raises(ValueError) as caught:
        recall_for(ds, cfg, RecallOptions(recall_run=str(agent)), tmp_path / "o2")
    assert str(caught.value) == (
        f"--recall-run {agent}: a baseline run folder is needed, got kind 'agent' "
        f"(an agent run; its recall run is {out / 'recall'})"
    )
    other = cyclic_dataset(tmp_path / "b", split_ratios=(0.6, 0.2, 0.2))
    with pytest.raises(ValueError) as caught:
        recall_for(other, cfg, RecallOptions(recall_run=str(out / "recall")), tmp_path / "o3")
    assert str(caught.value) == (
        f"--recall-run {out / 'recall'}: it was trained on other data ({ds.root}) than --data {other.root}"
    )


@pytest.mark.reliability
def test_ctrl_c_in_a_hybrid_recall_fits_sasrec_stops_the_command_too(tmp_path, monkeypatch):
    """The hybrid dropped its own SASRec's stop reason: Ctrl-C during a hybrid recall fit inside sft neither
    stopped sft nor made a rerun fit the cut-short recall run again (review s27)."""
    import json

    import pytest

    from mgfrec.retrievers.sasrec import SASRecRetriever

    ds = cyclic_dataset(tmp_path)
    real = SASRecRetriever.fit.__func__
    stop = {"user": True}

    def interrupted(cls, *args, **kwargs):
        fitted = real(cls, *args, **kwargs)
        if stop["user"]:
            fitted.stopped = "user"  # what a SIGINT during the fit leaves
        return fitted

    monkeypatch.setattr(SASRecRetriever, "fit", classmethod(interrupted))
    cfg = load_config(None, ["retriever.max_epochs=1"])
    options, out = RecallOptions(recall_model="hybrid"), tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        recall_for(ds, cfg, options, out)
    assert json.loads((out / "recall" / "run.json").read_text())["extra"]["stopped"] == "user"
    stop["user"] = False
    before = (out / "recall" / "run.json").stat().st_mtime_ns
    recall_for(ds, cfg, options, out)  # fitted again, not reused
    assert (out / "recall" / "run.json").stat().st_mtime_ns != before

"""``fit_baseline``'s run folder: what a fit that fails leaves behind."""

from __future__ import annotations

import pytest
from csvkit import cyclic_dataset

from mgfrec.config.load import load_config
from mgfrec.registry import Registry, use_registry
from mgfrec.retrievers.fit import fit_baseline


class _FailingFit:
    """A retriever whose fit fails after the run folder was made (a plugin's bug, a stopped fit)."""

    reads_training_settings = False

    @classmethod
    def fit(cls, ds, config, out):
        raise ValueError("the fit failed")

    @classmethod
    def load(cls, run_dir, ds):
        raise AssertionError("not reached")


@pytest.mark.reliability
def test_a_fit_that_fails_into_a_new_folder_leaves_no_empty_folder(tmp_path):
    # a stopped bigrec fit left an empty --out folder behind, which later commands took for a run folder
    ds = cyclic_dataset(tmp_path)
    reg = Registry.discover()  # a registry of its own: the process-wide one stays as it was
    reg.add("retriever", "failing-fit", _FailingFit)
    cfg = load_config(None, ["retriever.model=failing-fit"])
    with use_registry(reg), pytest.raises(ValueError, match="the fit failed"):
        fit_baseline(ds, cfg, tmp_path / "runs" / "failing")
    assert not (tmp_path / "runs" / "failing").exists()
    # an empty folder that was there before stays
    kept = tmp_path / "kept"
    kept.mkdir()
    with use_registry(reg), pytest.raises(ValueError, match="the fit failed"):
        fit_baseline(ds, cfg, kept)
    assert kept.is_dir() and not any(kept.iterdir())


class _FitReturnsNone:
    reads_training_settings = False

    @classmethod
    def fit(cls, ds, config, out):
        return None  # forgot `return cls(...)`

    @classmethod
    def load(cls, run_dir, ds):
        raise AssertionError("not reached")


@pytest.mark.reliability
def test_a_plugin_fit_that_returns_no_retriever_is_named(tmp_path):
    # "'NoneType' object has no attribute 'scores'", a traceback from the evaluator naming no plugin
    ds = cyclic_dataset(tmp_path)
    reg = Registry.discover()
    reg.add("retriever", "returns-none", _FitReturnsNone)
    cfg = load_config(None, ["retriever.model=returns-none"])
    with use_registry(reg), pytest.raises(ValueError) as err:
        fit_baseline(ds, cfg, tmp_path / "run")
    assert "retriever 'returns-none' (" in str(err.value) and "_FitReturnsNone" in str(err.value)
    assert "its fit() returned NoneType, not a fitted retriever with scores()" in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.reliability
def test_a_second_fit_into_a_folder_being_fitted_is_refused(tmp_path):
    """Two `baseline fit`s into one --out set each other's files aside: one failed with a traceback, or both said
    "finished" over the other's model (review s27). The folder is locked as the demo's and the sweep's are."""
    from mgfrec.locks import only_one_in

    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "run"
    fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    before = sorted(p.name for p in out.iterdir())
    with only_one_in(out, "mgfrec baseline fit"):  # another fit holds it (flock: another open of the folder)
        # the holder is named for what it may be, any mgfrec command (a fit holding it was called a baseline fit)
        with pytest.raises(ValueError, match=r"another mgfrec command is writing it now; wait for it to end"):
            fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing set aside or lost


@pytest.mark.reliability
def test_a_run_another_command_makes_in_out_after_the_check_is_not_set_aside(tmp_path, monkeypatch):
    """OUT was checked before its lock was taken: an SFT run made there in between was set aside and deleted by
    the baseline fit, which said it had finished (review s33)."""
    import json

    import mgfrec.retrievers.fit as fit_mod

    ds = cyclic_dataset(tmp_path)
    out, real = tmp_path / "raced", fit_mod.check_output_run
    sft_run = {"kind": "agent", "model": "mgfrec-sft", "data": str(ds.root), "data_checksum": "x", "created": "t"}

    def checked_then_raced(folder, producer, **kwargs):
        real(folder, producer, **kwargs)
        if not (out / "run.json").exists():  # the first check passed: another command's run lands now
            out.mkdir(exist_ok=True)
            (out / "run.json").write_text(json.dumps(sft_run))

    monkeypatch.setattr(fit_mod, "check_output_run", checked_then_raced)
    with pytest.raises(ValueError, match=r"--out .*raced: holds an SFT run"):
        fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    assert json.loads((out / "run.json").read_text()) == sft_run and sorted(p.name for p in out.iterdir()) == [
        "run.json"
    ]


class _NoLoadNoName:
    """A plugin retriever without `name` (the docs never asked for one) and without `load`."""

    reads_training_settings = False

    def __init__(self, num_items):
        self.num_items = num_items

    @classmethod
    def fit(cls, ds, config, out):
        return cls(ds.num_items)

    def scores(self, histories):
        import torch

        return torch.zeros(len(histories), self.num_items)


@pytest.mark.reliability
def test_a_plugin_retriever_without_name_or_load_is_named_not_a_traceback(tmp_path):
    """`baseline fit --json` read the retriever's `name` (an AttributeError after run.json was written, or another
    name than run.json's), and evaluating a run of a retriever without `load` was an AttributeError traceback naming
    no component (review s27)."""
    import json

    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.retrievers.fit import load_scorer

    ds = cyclic_dataset(tmp_path)
    reg = Registry.discover()
    reg.add("retriever", "noload", _NoLoadNoName)
    out = tmp_path / "run"
    with use_registry(reg):
        # without load, the fit is refused before it runs: it fitted "successfully" into a run no command could
        # read back (review s34)
        args = ["baseline", "fit", "--model", "noload", "--data", str(ds.root), "--out", str(out), "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "retriever 'noload' (" in result.output, result.output
        assert "has no load classmethod" in " ".join(result.output.split()) and not out.exists()
        # with load, the run's name is the registered one
        reg.add("retriever", "named", _NamedLater)
        named = CliRunner().invoke(app, [*args[:3], "named", *args[4:]])
        assert named.exit_code == 0, named.output
        assert json.loads(named.stdout[named.stdout.index("{") :])["model"] == "named"
        # a run of it made otherwise (by an earlier mgfrec, by hand) is still refused when loaded, in one line
        info = json.loads((out / "run.json").read_text(encoding="utf-8"))
        (out / "run.json").write_text(json.dumps({**info, "model": "noload"}), encoding="utf-8")
        with pytest.raises(ValueError, match=r"retriever 'noload' .* has no load\(run_dir, ds\) classmethod"):
            load_scorer(out)


class _NamedLater(_NoLoadNoName):
    """The same retriever, with ``load``."""

    @classmethod
    def load(cls, run_dir, ds):
        return cls(ds.num_items)


@pytest.mark.reliability
def test_a_fit_stopped_while_it_sets_the_earlier_run_aside_loses_nothing(tmp_path, monkeypatch):
    """A stop between two of the renames left run.json in OUT: the next fit took the run as finished and deleted
    the files already set aside (review s33)."""
    from pathlib import Path

    import mgfrec.retrievers.fit as fit_mod

    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "run"
    fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real, renamed = Path.rename, []

    def stopped_after_one(self, target):
        if renamed:
            raise KeyboardInterrupt  # Ctrl-C between two renames
        renamed.append(self.name)
        return real(self, target)

    monkeypatch.setattr(Path, "rename", stopped_after_one)
    with pytest.raises(KeyboardInterrupt):
        fit_mod._set_aside(out)
    monkeypatch.setattr(Path, "rename", real)
    assert renamed == ["run.json"]
    fit_mod._set_aside(out)  # the next fit's: puts the earlier run back first, then sets it aside whole
    fit_mod._put_back(out, out / fit_mod.PREVIOUS)  # as a failed fit does
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.reliability
def test_a_fit_stopped_while_it_puts_the_earlier_run_back_loses_nothing(tmp_path, monkeypatch):
    """A failed fit puts the earlier run back; stopped after run.json was back but before the rest, the next fit
    took the run as finished and deleted the rest (review s33): run.json now comes back last."""
    from pathlib import Path

    import mgfrec.retrievers.fit as fit_mod

    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "run"
    fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    aside = fit_mod._set_aside(out)
    real, renamed, listed = Path.replace, [], Path.iterdir

    def stopped_after_one(self, target):
        if renamed:
            raise KeyboardInterrupt
        renamed.append(self.name)
        return real(self, target)

    def run_json_first(self):  # a file system that lists it first (the order iterdir gives is the system's)
        return iter(sorted(listed(self), key=lambda e: e.name != "run.json"))

    monkeypatch.setattr(Path, "replace", stopped_after_one)
    monkeypatch.setattr(Path, "iterdir", run_json_first)
    with pytest.raises(KeyboardInterrupt):
        fit_mod._put_back(out, aside)
    monkeypatch.setattr(Path, "replace", real)
    monkeypatch.setattr(Path, "iterdir", listed)
    assert renamed and renamed[0] != "run.json"  # put back last
    fit_mod._set_aside(out)  # the next fit's: the rest comes back first, then the whole run goes aside
    fit_mod._put_back(out, out / fit_mod.PREVIOUS)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.reliability
def test_a_run_records_the_data_set_it_was_fitted_on(tmp_path):
    """The run's config.yaml said `source: synthetic`, `history_length: 20` for a fit on a csv data set prepared with a
    window of 4, and recorded an unread --set data.seed=7 as if it had been used (review s36)."""
    from typer.testing import CliRunner

    from mgfrec.cli.main import app

    ds = cyclic_dataset(tmp_path)
    result = CliRunner().invoke(
        app,
        ["baseline", "fit", "--data", str(ds.root), "--out", str(tmp_path / "pop"), "--model", "pop"]
        + ["--set", "data.seed=7", "--set", "data.history_length=9"],
    )
    assert result.exit_code == 0, result.output
    recorded = load_config(tmp_path / "pop" / "config.yaml").data
    assert recorded == ds.data_config() and recorded.source == "csv" and recorded.seed == 0
    assert recorded.history_length == ds.manifest["protocol"]["history_length"] != 9


class _StoppedPop:
    """pop, as a refit that Ctrl-C cut short after its first batch would end: marked stopped by the user."""

    reads_training_settings = False

    @classmethod
    def fit(cls, ds, config, out):
        from mgfrec.retrievers.pop import PopRetriever

        model = PopRetriever.fit(ds, config, out)
        (out / "popularity.npy").write_bytes(b"not the earlier counts")  # what the stopped fit saved instead
        model.stopped = "user"
        return model

    @classmethod
    def load(cls, run_dir, ds):
        from mgfrec.retrievers.pop import PopRetriever

        return PopRetriever.load(run_dir, ds)


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.reliability
def test_a_refit_the_user_stopped_keeps_the_earlier_fit_and_restore_puts_it_back(tmp_path):
    """A refit stopped by Ctrl-C after one batch replaced a finished fit (hours of work) and deleted it (review s39)."""
    from mgfrec.retrievers.fit import restore_previous
    from mgfrec.runs import read_run_info

    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "run"
    fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    (out / "notes.txt").write_text("mine")  # a user's file beside the run: never moved, never deleted
    before = _files(out)
    reg = Registry.discover()
    reg.add("retriever", "stopped-pop", _StoppedPop)
    with use_registry(reg):
        result = fit_baseline(ds, load_config(None, ["retriever.model=stopped-pop"]), out)
    assert result.previous == out / ".previous-fit"
    assert read_run_info(out).extra["stopped"] == "user"  # the stopped fit is what OUT holds, as documented
    assert _files(result.previous)["run.json"] == before["run.json"]
    with use_registry(reg):
        info = restore_previous(out, reg)
    assert info.model == "pop"
    assert _files(out) == before
    assert not (out / ".previous-fit").exists()
    with pytest.raises(FileNotFoundError, match="holds no earlier fit to restore"):
        restore_previous(out)


def test_a_refit_that_ends_by_itself_deletes_the_earlier_fit(tmp_path):
    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "run"
    fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    result = fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    assert result.previous is None and not (out / ".previous-fit").exists()


@pytest.mark.reliability
def test_a_fit_that_cannot_set_the_earlier_run_aside_leaves_it_whole(tmp_path, monkeypatch):
    """A folder OUT could not move into .previous-fit (no write permission on it: another user's checkpoints/)
    left the run split, run.json aside and the rest in OUT: every reader called it a killed fit, and each rerun split
    it again (review s42). The moved files go back and the line names the entry."""
    from pathlib import Path

    import mgfrec.retrievers.fit as fit_mod

    ds = cyclic_dataset(tmp_path)
    out = tmp_path / "run"
    fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir() if p.is_file())
    real = Path.rename

    def refused(self, target):
        if self.name == "config.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", refused)
    with pytest.raises(
        OSError,
        match=r"run: cannot set the earlier run aside before fitting again: config.yaml "
        r"cannot be moved into .previous-fit/ \(Permission denied\); the earlier run is left as it was",
    ):
        fit_baseline(ds, load_config(None, ["retriever.model=pop"]), out)
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir() if p.is_file()) == before
    assert not (out / fit_mod.PREVIOUS).exists()

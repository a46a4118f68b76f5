"""The prepared folder: what ``prepare`` writes is what ``PreparedDataset`` reads back, the manifest's
counts and checksums are right, and a changed file or a folder that was never prepared is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from csvkit import write_csv_folder

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import MANIFEST, PreparedDataset, build, load_raw, prepare, sha256

ITEMS = "item_id,title,genre\n" + "".join(f"i{k},Album {k},g{k % 2}\n" for k in range(6))
# u1: 5 interactions, u2: 3, u3: 1 (no sample), plus a bad row (line 11) that skip_bad drops
INTERACTIONS = (
    "user_id,item_id,timestamp,rating\n"
    "u1,i0,10,5\nu1,i1,20,4\nu1,i2,30,3\nu1,i3,40,5\nu1,i4,50,4\n"
    "u2,i5,15,5\nu2,i0,25,4\nu2,i1,60,\n"
    "u3,i2,5,3\n"
    "u3,i9,70,3\n"
)


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    return write_csv_folder(tmp_path / "raw", ITEMS, INTERACTIONS)


def config(folder: Path, **kw) -> DataConfig:
    return DataConfig(
        source="csv", path=str(folder), history_length=3, split_ratios=(0.5, 0.25, 0.25), skip_bad=True, **kw
    )


def test_round_trip_reads_back_what_build_made(csv_folder, tmp_path):
    cfg = config(csv_folder)
    items, log, splits = build(load_raw(cfg), cfg)
    ds = prepare(cfg, tmp_path / "prepared")
    assert isinstance(ds, PreparedDataset)
    pd.testing.assert_frame_equal(ds.items, items)
    pd.testing.assert_frame_equal(ds.interactions, log)
    for name, expected in splits.items():
        got = ds.split(name)
        assert got["history"].map(lambda h: h.dtype == np.int64).all()
        assert got["history"].map(list).tolist() == expected["history"].map(list).tolist()
        pd.testing.assert_frame_equal(got.drop(columns="history"), expected.drop(columns="history"))
    assert ds.titles == [f"Album {k}" for k in range(6)]
    assert ds.num_items == 6
    assert ds.items["genre"].tolist() == ["g0", "g1"] * 3  # attribute columns survive
    assert ds.items["item_idx"].tolist() == list(range(6))


def test_manifest_counts_rows_and_checksums(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    ds = prepare(config(csv_folder), out)
    # samples: u1 4 (histories 1, 2, 3, 3), u2 2 (1, 2), u3 none -> 6, cut floor/floor/rest into 3/1/2
    assert ds.counts == {
        "users": 3,
        "items": 6,
        "items_in_log": 6,
        "interactions": 9,
        "samples": {"train": 3, "valid": 1, "test": 2},
        "mean_history_length": pytest.approx((1 + 2 + 3 + 3 + 1 + 2) / 6),
    }
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["source"]["name"] == "csv"
    assert manifest["protocol"]["history_length"] == 3
    assert manifest["protocol"]["split_ratios"] == [0.5, 0.25, 0.25]
    assert manifest["rows"]["interactions.csv"]["read"] == 10
    assert manifest["rows"]["interactions.csv"]["kept"] == 9
    assert manifest["rows"]["interactions.csv"]["dropped_by_reason"] == {"unknown_item_id": 1}
    assert manifest["rows"]["items.csv"]["read"] == manifest["rows"]["items.csv"]["kept"] == 6
    assert sorted(manifest["checksums"]) == sorted(
        ["items.parquet", "interactions.parquet", "train.parquet", "valid.parquet", "test.parquet"]
    )
    for name, digest in manifest["checksums"].items():
        assert sha256(out / name) == digest


def test_same_input_gives_the_same_folder_checksum(csv_folder, tmp_path):
    first = prepare(config(csv_folder), tmp_path / "a")
    second = prepare(config(csv_folder), tmp_path / "b")
    other = prepare(config(csv_folder).model_copy(update={"history_length": 2}), tmp_path / "c")
    assert first.checksum == second.checksum
    assert first.checksum != other.checksum


def test_subsampling_is_recorded_and_applied(csv_folder, tmp_path):
    # the one user drawn may have a single interaction: 0 samples, allowed here since only the record is checked
    ds = prepare(config(csv_folder, subsample_users=1, seed=0), tmp_path / "p", allow_empty=True)
    assert ds.counts["users"] == 1
    assert ds.manifest["protocol"]["subsample_users"] == 1


def test_tampered_file_is_detected(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    prepare(config(csv_folder), out)
    train = pd.read_parquet(out / "train.parquet")
    train.loc[0, "target"] = 5
    train.to_parquet(out / "train.parquet", index=False)
    ds = PreparedDataset(out)
    with pytest.raises(ValueError, match=r"train\.parquet: checksum differs from manifest\.json"):
        ds.split("train")
    with pytest.raises(ValueError, match="checksum differs"):
        _ = PreparedDataset(out).items  # every reader goes through the check


def test_unknown_format_version_is_refused(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    prepare(config(csv_folder), out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    manifest["format_version"] = 99
    (out / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ValueError, match="format_version 99"):
        _ = PreparedDataset(out).counts


def test_non_prepared_folder_gives_a_clear_error(csv_folder):
    with pytest.raises(FileNotFoundError, match=r"not a prepared data set \(no manifest\.json\).*mgfrec data prepare"):
        PreparedDataset(csv_folder)


def test_unknown_split_name(csv_folder, tmp_path):
    ds = prepare(config(csv_folder), tmp_path / "p")
    with pytest.raises(ValueError, match="unknown split 'dev'; splits are train, valid, test"):
        ds.split("dev")


def test_synthetic_source_prepares_through_the_registry(tmp_path):
    cfg = DataConfig(source="synthetic", options={"n_users": 30, "n_items": 60, "n_artists": 10}, seed=4)
    ds = prepare(cfg, tmp_path / "synth")
    assert ds.counts["users"] == 30 and ds.counts["items"] == 60
    assert ds.manifest["source"]["params"]["seed"] == 4  # data.seed reaches the generator
    assert {"genre", "artist", "series", "volume"} <= set(ds.items.columns)


def _source(items: pd.DataFrame | None = None, interactions: pd.DataFrame | None = None, counts=None, returns=None):
    """A third-party data source whose load() returns this log (or ``returns``)."""
    from mgfrec.data.raw import RawLog, ReadReport

    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]}) if items is None else items
    if interactions is None:
        interactions = pd.DataFrame(
            {"user_id": ["u1"] * 3 + ["u2"] * 2, "item_id": list("abcab"), "timestamp": [1.0, 2, 3, 1, 2]}
        )
    report = ReadReport()
    for name, (read, kept) in (counts or {"items": (len(items), len(items))}).items():
        report.file(name).read, report.file(name).kept = read, kept

    class Source:
        def load(self, path, skip_bad):
            return RawLog(items, interactions, report, "plug") if returns is None else returns

    return Source


PLUGIN_BREACHES = [
    ("no load", type("NoLoad", (), {}), "has no load(path, skip_bad) method"),
    ("returns a dict", _source(returns={"items": []}), "load() returned dict, not a RawLog"),
    ("counts", _source(counts={"inter": (6, 5)}), "inter: read 6 != kept 5 + dropped 0"),
    (
        "duplicate id",
        _source(items=pd.DataFrame({"item_id": ["a", "b", "c", "c"], "title": list("ABCD")})),
        "item_id 'c' appears 2 times in the item table",
    ),
    ("no title column", _source(items=pd.DataFrame({"item_id": list("abc")})), "the item table has no column(s) title"),
    (
        "a None title",
        _source(items=pd.DataFrame({"item_id": list("abc"), "title": ["A", None, "C"]})),
        "item 'b' has no title",
    ),
    (
        "text timestamps",
        _source(interactions=pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["a", "b"], "timestamp": ["x", "y"]})),
        "interaction 0 has timestamp 'x'",
    ),
    # both were named by RawLog.source (what the plugin wrote) with no item id (review s27)
    (
        "an unknown item",
        _source(interactions=pd.DataFrame({"user_id": ["u1"] * 3, "item_id": ["a", "b", "zz"], "timestamp": [1] * 3})),
        "1 interaction(s) name items missing from the item table (the first: interaction 2, item_id 'zz')",
    ),
    (
        "a reserved column",
        _source(items=pd.DataFrame({"item_id": list("abc"), "title": list("ABC"), "item_idx": [0, 1, 2]})),
        "item table column(s) item_idx are reserved",
    ),
]


@pytest.mark.parametrize(("case", "source", "words"), PLUGIN_BREACHES, ids=lambda x: x)
def test_a_source_that_breaks_its_contract_is_one_error_naming_it(tmp_path, case, source, words):
    """Before: an AssertionError or AttributeError traceback, a silent duplicate item, or a title embedded as
    the text "None"; none named the plugin."""
    from mgfrec.data.raw import BadInputError
    from mgfrec.registry import KINDS, Registry

    reg = Registry({k: {} for k in KINDS})
    reg.add("data_source", "plug", source)
    with pytest.raises(BadInputError) as err:
        prepare(DataConfig(source="plug"), tmp_path / "out", reg=reg)
    assert str(err.value).startswith(f"data_source 'plug' (python:{__name__}): {words}"), str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_source_with_numeric_item_ids_is_read_as_strings(tmp_path):
    from mgfrec.registry import KINDS, Registry

    items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["A", "B", "C"]})
    log = pd.DataFrame(
        {"user_id": ["u1"] * 3 + ["u2"] * 2, "item_id": ["1", "2", "3", "1", "2"], "timestamp": range(5)}
    )
    reg = Registry({k: {} for k in KINDS})
    reg.add("data_source", "plug", _source(items=items, interactions=log))
    ds = prepare(DataConfig(source="plug"), tmp_path / "out", reg=reg)
    assert ds.items["item_id"].tolist() == ["1", "2", "3"] and len(ds.interactions) == 5


@pytest.mark.reliability
def test_a_prepare_cut_short_while_moving_its_files_into_place_leaves_the_earlier_data_set_whole(
    csv_folder, tmp_path, monkeypatch
):
    """Ctrl-C or SIGTERM while the staged files were moved into place deleted those not yet moved: the folder
    held the new items and interactions beside the earlier splits and no manifest, and a rerun was refused."""
    out = tmp_path / "ds"
    earlier = prepare(config(csv_folder), out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    other = DataConfig(source="synthetic", options={"n_users": 30, "n_items": 60, "n_artists": 10}, seed=4)
    real_replace = Path.replace
    for stop_at in range(1, 2 * len(before) + 2):  # every rename of both phases: set aside, then moved in
        monkeypatch.setattr(Path, "replace", _replace_stopped_at(stop_at, real_replace))
        try:
            prepare(other, out)
        except KeyboardInterrupt:
            pass
        else:  # every rename was done: the new data set is whole; put the earlier one back for the next try
            monkeypatch.setattr(Path, "replace", real_replace)
            assert PreparedDataset(out).counts["users"] == 30
            prepare(config(csv_folder), out)
            continue
        finally:
            monkeypatch.setattr(Path, "replace", real_replace)
        after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert after == before, stop_at
        assert PreparedDataset(out).checksum == earlier.checksum
        assert not [p.name for p in out.iterdir() if p.name.startswith(".prepare")], stop_at
    # a first prepare into a new folder, cut short: the files already moved in are taken out again, so the rerun is
    # not refused as "not empty and not a prepared data set" (the branch no test reached; review s40)
    for stop_at in range(1, len(before) + 2):
        fresh = tmp_path / f"fresh{stop_at}"
        monkeypatch.setattr(Path, "replace", _replace_stopped_at(stop_at, real_replace))
        try:
            prepare(other, fresh)
        except KeyboardInterrupt:
            assert not fresh.exists() or not [p.name for p in fresh.iterdir()], (stop_at, list(fresh.iterdir()))
        finally:
            monkeypatch.setattr(Path, "replace", real_replace)
        assert PreparedDataset(prepare(other, fresh).root).counts["users"] == 30, stop_at


def _replace_stopped_at(stop_at: int, real):
    """``Path.replace`` that raises KeyboardInterrupt (Ctrl-C) at its ``stop_at``-th call, and renames otherwise."""
    calls = {"n": 0}

    def replace(self, target):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return real(self, target)

    return replace


def _killed_while_moving(out: Path) -> None:
    """What a SIGKILL between two renames of ``write_folder`` leaves: the earlier manifest and two of its files set
    aside in .prepare-previous, new files in their places, the rest of the new set still staged (no finally ran)."""
    from mgfrec.data.dataset_folder import MANIFEST, PREVIOUS, STAGING

    (out / PREVIOUS).mkdir()
    (out / STAGING).mkdir()
    for name in (MANIFEST, "items.parquet", "interactions.parquet"):
        (out / name).replace(out / PREVIOUS / name)
    (out / "items.parquet").write_bytes(b"the new data set's items")
    (out / STAGING / "interactions.parquet").write_bytes(b"the new data set's interactions")


@pytest.mark.reliability
def test_a_prepare_killed_while_moving_its_files_is_named_and_the_next_prepare_puts_the_earlier_set_back(
    csv_folder, tmp_path, monkeypatch
):
    """A SIGKILL between the renames (no finally runs) left the earlier manifest in .prepare-previous: every
    command refused the folder as "not a prepared data set", the rerun as "not empty", with no word of where the
    data set was (review s28)."""
    out = tmp_path / "ds"
    earlier = prepare(config(csv_folder), out)
    _killed_while_moving(out)
    with pytest.raises(FileNotFoundError, match=r"killed while moving its files .* run that data prepare again"):
        PreparedDataset(out)
    other = DataConfig(source="synthetic", options={"n_users": 30, "n_items": 60, "n_artists": 10}, seed=4)
    real = pd.DataFrame.to_parquet

    def full_disk(self, path, *args, **kwargs):
        if str(path).endswith("valid.parquet"):
            raise OSError(28, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    with pytest.raises(OSError, match="No space left"):
        prepare(other, out)  # it fails: the earlier data set, put back first, stays as it was
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert PreparedDataset(out).checksum == earlier.checksum
    assert not [p.name for p in out.iterdir() if p.name.startswith(".prepare")]
    _killed_while_moving(out)
    assert PreparedDataset(prepare(other, out).root).counts["users"] == 30  # and a prepare that finishes replaces it


@pytest.mark.reliability
def test_a_second_prepare_into_a_folder_being_written_is_refused(csv_folder, tmp_path):
    """Two prepares into one --out at once: one failed on the other's staging files, or both succeeded and one
    data set replaced the other without a word."""
    from mgfrec.locks import only_one_in

    out = tmp_path / "ds"
    earlier = prepare(config(csv_folder), out)
    other = DataConfig(source="synthetic", options={"n_users": 30, "n_items": 60, "n_artists": 10}, seed=4)
    with only_one_in(out, "mgfrec data prepare"):  # what the first one holds while it writes
        with pytest.raises(ValueError, match=r"--out .*ds: another mgfrec data prepare is running in it"):
            prepare(other, out)
    assert PreparedDataset(out).checksum == earlier.checksum
    assert PreparedDataset(prepare(other, out).root).counts["users"] == 30  # once it is done, it may


@pytest.mark.reliability
def test_a_sources_secret_options_are_redacted_in_the_manifest(tmp_path):
    """manifest.json kept a source option's token and a URL's password as given, while config.yaml beside it
    redacted them."""
    from mgfrec.data.raw import RawLog
    from mgfrec.registry import KINDS, Registry

    plain = _source()().load(None, False)
    params = {"api_token": "tok-GIVEN-SECRET", "url": "https://bob:hunter2@example.com/x", "n": 3}

    class Source:
        def load(self, path, skip_bad):
            return RawLog(plain.items, plain.interactions, plain.report, "plug", params)

    reg = Registry({k: {} for k in KINDS})
    reg.add("data_source", "plug", Source)
    ds = prepare(DataConfig(source="plug"), tmp_path / "out", reg=reg)
    text = (ds.root / MANIFEST).read_text()
    assert "tok-GIVEN-SECRET" not in text and "hunter2" not in text, text
    assert ds.manifest["source"]["params"] == {
        "api_token": "<redacted>",
        "url": "https://bob:<redacted>@example.com/x",
        "n": 3,
    }


def test_a_data_set_says_how_it_was_prepared_for_its_runs_to_record(csv_folder, tmp_path):
    """A run's config.yaml recorded the config's data section (the defaults: source synthetic, history 20) whatever
    it was trained on (review s36): the data set's own section is its folder's config.yaml, else its manifest's."""
    from mgfrec.config.schema import MGFRecConfig
    from mgfrec.data.prepared import prepare_config

    plain = prepare(config(csv_folder, subsample_users=2, seed=3), tmp_path / "plain")  # no config.yaml beside it
    said = plain.data_config()
    assert (said.source, said.path, said.history_length, said.subsample_users, said.seed) == (
        "csv",
        str(csv_folder),
        3,
        2,
        3,
    )
    assert said.split_ratios == (0.5, 0.25, 0.25) and said.options["delimiter"] == ","  # the source's options
    written = prepare_config(MGFRecConfig(data=config(csv_folder, options={"delimiter": ","})), tmp_path / "cli")
    assert written.data_config() == config(csv_folder, options={"delimiter": ","})  # skip_bad too, from config.yaml
    synthetic = prepare(
        DataConfig(source="synthetic", options={"n_users": 30, "n_items": 40, "n_artists": 8}), tmp_path / "s"
    )
    assert synthetic.data_config().options["n_users"] == 30 and synthetic.data_config().path is None


class _PluginSource:
    """A data-source plugin (the synthetic generator under another name) that writes its own text as the source."""

    from mgfrec.data.sources.synthetic import SyntheticOptions as Options

    def __init__(self, options):
        self.options = options

    def load(self, path, skip_bad):
        from dataclasses import replace

        from mgfrec.data.sources.synthetic import generate

        return replace(generate(self.options), source="my synthetic log v1")


@pytest.mark.reliability
def test_a_run_of_a_data_set_a_plugin_made_needs_no_plugin(tmp_path):
    """Recording how the data set was prepared made every fit fail with "unknown data_source" where the manifest's
    source is no name registered here, and `recommend` of the run refuse it without the plugin (review s36): no
    command builds the source once the data set is prepared."""
    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.config.load import load_config
    from mgfrec.registry import Registry, use_registry
    from mgfrec.retrievers.fit import fit_baseline

    reg = Registry.discover()
    reg.add("data_source", "mysynth", _PluginSource)
    options = {"n_users": 30, "n_items": 40, "n_artists": 8, "max_length": 6}
    with use_registry(reg):
        ds = prepare(DataConfig(source="mysynth", options=options), tmp_path / "data")  # no config.yaml beside it
    assert ds.manifest["source"]["name"] == "my synthetic log v1"
    from mgfrec.config.schema import MGFRecConfig, RetrieverConfig

    fit_baseline(ds, MGFRecConfig(retriever=RetrieverConfig(model="pop")), tmp_path / "pop")  # without the plugin
    assert load_config(tmp_path / "pop" / "config.yaml").data.source == "my synthetic log v1"
    user = str(ds.split("test").user_id.iloc[0])
    result = CliRunner().invoke(app, ["recommend", str(tmp_path / "pop"), "--user", user, "--json"])
    assert result.exit_code == 0, result.output

"""``mgfrec data prepare`` and ``mgfrec data stats`` through the real CLI app (typer's CliRunner)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from csvkit import write_csv_folder
from typer.testing import CliRunner

from mgfrec.cli.main import app

ITEMS = "item_id,title,genre\ni1,Alpha,rock\ni2,Beta,jazz\ni3,Gamma,pop\ni4,Delta,rock\n"
INTERACTIONS = (
    "user_id,item_id,timestamp,rating\nu1,i1,1,5\nu1,i2,2,4\nu1,i3,3,3\nu2,i4,4,5\nu2,i1,5,4\nu1,i4,6,5\nu2,i2,7,3\n"
)
SMALL_SYNTHETIC = ["-o", "n_users=40", "-o", "n_items=90", "-o", "n_artists=12"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with line wrapping undone, so assertions do not depend on the terminal width."""
    return " ".join(text.split())


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    return write_csv_folder(tmp_path / "raw", ITEMS, INTERACTIONS)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    # SOURCE 'synthetic' is a folder if one of that name exists in the working directory
    monkeypatch.chdir(tmp_path)


def stats_json(folder: Path) -> dict:
    result = invoke("data", "stats", folder, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_prepare_csv_folder_then_stats_json(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    result = invoke("data", "prepare", csv_folder, "--out", out, "--history-length", "2")
    assert result.exit_code == 0, result.output
    assert "interactions.csv: read 7 = kept 7 + dropped 0" in flat(result.output)
    assert (out / "manifest.json").is_file() and (out / "config.yaml").is_file()
    stats = stats_json(out)
    # u1: 4 interactions -> 3 samples, u2: 3 -> 2; 5 samples cut 4/0/1; histories 1, 2, 2 and 1, 2
    assert {k: stats[k] for k in ("users", "items", "interactions", "samples")} == {
        "users": 2,
        "items": 4,
        "interactions": 7,
        "samples": {"train": 4, "valid": 0, "test": 1},
    }
    assert stats["mean_history_length"] == pytest.approx(8 / 5)
    assert stats["source"] == "csv"


def test_source_left_out_is_the_config_s_data_path(csv_folder, tmp_path):
    """The paper configs name the folder `mgfrec data download` fills (data.path), but `data prepare --config` with
    no SOURCE was "Missing argument 'source'" (review s35)."""
    config = tmp_path / "paper.yaml"
    config.write_text(f"data:\n  path: {csv_folder}\n", encoding="utf-8")
    result = invoke("data", "prepare", "--config", config, "--out", tmp_path / "prepared", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["users"] == 2
    config.write_text("data:\n  path: data/not-downloaded\n", encoding="utf-8")
    missing = invoke("data", "prepare", "--config", config, "--out", tmp_path / "other")
    text = flat(missing.output)  # it named a SOURCE the user never gave
    assert missing.exit_code == 2 and f"data.path of {config} 'data/not-downloaded': no such folder" in text, text
    assert "'mgfrec data download'" in text
    neither = invoke("data", "prepare", "--out", tmp_path / "other")
    assert neither.exit_code == 2 and "error: SOURCE: give a folder to read or a source name" in flat(neither.output)
    assert not (tmp_path / "other").exists()


def test_source_left_out_is_the_config_s_data_source_when_it_reads_no_folder(tmp_path):
    """configs/default.yaml (data.source: synthetic) or `--set data.source=synthetic` could not drive `data prepare`
    without SOURCE: "SOURCE: give a folder to read" (review s36)."""
    from mgfrec.data.prepared import PreparedDataset

    small = ["--set", "data.options={n_users: 30, n_items: 40, n_artists: 8}"]
    by_set = invoke("data", "prepare", "--out", tmp_path / "a", "--set", "data.source=synthetic", *small, "--json")
    assert by_set.exit_code == 0, by_set.output
    assert json.loads(by_set.stdout)["source"] == "synthetic" and json.loads(by_set.stdout)["users"] == 30
    config = tmp_path / "synthetic.yaml"
    config.write_text("data: {source: synthetic, options: {n_users: 30, n_items: 40, n_artists: 8}}\n", "utf-8")
    by_file = invoke("data", "prepare", "--config", config, "--out", tmp_path / "b", "--json")
    assert by_file.exit_code == 0, by_file.output
    assert PreparedDataset(tmp_path / "b").checksum == PreparedDataset(tmp_path / "a").checksum


def test_prepare_json_and_stats_table(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    result = invoke("data", "prepare", csv_folder, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["interactions"] == 7 and printed["rows"]["items.csv"]["kept"] == 4
    stats = json.loads(invoke("data", "stats", out, "--json").stdout)
    assert printed["source"] == "csv" and set(stats) >= set(printed)  # one set of keys (prepare lacked source)
    table = invoke("data", "stats", out)
    assert table.exit_code == 0, table.output
    assert "samples / train" in table.output and "mean history length" in table.output


def test_prepare_synthetic(tmp_path):
    out = tmp_path / "synth"
    result = invoke("data", "prepare", "synthetic", "--out", out, *SMALL_SYNTHETIC)
    assert result.exit_code == 0, result.output
    stats = stats_json(out)
    assert stats["users"] == 40 and stats["items"] == 90 and stats["source"] == "synthetic"
    assert sum(stats["samples"].values()) == stats["interactions"] - 40
    assert stats["rows"]["synthetic/interactions"]["read"] == stats["interactions"]


def test_seed_flag_seeds_the_synthetic_data(tmp_path):
    def checksums(name: str, seed: str) -> dict:
        out = tmp_path / name
        result = invoke("data", "prepare", "synthetic", "--out", out, "--seed", seed, *SMALL_SYNTHETIC)
        assert result.exit_code == 0, result.output
        return json.loads((out / "manifest.json").read_text(encoding="utf-8"))["checksums"]

    assert checksums("a", "1") == checksums("b", "1")
    assert checksums("a", "1")["interactions.parquet"] != checksums("c", "2")["interactions.parquet"]


def test_skip_bad_prints_read_kept_dropped(csv_folder, tmp_path):
    with (csv_folder / "interactions.csv").open("a", encoding="utf-8") as handle:
        handle.write("u3,i1,soon,5\nu3,i9,8,5\n")
    result = invoke("data", "prepare", csv_folder, "--out", tmp_path / "p", "--skip-bad")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "interactions.csv: read 9 = kept 7 + dropped 2 (bad_timestamp 1, unknown_item_id 1)" in text
    assert "items.csv: read 4 = kept 4 + dropped 0" in text


def test_bad_file_without_skip_bad_exits_2_naming_file_line_and_field(csv_folder, tmp_path):
    with (csv_folder / "interactions.csv").open("a", encoding="utf-8") as handle:
        handle.write("u3,i1,soon,5\n")
    out = tmp_path / "p"
    result = invoke("data", "prepare", csv_folder, "--out", out)
    assert result.exit_code == 2
    text = flat(result.output)
    assert f"{csv_folder / 'interactions.csv'}:9: field timestamp 'soon' is not a number" in text
    assert "--skip-bad" in text
    assert not (out / "manifest.json").exists()


def test_an_option_without_a_value_names_the_flag_and_its_form(tmp_path):
    result = invoke("data", "prepare", "synthetic", "--out", tmp_path / "s", "-o", "n_users")
    text = flat(result.output)
    assert result.exit_code == 2 and "--option 'n_users': must look like key=value" in text, text
    assert "section.field" not in text and not (tmp_path / "s").exists()


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("delimiter=~", "YAML reads ~, null and nothing as null: quote the text"),  # a tilde-delimited export
        ("items_file=2023", "YAML reads digits as a number: quote them"),
    ],
)
def test_an_option_yaml_reads_as_no_text_says_to_quote_it(tmp_path, option, says):
    """`-o delimiter=~` and `-o items_file=2023` said only "Input should be a valid string" (review s41)."""
    result = invoke("data", "prepare", str(tmp_path), "--source", "csv", "--out", tmp_path / "s", "-o", option)
    text = flat(result.output)
    assert result.exit_code == 2 and f"data.options.{option.partition('=')[0]}: Input should be a valid" in text
    assert says in text and "Traceback" not in text, text


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["--set", "data.source=synthetic"], "data.source"),  # an AttributeError traceback ('is_flag')
        (["--set", "data={source: synthetic}"], "data.source"),
        (["--set", "data.path=elsewhere"], "data.path"),  # SOURCE was ignored without a word
        (["--set", "data={}"], "data.source"),  # the empty mapping reset the section: synthetic data was prepared
    ],
)
def test_source_and_a_set_of_another_source_or_path_are_refused_in_one_line(csv_folder, tmp_path, sets, field):
    result = invoke("data", "prepare", csv_folder, "--out", tmp_path / "p", *sets)
    text = flat(result.output)
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert f"SOURCE {csv_folder} and --set {sets[1]} set {field} to two values" in text, text
    assert not (tmp_path / "p").exists()
    same = invoke("data", "prepare", csv_folder, "--out", tmp_path / "q", "--set", f"data.path={csv_folder}")
    assert same.exit_code == 0, same.output  # the same value twice is no clash


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["-o", "n_users=40", "--set", "data.options.n_users=30"], "--option n_users=40 and --set"),  # the --set won
        (["-o", "seed=1", "--seed", "2"], "--option seed=1 and --seed 2 give the seed two values"),  # -o won
        (["-o", "n_users=40", "-o", "n_users=30"], "--option n_users=30 and an earlier --option"),  # the last won
        # the option inside data.options or data given whole; an empty mapping replaces (review s40: they won)
        (["-o", "n_users=40", "--set", "data.options={n_users: 30}"], "--option n_users=40 and --set"),
        (["-o", "n_users=40", "--set", "data={options: {n_users: 30}}"], "--option n_users=40 and --set"),
        (["--set", "data.options={}"], "empties data.options, dropping --option n_items=80"),
    ],
)
def test_an_option_given_two_values_is_refused_in_one_line(tmp_path, flags, said):
    small = ["-o", "n_items=80", "-o", "n_artists=10"]
    result = invoke("data", "prepare", "synthetic", "--out", tmp_path / "s", *small, *flags)
    text = flat(result.output)
    assert result.exit_code == 2 and said in text and ("two values" in text or "give one of them" in text), text
    assert not (tmp_path / "s").exists()
    merged = [*small, "-o", "n_users=40", "--set", "data.options={n_artists: 10}", "--set", "data={history_length: 5}"]
    merge = invoke("data", "prepare", "synthetic", "--out", tmp_path / "m", *merged)  # mappings merge: no clash
    assert merge.exit_code == 0, merge.output
    same = invoke(
        "data", "prepare", "synthetic", "--out", tmp_path / "t", *small, "-o", "n_users=40", "-o", "n_users=40"
    )
    assert same.exit_code == 0, same.output


def test_unknown_source_gives_the_closest_match(tmp_path):
    result = invoke("data", "prepare", "synthetic", "--out", tmp_path / "p", "--source", "synthetc")
    assert result.exit_code == 2
    assert "unknown data_source 'synthetc'" in flat(result.output)
    assert "Did you mean 'synthetic'?" in flat(result.output)


def test_unknown_source_argument_and_unreadable_folder(tmp_path):
    result = invoke("data", "prepare", "nowhere", "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert "SOURCE 'nowhere' is neither a folder nor a data source" in flat(result.output)
    (tmp_path / "empty").mkdir()
    result = invoke("data", "prepare", tmp_path / "empty", "--out", tmp_path / "p")
    assert result.exit_code == 2
    assert "cannot tell its format" in flat(result.output)
    # a file: "cannot tell its format ... pass --source NAME", and with --source csv "not a folder" (review s32)
    (tmp_path / "empty" / "interactions.csv").write_text("user_id,item_id,timestamp\n")
    result = invoke("data", "prepare", tmp_path / "empty" / "interactions.csv", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "interactions.csv: a file; give the folder that holds it" in flat(result.output)
    assert not (tmp_path / "p").exists()


def test_stats_refuses_a_folder_that_is_not_prepared_or_was_changed(csv_folder, tmp_path):
    result = invoke("data", "stats", csv_folder, "--json")
    assert result.exit_code == 2
    assert "not a prepared data set" in flat(result.output)
    out = tmp_path / "prepared"
    assert invoke("data", "prepare", csv_folder, "--out", out).exit_code == 0
    (out / "test.parquet").write_bytes(b"not parquet any more")
    result = invoke("data", "stats", out, "--json")
    assert result.exit_code == 2
    assert "test.parquet: checksum differs" in flat(result.output)


@pytest.mark.reliability
def test_a_damaged_manifest_is_one_line_naming_it(csv_folder, tmp_path):
    """A manifest that is a list, lacks a field, is cut short or is not UTF-8 was a traceback or a bare
    'error: counts'; each is now one line naming manifest.json and saying what to do."""
    out = tmp_path / "prepared"
    assert invoke("data", "prepare", csv_folder, "--out", out).exit_code == 0
    path = out / "manifest.json"
    good = json.loads(path.read_text())
    damaged = {
        "a list": (b"[]", "not a manifest (a JSON list"),
        "no source": (
            json.dumps({k: v for k, v in good.items() if k != "source"}).encode(),
            "field 'source' is missing",
        ),
        "no rows": (json.dumps({k: v for k, v in good.items() if k != "rows"}).encode(), "field 'rows' is missing"),
        "counts a list": (json.dumps({**good, "counts": []}).encode(), "field 'counts' is a list, not a dict"),
        "a row without read": (
            json.dumps({**good, "rows": {"items.csv": {"kept": 1}}}).encode(),
            "field 'read' is missing",
        ),
        "cut short": (path.read_bytes()[:40], "not a readable manifest"),
        "not UTF-8": (b'{"source": "\xff\xfe"}', "not a readable manifest"),
    }
    for name, (content, words) in damaged.items():
        path.write_bytes(content)
        for flags in ([], ["--json"]):
            result = invoke("data", "stats", out, *flags)
            text = flat(result.output)
            assert result.exit_code == 2, (name, text)
            assert "Traceback" not in text and str(path) in text and words in text, (name, text)
            assert "prepare the data set again" in text, (name, text)


def test_subsample_users_is_accounted_for_after_the_rows(tmp_path):
    """The rows' accounting ends at the source; --subsample-users drops more, and says how many (read = kept +
    dropped), in the table's output, the --json keys and the manifest."""
    from csvkit import write_cyclic_csv

    src = write_cyclic_csv(tmp_path / "csv", n_users=20, seq_len=5)
    res = invoke("data", "prepare", src, "--out", tmp_path / "out", "--subsample-users", "5", "--json")
    assert res.exit_code == 0, res.output
    sub = json.loads(res.stdout)["subsample_users"]
    assert sub == {"users": 5, "interactions_read": 100, "interactions_kept": 25, "interactions_dropped": 75}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["subsample_users"] == sub
    table = invoke("data", "prepare", src, "--out", tmp_path / "out2", "--subsample-users", "5")
    assert "subsample_users: 5 users, interactions 100 = kept 25 + dropped 75" in flat(table.output)
    plain = invoke("data", "prepare", src, "--out", tmp_path / "out3", "--json")
    assert "subsample_users" not in json.loads(plain.stdout)


@pytest.mark.reliability
def test_a_prepare_that_fails_to_write_leaves_the_data_set_already_there(tmp_path):
    out = tmp_path / "prepared"
    assert invoke("data", "prepare", "synthetic", "--out", out, *SMALL_SYNTHETIC).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # the same command in a process whose files may not grow past 4 kB (a full disk, as far as it can tell)
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000)); "
        "from mgfrec.cli.main import main; sys.argv = ['mgfrec', *sys.argv[1:]]; main()"
    )
    args = ["data", "prepare", "synthetic", "--out", str(out), *SMALL_SYNTHETIC[2:], "-o", "n_users=400", "--seed", "3"]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    err = flat(done.stderr)
    assert err.startswith(f"error: {out}/") and "File too large" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing changed, no staging left
    assert stats_json(out)["users"] == 40


@pytest.mark.reliability
def test_a_missing_source_folder_with_source_is_named(tmp_path):
    # was "the csv source needs a folder holding items.csv and interactions.csv", naming no path
    result = invoke("data", "prepare", "nosuch", "--source", "csv", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "SOURCE 'nosuch' not found" in flat(result.output)
    assert not (tmp_path / "p").exists()
    result = invoke("data", "prepare", "synthetic", "--source", "synthetic", "--out", tmp_path / "s", *SMALL_SYNTHETIC)
    assert result.exit_code == 0, result.output


@pytest.mark.reliability
def test_stats_keeps_the_subsample_line_and_names_a_damaged_file_once(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    assert invoke("data", "prepare", csv_folder, "--out", out, "--subsample-users", "1", "--allow-empty").exit_code == 0
    shown = invoke("data", "stats", out)
    # prepare printed it; stats dropped it, so its counts no longer added up to the rows read
    assert "subsample_users: 1 users, interactions 7 = kept" in flat(shown.output)
    assert stats_json(out)["subsample_users"]["interactions_read"] == 7
    with (out / "items.parquet").open("ab") as handle:
        handle.write(b"x")
    result = invoke("data", "stats", out)
    text = flat(result.output)
    assert result.exit_code == 2 and text.count("prepare the data set again") == 1 and "ValueError" not in text
    assert "items.parquet: checksum differs" in text


@pytest.mark.reliability
def test_a_negative_seed_names_the_field(tmp_path):
    result = invoke("data", "prepare", "synthetic", "--out", tmp_path / "p", *SMALL_SYNTHETIC, "--seed", "-1")
    assert result.exit_code == 2 and "data.seed" in flat(result.output)  # was "expected non-negative integer"


def test_prepare_refuses_a_folder_that_holds_something_else(csv_folder, tmp_path):
    """Into a run folder, `data prepare` replaced the run's resolved config.yaml and mixed parquet files in."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"kind": "retriever"}')
    (run / "config.yaml").write_text("retriever:\n  model: pop\n")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = invoke("data", "prepare", csv_folder, "--out", run)
    assert result.exit_code == 2, result.output
    assert flat(result.output) == (
        f"error: --out {run}: not empty (run.json) and not a prepared data set (no manifest.json); give a new or "
        "empty folder, or a data set to replace"
    )
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert invoke("data", "prepare", csv_folder, "--out", csv_folder).exit_code == 2  # beside the raw files


def test_prepare_replaces_a_data_set_and_keeps_a_users_config(csv_folder, tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "config.yaml").write_text("# mine\ndata:\n  history_length: 5\n")
    first = invoke("data", "prepare", csv_folder, "--out", out, "--history-length", "5")
    assert first.exit_code == 0, first.output
    assert (out / "config.user.yaml").read_text().startswith("# mine")
    again = invoke("data", "prepare", csv_folder, "--out", out)  # a data set is replaced as a whole
    assert again.exit_code == 0, again.output


def test_preparing_over_a_data_set_that_changes_it_says_its_runs_no_longer_match(tmp_path):
    """`data prepare` into a folder holding a data set replaced it without a word: every run made from it was then
    refused by evaluate and report, and the user learnt why only there."""
    out, small = str(tmp_path / "d"), SMALL_SYNTHETIC
    first = invoke("data", "prepare", "synthetic", "--out", out, *small)
    assert first.exit_code == 0 and "note:" not in first.output, first.output
    same = invoke("data", "prepare", "synthetic", "--out", out, *small)
    assert same.exit_code == 0 and "note:" not in same.output, same.output  # the same data set again
    other = invoke("data", "prepare", "synthetic", "--out", out, *small, "--history-length", "5")
    text = flat(other.output)
    assert other.exit_code == 0 and "note: " in text and "runs made from it are refused by evaluate" in text, text


@pytest.mark.reliability
def test_a_config_for_another_source_gives_a_csv_folder_no_options_it_never_wrote(tmp_path, csv_folder):
    # configs/paper/cds.yaml (amazon2023, category) given the shared csv folder: "data.options.category: Extra
    # inputs are not permitted", naming neither source
    config = tmp_path / "paper.yaml"
    config.write_text("data:\n  source: amazon2023\n  options:\n    category: CDs_and_Vinyl\n", encoding="utf-8")
    result = invoke("data", "prepare", csv_folder, "--out", tmp_path / "out", "--config", config)
    assert result.exit_code == 0, result.output
    said = f"note: --config {config} sets data.source amazon2023 with options category; the data folder is read by"
    assert f"{said} the csv " in flat(result.output)
    # a -o or --set of the options still decides, and is checked as given
    bad = invoke("data", "prepare", csv_folder, "--out", tmp_path / "o2", "--config", config, "-o", "encodng=x")
    assert bad.exit_code == 2 and "data.options.encodng" in flat(bad.output)


def test_subsample_samples_accounts_for_what_it_drops(tmp_path):
    # --subsample-users printed "interactions read = kept + dropped"; --subsample-samples printed nothing, and the
    # manifest kept only the final counts
    result = invoke("data", "prepare", "synthetic", "--out", tmp_path / "d", *SMALL_SYNTHETIC, "--subsample-samples", 5)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "subsample_samples: train " in text and "= kept 5 + dropped" in text
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    for name, counts in manifest["subsample_samples"].items():
        assert counts["kept"] == manifest["counts"]["samples"][name] == 5
        assert counts["read"] == counts["kept"] + counts["dropped"]
    stats = invoke("data", "stats", tmp_path / "d", "--json")
    assert json.loads(stats.stdout)["subsample_samples"] == manifest["subsample_samples"]


def test_a_config_with_options_and_no_source_keeps_them(tmp_path):
    # a file holding only data.options (a csv delimiter) was taken as the defaults' synthetic source's, and dropped
    raw = write_csv_folder(tmp_path / "semi", ITEMS.replace(",", ";"), INTERACTIONS.replace(",", ";"))
    config = tmp_path / "semi.yaml"
    config.write_text("data:\n  options:\n    delimiter: ';'\n", encoding="utf-8")
    result = invoke("data", "prepare", raw, "--out", tmp_path / "out", "--config", config)
    assert result.exit_code == 0, result.output
    assert "note:" not in flat(result.output)

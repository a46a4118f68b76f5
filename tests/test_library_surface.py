"""What the CLI does is a library call a Python user gets too (issue 12): preparing with the resolved
config, telling a source folder's format, and the config a resumed fit starts from."""

from __future__ import annotations

import pytest
import yaml

from mgfrec.config.load import load_config
from mgfrec.data.prepared import detect_source, prepare_config
from mgfrec.rl.fit import starting_config


def test_prepare_config_writes_the_resolved_config_beside_the_data(tmp_path):
    cfg = load_config(None, ["data.options={n_users: 30, n_items: 40, n_artists: 8, max_length: 6}", "data.seed=3"])
    ds = prepare_config(cfg, tmp_path / "prepared")
    assert ds.counts["users"] == 30
    written = yaml.safe_load((tmp_path / "prepared" / "config.yaml").read_text())
    assert written["data"]["seed"] == 3 and written["data"]["options"]["n_users"] == 30


def test_detect_source_reads_names_and_folders(tmp_path):
    assert detect_source("synthetic") == ("synthetic", None)
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "interactions.csv").write_text("user_id,item_id,timestamp\n")
    assert detect_source(str(tmp_path / "csv")) == ("csv", str(tmp_path / "csv"))
    (tmp_path / "amazon").mkdir()
    (tmp_path / "amazon" / "meta_CDs.jsonl.gz").write_bytes(b"")
    assert detect_source(str(tmp_path / "amazon"))[0] == "amazon2023"
    with pytest.raises(FileNotFoundError, match="cannot tell its format"):
        detect_source(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither a folder nor a data source"):
        detect_source(str(tmp_path / "missing"), known=["csv"])


def test_a_resumed_fit_starts_from_its_saved_config(tmp_path):
    assert starting_config(tmp_path, resume=True) is None  # nothing saved yet
    (tmp_path / "config.yaml").write_text("grpo: {group_size: 3}\n")
    assert starting_config(tmp_path, resume=True) == str(tmp_path / "config.yaml")
    assert starting_config(tmp_path, resume=False) is None
    assert starting_config(tmp_path, resume=True, config="other.yaml") == "other.yaml"  # an explicit file wins

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


@pytest.mark.reliability
def test_one_string_where_a_list_is_wanted_is_refused_naming_the_argument(tmp_path):
    """Python iterated it character by character, without an error: `stop="</answer>"` stopped at every `a`, a
    history "Abbey Road" was ten one-letter titles, `grounding.search("Abbey Road")` ten rows, a grid value "48" the
    cells 4 and 8, an override string "grpo.kl_beta=0.1" the error "override 'g' ..." (review s35)."""
    from pathlib import Path

    from mgfrec.agent.loop import RolloutSample
    from mgfrec.agent.trajectory import Trajectory
    from mgfrec.config.schema import AgentConfig
    from mgfrec.registry import KINDS, Registry
    from mgfrec.rollout.base import check_generate_args
    from mgfrec.text.prompts import AgentPrompts

    said = "give a list of .*, not one string"
    with pytest.raises(TypeError, match=f"stop: {said}"):
        check_generate_args([[1, 2]], 4, 1, 1.0, 1.0, None, "</answer>")
    with pytest.raises(TypeError, match="prompts: give a list of token-id lists"):
        check_generate_args("hello", 4, 1, 1.0, 1.0)
    check_generate_args([[1, 2]], 4, 1, 1.0, 1.0, None, ["</answer>"])
    with pytest.raises(TypeError, match=f"history_titles: {said}"):
        AgentPrompts.from_config(AgentConfig()).messages("Abbey Road")
    with pytest.raises(TypeError, match=f"recall_titles: {said}"):
        AgentPrompts.from_config(AgentConfig()).messages(["Abbey Road"], "Kind of Blue")
    with pytest.raises(TypeError, match=f"RolloutSample.history_titles: {said}"):
        RolloutSample("Abbey Road")
    with pytest.raises(TypeError, match=f"Trajectory.history_titles: {said}"):
        Trajectory([1, 2, 3], "Abbey Road")
    with pytest.raises(TypeError, match="overrides: give a list of 'section.field=value' strings, not one string"):
        load_config(None, "grpo.kl_beta=0.1")
    with pytest.raises(TypeError, match="Registry.add: name must be a non-empty string, got None"):
        Registry({k: {} for k in KINDS}).add("user_agent", None, dict)
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "interactions.csv").write_text("user_id,item_id,timestamp\n")
    assert detect_source(Path(tmp_path / "csv")) == ("csv", str(tmp_path / "csv"))  # a Path: an AttributeError
    with pytest.raises(TypeError, match="SOURCE: give a folder"):
        detect_source(None)


def test_an_argument_of_another_type_is_named_before_any_work(tmp_path):
    """A path where a PreparedDataset is wanted, a source name where a DataConfig is, a dict where SFTOptions are:
    AttributeErrors deep inside, and run_sft left an empty OUT behind (review s35)."""
    from mgfrec.data.prepared import prepare
    from mgfrec.retrievers.fit import fit_baseline
    from mgfrec.rl.sft import run_sft

    with pytest.raises(TypeError, match=r"ds: give a PreparedDataset \(PreparedDataset\(path\)\), got str"):
        fit_baseline("data", load_config(None, ["retriever.model=pop"]), tmp_path / "pop")
    with pytest.raises(TypeError, match="config: give a DataConfig"):
        prepare("synthetic", tmp_path / "data")
    with pytest.raises(TypeError, match="options: give an SFTOptions"):
        run_sft(tmp_path / "data", tmp_path / "sft", load_config(None, []), {"epochs": 1})
    assert not any(tmp_path.iterdir())

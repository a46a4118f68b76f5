"""``mgfrec.demo_settings``: what binds a demo rerun to the folder it reuses."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from csvkit import write_cyclic_csv

from mgfrec.config.load import load_config
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.demo_settings import DemoOptions, check_data_current, check_same_settings, demo_settings


@pytest.mark.reliability
def test_a_rerun_is_refused_once_the_files_its_data_set_was_prepared_from_changed(tmp_path):
    """`mgfrec demo --data FOLDER` reused OUT/data whenever it held a manifest: after the CSV files were edited (a
    log cut to a quarter), the rerun reused every stage and reported on data the folder no longer held."""
    src = write_cyclic_csv(tmp_path / "csv")
    data = DataConfig(source="csv", path=str(src))
    out = tmp_path / "demo"
    prepare(data, out / "data")
    check_data_current(out / "data", data, out)  # unchanged: reused, and the scratch copy is gone
    assert sorted(p.name for p in out.iterdir()) == ["data"]
    log = (src / "interactions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (src / "interactions.csv").write_text("".join(log[:-5]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no longer reads as when .*data was prepared \(its interactions differ\)"):
        check_data_current(out / "data", data, out)
    (src / "items.csv").unlink()
    with pytest.raises(ValueError, match=r"cannot be prepared again to check") as gone:
        check_data_current(out / "data", data, out)
    assert "give another --out (or delete" in str(gone.value)
    assert sorted(p.name for p in out.iterdir()) == ["data"]


@pytest.mark.reliability
def test_agent_settings_bind_a_rerun_only_once_an_agent_stage_has_finished(tmp_path):
    """A folder of baselines alone (`demo --no-agent`) refused a later `demo --fit-steps 5` as "made with other
    settings (--fit-steps)" though no stage it would reuse was made with them; and the refusal named flags that do
    not exist (`--sft-train-samples`, from DemoOptions' field) and cut the list at five (review s33)."""
    first = DemoOptions(agent=False)
    (tmp_path / "demo.json").write_text(json.dumps(demo_settings(load_config(None), first)))
    (tmp_path / "pop").mkdir()
    (tmp_path / "pop" / "run.json").write_text("{}")  # a baseline finished: the settings bind the rerun
    agent = load_config(None, ["grpo.group_size=3", "agent.max_groundings=3"])
    options = replace(first, agent=True, fit_steps=5, sft_train_samples=9, sft_epochs=2, policy="preset:tiny")
    check_same_settings(tmp_path, agent, options)  # no agent stage yet: its settings are free
    # a baseline's still binds, named with the demo's flag for it (review s40)
    with pytest.raises(ValueError, match=r"other settings \(retriever.max_epochs \(--retriever-epochs\)\);"):
        check_same_settings(tmp_path, load_config(None, ["retriever.max_epochs=5"]), options)
    (tmp_path / "mgfrec").mkdir()
    (tmp_path / "mgfrec" / "run.json").write_text("{}")  # an agent stage finished: they bind, each named
    differ = (
        "agent.max_groundings, grpo.group_size, retriever.max_epochs (--retriever-epochs), --fit-steps, --policy, "
        "DemoOptions.sft_epochs, --sft-samples"
    )
    with pytest.raises(ValueError, match=rf"other settings \({re.escape(differ)}\); a rerun reuses"):
        check_same_settings(
            tmp_path,
            load_config(None, ["grpo.group_size=3", "agent.max_groundings=3", "retriever.max_epochs=5"]),
            options,
        )
    # a rerun with eval.greedy=false reused the greedy rollouts while config.yaml recorded false (review s40)
    with pytest.raises(ValueError, match=r"other settings \(eval.greedy\); a rerun reuses"):
        check_same_settings(tmp_path, load_config(None, ["eval.greedy=false"]), first)
    check_same_settings(tmp_path, load_config(None, ["eval.split=valid", "eval.bootstrap_samples=50"]), first)
    older = json.loads((tmp_path / "demo.json").read_text())
    del older["config"]["eval"]  # a demo.json from before eval.greedy was recorded binds nothing of it
    (tmp_path / "demo.json").write_text(json.dumps(older))
    check_same_settings(tmp_path, load_config(None, ["eval.greedy=false"]), first)

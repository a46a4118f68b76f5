"""Fixtures of the serve tests: one tiny agent run whose turns come from the scripted-engine plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from servekit import ENGINE_NAME, SCRIPT_TITLES, ServerProcess, install_plugin

from mgfrec.config.load import load_config, write_resolved
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.models.policy import build_preset, save_policy
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.runs import RunInfo, write_run_info


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> Path:
    return install_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory, minilm):
    """A tiny synthetic data set, a last-title recall run (also a baseline run) and an agent run that uses
    the scripted engine; returns (agent run, baseline run, data set)."""
    root = tmp_path_factory.mktemp("serve")
    options = {"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}
    ds = prepare(DataConfig(source="synthetic", options=options), root / "data")
    cfg = load_config(
        None,
        [
            f"embedding.cache_dir={root / 'emb'}",
            "retriever.model=last-title",
            "retriever.recall_size=5",
            "agent.max_new_tokens_per_turn=96",
            "agent.decoding=free",
        ],
    )  # the scripted turns are free text
    fit_baseline(ds, cfg, root / "run" / "recall")
    model, tokenizer = build_preset("tiny", ds.titles)
    save_policy(model, tokenizer, root / "run" / "policy", preset="tiny")
    write_resolved(cfg, root / "run")
    config = yaml.safe_load((root / "run" / "config.yaml").read_text(encoding="utf-8"))
    config["rollout"]["engine"] = ENGINE_NAME
    config["rollout"]["options"] = {"titles": [ds.titles[i] for i in SCRIPT_TITLES]}
    (root / "run" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    extra = {"policy": "policy", "recall_run": str(root / "run" / "recall")}
    write_run_info(root / "run", RunInfo("agent", "mgfrec-sft", str(ds.root), ds.checksum, extra=extra))
    return root / "run", root / "run" / "recall", ds


@pytest.fixture(scope="session")
def server(serve_run, plugin):
    """``mgfrec serve`` over the agent run, as a subprocess on a free port (one for the whole session)."""
    run, _, _ = serve_run
    proc = ServerProcess(run, plugin, "--feedback-timeout", "120", "--max-batch", "4")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()

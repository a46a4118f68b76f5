"""Fixtures of the serve tests: one tiny agent run whose turns come from the scripted-engine plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from agentkit import tiny_agent_run
from servekit import ENGINE_NAME, SCRIPT_TITLES, ServerProcess, install_plugin


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> Path:
    return install_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory, minilm):
    """A tiny synthetic data set, a last-title recall run (also a baseline run) and an agent run that uses
    the scripted engine; returns (agent run, baseline run, data set)."""
    root = tmp_path_factory.mktemp("serve")
    sets = ["retriever.recall_size=5", "agent.max_new_tokens_per_turn=96", "agent.decoding=free"]
    run, ds, _ = tiny_agent_run(root, sets, method="mgfrec-sft")  # the scripted turns are free text
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["rollout"]["engine"] = ENGINE_NAME
    config["rollout"]["options"] = {"titles": [ds.titles[i] for i in SCRIPT_TITLES]}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return run, root / "last-title", ds


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

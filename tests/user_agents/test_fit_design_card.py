"""The design card's own command, ``mgfrec fit --grounder faiss --user-agent openai`` without ``--init``, does
real work from its first step: under the default constrained decoding the untrained policy grounds, a real
OpenAI-compatible server on 127.0.0.1 gives feedback, and every trajectory answers (reward above -0.5)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from ua_servers import FakeServer, serve
from uakit import KEY_ENV, SECRET

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare

pytestmark = pytest.mark.slow


def test_fit_without_init_grounds_and_asks_the_user_agent_from_step_one(tmp_path):
    prepare(
        DataConfig(source="synthetic", options={"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}),
        tmp_path / "data",
    )
    out = tmp_path / "run"
    with serve(FakeServer("openai", responder=lambda body: "That fits my taste.")) as server:
        args = [
            sys.executable,
            "-m",
            "mgfrec.cli.main",
            "fit",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--grounder",
            "faiss",
            "--user-agent",
            "openai",
            "--max-steps",
            "2",
            "--group-size",
            "2",
            "--valid-samples",
            "2",
            "--no-progress",
            "--set",
            f"user_agent.base_url={server.url}",
            "--set",
            f"user_agent.api_key_env={KEY_ENV}",
            "--set",
            "user_agent.model=test-model",
            "--set",
            "trainer.global_batch_size=2",
            "--set",
            "retriever.recall_size=5",
            "--set",
            "retriever.max_epochs=2",
        ]
        env = {**os.environ, KEY_ENV: SECRET, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.count > 0  # the user agent was asked
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if float(r["step"]) >= 1]
    assert len(rows) == 2
    first = rows[0]
    assert float(first["groundings"]) > 0
    assert float(first["format_valid"]) == 1.0  # constrained: every trajectory answers
    assert float(first["reward/mean"]) > -0.5
    assert SECRET not in done.stdout + done.stderr

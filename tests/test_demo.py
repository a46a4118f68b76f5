"""The demo pipeline end to end on a tiny synthetic data set: prepare, index, baselines, one report."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.config.load import load_config
from mgfrec.demo import run_demo

TINY = [
    "data.options={n_users: 80, n_items: 150, n_artists: 20, max_length: 8}",
    "retriever.max_epochs=2",
    "retriever.patience=1",
]


def test_run_demo_fits_evaluates_and_reuses(tmp_path):
    messages: list[str] = []
    cfg = load_config(None, TINY)
    result = run_demo(cfg, tmp_path, baselines=("pop", "last-title", "sasrec", "hybrid"), say=messages.append)
    report = json.loads(result.written["json"].read_text())
    rows = {row["run"]: row for row in report["rows"]}
    assert set(rows) == {"pop", "last-title", "sasrec", "hybrid"}
    assert rows["last-title"]["reference"] and report["reference"] == "last-title"
    assert all(row["samples"] == rows["pop"]["samples"] > 0 for row in rows.values())
    # hybrid blends the demo's SASRec run rather than training another
    hybrid_state = json.loads((tmp_path / "hybrid" / "hybrid.json").read_text())
    assert hybrid_state["options"]["collaborative_run"] == str(tmp_path / "sasrec")
    # a second run reuses every finished stage
    again: list[str] = []
    run_demo(cfg, tmp_path, baselines=("pop", "last-title", "sasrec", "hybrid"), say=again.append)
    assert sum("reusing" in m for m in again) == 5  # data + four runs


def test_demo_command_prints_the_table(tmp_path):
    args = ["demo", "--out", str(tmp_path), "--retriever-epochs", "1"]
    for item in TINY[:1]:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reference last-title" in result.stdout
    for name in ("pop", "sasrec", "gru4rec", "caser", "hybrid"):
        assert name in result.stdout
    assert (tmp_path / "report_test.md").is_file() and (tmp_path / "config.yaml").is_file()

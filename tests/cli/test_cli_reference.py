"""docs/cli.md is generated from the Typer app; it must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_cli_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_reference_lists_every_command_and_the_contract_flags():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in (
        "sft",
        "fit",
        "evaluate",
        "report",
        "sweep",
        "demo",
        "recommend",
        "baseline fit",
        "figures",
        "serve",
        "chat",
    ):
        assert f"## `mgfrec {command}`" in text, command
    for flag in ("`--grounder`", "`--user-agent`", "`--resume`", "`--grid`", "`--no-feedback`", "`--no-recall`"):
        assert flag in text, flag

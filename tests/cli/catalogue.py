"""A small catalogue prepared through the CLI, for the ``mgfrec index`` tests (slow and fast alike)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from typer.testing import CliRunner

from mgfrec.cli.main import app


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def prepared_catalogue(tmp_path: Path, titles: Sequence[str]) -> Path:
    """``titles`` as a csv catalogue, each item once in a two-user log, prepared with ``mgfrec data prepare``."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{n},{t}\n" for n, t in enumerate(titles)))
    log = "".join(f"u{n % 2},i{n},{n}\n" for n in range(len(titles)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log)
    result = invoke("data", "prepare", raw, "--out", tmp_path / "prepared")
    assert result.exit_code == 0, result.output
    return tmp_path / "prepared"

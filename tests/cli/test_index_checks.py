"""``mgfrec index query`` and ``index build`` refuse what cannot work before embedding the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgfrec.cli.main import app

pytestmark = pytest.mark.reliability

TITLES = ["Abbey Road", "Let It Be", "Kind of Blue", "Blue Train"]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A four-item catalogue prepared with ``mgfrec data prepare`` (csv source); nothing embedded yet."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{n},{t}\n" for n, t in enumerate(TITLES)))
    log = "".join(f"u{n % 2},i{n},{n}\n" for n in range(len(TITLES)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log)
    assert invoke("data", "prepare", raw, "--out", tmp_path / "prepared").exit_code == 0
    return tmp_path / "prepared"


def test_a_k_above_the_catalogue_is_refused_before_embedding_it(data):
    """-k was compared with the catalogue only after every title had been embedded (28 s on a real one)."""
    result = invoke("index", "query", data, "Abbey Road", "-k", "5")
    assert result.exit_code == 2, result.output
    assert flat(result.output) == f"error: -k/--top-k 5: the catalogue of {data} has 4 items; give at most that"
    assert not (data / "embeddings").exists()  # nothing was embedded


def test_a_blank_model_name_is_refused_in_one_line(data, monkeypatch, tmp_path):
    """--model "" resolved to the working folder, every file under it fingerprinted as a model's weights."""
    monkeypatch.chdir(tmp_path)
    result = invoke("index", "build", data, "--model", "")
    assert result.exit_code == 2, result.output
    assert flat(result.output).startswith("error: embedding.model is blank; give a hub id")
    assert "Traceback" not in result.output and not (data / "embeddings").exists()


def test_the_meta_device_is_refused_when_the_config_loads(data):
    """--device meta passed the config check and failed inside torch when the model loaded."""
    result = invoke("index", "build", data, "--device", "meta")
    assert result.exit_code == 2, result.output
    assert "embedding.device: the meta device holds no data, so it cannot embed" in flat(result.output)
    assert not (data / "embeddings").exists()

"""``mgfrec index query`` and ``index build`` refuse what cannot work before embedding the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import flat, invoke, prepared_catalogue

pytestmark = pytest.mark.reliability

TITLES = ["Abbey Road", "Let It Be", "Kind of Blue", "Blue Train"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A four-item catalogue prepared with ``mgfrec data prepare`` (csv source); nothing embedded yet."""
    return prepared_catalogue(tmp_path, TITLES)


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

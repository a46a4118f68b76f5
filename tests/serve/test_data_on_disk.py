"""``mgfrec serve`` answers from the data set it loaded: a split file replaced, or the data folder removed, while
the server runs changes no answer and fails no request (each request read the split files from disk again,
unchecked: a replaced ``test.parquet`` gave another sample's history, target and rank, with 200)."""

from __future__ import annotations

import shutil

import httpx
import pytest
from agentkit import tiny_agent_run
from servekit import ThreadServer

pytestmark = pytest.mark.reliability


def test_a_split_file_replaced_or_removed_while_serving_changes_nothing(tmp_path, minilm):
    from mgfrec.recommend import load_recommender
    from mgfrec.serve.app import create_app

    _, ds, _ = tiny_agent_run(tmp_path)
    user = str(ds.split("test").user_id.iloc[1])
    ask = {"user_id": user, "split": "test", "k": 5}
    with ThreadServer(create_app(load_recommender(tmp_path / "last-title"))) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            before = client.post("/v1/recommend", json=ask).json()
            users = client.get("/v1/users", params={"split": "valid"}).json()
            shutil.copyfile(tmp_path / "data" / "valid.parquet", tmp_path / "data" / "test.parquet")
            assert client.post("/v1/recommend", json=ask).json() == before
            shutil.move(tmp_path / "data", tmp_path / "gone")
            after = client.post("/v1/recommend", json=ask)
            assert after.status_code == 200 and after.json() == before
            assert client.get("/v1/users", params={"split": "valid"}).json() == users
            session = client.post("/v1/sessions", json={**ask, "k": 3})
            assert session.status_code == 201, session.text


def test_a_split_file_changed_before_it_is_first_read_is_refused_not_read(tmp_path):
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import PreparedDataset, prepare

    opts = {"n_users": 30, "n_items": 40, "n_artists": 10, "max_length": 5}
    prepare(DataConfig(source="synthetic", options=opts), tmp_path / "data")
    ds = PreparedDataset(tmp_path / "data")
    assert ds.counts  # opened: the manifest and every checksum checked
    shutil.copyfile(tmp_path / "data" / "valid.parquet", tmp_path / "data" / "test.parquet")
    with pytest.raises(ValueError, match=r"test.parquet: changed since the data set was opened"):
        ds.split("test")
    frame = ds.split("valid")
    frame["extra"] = 1  # a caller's column stays its own
    assert "extra" not in ds.split("valid").columns

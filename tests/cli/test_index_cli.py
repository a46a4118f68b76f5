"""``mgfrec index build`` and ``mgfrec index query`` through the real CLI app, with the real MiniLM model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from catalogue import flat, invoke, prepared_catalogue

pytestmark = pytest.mark.slow

TITLES = ["Abbey Road", "Let It Be", "Abbey Road", "Kind of Blue", "Blue Train", "Christmas with the Rat Pack"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A small catalogue prepared with ``mgfrec data prepare`` (csv source)."""
    return prepared_catalogue(tmp_path, TITLES)


def test_build_embeds_once_then_hits_the_cache(data):
    first = invoke("index", "build", data, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["cache"] == "built" and report["items"] == 6 and report["dim"] == 384
    assert report["distinct_vectors"] == 5 and report["grounder"] == "exact" and not report["approximate"]
    assert Path(report["cache_path"]).parent == data / "embeddings" and Path(report["cache_path"]).is_file()

    second = invoke("index", "build", data, "--grounder", "faiss", "--set", "grounding.options.index=ivf")
    assert second.exit_code == 0, second.output
    text = flat(second.stdout)
    assert "hit in" in text and "faiss, approximate search" in text and "bundled:all-MiniLM-L6-v2" in text


def test_query_grounds_titles_like_the_agent(data):
    result = invoke("index", "query", data, "Abbey Road", "miles davis kind of blue", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.stdout)
    assert [r["item_idx"] for r in first["items"]] == [0, 2]  # duplicated title: both copies, index order
    assert first["items"][0]["item_id"] == "i0" and first["items"][0]["distance"] == pytest.approx(0, abs=1e-5)
    # each distance as its float32 value, not rounded to 6 decimals: two shown equal were out of index order (s39)
    assert second["items"][0]["distance"] == float(str(np.float32(second["items"][0]["distance"])))
    assert any(len(repr(r["distance"]).split(".")[-1]) > 6 for q in (first, second) for r in q["items"])
    assert second["query"] == "miles davis kind of blue" and second["items"][0]["title"] == "Kind of Blue"

    table = invoke("index", "query", data, "rat pack", "--grounder", "hnswlib", "-k", "1")
    assert table.exit_code == 0, table.output
    assert "Christmas with the Rat Pack" in table.stdout and "<ground>rat pack</ground>" in flat(table.stdout)


def test_errors_name_the_flag_or_field(data, tmp_path):
    bad_option = invoke("index", "build", data, "--grounder", "faiss", "--set", "grounding.options.nlst=4")
    assert bad_option.exit_code == 2 and "grounding.options.nlst" in flat(bad_option.output)
    bad_model = invoke("index", "build", data, "--model", "bundled:nope")
    assert bad_model.exit_code == 2 and "embedding.model 'bundled:nope'" in flat(bad_model.output)
    not_prepared = invoke("index", "build", tmp_path / "nowhere")
    assert not_prepared.exit_code == 2 and "not a prepared data set" in flat(not_prepared.output)
    too_many = invoke("index", "query", data, "x", "-k", "99")
    assert too_many.exit_code == 2 and "-k/--top-k 99" in flat(too_many.output)  # the flag the user typed


@pytest.mark.reliability
def test_k_below_one_and_blank_titles_are_refused(data):
    # with a plugin grounder -k -3 returned almost the whole catalogue and -k 0 nothing, exit 0; a blank title
    # grounded to arbitrary items, where the agent's parser and serve refuse it
    negative = invoke("index", "query", data, "x", "-k", "-3")
    assert negative.exit_code == 2 and "-k" in flat(negative.output)
    blank = invoke("index", "query", data, "Abbey Road", "  ")
    assert blank.exit_code == 2 and "title 2 is blank" in flat(blank.output)
    # a zero-width space (or a BOM and a joiner) shows nothing either: it grounded to arbitrary items (review s39)
    unseen = invoke("index", "query", data, "\u200b", "\ufeff\u200d")
    assert unseen.exit_code == 2 and "title 1 is blank" in flat(unseen.output)
    # a variation selector: the embedding model reads it as "", and it grounded to arbitrary items (review s41)
    selector = invoke("index", "query", data, "Abbey Road", "\ufe0f")
    assert selector.exit_code == 2 and "title 2 is blank" in flat(selector.output)


def test_a_grounder_that_returns_indices_outside_the_catalogue_is_named(data):
    from mgfrec.data.prepared import PreparedDataset
    from mgfrec.grounding.engine import Grounding

    class OffByOne:
        def search(self, queries, k):
            return np.full((len(queries), k), 10_000), np.zeros((len(queries), k), dtype=np.float32)

    class Embedder:
        def encode(self, texts, *, query=False, progress=False):
            return np.zeros((len(texts), 4), dtype=np.float32)

    titles = PreparedDataset(data).titles
    engine = Grounding(Embedder(), OffByOne(), titles, np.zeros((len(titles), 4), dtype=np.float32), top_k=2)
    with pytest.raises(ValueError, match=r"grounder \(test_index_cli\..*OffByOne\) returned item indices .* a bug"):
        engine.search(["x"])  # was a pyarrow IndexError traceback in `mgfrec index query`


def test_building_the_index_of_an_empty_data_set_names_it(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text("item_id,title\n")
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n")
    assert invoke("data", "prepare", raw, "--out", tmp_path / "data", "--allow-empty").exit_code == 0
    result = invoke("index", "build", tmp_path / "data")
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        f"error: {tmp_path / 'data'}: the data set holds 0 items (prepared with --allow-empty); nothing to index"
    )


def built_index(tmp_path, titles: list[str]):
    """`index build --json` over a data set of ``titles`` (one item each): the result and its report."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{n},{t}\n" for n, t in enumerate(titles)))
    log = "".join(f"u{n % 2},i{n},{n}\n" for n in range(len(titles)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + log)
    assert invoke("data", "prepare", raw, "--out", tmp_path / "prepared").exit_code == 0
    result = invoke("index", "build", tmp_path / "prepared", "--json")
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


def test_titles_the_embedder_reads_alike_are_counted_and_noted(tmp_path):
    """Emoji-only titles all become MiniLM's [UNK] and share one vector, so they ground and rank as one item; the
    build showed only fewer distinct vectors than items, which duplicated titles explain too."""
    result, report = built_index(tmp_path, ["Abbey Road", "Abbey Road", "🎸🎶🔥", "🎺🎷", "Kind of Blue"])
    assert (report["distinct_vectors"], report["distinct_titles"], report["titles_sharing_a_vector"]) == (3, 4, 2)
    assert "note: 2 distinct titles share their vector with another title" in flat(result.stderr)
    assert "emoji-only titles" in flat(result.stderr)  # MiniLM's reasons, for the built-in embedder
    # it reads a title's first 256 word pieces: long titles alike that far were given the [UNK] reasons (review s35)
    assert "long titles alike up to where the model stops reading" in flat(result.stderr)


def test_titles_that_differ_only_in_case_are_counted_and_named_so(tmp_path):
    """MiniLM lower-cases: "Abbey Road" and "ABBEY ROAD" share a vector, and the note gave only the [UNK] reasons,
    neither of which applied (review s26)."""
    result, report = built_index(tmp_path, ["Abbey Road", "ABBEY ROAD", "🎸🎶🔥", "🎺🎷", "Kind of Blue"])
    assert (report["titles_sharing_a_vector"], report["titles_differing_only_in_case"]) == (4, 2)
    assert "4 distinct titles share" in flat(result.stderr)
    assert "2 of them differ from another only in letter case" in flat(result.stderr)


def test_the_shared_vector_note_gives_minilms_reasons_only_for_the_built_in_embedder():
    from mgfrec.cli.index import _why_alike
    from mgfrec.config.schema import MGFRecConfig

    assert "emoji-only" in _why_alike(MGFRecConfig())
    assert _why_alike(MGFRecConfig.model_validate({"embedding": {"embedder": "hashdim"}})) == ""  # a plugin's own


def test_a_cuda_device_without_cuda_is_refused_before_the_embedding_note(tmp_path):
    # "no cached title vectors ...: embedding 5 titles first" came before "no CUDA device is visible"
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text("item_id,title\ni1,Abbey Road\ni2,Kind of Blue\n")
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\nu2,i2,3\nu2,i1,4\n")
    assert invoke("data", "prepare", raw, "--out", tmp_path / "prepared").exit_code == 0
    result = invoke("index", "build", tmp_path / "prepared", "--set", "embedding.device=cuda")
    assert result.exit_code == 2 and "no CUDA device is visible" in flat(result.output)
    assert "no cached title vectors" not in flat(result.output)

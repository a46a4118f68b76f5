"""A damaged file in a baseline run folder (an empty or garbage model.pt, popularity.npy or options JSON) is one
line naming the run and the remedy, never a traceback or a bare "Aborted."."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mgfrec.cli.main import app

pytestmark = pytest.mark.reliability


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, minilm) -> Path:
    """A small chain data set and one fitted run per model (one epoch where a model trains)."""
    root = tmp_path_factory.mktemp("damaged")
    raw = root / "raw"
    raw.mkdir()
    rows = [f"u{u},i{(u + k) % 12},{k}" for u in range(30) for k in range(6)]
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},Album number {i}\n" for i in range(12)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    assert invoke("data", "prepare", raw, "--out", root / "data").exit_code == 0
    for model in ("pop", "last-title", "sasrec", "hybrid"):
        fit = invoke(
            "baseline", "fit", "--model", model, "--data", root / "data", "--out", root / model, "--max-epochs", 1
        )
        assert fit.exit_code == 0, fit.output
    return root


def damage(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"garbage\x00\xff not a saved file")
    elif how == "truncated":  # a copy cut short: torch's RuntimeError, a traceback before (review s27)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how.startswith("weight="):  # an edited hybrid.json: null and a list were tracebacks, 7.0 was used
        state = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**state, "weight": json.loads(how[len("weight=") :])}), encoding="utf-8")
    else:
        path.write_text(how, encoding="utf-8")


@pytest.mark.parametrize(
    ("model", "file", "how"),
    [
        ("sasrec", "model.pt", "empty"),
        ("sasrec", "model.pt", "garbage"),
        ("pop", "popularity.npy", "empty"),
        ("pop", "popularity.npy", "garbage"),
        ("pop", "popularity.npy", "matrix"),
        ("last-title", "last_title.json", "garbage"),
        ("last-title", "last_title.json", '{"last_n": 0}'),
        ("hybrid", "hybrid.json", '{"weight": 0.5'),
        ("hybrid", "hybrid.json", '{"weight": 0.5}'),
        ("sasrec", "model.pt", "truncated"),
        ("hybrid", "hybrid.json", "[0.5]"),
        ("hybrid", "hybrid.json", "weight=null"),
        ("hybrid", "hybrid.json", 'weight="abc"'),
        ("hybrid", "hybrid.json", "weight=7.0"),
    ],
)
def test_a_damaged_saved_file_is_one_line_naming_the_run(runs, tmp_path, model, file, how):
    run = tmp_path / model
    import shutil

    shutil.copytree(runs / model, run)
    if how == "matrix":
        np.save(run / file, np.ones((2, 2)))
    else:
        damage(run / file, how)
    for stored in run.glob("eval_*.json"):  # evaluate, not a stored result
        stored.unlink()
    result = invoke("evaluate", run, "--bootstrap", 0)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    text = " ".join(result.output.split())
    assert lines[0].startswith("error:") and str(run) in text and "baseline fit --model" in text, result.output
    assert len(result.output.split("error:")) == 2


def test_a_seed_numpy_cannot_take_is_refused_up_front_naming_the_field(runs, tmp_path):
    result = invoke(
        "baseline", "fit", "--model", "sasrec", "--data", runs / "data", "--out", tmp_path / "x", "--seed", -1
    )
    assert result.exit_code == 2 and "retriever.seed" in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_index_query_on_a_catalogue_smaller_than_top_k(runs):
    """The default k (grounding.top_k, 10) failed on any catalogue of fewer items, naming a k the user never typed."""
    small = runs / "small"
    raw = small / "raw"
    raw.mkdir(parents=True)
    (raw / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\nc,Gamma\n")
    (raw / "interactions.csv").write_text(
        "user_id,item_id,timestamp\n" + "".join(f"u{u},{i},{t}\n" for u in range(4) for t, i in enumerate("abca"))
    )
    assert invoke("data", "prepare", raw, "--out", small / "data").exit_code == 0
    found = invoke("index", "query", small / "data", "Alpha", "--json")
    assert found.exit_code == 0, found.output
    assert len(json.loads(found.stdout)[0]["items"]) == 3
    too_many = invoke("index", "query", small / "data", "Alpha", "-k", 5)
    assert too_many.exit_code == 2 and "-k/--top-k 5" in too_many.output, too_many.output

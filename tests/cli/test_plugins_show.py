"""``mgfrec plugins show KIND NAME``: one component, where it comes from, and every option it takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgfrec.grounding.faiss_index import FaissGrounder


def _show(*args: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "mgfrec.cli.main", "plugins", "show", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def _fake_plugin(root: Path, module: str, entry_points: str) -> Path:
    """A plugin package ``mgfrec-fake`` 1.0 in ``root``: its module's source and its entry points."""
    dist = root / "mgfrec_fake-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mgfrec-fake\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    (root / "fakeplug.py").write_text(module)
    return root


def test_a_built_in_shows_each_option_with_its_type_default_bounds_and_meaning():
    proc = _show("grounder", "faiss", "--json")
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout)
    assert card["target"] == "mgfrec.grounding.faiss_index:FaissGrounder" and card["origin"].startswith("mgfrec ")
    assert card["options_at"] == "grounding.options"
    rows = {row["name"]: row for row in card["options"]}
    assert list(rows) == list(FaissGrounder.Options.model_fields)
    assert rows["M"] == {
        "name": "M",
        "type": "int",
        "default": "32",
        "bounds": ">= 2, <= 65,536",
        "meaning": "hnsw: links per node",
    }
    assert rows["index"]["type"] == '"flat" | "ivf" | "hnsw"' and rows["nlist"]["default"] == "null"
    table = _show("grounder", "faiss")
    assert table.returncode == 0, table.stderr
    assert "options, set as grounding.options.FIELD" in table.stdout and "hnsw: links per node" in table.stdout


def test_a_component_without_options_says_so():
    proc = _show("reward", "ndcg")
    assert proc.returncode == 0, proc.stderr
    assert "It takes no options (grpo.rewards.ndcg.options must be empty)." in proc.stdout
    assert json.loads(_show("user_agent", "none", "--json").stdout)["options"] is None


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("grounder", "nope"), "error: unknown grounder 'nope'. Available: exact, faiss, hnswlib."),
        (("grounders", "exact"), "error: unknown component kind 'grounders'"),
    ],
)
def test_an_unknown_kind_or_name_is_one_line(args, line):
    proc = _show(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(line) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.reliability
def test_a_plugins_options_are_shown_as_text_and_a_bad_options_model_is_one_line(tmp_path):
    """A plugin's docstring and defaults are its own text: shown, never acted on; an ``Options`` that is not a
    pydantic model, or a module that fails to import, is one line naming the component."""
    module = (
        "from pydantic import BaseModel, Field\n"
        "class Good:\n"
        "    '''Nearest by \\x1b[31mred\\x1b[0m distance.'''\n"
        "    class Options(BaseModel):\n"
        "        tag: str = Field('\\x1b]0;T\\x07', description='a tag')\n"
        "class Bad:\n"
        "    Options = dict\n"
        "class Thing:\n"
        "    pass\n"
        "class Odd:\n"
        "    class Options(BaseModel):\n"
        "        a: int = 1\n"
        "        b: int = Field(default_factory=lambda data: data['a'] + 1)\n"
        "        c: object = Field(default_factory=Thing)\n"
    )
    entry_points = (
        "[mgfrec.grounder]\ngood = fakeplug:Good\nbad = fakeplug:Bad\nbroken = nomodule:X\nodd = fakeplug:Odd\n"
    )
    root = _fake_plugin(tmp_path, module, entry_points)
    good = _show("grounder", "good", path=root)
    assert good.returncode == 0, good.stderr
    assert "\x1b" not in good.stdout and "\x07" not in good.stdout, good.stdout
    assert "(from mgfrec-fake 1.0)" in good.stdout and "Nearest by \\x1b[31mred" in good.stdout
    card = json.loads(_show("grounder", "good", "--json", path=root).stdout)
    assert card["options"][0]["default"] == json.dumps("\x1b]0;T\x07")  # JSON escapes it
    # a factory that reads the other options was a traceback, a default JSON cannot hold a refusal (s42's review)
    odd = _show("grounder", "odd", "--json", path=root)
    assert odd.returncode == 0, odd.stderr
    defaults = {row["name"]: row["default"] for row in json.loads(odd.stdout)["options"]}
    assert defaults["b"] == "(computed from the other options)" and "Thing object at" in defaults["c"], defaults
    for name, said in [("bad", "Options must be a pydantic BaseModel"), ("broken", "nomodule")]:
        proc = _show("grounder", name, path=root)
        assert proc.returncode == 2 and proc.stdout == "", proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1 and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr

"""The one registry: discovery through entry points, duplicates, unknown names, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from mgfrec.registry import KINDS, Entry, Registry, RegistryError, component_options


def test_builtins_come_from_entry_points():
    reg = Registry.discover()
    for kind, name in [("data_source", "csv"), ("grounder", "exact"), ("retriever", "sasrec"), ("reward", "ndcg")]:
        entry = reg.get(kind, name)
        assert entry.origin.startswith("mgfrec ")
        eps = {ep.name: ep.value for ep in metadata.entry_points(group=f"mgfrec.{kind}")}
        assert eps[name] == entry.target


def test_every_builtin_target_imports():
    # A typo in pyproject's entry points would only show when a user picks the component.
    reg = Registry.discover()
    for entry in reg.entries():
        if entry.origin.startswith("mgfrec "):
            assert entry.load() is not None, entry


def test_unknown_name_lists_known_and_closest():
    reg = Registry.discover()
    with pytest.raises(RegistryError) as err:
        reg.get("grounder", "fiass")
    message = str(err.value)
    assert "unknown grounder 'fiass'" in message
    assert "exact" in message and "Did you mean 'faiss'?" in message


def test_unknown_kind():
    with pytest.raises(RegistryError, match="kinds are"):
        Registry.discover().names("grounders")


def test_duplicate_name_names_both_origins():
    reg = Registry({k: {} for k in KINDS})
    reg.add("reward", "mine", dict)
    with pytest.raises(RegistryError) as err:
        reg.add("reward", "mine", list)
    assert "duplicate reward name 'mine'" in str(err.value)
    assert "builtins:dict" in str(err.value) and "builtins:list" in str(err.value)


def test_duplicate_from_a_second_distribution(tmp_path):
    """A second installed distribution claiming a built-in's name is refused at discovery, naming both."""
    dist = tmp_path / "mgfrec_clash-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mgfrec-clash\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mgfrec.grounder]\nexact = clash.module:Exact\n")
    code = "from mgfrec.registry import Registry; Registry.discover()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""}
    )
    assert proc.returncode != 0
    assert "duplicate grounder name 'exact'" in proc.stderr
    assert "mgfrec-clash 1.0" in proc.stderr and "mgfrec 0.1.0" in proc.stderr


def test_missing_import_gives_install_hint(tmp_path, monkeypatch):
    entry = Entry(kind="grounder", name="ghost", target="no_such_module_xyz:Thing", origin="somepkg 1.0")
    with pytest.raises(RegistryError, match="module that does not exist"):
        entry.load()
    # a component whose module imports a library that is not installed
    (tmp_path / "needs_missing_lib.py").write_text("import not_installed_lib_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = Entry(kind="grounder", name="ghost", target="needs_missing_lib:Thing", origin="somepkg 1.0")
    with pytest.raises(RegistryError, match=r"needs the package 'not_installed_lib_xyz'.*pip install"):
        entry.load()


def test_component_options_errors_name_the_path():
    from mgfrec.rewards.format import FormatReward

    assert component_options(FormatReward, {"penalty": -1.0}, "grpo.reward_options.format").penalty == -1.0
    with pytest.raises(ValueError, match=r"grpo.reward_options.format.penalti"):
        component_options(FormatReward, {"penalti": -1.0}, "grpo.reward_options.format")
    with pytest.raises(ValueError, match="takes no options"):
        component_options(object, {"x": 1}, "grounding.options")


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mgfrec.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'faiss', 'vllm', 'openai', 'anthropic', 'deepspeed', 'sentence_transformers',"
        " 'transformers', 'lightning', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"mgfrec --help imported {proc.stdout.strip()}"

"""The one registry: discovery through entry points, duplicates, unknown names, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, Field, field_validator

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
    # a built-in's name taken in-process: nothing to uninstall, no entry point to rename (review s39)
    with pytest.raises(RegistryError) as taken:
        Registry.discover().add("grounder", "exact", list)
    assert "A plugin cannot take a built-in's name: register it under another name." in str(taken.value)


def fake_dist(root: Path, name: str, entry_points: str) -> Path:
    """A fake installed distribution ``name`` 1.0 in ``root`` (put it on PYTHONPATH) with these entry points."""
    dist = root / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    return root


def test_duplicate_from_a_second_distribution(tmp_path):
    """A second installed distribution claiming a built-in's name is refused at discovery, naming both."""
    fake_dist(tmp_path, "mgfrec-clash", "[mgfrec.grounder]\nexact = clash.module:Exact\n")
    code = "from mgfrec.registry import Registry; Registry.discover()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""}
    )
    assert proc.returncode != 0
    assert "duplicate grounder name 'exact'" in proc.stderr
    assert "mgfrec-clash 1.0" in proc.stderr and "mgfrec 0.1.0" in proc.stderr
    # not "uninstall one of them", which read as uninstalling mgfrec (review s39)
    said = " ".join(proc.stderr.split())
    assert "A plugin cannot take a built-in's name: rename its entry point, or uninstall mgfrec-clash." in said, said


@pytest.mark.reliability
def test_plugins_list_shows_a_clash_instead_of_failing_on_it(tmp_path):
    # the tool for checking plugins failed whole (exit 2, nothing listed) when two packages claimed one name
    import json as _json
    import os

    fake_dist(tmp_path, "mgfrec-clash", "[mgfrec.grounder]\nexact = clash.module:Exact\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", "--kind", "grounder", "--json"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    listed = _json.loads(proc.stdout)["grounder"]
    # both claimants, in the order the path finds them (an egg-info in the working folder comes first)
    assert sorted(e["origin"].split(" ")[0] for e in listed if e["name"] == "exact") == ["mgfrec", "mgfrec-clash"]
    assert proc.returncode == 2 and "duplicate grounder name 'exact'" in proc.stderr and "Traceback" not in proc.stderr
    bad = subprocess.run([*command[:-3], "--kind", "grondr"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown component kind 'grondr'" in bad.stderr


@pytest.mark.reliability
def test_an_entry_points_file_that_cannot_be_parsed_is_one_line_naming_it(tmp_path):
    """A line without '=' in any installed package's entry_points.txt was a TypeError traceback from every command,
    even --help (from pydantic's plugin discovery, then from mgfrec's own). Another package's damaged file is named
    once and the commands run; a plugin package's (it names an mgfrec group) is refused in one line naming it."""
    import json
    import os

    other, plugin = tmp_path / "other", tmp_path / "plugin"
    fake_dist(other, "broken-other", "[console_scripts]\nthis line has no equals sign\n")
    fake_dist(plugin, "mgfrec-broken", "[mgfrec.user_agent]\nthis line has no equals sign\n")
    command = [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", "--kind", "grounder", "--json"]
    for root, code in ((other, 0), (plugin, 2)):
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        where = str(next(root.glob("*.dist-info")) / "entry_points.txt")
        assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.startswith(f"note: {where} cannot be read (TypeError") and "pydantic plugins" in proc.stderr
        if code == 0:
            assert "exact" in {e["name"] for e in json.loads(proc.stdout)["grounder"]}
        else:
            assert f"error: {where}: cannot be read" in proc.stderr
            assert "mgfrec-broken 1.0 are not loaded" in proc.stderr
        # torch reads the same files for its device backends when imported: every command that loads it (evaluate,
        # fit) was a TypeError traceback after the note (review s34)
        torch = subprocess.run(
            [sys.executable, "-c", "import mgfrec.cli.main, torch; print(torch.ones(1).sum().item())"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert torch.returncode == 0 and torch.stdout.strip() == "1.0", torch.stderr[-2000:]


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
    from mgfrec.data.sources.synthetic import SyntheticSource

    with pytest.raises(ValueError, match=r"^invalid options: data.options: Value error, n_artists \(150\)"):
        component_options(SyntheticSource, {"n_items": 120}, "data.options")  # was "data.options.: ..."


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_component_options_refuse_numbers_that_are_not_finite(value):
    """Only the config's own sections refused .inf and .nan: `retriever.options.init_std=.inf` ran and then stopped
    naming the learning rate; a user agent's backoff_s of .inf waited forever (review s40). A component may opt in."""
    from mgfrec.retrievers.sasrec import SASRecRetriever as SASRec

    with pytest.raises(ValueError, match=r"retriever.options.init_std: must be a finite number"):
        component_options(SASRec, {"init_std": value}, "retriever.options")

    class Lenient:
        class Options(BaseModel):
            model_config = {"extra": "forbid", "allow_inf_nan": True}
            limit: float = 1.0

    assert component_options(Lenient, {"limit": float("inf")}, "x.options").limit == float("inf")

    class OneField:
        class Options(BaseModel):
            model_config = {"extra": "forbid"}
            limit: float = Field(1.0, allow_inf_nan=True)  # the field opts in alone (review s40, of this fix)
            other: float = 1.0

    assert component_options(OneField, {"limit": float("inf")}, "x.options").limit == float("inf")
    with pytest.raises(ValueError, match=r"x.options.other: must be a finite number"):
        component_options(OneField, {"other": float("inf")}, "x.options")


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


class _Opts(BaseModel):
    k: int = Field(1, ge=1)


class _WithOptions:
    Options = _Opts

    def __init__(self, *args):
        self.args = args

    @classmethod
    def fit(cls, *args):
        return ("fit", args)


class _NoOptions:
    def __init__(self, *args):
        self.args = args


def _fresh() -> Registry:
    return Registry({k: {} for k in KINDS})


def test_build_validates_options_and_passes_dependencies_first():
    reg = _fresh()
    reg.add("grounder", "with", _WithOptions)
    reg.add("grounder", "without", _NoOptions)
    built = reg.build("grounder", "with", {"k": 3}, "vectors")
    assert built.args[0] == "vectors" and built.args[1] == _Opts(k=3)
    assert reg.build("grounder", "without", {}, "vectors").args == ("vectors",)  # no Options: no options argument
    with pytest.raises(ValueError, match=r"grounding.options.k"):
        reg.build("grounder", "with", {"k": 0}, "vectors")
    with pytest.raises(ValueError, match="takes no options"):
        reg.build("grounder", "without", {"k": 1}, "vectors")
    # user agents take the options argument even without a model, then their context
    reg.add("user_agent", "plain", _NoOptions)
    assert reg.build("user_agent", "plain", {}, "cfg", after=("ctx",)).args == ("cfg", None, "ctx")
    # a class method instead of the class, and the reward's option path names the reward
    reg.add("retriever", "r", _WithOptions)
    assert reg.build("retriever", "r", None, "ds", method="fit") == ("fit", ("ds", _Opts()))
    reg.add("reward", "hit", _WithOptions)
    with pytest.raises(ValueError, match=r"grpo.rewards.hit.options.k"):
        reg.build("reward", "hit", {"k": -1})


class _Raises:
    def __init__(self, *args):
        raise RuntimeError("licence server down")


class _BadOptions(BaseModel):
    n: int = 1

    @field_validator("n")
    @classmethod
    def _type_error(cls, value: int) -> int:
        raise TypeError("a plugin bug")


class _WithBadOptions:
    Options = _BadOptions


@pytest.mark.reliability
def test_a_plugin_that_breaks_its_contract_is_one_registry_error_naming_it():
    # each was a traceback: a grounder under the retriever kind (no 'fit'), an entry point naming a module,
    # a constructor that raises, an Options validator that raises something other than ValueError
    import types

    reg = _fresh()
    reg.add("retriever", "grounder-as-retriever", _NoOptions)
    with pytest.raises(RegistryError, match=r"retriever 'grounder-as-retriever' .* has no 'fit' method"):
        reg.build("retriever", "grounder-as-retriever", None, "ds", method="fit")
    reg.add("grounder", "module", types.ModuleType("rvplug.grounders"))
    with pytest.raises(RegistryError, match=r"grounder 'module' .* is a module, not a class or function"):
        reg.build("grounder", "module", None, "vectors")
    reg.add("grounder", "raises", _Raises)
    with pytest.raises(RegistryError, match=r"grounder 'raises' .* failed: RuntimeError: licence server down"):
        reg.build("grounder", "raises", None, "vectors")
    reg.add("grounder", "bad-options", _WithBadOptions)
    with pytest.raises(RegistryError, match=r"grounder 'bad-options' .* failed: TypeError: a plugin bug"):
        reg.build("grounder", "bad-options", {"n": 2}, "vectors")
    reg.add("grounder", "with", _WithOptions)
    with pytest.raises(ValueError, match=r"grounding.options.k"):  # a user's bad value stays the user's error
        reg.build("grounder", "with", {"k": 0}, "vectors")


class _Refuses:
    def __init__(self, *args):
        raise ValueError("index file missing")


class _MissingFile:
    def __init__(self, *args):
        raise FileNotFoundError(2, "No such file or directory", "/srv/index.bin")


@pytest.mark.reliability
def test_a_plugins_own_user_error_names_the_plugin_and_is_still_a_value_error():
    """It printed "error: index file missing" with nothing saying which installed package said so."""
    from mgfrec.registry import PluginError

    reg = _fresh()
    reg.add("grounder", "refuses", _Refuses)
    reg.add("grounder", "no-file", _MissingFile)
    with pytest.raises(PluginError, match=r"^grounder 'refuses' \(.*_Refuses, from python:.*\): index file missing$"):
        reg.build("grounder", "refuses", None, "vectors")
    with pytest.raises(ValueError, match=r"grounder 'no-file' .*: /srv/index.bin: No such file or directory$"):
        reg.build("grounder", "no-file", None, "vectors")
    reg.add("grounder", "builtin-like", _WithOptions)
    with pytest.raises(ValueError, match=r"^invalid options"):  # mgfrec's own option check is not the plugin's
        reg.build("grounder", "builtin-like", {"k": 0}, "vectors")


def test_every_kind_has_a_build_rule():
    from mgfrec.registry import KIND_SPECS

    assert set(KIND_SPECS) == set(KINDS)


def test_an_injected_registry_reaches_nested_builds():
    """A registry given to an entry point (``reg=``) is the one every build below it uses, even where the
    argument is not passed on (the bug the CHANGELOG records fixing once)."""
    from mgfrec.config.schema import GroundingConfig
    from mgfrec.grounding.engine import build_grounder
    from mgfrec.registry import registry, use_registry, with_registry

    reg = _fresh()
    reg.add("grounder", "exact", _NoOptions)  # shadows the built-in name, only in this registry

    @with_registry
    def entry_point(reg=None):
        return build_grounder(np.eye(2, dtype=np.float32), GroundingConfig())  # no reg passed on

    assert isinstance(entry_point(reg=reg), _NoOptions)
    assert isinstance(entry_point(reg), _NoOptions)
    assert not isinstance(entry_point(), _NoOptions)  # the process-wide registry again
    with use_registry(reg):
        assert registry() is reg
        with use_registry(None):
            assert registry() is reg
    assert registry() is not reg


def test_reward_options_sit_beside_the_name_and_the_old_key_still_reads():
    from mgfrec.config.load import load_config
    from mgfrec.config.schema import ConfigDeprecationWarning
    from mgfrec.rewards.compose import build_reward

    new = load_config(None, ["grpo.rewards=[ndcg, {name: format, options: {penalty: -1.0}}]"])
    assert new.grpo.reward_names == ["ndcg", "format"]
    assert new.model_dump(mode="json")["grpo"]["rewards"] == ["ndcg", {"name": "format", "options": {"penalty": -1.0}}]
    with pytest.warns(ConfigDeprecationWarning, match=r"grpo.reward_options is deprecated.*beside its name"):
        old = load_config(None, ["grpo.rewards=[ndcg,format]", "grpo.reward_options={format: {penalty: -1.0}}"])
    assert old == new
    assert build_reward(old.grpo.rewards).parts[1][1].penalty == -1.0
    # the empty mapping every earlier run's config.yaml holds reads silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(None, ["grpo.reward_options={}"]).grpo.reward_names == ["ndcg", "format"]


def _plugin_site(root, module: str, source: str, target: str, kind: str = "grounder"):
    """A fake installed distribution ``mgfrec-broken 1.0`` registering ``broken`` -> ``target``."""
    fake_dist(root, "mgfrec-broken", f"[mgfrec.{kind}]\nbroken = {target}\n")
    (root / f"{module}.py").write_text(source)
    return root


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        ("raise RuntimeError('no licence server')\n", "raising:Grounder", ["RuntimeError: no licence server"]),
        ("class Grounder(:\n    pass\n", "raising:Grounder", ["SyntaxError"]),
        ("class Grounder:\n    pass\n", "raising:Grounderr", ["no attribute 'Grounderr'"]),
        ("import not_installed_dep_xyz\n", "raising:Grounder", ["needs the package 'not_installed_dep_xyz'"]),
        # each of these was told "it needs the package ...", naming an installed library, the plugin's own
        # module, or '' (note s31)
        ("import not_installed_dep_xyz.sub\n", "raising:Grounder", ["needs the package 'not_installed_dep_xyz'"]),
        ("from json import no_such_name\n", "raising:Grounder", ["'json' is installed but does not provide"]),
        ("import json.no_such_sub\n", "raising:Grounder", ["'json' is installed but has no module 'json.no_such_sub'"]),
        ("import raising.helpers\n", "raising:Grounder", ["lacks its own module 'raising.helpers'"]),
        ("from raising import helper\n", "raising:Grounder", ["lacks a name it imports from itself"]),
        ("raise ImportError('something went wrong')\n", "raising:Grounder", ["could not load a library it needs"]),
        # a compiled extension that does not load names itself, and read as "another version" (review s32)
        (
            "raise ImportError('libcudart.so.12: cannot open shared object file', name='ext', path='/x/ext.so')\n",
            "raising:Grounder",
            ["a compiled library the providing package needs could not be loaded"],
        ),
    ],
)
def test_a_broken_plugin_is_one_registry_error_naming_its_package(tmp_path, monkeypatch, source, target, words):
    # Before, anything but an ImportError escaped as a traceback, and a missing dependency of a plugin got
    # mgfrec's own extras as its hint.
    module = f"raising_{tmp_path.name.replace('-', '_')}"  # a fresh module per case (sys.modules caches)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{module}.py").write_text(source.replace("raising", module))
    target = target.replace("raising", module)
    entry = Entry(kind="grounder", name="broken", target=target, origin="mgfrec-broken 1.0")
    with pytest.raises(RegistryError) as err:
        entry.load()
    message = str(err.value)
    assert "grounder 'broken'" in message and "mgfrec-broken 1.0" in message, message
    for word in words:
        assert word.replace("raising", module) in message, message
    assert "mgfrec[faiss]" not in message  # a plugin's missing dependency is the plugin's to install


def test_an_old_style_entry_point_with_extras_loads(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "extras_mod.py").write_text("class Grounder:\n    pass\n")
    entry = Entry(kind="grounder", name="x", target="extras_mod:Grounder [fast]", origin="p 1.0")
    assert entry.load().__name__ == "Grounder"


def test_a_broken_plugin_stops_the_cli_in_one_line(tmp_path):
    site = _plugin_site(tmp_path / "site", "raising", "raise RuntimeError('no licence server')\n", "raising:G")
    data = tmp_path / "data"
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    prepare(DataConfig(source="synthetic", options={"n_users": 20, "n_items": 40, "n_artists": 8}), data)
    proc = subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", "index", "build", str(data), "--grounder", "broken"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(site)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    assert "grounder 'broken'" in proc.stderr and "no licence server" in proc.stderr


def test_options_that_are_not_a_pydantic_model_are_one_error():
    from dataclasses import dataclass

    @dataclass
    class Opts:
        k: int = 1

    class Comp:
        Options = Opts

    # named with its module (a plugin's names its package): "Comp.Options" alone did not say whose
    with pytest.raises(ValueError, match=r"grounding.options: test_registry\.test_options.*Comp.Options must be a"):
        component_options(Comp, {}, "grounding.options")


def test_every_builtin_takes_its_default_options():
    # check_components skips importing a built-in whose options are empty: that is only right while each
    # built-in validates {} (no required option).
    reg = Registry.discover()
    for entry in reg.entries():
        if entry.origin.startswith("mgfrec "):
            component_options(entry.load(), {}, f"{entry.kind}.options")


def test_a_plugins_required_option_is_asked_for_when_the_config_loads():
    from mgfrec.config.components import check_components
    from mgfrec.config.load import load_config

    class Opts(BaseModel):
        index_path: str

    class Needy:
        Options = Opts

    reg = Registry.discover()
    reg.add("grounder", "needy", Needy)
    cfg = load_config(None, ["grounding.grounder=needy"])
    with pytest.raises(ValueError, match=r"grounding.options.index_path: Field required"):
        check_components(cfg, reg)


_SEARCH_FAILS = """
import numpy as np


class Grounder:
    approximate = False

    def __init__(self, vectors):
        self.n = len(vectors)

    def search(self, queries, k):
        return self._lookup(queries)

    def _lookup(self, queries):
        raise {error}
"""


def _query_with_broken_grounder(tmp_path, module: str, source: str):
    """`mgfrec index query --grounder broken` in a subprocess, ``broken`` being ``module:Grounder`` of ``source``
    installed as the package mgfrec-broken 1.0: (the process, the query's arguments, its environment)."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    site = _plugin_site(tmp_path / "site", module, source, f"{module}:Grounder")
    data = tmp_path / "data"
    prepare(DataConfig(source="synthetic", options={"n_users": 20, "n_items": 40, "n_artists": 8}), data)
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    query = ["index", "query", str(data), "a title", "--grounder", "broken"]
    proc = subprocess.run([sys.executable, "-m", "mgfrec.cli.main", *query], capture_output=True, text=True, env=env)
    return proc, query, env


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        # a plugin's own bug at run time: it was a traceback through mgfrec with no word of which package
        ("TypeError('a plugin bug')", 1, ["failed: TypeError: a plugin bug", "'mgfrec --verbose ...' shows"]),
        # a LookupError other than KeyError is no user error of the CLI's: its type is kept (it was dropped)
        ("IndexError('list index out of range')", 1, ["failed: IndexError: list index out of range"]),
        # a plugin's user error at run time: it was its bare message ("error: index shard 3 is missing")
        ("ValueError('index shard 3 is missing')", 2, [": index shard 3 is missing"]),
        # a bare key ({}["missing"]) was printed as "failed: missing", which did not say a key was missing
        ("KeyError('missing')", 2, ["failed: KeyError: 'missing'"]),
    ],
)
def test_a_plugin_failing_at_run_time_is_one_line_naming_it(tmp_path, error, code, words):
    proc, query, env = _query_with_broken_grounder(tmp_path, "searchfails", _SEARCH_FAILS.format(error=error))
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    assert "grounder 'broken' (searchfails:Grounder, from mgfrec-broken 1.0)" in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    if code == 1:  # its author asks for the traceback, and gets it
        verbose = [sys.executable, "-m", "mgfrec.cli.main", "--verbose", *query]
        proc = subprocess.run(verbose, capture_output=True, text=True, env=env)
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "in _lookup" in proc.stderr, proc.stderr


@pytest.mark.reliability
def test_a_plugin_without_a_method_mgfrec_calls_is_one_line_naming_it(tmp_path):
    """A grounder without search() was a 64-line AttributeError traceback naming no component (review s27)."""
    source = "class Grounder:\n    approximate = False\n\n    def __init__(self, vectors):\n        self.n = 1\n"
    proc, _, _ = _query_with_broken_grounder(tmp_path, "nosearch", source)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "grounder 'broken' (nosearch:Grounder, from mgfrec-broken 1.0) has no search() method" in said, said


def test_a_library_a_plugin_asks_for_is_not_called_its_failure(tmp_path, monkeypatch):
    """An engine's check_available() raising MissingExtraError ("pip install fancylib") was printed as "... failed:
    MissingExtraError: ...", which read as a crash of the plugin (review s27)."""
    from mgfrec.registry import MissingExtraError, plugin_failure, use_registry

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "needslib.py").write_text(
        "from mgfrec.registry import MissingExtraError\n\n\nclass Engine:\n    @classmethod\n"
        "    def check_available(cls):\n        raise MissingExtraError('needs fancylib: pip install fancylib')\n"
    )
    import needslib

    reg = _fresh()
    reg.add("rollout_engine", "needslib", needslib.Engine)
    with use_registry(reg):
        with pytest.raises(MissingExtraError) as raised:
            needslib.Engine.check_available()
        said = plugin_failure(raised.value)
    assert said is not None and said.endswith("): needs fancylib: pip install fancylib") and "failed" not in said


def test_blame_names_the_innermost_plugin_on_the_traceback_and_nobody_else(tmp_path, monkeypatch):
    from mgfrec.registry import blame, use_registry

    monkeypatch.syspath_prepend(str(tmp_path))
    pkg = tmp_path / "blamepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "grounder.py").write_text(
        "from blamepkg import util\n\n\nclass G:\n    def search(self, q, k):\n        return util.helper(q)\n"
    )
    (pkg / "util.py").write_text("def helper(q):\n    if q is None:\n        raise RuntimeError('deep')\n    q()\n")
    (pkg / "reward.py").write_text("class R:\n    def __call__(self, fails):\n        fails()\n")
    import blamepkg.grounder
    import blamepkg.reward

    reg = _fresh()
    reg.add("grounder", "g", blamepkg.grounder.G)
    reg.add("reward", "r", blamepkg.reward.R)
    with use_registry(reg):
        with pytest.raises(RuntimeError) as raised:
            blamepkg.grounder.G().search(None, 1)
        # the innermost frame is in the package's util, which no entry names: the package's entry is named
        assert blame(raised.value).name == "g"
        with pytest.raises(TypeError) as nested:  # the reward calls the grounder: the innermost is blamed
            blamepkg.reward.R()(lambda: blamepkg.grounder.G().search(lambda: blamepkg.reward.R()(None), 1))
        assert blame(nested.value).name == "r"
        # one module, two components, the failing one registered second and failing in a module-level helper:
        # the first component of the module was named
        (pkg / "two.py").write_text(
            "class A:\n    pass\n\n\ndef _helper():\n    raise OSError('gone')\n\n\n"
            "class B:\n    def load(self):\n        _helper()\n"
        )
        import blamepkg.two

        reg.add("data_source", "a", blamepkg.two.A)
        reg.add("data_source", "b", blamepkg.two.B)
        with pytest.raises(OSError) as second:
            blamepkg.two.B().load()
        assert blame(second.value).name == "b"
        # a method inherited from a base class: its frame is named for the base, which another entry of the
        # module shares (or is itself registered); the component is the class of `self` (note s31)
        (pkg / "inherit.py").write_text(
            "class Base:\n    def search(self, q, k):\n        raise RuntimeError('in the base')\n\n"
            "    @classmethod\n    def build(cls):\n        raise RuntimeError('in the classmethod')\n\n\n"
            "class First(Base):\n    pass\n\n\nclass Second(Base):\n    pass\n"
        )
        import blamepkg.inherit

        reg.add("grounder", "base", blamepkg.inherit.Base)
        reg.add("grounder", "first", blamepkg.inherit.First)
        reg.add("grounder", "second", blamepkg.inherit.Second)
        with pytest.raises(RuntimeError) as inherited:
            blamepkg.inherit.Second().search(None, 1)
        assert blame(inherited.value).name == "second"
        with pytest.raises(RuntimeError) as built:
            blamepkg.inherit.Second.build()
        assert blame(built.value).name == "second"
        # a library's own method run on a plugin's object (torch's load_state_dict on a plugin nn.Module) is not
        # the plugin's failure: the old rule blamed nobody, and so does this one (review s32)
        import json

        (pkg / "lib_user.py").write_text("import json\n\n\nclass Decoder(json.JSONDecoder):\n    pass\n")
        import blamepkg.lib_user

        reg.add("grounder", "decoder", blamepkg.lib_user.Decoder)
        with pytest.raises(json.JSONDecodeError) as in_library:
            blamepkg.lib_user.Decoder().decode("{")  # raised in json's own frames, whose self is the plugin's
        assert blame(in_library.value) is None
        with pytest.raises(ValueError) as ours:
            component_options(_WithOptions, {"k": 0}, "where")  # raised in mgfrec alone
        assert blame(ours.value) is None
    with use_registry(_fresh()):
        assert blame(raised.value) is None  # no plugin installed: nobody to blame


@pytest.mark.reliability
def test_plugins_list_shows_a_packages_escape_sequences_as_text(tmp_path):
    """The entry-point name, package and target reached the terminal raw: a name could recolour it or retitle it."""
    import os

    fake_dist(tmp_path, "mgfrec-esc", "[mgfrec.grounder]\nevil\x1b[31mRED = esc.mod:G\x1b]0;T\x07\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    command = [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", "--kind", "grounder"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, proc.stdout
    assert "evil\\x1b[31mRED" in proc.stdout, proc.stdout


def test_a_method_with_another_signature_is_one_error_naming_the_component():
    """A plugin's ``search(self, queries)`` (no ``k``) or ``__call__(self, rank, n)`` failed at mgfrec's call with
    a TypeError whose traceback held no frame of the plugin: a full traceback that read as mgfrec's bug."""
    from mgfrec.registry import call_component

    class NoK:
        def search(self, queries):
            return queries

    class Inside:
        def search(self, queries, k):
            return len(k)  # a TypeError inside the method: its own traceback names it, left as it is

    with pytest.raises(ValueError, match=r"NoK.search cannot be called as mgfrec calls it \(.*takes 2 positional"):
        call_component(NoK(), "search", [1], 3)
    with pytest.raises(TypeError, match="has no len"):
        call_component(Inside(), "search", [1], 3)
    assert call_component(Inside(), "search", [1], [1, 2]) == 2
    # under a decorator (a retriever's `scores` under @torch.no_grad()) the signature's TypeError is raised a frame
    # below the call, and was taken for one raised inside (review s34); and behind recommend's lock wrappers
    import threading

    import torch

    from mgfrec.recommend import Locked, _LockedEngine

    class Decorated:
        @torch.no_grad()
        def scores(self, histories, mask):
            return histories

    class NoSeed:
        tokenizer = None

        def generate(self, prompts, max_new_tokens, n):
            return []

    with pytest.raises(ValueError, match=r"Decorated.scores cannot be called as mgfrec calls it"):
        call_component(Decorated(), "scores", [1])
    assert call_component(Decorated(), "scores", [1], None) == [1]
    with pytest.raises(ValueError, match=r"NoSeed.generate cannot be called as mgfrec calls it"):
        call_component(_LockedEngine(NoSeed(), threading.RLock()), "generate", [[1]], max_new_tokens=1, n=1, seed=0)
    with pytest.raises(ValueError, match=r"NoK.search cannot be called as mgfrec calls it"):
        call_component(Locked(NoK(), threading.RLock(), ["search"]), "search", [1], 3)


@pytest.mark.reliability
def test_a_retriever_or_data_source_with_another_signature_is_one_line(tmp_path):
    """docs/plugins.md says a method with the wrong signature stops the command in one line naming the class: so it
    did for grounders, user agents and rewards, while a retriever's ``scores`` or ``load`` and a data source's
    ``load`` were TypeError tracebacks whose innermost frame was mgfrec's (review s34)."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.ranking.evaluator import rank_targets
    from mgfrec.registry.core import use_registry
    from mgfrec.retrievers.fit import load_scorer
    from mgfrec.runs import RunInfo, write_run_info

    class KwScores:
        def scores(self, histories, *, mask):
            return np.zeros((len(histories), 5))

    with pytest.raises(ValueError, match=r"KwScores.scores cannot be called as mgfrec calls it \(.*'mask'"):
        rank_targets(KwScores(), [np.array([1])], np.array([2]), num_items=5)

    class OneArgSource:
        def load(self, path):
            return path

    class OneArgRetriever:
        @classmethod
        def load(cls, run_dir):
            return cls()

    ds = prepare(
        DataConfig(source="synthetic", options={"n_users": 20, "n_items": 30, "n_artists": 10}), tmp_path / "d"
    )
    reg = _fresh()
    reg.add("data_source", "onearg", OneArgSource)
    reg.add("retriever", "onearg", OneArgRetriever)
    write_run_info(tmp_path / "run", RunInfo("baseline", "onearg", str(ds.root), ds.checksum))
    with use_registry(reg):
        with pytest.raises(
            ValueError, match=r"data_source 'onearg' \(.*OneArgSource.*\): load cannot be called as mgfrec"
        ):
            prepare(DataConfig(source="onearg"), tmp_path / "d2")
        with pytest.raises(
            ValueError, match=r"retriever 'onearg' \(.*OneArgRetriever.*\): load cannot be called as mgfrec"
        ):
            load_scorer(tmp_path / "run", reg=reg)

    class NoLoad:  # fitted "successfully" into a run no command could read (review s34): refused before the fit
        @classmethod
        def fit(cls, ds, config, out):
            raise AssertionError("not reached")

    reg.add("retriever", "noload", NoLoad)
    from mgfrec.config.load import load_config
    from mgfrec.retrievers.fit import fit_baseline

    with use_registry(reg), pytest.raises(ValueError, match=r"retriever 'noload' \(.*NoLoad.*\) has no load class"):
        fit_baseline(ds, load_config(None, ["retriever.model=noload"]), tmp_path / "noload")
    assert not (tmp_path / "noload").exists()


def test_a_plugins_options_model_that_ignores_unknown_keys_still_refuses_a_misspelt_one():
    """The docs' own EchoUser example (a plain BaseModel) took ``{prefx: Seen}``, trained, recorded it and used
    the default prefix: pydantic ignores unknown keys unless told otherwise. Unknown keys are refused with their
    path, as for the built-ins; a model that allows extra keys keeps them."""
    from pydantic import BaseModel, ConfigDict

    class Plain:
        class Options(BaseModel):
            prefix: str = "I looked at"

    class Open:
        class Options(BaseModel):
            model_config = ConfigDict(extra="allow")

    with pytest.raises(ValueError, match=r"user_agent.options.prefx: Extra inputs are not permitted.*\['prefix'\]"):
        component_options(Plain, {"prefx": "Seen"}, "user_agent.options")
    assert component_options(Plain, {"prefix": "Seen"}, "user_agent.options").prefix == "Seen"
    assert component_options(Open, {"anything": 1}, "user_agent.options").anything == 1


def _plugins_list(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`mgfrec plugins list ARGS` in a subprocess with ``env`` (its PYTHONPATH holds the fake packages)."""
    command = [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env)


@pytest.mark.reliability
def test_an_entry_point_group_typo_is_named_not_silent(tmp_path):
    # a plugin declared under [mgfrec.grounders] or [mgfrec_reward] was in no list and no message: "unknown grounder
    # 'l1typo' ... Did you mean 'l1'?" pointed at another component, and plugins list said nothing at all
    import os

    fake_dist(
        tmp_path,
        "s23typo",
        "[mgfrec.grounders]\nl1typo = typo.mod:G\n[mgfrec_reward]\nmine = typo.mod:R\n[mgfrecplugins]\nq = typo:Q\n",
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = _plugins_list(env, "--kind", "grounder")
    assert listed.returncode == 0, listed.stderr
    warnings_ = [line for line in listed.stderr.splitlines() if line.startswith("warning:")]
    assert any(
        "s23typo 1.0 declares l1typo under the entry-point group 'mgfrec.grounders', which mgfrec does not read; "
        "the group is 'mgfrec.grounder'" in line
        for line in warnings_
    ), listed.stderr
    assert any("'mgfrecplugins'" in line and "groups are mgfrec.<kind>" in line for line in warnings_)
    assert not any("mgfrec_reward" in line for line in warnings_)  # close to another kind than --kind's
    code = "from mgfrec.registry import registry\nregistry().get('grounder', 'l1typo')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    message = proc.stderr.strip().splitlines()[-1]
    assert "unknown grounder 'l1typo'" in message and "Did you mean" not in message
    assert "s23typo 1.0 declares l1typo under the entry-point group 'mgfrec.grounders'" in message
    plain = subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", "--json"], capture_output=True, text=True
    )
    assert plain.returncode == 0 and "warning:" not in plain.stderr  # mgfrec's own groups are all kinds'


@pytest.mark.reliability
def test_an_unclosed_section_header_is_named_not_silent(tmp_path):
    """`[mgfrec.user_agent` (no closing bracket) as the file's first header: importlib.metadata drops that line and
    every entry point under it without a word, so the plugin vanished and `--user-agent mine` guessed another name
    (review s26). Both `plugins list` and the unknown-name error now say which line hides it."""
    import os

    fake_dist(tmp_path, "s27open", "[mgfrec.user_agent\nmine = pkg.mod:Mine\n\n[console_scripts]\ntool = pkg:main\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = _plugins_list(env, "--kind", "user_agent")
    assert listed.returncode == 0, listed.stderr
    said = " ".join(listed.stderr.split())
    assert "warning: s27open 1.0 declares mine in its entry_points.txt under the line '[mgfrec.user_agent'" in said
    assert "no section header" in said and "the group is 'mgfrec.user_agent'" in said
    code = "from mgfrec.registry import registry\nregistry().get('user_agent', 'mine')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    message = proc.stderr.strip().splitlines()[-1]
    assert "unknown user_agent 'mine'" in message and "under the line '[mgfrec.user_agent'" in message, message


@pytest.mark.reliability
def test_an_engine_without_constraints_is_refused_when_the_config_loads():
    # it was refused when the first rollout began (after the recall fit), named by its class, with no word on
    # how a plugin engine supports constrained turns
    from mgfrec.config.components import check_components
    from mgfrec.config.load import load_config

    class Plain:  # the docs' required list only: generate without a constraints keyword
        def generate(self, prompts, *, max_new_tokens, stop, stop_token_ids, n, temperature, top_p, seed): ...

    class Off(Plain):
        supports_constraints = False

    class On(Plain):
        supports_constraints = True

    class Keyword:  # sets the flag per instance: its generate takes constraints=, the rollout's check decides
        def generate(self, prompts, *, constraints=None, **kw): ...

    reg = Registry.discover()
    for name, cls in [("plain", Plain), ("off", Off), ("on", On), ("keyword", Keyword)]:
        reg.add("rollout_engine", name, cls)
    for name in ("plain", "off"):
        with pytest.raises(ValueError) as err:
            check_components(load_config(None, [f"rollout.engine={name}"]), reg)
        message = str(err.value)
        assert f"rollout.engine: rollout_engine '{name}'" in message, message
        assert "does not support agent.decoding: constrained" in message
        assert "--set agent.decoding=free" in message and "supports_constraints = True" in message
        check_components(load_config(None, [f"rollout.engine={name}", "agent.decoding=free"]), reg)
    for name in ("on", "keyword", "hf"):
        check_components(load_config(None, [f"rollout.engine={name}"]), reg)


def test_recommend_does_not_ask_for_the_reward_plugins_of_training():
    # recommend, serve and chat never compute a reward; a run trained with a reward plugin was refused without it
    from mgfrec.config.components import check_components
    from mgfrec.config.load import load_config

    class Per:
        def __call__(self, sample):
            return 0.0

    reg = Registry.discover()
    reg.add("reward", "per-ground", Per)
    cfg = load_config(None, ["grpo.rewards=[ndcg, per-ground, format]"])
    bare = Registry.discover()
    with pytest.raises(ValueError, match="unknown reward 'per-ground'"):
        check_components(cfg, bare)
    check_components(cfg, bare, rewards=False)


def test_a_recorded_plugin_is_named_with_its_package_only_where_recorded(tmp_path):
    import json

    from mgfrec.registry import recorded_plugins
    from mgfrec.runs import plugins_of_run

    reg = Registry.discover()
    plugins = ["junk", {"kind": "grounder", "name": "cos", "target": "p.m:Cos", "package": "p-kit 0.3"}]
    with recorded_plugins("RUN", plugins), pytest.raises(RegistryError) as err:
        reg.get("grounder", "cos")
    assert str(err.value).endswith(
        "RUN was made with grounder 'cos' (p.m:Cos) from p-kit 0.3, which is not installed here: pip install "
        "'p-kit==0.3'"
    )
    with recorded_plugins("RUN", plugins), pytest.raises(RegistryError, match="Did you mean 'exact'"):
        reg.get("grounder", "exacct")  # recorded for another name
    with pytest.raises(RegistryError) as err:
        reg.get("grounder", "cos")  # outside the block: nothing recorded
    assert "p-kit" not in str(err.value)
    (tmp_path / "run.json").write_text("{not json", encoding="utf-8")
    with plugins_of_run(tmp_path), pytest.raises(RegistryError) as err:  # a damaged run.json records nothing
        reg.get("grounder", "cos")
    assert "was made with" not in str(err.value)
    # an agent run whose recall run was made with a plugin retriever (fit --init, sft --recall-run): the recall run
    # records it, and the message named no package ("unknown retriever 'rv-rand'"; review s37)
    recall, agent = tmp_path / "recall", tmp_path / "agent"
    recall.mkdir()
    agent.mkdir()
    record = {"kind": "retriever", "name": "rv-rand", "target": "rv.m:Rand", "package": "rv-kit 0.2"}
    (recall / "run.json").write_text(json.dumps({"kind": "baseline", "extra": {"plugins": [record]}}))
    (agent / "run.json").write_text(json.dumps({"kind": "agent", "extra": {"recall_run": str(recall)}}))
    with plugins_of_run(agent), pytest.raises(RegistryError, match=r"recall was made with retriever 'rv-rand'"):
        reg.get("retriever", "rv-rand")
    (recall / "run.json").write_text(json.dumps({"kind": "agent", "extra": {"recall_run": str(agent)}}))  # a loop
    with plugins_of_run(agent), pytest.raises(RegistryError, match="unknown retriever 'rv-rand'"):
        reg.get("retriever", "rv-rand")  # followed one step only


def test_a_component_registered_under_another_kind_gets_the_wrong_kind_hint():
    # "failed: TypeError: NumpyReward() takes no arguments" named it, with no word of the likely cause
    class NumpyReward:
        def __call__(self, inp):
            return 0.0

    class Raises:  # a TypeError of its own code keeps the plain "failed:" line
        def __init__(self, vectors):
            raise TypeError("inside")

    reg = Registry({k: {} for k in KINDS})
    reg.add("grounder", "r", NumpyReward)
    reg.add("grounder", "x", Raises)
    with pytest.raises(RegistryError) as err:
        reg.build("grounder", "r", None, np.zeros((2, 2), dtype=np.float32))
    assert "grounder 'r' (" in str(err.value)
    assert "cannot be built as a grounder is (NumpyReward() takes no arguments): is it registered under the right" in (
        str(err.value)
    )
    with pytest.raises(RegistryError, match=r"grounder 'x' \(.*\) failed: TypeError: inside$"):
        reg.build("grounder", "x", None, np.zeros((2, 2), dtype=np.float32))


def test_a_package_without_name_or_version_is_named_by_its_folder(tmp_path):
    import json as _json
    import os

    dist = tmp_path / "nameless-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\n")
    (dist / "entry_points.txt").write_text("[mgfrec.grounder]\nnameless = x.y:Z\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", "--kind", "grounder", "--json"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    origin = {e["name"]: e["origin"] for e in _json.loads(proc.stdout)["grounder"]}["nameless"]
    assert origin == "a package without a Name (no Version) (nameless-1.0.dist-info)"  # was "None None"


def test_a_name_in_other_case_is_suggested():
    # "unknown retriever 'SASRec'. Available: ..." without the hint 'sasrecc' got
    with pytest.raises(RegistryError, match="Did you mean 'sasrec'"):
        Registry.discover().get("retriever", "SASRec")


class _Other:
    pass


class _Says:
    reads_titles = False


def test_what_a_component_declares_is_read_and_an_unknown_one_is_taken_to_do_it():
    """One reading of a component's class flag (a retriever's ``reads_titles``) where two copies read it: what the
    class says, True when it does not say, and True for a name that cannot be loaded (its build names why)."""
    reg = Registry.discover()
    reg.add("retriever", "says", _Says)
    reg.add("retriever", "silent", _Other)
    assert reg.declares("retriever", "says", "reads_titles") is False
    assert reg.declares("retriever", "silent", "reads_titles") is True
    assert reg.declares("retriever", "no-such-model", "reads_titles") is True
    assert reg.declares("retriever", "sasrec", "reads_titles") is False  # an ID model: reused across embedders
    assert reg.declares("retriever", "pop", "reads_training_settings") is False


@pytest.mark.reliability
def test_a_name_another_package_claims_now_is_refused_for_a_run_made_with_the_first():
    """A run made with retriever 'rnd' of one package was evaluated with another package's 'rnd' (another class under
    that name) without a word, and its results written as the run's (review s31). The recorded target decides; the
    same target from another version of its package is taken."""
    from mgfrec.registry import recorded_plugins

    reg = Registry.discover()
    reg.add("grounder", "cos", _Other)
    mine = reg.get("grounder", "cos")
    plugins = [{"kind": "grounder", "name": "cos", "target": "p.m:Cos", "package": "p-kit 0.3"}]
    with recorded_plugins("RUN", plugins), pytest.raises(RegistryError) as err:
        reg.get("grounder", "cos")
    assert str(err.value) == (
        f"RUN was made with grounder 'cos' = p.m:Cos from p-kit 0.3, but 'cos' here is {mine.target} from "
        f"{mine.origin}; install the package it was made with, or fit the run again"
    )
    same = [{**plugins[0], "target": mine.target, "package": "p-kit 0.2"}]
    with recorded_plugins("RUN", same):
        assert reg.get("grounder", "cos") is mine
    assert reg.get("grounder", "cos") is mine  # nothing recorded


def test_a_recorded_plugin_stays_in_its_own_thread():
    # serve loads runs in threads: one thread's run must not name its packages in another's errors
    import threading

    from mgfrec.registry import recorded_plugins

    reg = Registry.discover()
    inside, done = threading.Event(), threading.Event()

    def hold():
        with recorded_plugins("RUN", [{"kind": "grounder", "name": "cos", "package": "p-kit 0.3"}]):
            inside.set()
            done.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(RegistryError) as err:
            reg.get("grounder", "cos")
        assert "p-kit" not in str(err.value)
    finally:
        done.set()
        worker.join()


def test_a_recorded_package_that_is_no_package_name_gets_no_command_to_paste():
    # run.json is someone else's text: "pip install 'x'; rm -rf ~; echo '==1'" would run as pasted
    from mgfrec.registry import recorded_plugins

    bad = {"kind": "grounder", "name": "cos", "package": "x';rm -rf ~;echo ' 1"}
    with recorded_plugins("RUN", [bad]), pytest.raises(RegistryError) as err:
        Registry.discover().get("grounder", "cos")
    assert str(err.value).endswith("which is not installed here: install that package") and "pip" not in str(err.value)


def test_an_engine_that_sets_the_flag_per_instance_is_left_to_the_rollout():
    from mgfrec.config.components import check_components
    from mgfrec.config.load import load_config

    class PerInstance:  # the class says False, each instance True (it takes the keyword)
        supports_constraints = False

        def generate(self, prompts, *, constraints=None, **kw): ...

    reg = Registry.discover()
    reg.add("rollout_engine", "per-instance", PerInstance)
    check_components(load_config(None, ["rollout.engine=per-instance"]), reg)


class _AliasedOptions(BaseModel):
    batch_size: int = Field(1024, alias="batchSize")


class _Aliased:
    Options = _AliasedOptions


@pytest.mark.reliability
def test_a_plugin_option_with_an_alias_is_read_by_its_name_and_checked_strictly():
    """An option given by its field name where the plugin's model reads only the alias was dropped (the default
    used without a word); given by its alias, `true` became 1 past the strict check."""
    assert component_options(_Aliased, {"batch_size": 5}, "retriever.options").batch_size == 5
    assert component_options(_Aliased, {"batchSize": 7}, "retriever.options").batch_size == 7
    with pytest.raises(ValueError, match=r"retriever.options.batchSize: a number, not true or false"):
        component_options(_Aliased, {"batchSize": True}, "retriever.options")


@pytest.mark.reliability
def test_an_options_default_its_own_field_refuses_is_named_as_the_components_bug():
    """pydantic does not validate defaults: a plugin's ``k: int = Field(-5, ge=1)`` was built with k = -5 and said
    nothing (review s26). A None default (a "not set" sentinel) passes, and so does an option given to override."""
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    from mgfrec.registry import OptionsValidatorError, component_options

    class Bad:
        class Options(BaseModel):
            k: int = Field(-5, ge=1)
            unset: int = None  # type: ignore[assignment]

    with pytest.raises(OptionsValidatorError, match=r"user_agent.options.k: the component's default -5 is refused"):
        component_options(Bad, {}, "user_agent.options")
    assert component_options(Bad, {"k": 2}, "user_agent.options").k == 2

    class Fine:  # what a check of the defaults filled in together refused (review s26)
        class Options(BaseModel):
            model_config = ConfigDict(extra="forbid")
            top_k: int = 10
            top_p: float = 0.9
            batch_size: int = Field(32, validation_alias="batchSize")
            doubled: int = Field(default_factory=lambda data: data["top_k"] * 2)

            @model_validator(mode="after")
            def _one_of(self):  # reads which fields were given: every default filled in looked like "both"
                if {"top_k", "top_p"} <= self.model_fields_set:
                    raise ValueError("give top_k or top_p, not both")
                return self

    assert component_options(Fine, {}, "grounding.options").doubled == 20
    assert component_options(Fine, {"top_k": 3}, "grounding.options").top_k == 3


@pytest.mark.reliability
def test_a_plugin_that_exits_while_imported_is_one_line(tmp_path, monkeypatch):
    """A plugin module running sys.exit(3) at import ended the command with code 3 and no word (review s26)."""
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = Entry(kind="user_agent", name="ex", target="exits_on_import:Ex", origin="exiter 0.1")
    with pytest.raises(RegistryError, match=r"it called sys.exit\(3\) while being imported"):
        entry.load()


@pytest.mark.reliability
def test_a_hybrid_over_a_plugin_retriever_records_that_plugin():
    """`--model hybrid --set retriever.options.collaborative=<a plugin's retriever>` recorded no plugin in run.json:
    without the package the run was "unknown retriever", naming no package, and with another package's retriever
    of that name the run was scored by it without a word (review s37)."""
    from mgfrec.config.components import plugins_named
    from mgfrec.config.schema import MGFRecConfig

    class Collaborative:
        pass

    reg = Registry.discover()
    reg.add("retriever", "rv-rand", Collaborative)
    cfg = MGFRecConfig.model_validate({"retriever": {"model": "hybrid", "options": {"collaborative": "rv-rand"}}})
    (record,) = plugins_named(cfg, reg)["plugins"]
    assert (record["kind"], record["name"], record["package"]) == ("retriever", "rv-rand", f"python:{__name__}")
    built_in = MGFRecConfig.model_validate({"retriever": {"model": "hybrid", "options": {"collaborative": "gru4rec"}}})
    assert plugins_named(built_in, reg) == {}


@pytest.mark.reliability
def test_a_plugin_that_fails_on_import_is_named_before_a_fit_or_sft_fits_its_recall_model(tmp_path):
    """A plugin grounder (or embedder) whose module raised on import was met after the recall fit: minutes of SASRec
    on CDs, or a sweep's earlier cells, spent before a one-line plugin error (review s37)."""
    from mgfrec.config.load import load_config
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.registry.discovery import _add
    from mgfrec.registry.entries import Entry
    from mgfrec.rl.fit import FitOptions, run_fit
    from mgfrec.rl.sft import SFTOptions, run_sft

    reg = Registry.discover()
    _add(reg._entries, Entry("grounder", "rv-broke", "mgfrec_no_such_plugin_module:Grounder", "rv-plugins 0.2"))
    data = prepare(DataConfig(source="synthetic", options={"n_users": 20}), tmp_path / "data").root
    cfg = load_config(None, ["grounding.grounder=rv-broke", "retriever.model=pop"])
    said = r"grounding.grounder: grounder 'rv-broke' \(mgfrec_no_such_plugin_module:Grounder, from rv-plugins 0.2\)"
    with pytest.raises(ValueError, match=said + " could not be imported"):
        run_fit(data, tmp_path / "fit", cfg, FitOptions(), reg=reg)
    with pytest.raises(ValueError, match=said + " could not be imported"):
        run_sft(data, tmp_path / "sft", cfg, SFTOptions(), reg=reg)
    assert not (tmp_path / "fit").exists() and not (tmp_path / "sft").exists()  # no recall model fitted


@pytest.mark.reliability
def test_a_plugin_grounder_whose_constructor_fails_is_met_before_the_recall_fit(tmp_path):
    """A plugin grounder that imports but cannot be built over the catalogue (its constructor raises) was met after
    `fit` and `sft` had fitted their recall model: the grounding is now built first. The run's own registry builds
    it (``load_grounding`` built the grounder from the process's, whatever the caller passed)."""
    from mgfrec.config.load import load_config
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare
    from mgfrec.rl.fit import FitOptions, run_fit
    from mgfrec.rl.sft import SFTOptions, run_sft

    class Refuses:
        def __init__(self, item_embeddings, options=None):
            raise ValueError(f"rv-ctor needs 1000 items, got {len(item_embeddings)}")

    reg = Registry.discover()
    reg.add("grounder", "rv-ctor", Refuses)
    data = prepare(DataConfig(source="synthetic", options={"n_users": 20}), tmp_path / "data").root
    cfg = load_config(None, ["grounding.grounder=rv-ctor", "retriever.model=pop"])
    with pytest.raises(Exception, match=r"rv-ctor needs 1000 items"):
        run_fit(data, tmp_path / "fit", cfg, FitOptions(), reg=reg)
    with pytest.raises(Exception, match=r"rv-ctor needs 1000 items"):
        run_sft(data, tmp_path / "sft", cfg, SFTOptions(), reg=reg)
    assert not (tmp_path / "fit" / "recall").exists() and not (tmp_path / "sft" / "recall").exists()


@pytest.mark.reliability
def test_a_class_registered_under_two_names_is_named_by_the_one_the_user_chose(tmp_path, monkeypatch):
    """An alias (or another package's re-export) of a reward: its failures named whichever entry came first, from
    the other package (review s39)."""
    from mgfrec.registry import blame, registered_as, use_registry

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "aliased.py").write_text(
        "class TopBonus:\n    def __init__(self):\n        pass\n\n    def __call__(self, inp):\n"
        "        raise RuntimeError('cannot add')\n"
    )
    import aliased

    reg = _fresh()
    reg.add("reward", "Top Bonus", aliased.TopBonus)  # the first entry: the one a class lookup finds
    reg.add("reward", "top-bonus", aliased.TopBonus)
    with use_registry(reg):
        chosen = reg.build("reward", "top-bonus", None)
        with pytest.raises(RuntimeError) as raised:
            chosen(None)
        assert blame(raised.value).name == "top-bonus"
        assert registered_as(chosen) == reg.get("reward", "top-bonus").describe()
        # not built by the registry: both names, rather than the first as if it were the one chosen
        both = registered_as(aliased.TopBonus())
        assert "'Top Bonus'" in both and "'top-bonus'" in both and " or " in both
        # components equal by value (a frozen dataclass), built under each name: each keeps its own (review s39)
        (tmp_path / "equal.py").write_text(
            "from dataclasses import dataclass\n\n\n@dataclass(frozen=True)\nclass Bonus:\n"
            "    def __call__(self, inp):\n        return 0.5\n"
        )
        import equal

        reg.add("reward", "bonus-a", equal.Bonus)
        reg.add("reward", "bonus-b", equal.Bonus)
        a, b = reg.build("reward", "bonus-a", None), reg.build("reward", "bonus-b", None)
        assert a == b and registered_as(a) == reg.get("reward", "bonus-a").describe()
        assert registered_as(b) == reg.get("reward", "bonus-b").describe()

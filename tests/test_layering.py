"""Data flows one way through mgfrec: a module may import only its own layer and the layers below it.

The layers (docs/architecture.md draws them) are listed bottom first. A module belongs to the layer of the
longest prefix that names it. Every layer but the agent's is one whole package; ``agent`` holds four layers
in a row (its text format, the environment step, the loop, the samples) with no other package between
them. Every import counts, inside functions too, so a late import cannot hide an upward one, and so does a
package named by a string (``resources.files("mgfrec.text")``, ``importlib.import_module("mgfrec.x")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mgfrec"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "mgfrec",
            "mgfrec.atomic",
            "mgfrec.runs",
            "mgfrec.output_folders",
            "mgfrec.registry",
            "mgfrec.config",
            "mgfrec.progress",
            "mgfrec.validation",
            "mgfrec.signals",
            "mgfrec.locks",
            "mgfrec.staleness",
            "mgfrec.devices",
            "mgfrec.hub",
            "mgfrec.seeding",
        ),
    ),
    ("text", ("mgfrec.text",)),
    ("data", ("mgfrec.data",)),
    ("embed", ("mgfrec.embed",)),
    ("grounding", ("mgfrec.grounding",)),
    ("ranking", ("mgfrec.ranking",)),
    ("rewards", ("mgfrec.rewards",)),
    ("models", ("mgfrec.models",)),
    ("generation", ("mgfrec.rollout",)),
    ("retrievers", ("mgfrec.retrievers",)),
    ("user agents", ("mgfrec.user_agents",)),
    ("agent text", ("mgfrec.agent",)),  # parser, state, trajectory, batching, constraints, the re-exports
    ("agent environment", ("mgfrec.agent.environment", "mgfrec.agent.final_ranking")),
    ("agent loop", ("mgfrec.agent.loop",)),
    ("agent samples", ("mgfrec.agent.samples",)),
    ("evaluation", ("mgfrec.eval",)),
    ("training", ("mgfrec.rl",)),
    (
        "applications",
        (
            "mgfrec.experiments",
            "mgfrec.recommend",
            "mgfrec.recommendation",
            "mgfrec.demo",
            "mgfrec.demo_settings",
            "mgfrec.serve",
        ),
    ),
    ("cli", ("mgfrec.cli", "mgfrec.__main__")),
]


def layer_of(module: str) -> int:
    """Index into LAYERS of the longest prefix naming ``module`` (``mgfrec`` itself names only the root)."""
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or (prefix != "mgfrec" and module.startswith(prefix + "."))
            if named and len(prefix) > length:
                best, length = index, len(prefix)
    if best is None:
        raise LookupError(f"{module}: in no layer of tests/test_layering.py; add it to LAYERS")
    return best


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every mgfrec module ``path`` imports (line, module), wherever the import statement sits.

    A string literal naming an mgfrec package as the first argument of a call to ``files`` or
    ``import_module`` (``importlib.resources.files("mgfrec.text")``) imports that package too. The imports inside a
    module-level ``__getattr__`` (a re-export of names a split moved to a higher module) do not count.
    """
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # a module's own ``__getattr__`` forwarding names that moved up out of it (``mgfrec.runs`` to
    # ``mgfrec.output_folders``) keeps old imports working for users; no code of the module depends on it
    shims = {
        id(inner)
        for top in tree.body
        if isinstance(top, ast.FunctionDef) and top.name == "__getattr__"
        for inner in ast.walk(top)
    }
    for node in ast.walk(tree):
        if id(node) in shims:
            continue
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == "mgfrec"
        ):
            base = node.module
            for alias in node.names:  # ``from mgfrec.eval import runs`` imports the module mgfrec.eval.runs
                sub = f"{base}.{alias.name}"
                is_module = (root.parent / Path(*sub.split("."))).with_suffix(".py").is_file()
                found.append((node.lineno, sub if is_module else base))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mgfrec")
        elif isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            first = node.args[0]
            if (
                name in ("files", "import_module")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.split(".")[0] == "mgfrec"
            ):
                found.append((node.lineno, first.value))
    return found


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        mine = layer_of(here)
        for line, target in imports(path, root):
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(
                    f"{path.relative_to(root.parent)}:{line}: {here} ({LAYERS[mine][0]}) imports {target} "
                    f"({LAYERS[theirs][0]}, a higher layer)"
                )
    return bad


def test_every_module_has_a_layer():
    for path in ROOT.rglob("*.py"):
        layer_of(module_name(path))


def test_no_module_imports_a_higher_layer():
    bad = upward_imports()
    assert not bad, "imports against the one-way flow (docs/architecture.md):\n" + "\n".join(bad)


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: a data module importing the rl package, even inside a function, is reported."""
    package = tmp_path / "mgfrec"
    (package / "data").mkdir(parents=True)
    (package / "rl").mkdir()
    (package / "rl" / "fit.py").write_text("X = 1\n")
    (package / "data" / "bad.py").write_text("def f():\n    from mgfrec.rl.fit import X\n    return X\n")
    (package / "data" / "good.py").write_text("from mgfrec.config.schema import DataConfig\n")
    (package / "data" / "by_name.py").write_text(
        "from importlib import resources\n\n\ndef f():\n    return resources.files('mgfrec.rl')\n"
    )
    (package / "data" / "shim.py").write_text(  # a re-export of moved names, the one exception
        "def __getattr__(name):\n    from mgfrec.rl import fit\n    return getattr(fit, name)\n\n\n"
        "def g():\n    def __getattr__(name):\n        from mgfrec.rl.fit import X\n        return X\n"
    )
    bad = upward_imports(package)
    assert len(bad) == 3, bad
    assert "mgfrec.data.shim" in bad[2] and ":8:" in bad[2]  # only a module-level __getattr__ is exempt
    assert "mgfrec.data.bad" in bad[0] and "mgfrec.rl.fit" in bad[0] and ":2:" in bad[0]
    assert "mgfrec.data.by_name" in bad[1] and "imports mgfrec.rl " in bad[1] and ":5:" in bad[1]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("mgfrec", "foundation"),
        ("mgfrec.ranking.metrics", "ranking"),
        ("mgfrec.eval.runs", "evaluation"),
        ("mgfrec.models.policy", "models"),
        ("mgfrec.rollout.hf_engine", "generation"),
        ("mgfrec.agent.parser", "agent text"),
        ("mgfrec.agent.final_ranking", "agent environment"),
        ("mgfrec.agent.loop", "agent loop"),
        ("mgfrec.rl.fit", "training"),
        ("mgfrec.cli.main", "cli"),
    ],
)
def test_longest_prefix_decides(module, layer):
    assert LAYERS[layer_of(module)][0] == layer


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mgfrec"


def package_loops(root: Path = ROOT) -> set[tuple[str, str]]:
    """Unordered pairs of packages each of which reaches the other through imports."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        here = package_of(module_name(path, root))
        graph.setdefault(here, set()).update(package_of(t) for _, t in imports(path, root))

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reached = {p: reach(p) for p in graph}
    return {(a, b) for a in graph for b in graph if a < b and b in reached[a] and a in reached[b]}


def test_no_two_packages_reach_each_other():
    """Package level: the layers above keep each package in one run of layers, so no package reaches back."""
    loops = package_loops()
    assert not loops, f"packages that import each other (directly or around a loop): {sorted(loops)}"


def test_the_check_catches_a_package_loop(tmp_path):
    """Two packages whose modules are each layered correctly can still reach each other as packages."""
    package = tmp_path / "mgfrec"
    for name in ("rollout", "agent", "retrievers"):
        (package / name).mkdir(parents=True)
    (package / "rollout" / "engine.py").write_text("X = 1\n")
    (package / "retrievers" / "bigrec.py").write_text("from mgfrec.rollout.engine import X\n")
    (package / "agent" / "loop.py").write_text("from mgfrec.rollout.engine import X\n")
    assert package_loops(package) == set()
    (package / "rollout" / "loop.py").write_text("def f():\n    from mgfrec.retrievers.bigrec import X\n")
    assert package_loops(package) == {("retrievers", "rollout")}


MOVED = {  # old path (a re-export in a higher package) -> the module's package of its own layer
    "mgfrec.eval.metrics": "mgfrec.ranking.metrics",
    "mgfrec.eval.evaluator": "mgfrec.ranking.evaluator",
    "mgfrec.eval.results": "mgfrec.ranking.results",
    "mgfrec.eval.stats": "mgfrec.ranking.stats",
    "mgfrec.rl.policy": "mgfrec.models.policy",
    "mgfrec.rl.logprobs": "mgfrec.models.logprobs",
    "mgfrec.agent.prompts": "mgfrec.text.prompts",
    "mgfrec.agent.neutralize": "mgfrec.text.neutralize",
}


def public_names(module: str) -> list[str]:
    """Top-level classes, functions and assignments of ``module``'s file not starting with ``_``."""
    tree = ast.parse((ROOT.parent / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_a_moved_module_keeps_its_old_path(old, new):
    """The old path (named in docs/ or by users) re-exports every public name of the moved module, and
    imports only downward (the checks above cover it like any module)."""
    import importlib

    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    names = public_names(new)
    assert names and layer_of(old) > layer_of(new)
    missing = [n for n in names if getattr(old_mod, n, None) is not getattr(new_mod, n)]
    assert not missing, f"{old} does not re-export {missing} from {new}"


SPLIT = {  # a module split in two: the names that moved out, still importable from where they were
    "mgfrec.cli.common": ("mgfrec.cli.flags", ("load", "check_ablation")),
    "mgfrec.eval.report": ("mgfrec.eval.report_table", ("BETTER", "WORSE", "TERMINAL_ORDER")),
    "mgfrec.eval.figures": (
        "mgfrec.eval.sweep_figures",
        ("SWEEP_METRICS", "sweep_points", "plot_sweep", "mean_rank_by_limit", "plot_mean_rank_vs_limit"),
    ),
    "mgfrec.experiments.sweep": (
        "mgfrec.experiments.reuse",
        (
            "FROM_INIT",
            "KEPT_FROM_CELL",
            "SETTING_FLAGS",
            "INPUT_CHANGED",
            "SWEEP_FILE",
            "config_digest",
            "shown_settings",
        ),
    ),
    "mgfrec.rl.fit": ("mgfrec.rl.callbacks", ("LastCheckpoint", "StepProgress", "build_logger", "check_logger")),
    "mgfrec.models.policy": (
        "mgfrec.models.presets",
        ("TAG_TOKENS", "CHAT_TEMPLATE", "PRESETS", "Preset", "build_preset", "build_bpe_tokenizer", "minilm_dir"),
    ),
    "mgfrec.rl.module": ("mgfrec.rl.step_metrics", ("END_REASONS",)),
    "mgfrec.serve.app": ("mgfrec.serve.request_checks", ("validation_line", "only_parameters")),
    "mgfrec.runs": (
        "mgfrec.output_folders",
        (
            "NOT_A_RUN",
            "RESULT_PATTERNS",
            "check_not_own_subrun",
            "check_output_run",
            "clear_results",
            "is_run_output",
            "producer_of",
            "refuse_held",
            "removed_if_left_empty",
            "retire_if_recall_inside",
            "retire_run",
        ),
    ),
    "mgfrec.config.schema": (
        "mgfrec.config.training",
        ("GRPOConfig", "TrainerConfig", "RewardSpec", "RESERVED_REWARD_NAMES", "reserved_reward_error"),
    ),
    "mgfrec.config.load": (
        "mgfrec.config.overrides",
        ("override_value", "parse_override", "redacted_override", "set_path", "sets_field"),
    ),
    "mgfrec.recommend": (
        "mgfrec.recommendation",
        (
            "Query",
            "Recommendation",
            "item_dict",
            "turn_dict",
            "user_history",
            "history_titles_read",
            "typed_history",
        ),
    ),
}


SPLIT_AGAIN = {  # a module split a second time: the names of the second split
    "mgfrec.rl.fit": ("mgfrec.rl.init_run", ("INIT_SHAPED", "init_differences", "start_point")),
    "mgfrec.config.load": (
        "mgfrec.config.yaml_io",
        ("MAX_VALUES", "ConfigDumper", "ConfigError", "ConfigLoader", "TooLargeError", "load_yaml"),
    ),
    "mgfrec.config.schema": ("mgfrec.config.section", ("Section", "MAX_LR", "ConfigDeprecationWarning")),
}


@pytest.mark.parametrize(("old", "moved"), sorted(SPLIT.items()) + sorted(SPLIT_AGAIN.items()))
def test_names_a_split_moved_keep_their_old_path(old, moved):
    """cli.common's load and check_ablation, figures' COLUMN_LABELS, sweep's SETTING_FLAGS were not importable from
    their old modules after the splits (review s29)."""
    import importlib

    new, names = moved
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    missing = [n for n in names if getattr(old_mod, n, None) is not getattr(new_mod, n)]
    assert not missing, f"{old} does not give {missing} of {new}"
    assert (
        importlib.import_module("mgfrec.eval.figures").COLUMN_LABELS
        is importlib.import_module("mgfrec.eval.plotting").COLUMN_LABELS
    )

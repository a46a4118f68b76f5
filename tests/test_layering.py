"""Data flows one way through mgfrec: a module may import only its own layer and the layers below it.

The layers (docs/architecture.md draws them) are listed bottom first. A module belongs to the layer of the
longest prefix that names it; most layers are whole packages, and the few modules listed on their own sit
in another layer than the rest of their package (the text-format half of ``agent`` below the user
agents, the generation engines of ``rollout`` below the agent loop, ``eval``'s ranking core below the
retrievers). Every import counts, inside functions too, so a late import cannot hide an upward one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mgfrec"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("mgfrec", "mgfrec.runs", "mgfrec.registry", "mgfrec.config", "mgfrec.progress")),
    ("data", ("mgfrec.data",)),
    ("embed", ("mgfrec.embed",)),
    ("grounding", ("mgfrec.grounding",)),
    ("ranking", ("mgfrec.ranking",)),
    ("rewards", ("mgfrec.rewards",)),
    ("policy and generation", ("mgfrec.rl.policy", "mgfrec.rl.logprobs", "mgfrec.rollout")),
    ("retrievers", ("mgfrec.retrievers",)),
    (
        "agent text",
        (
            "mgfrec.agent",  # the package's __init__ re-exports only the torch-free text modules
            "mgfrec.agent.neutralize",
            "mgfrec.agent.prompts",
            "mgfrec.agent.parser",
            "mgfrec.agent.observation",
            "mgfrec.agent.state",
            "mgfrec.agent.trajectory",
            "mgfrec.agent.batching",
        ),
    ),
    ("user agents", ("mgfrec.user_agents",)),
    ("agent environment", ("mgfrec.agent.environment", "mgfrec.agent.final_ranking")),
    ("agent loop", ("mgfrec.rollout.loop",)),
    ("agent samples", ("mgfrec.agent.samples",)),
    ("training", ("mgfrec.eval.policy_eval", "mgfrec.rl")),
    ("run evaluation", ("mgfrec.eval",)),
    ("applications", ("mgfrec.experiments", "mgfrec.recommend", "mgfrec.demo", "mgfrec.serve")),
    ("cli", ("mgfrec.cli",)),
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
    """Every mgfrec module ``path`` imports (line, module), wherever the import statement sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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
    bad = upward_imports(package)
    assert len(bad) == 1 and "mgfrec.data.bad" in bad[0] and "mgfrec.rl.fit" in bad[0] and ":2:" in bad[0]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("mgfrec", "foundation"),
        ("mgfrec.ranking.metrics", "ranking"),
        ("mgfrec.eval.runs", "run evaluation"),
        ("mgfrec.rollout.hf_engine", "policy and generation"),
        ("mgfrec.rollout.loop", "agent loop"),
        ("mgfrec.rl.fit", "training"),
        ("mgfrec.cli.main", "cli"),
    ],
)
def test_longest_prefix_decides(module, layer):
    assert LAYERS[layer_of(module)][0] == layer


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mgfrec"


# Packages that still reach each other through modules of different layers (the layering above is one-way;
# these packages each hold modules of several layers). Untying them needs files moved between packages:
# rl/logprobs.py and rl/policy.py below rollout and retrievers, the agent text modules below user_agents,
# eval's ranking core below the retrievers (docs/architecture.md, "Packages that still straddle layers").
# The list may only shrink: a new pair fails, and so does a pair that no longer holds (delete it).
KNOWN_PACKAGE_LOOPS = {
    ("agent", "eval"),
    ("agent", "retrievers"),
    ("agent", "rl"),
    ("agent", "rollout"),
    ("agent", "user_agents"),
    ("eval", "retrievers"),
    ("eval", "rl"),
    ("eval", "rollout"),
    ("eval", "user_agents"),
    ("retrievers", "rl"),
    ("retrievers", "rollout"),
    ("retrievers", "user_agents"),
    ("rl", "rollout"),
    ("rl", "user_agents"),
    ("rollout", "user_agents"),
}


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


def test_package_loops_only_shrink():
    loops = package_loops()
    new, gone = loops - KNOWN_PACKAGE_LOOPS, KNOWN_PACKAGE_LOOPS - loops
    assert not new, f"packages that now import each other (directly or around a loop): {sorted(new)}"
    assert not gone, f"no longer a loop, delete from KNOWN_PACKAGE_LOOPS: {sorted(gone)}"

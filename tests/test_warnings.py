"""Every warning mgfrec raises has a category of its own, defined in mgfrec: the CLI shows those as one
``warning:`` line (``cli/main._show_warning``), and a built-in category came out as Python's two lines with a
path and a source line of mgfrec (Caser's window cap on every ``evaluate``; review s35)."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import mgfrec

PACKAGE = Path(mgfrec.__file__).parent


def _warn_calls():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "warn"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "warnings"
            ):
                yield path, node


def test_every_warning_names_a_category_of_mgfrec_s_own():
    calls = list(_warn_calls())
    assert len(calls) >= 10  # the walk finds them
    wrong = []
    for path, node in calls:
        category = (
            node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "category"), None)
        )
        name = getattr(category, "id", None) or getattr(category, "attr", None)
        if category is None or name is None or hasattr(builtins, name):
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not wrong, f"warnings.warn without a category of mgfrec's own: {wrong}"


def test_the_cli_shows_a_caser_window_cap_as_one_line(capsys):
    from mgfrec.cli.main import _show_warning
    from mgfrec.locks import NoLockTaken
    from mgfrec.retrievers.caser import WindowCapped
    from mgfrec.rl.fit import WeightsDiverged

    for category in (WindowCapped, NoLockTaken, WeightsDiverged):
        _show_warning(category("capped"), category, "x.py", 1)
    assert capsys.readouterr().err == "warning: capped\n" * 3

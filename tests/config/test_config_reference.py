"""docs/config-fields.md is generated from the schema; it must match the code, and name every field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mgfrec.config.schema import MGFRecConfig

REPO = Path(__file__).resolve().parents[2]


def test_the_config_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_every_field_is_named_with_its_meaning():
    """Twelve fields (data.seed, trainer.precision, user_agent.timeout_s, ...) were named nowhere in the docs, and
    configs.md had no field reference (review s36)."""
    text = (REPO / "docs" / "config-fields.md").read_text(encoding="utf-8").split(COMPONENTS_HEADING)[0]
    rows = _rows(text)
    sections = {f"{s}.{f}" for s, m in MGFRecConfig.model_fields.items() for f in m.annotation.model_fields}
    assert set(rows) == sections
    assert not [field for field, meaning in rows.items() if not meaning], "a field without a description"


COMPONENTS_HEADING = "## The built-in components' options"


def _rows(text: str) -> dict[str, str]:
    """A reference table's rows: the field's path -> its meaning."""
    cells = [re.split(r"(?<!\\)\|", line) for line in text.splitlines() if line.startswith("| `")]
    return {cell[1].strip(" `"): cell[5].strip() for cell in cells}


def test_every_built_in_components_option_is_named_with_its_meaning():
    """A built-in's options were documented nowhere as a table (faiss's index, exact's device, hnswlib's ef), and
    twenty had no description (review s42): each built-in component has its heading, each option its row, with a
    meaning, under the path where it is set."""
    from mgfrec.registry import KIND_SPECS, Registry

    text = (REPO / "docs" / "config-fields.md").read_text(encoding="utf-8").split(COMPONENTS_HEADING)[1]
    blocks = dict(re.findall(r"^### (\w+ `[^`]+`)\n(.*?)(?=^### |\Z)", text, re.M | re.S))
    reg = Registry.discover()
    built_in = [e for e in reg.entries() if e.origin.split(" ")[0] == "mgfrec"]
    assert {f"{e.kind} `{e.name}`" for e in built_in} == set(blocks)
    for entry in built_in:
        block, model = blocks[f"{entry.kind} `{entry.name}`"], reg.options_model(entry.kind, entry.name)
        if model is None:
            assert block.strip() == "Takes no options."
            continue
        where = KIND_SPECS[entry.kind].options_at.format(name=entry.name)
        rows = _rows(block)
        assert set(rows) == {f"{where}.{f.alias or n}" for n, f in model.model_fields.items()}, entry.name
        assert all(rows.values()), f"{entry.kind} {entry.name}: an option without a description"

"""Write docs/config-fields.md, every config field with its type, default, bounds and meaning, from the schema
itself (so it cannot drift from the code).

    python tools/config_reference.py            # rewrite docs/config-fields.md
    python tools/config_reference.py --check    # exit 1 if docs/config-fields.md is not what the schema gives

tests/config/test_config_reference.py runs the check. The built-in components' options are read from the components
themselves, so every built-in must import: run it where the `dev` extra is installed (the hosted user agents' SDKs).
"""

from __future__ import annotations

import re
from pathlib import Path

import generated_doc  # tools/generated_doc.py, beside this script
from pydantic import BaseModel

from mgfrec.config.fields import FieldDoc, field_docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "config-fields.md"
HEADER = """# Config fields

Every field of the config, section by section, generated from `mgfrec/config/schema.py` (`grpo` and `trainer`:
`training.py`) by `python tools/config_reference.py` (a test fails when this page is out of date). A field is set
in a YAML file (`--config`, whose `base:` names a parent file), with a command's flag, or with `--set
section.field=value`; how they combine, what a run's `config.yaml` records and how secrets are kept out of it is in
[configs.md](configs.md). `configs/default.yaml` holds these defaults (a test keeps the two equal);
`configs/paper/*.yaml` the paper's GPU settings. A component's own options (`*.options`) are its `Options` model's:
`mgfrec plugins list` names each component, and [plugins.md](plugins.md) says how they are read.
"""
COMPONENTS = """
## The built-in components' options

Each built-in component's `Options`, under the `options` of the section that picks it (a reward's under its entry
of `grpo.rewards`). `mgfrec plugins show KIND NAME` prints the same for any component, a plugin package's too.
"""


def builtin_options() -> dict[str, list[tuple[str, type[BaseModel] | None]]]:
    """Every built-in component's options model (None: it takes none), kind by kind, name by name."""
    from mgfrec.registry import KINDS, Registry

    reg = Registry.discover()
    found: dict[str, list[tuple[str, type[BaseModel] | None]]] = {}
    for kind in KINDS:
        for entry in reg.entries(kind):
            if entry.origin.split(" ")[0] == "mgfrec":  # a plugin installed here is not documented as built in
                found.setdefault(kind, []).append((entry.name, reg.options_model(kind, entry.name)))
    return found


def _options_at(kind: str, name: str) -> str:
    from mgfrec.registry import KIND_SPECS

    return KIND_SPECS[kind].options_at.format(name=name)


def _cell(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip().replace("|", "\\|")


def _table(rows: list[FieldDoc], prefix: str) -> list[str]:
    lines = ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| `{prefix}{row.name}` | {_cell(row.type)} | `{_cell(row.default)}` | {_cell(row.bounds)} "
            f"| {_cell(row.meaning)} |"
        )
    return lines


def render() -> str:
    from mgfrec.config.schema import MGFRecConfig

    parts = [HEADER]
    for section, holder in MGFRecConfig.model_fields.items():
        model = holder.annotation
        parts.append(f"\n## `{section}`\n\n{_cell(model.__doc__)}\n")
        parts.extend(_table(field_docs(model), f"{section}."))
    parts.append(COMPONENTS)
    for kind, entries in builtin_options().items():
        for name, model in entries:
            parts.append(f"\n### {kind} `{name}`\n")
            if model is None:
                parts.append("Takes no options.")
            else:
                parts.extend(_table(field_docs(model), f"{_options_at(kind, name)}."))
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    return generated_doc.main(DOC, render, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())

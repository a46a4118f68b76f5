"""Recount docs/reliability.md's table against the suite: each row's count is its whole files' reliability tests
(``pytest -m reliability``) plus the ``N in file`` it names; the heading's total is the suite's, and "the rows add
up to N" the rows' sum.

    python tools/reliability_counts.py            # print each row: stated -> counted
    python tools/reliability_counts.py --check    # exit 1 when a count, the total or a file's row is off

A file named bare counts all its reliability tests; ``N in file`` (or ``N more in``) counts N, which only a reader
can check. A relative name (``test_configs.py``) is in the folder of the name before it. A file holding
reliability tests that no row names is reported too.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
NAMED = re.compile(r"(?:(\d+)(?: more)?(?: fuzz tests)? in )?`([^`]+\.py)`")


def collected() -> Counter[str]:
    """Reliability tests per test file, as pytest collects them here."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "-m", "reliability"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Counter(line.split("::", 1)[0] for line in out.splitlines() if "::" in line)


def rows(text: str) -> list[tuple[str, int, list[tuple[int | None, str]]]]:
    """(area, stated count, [(N or None for the whole file, file)]) of each row of the table."""
    found = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| Area"):
            continue
        cells = line.split("|")
        area, stated = cells[1].strip(), int(cells[2])
        folder, names = "tests", []
        for n, name in NAMED.findall(area):
            if "/" in name:
                folder = name.rsplit("/", 1)[0]
            else:
                name = f"{folder}/{name}"
            names.append((int(n) if n else None, name))
        found.append((area.split(" (", 1)[0], stated, names))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is off")
    args = parser.parse_args()
    text, counts = DOC.read_text(encoding="utf-8"), collected()
    off, named, table = [], set(), rows(text)
    for area, stated, names in table:
        counted = sum(counts.get(name, 0) if n is None else n for n, name in names)
        named.update(name for _, name in names)
        print(f"{stated:5d} -> {counted:5d}  {area}")
        if counted != stated:
            off.append(f"row '{area}': states {stated}, counts {counted}")
    total = re.search(r"## What is tried \((\d+) tests\)", text)
    if total is None or int(total.group(1)) != sum(counts.values()):
        off.append(f"heading: states {total and total.group(1)}, the suite holds {sum(counts.values())}")
    summed = re.search(r"the rows add up to ([\d,]+)", text)
    if summed is None or int(summed.group(1).replace(",", "")) != sum(stated for _, stated, _ in table):
        off.append(
            f"'the rows add up to': states {summed and summed.group(1)}, the rows' counts sum to "
            f"{sum(stated for _, stated, _ in table)}"
        )
    off += [f"{name}: {n} reliability tests in no row" for name, n in sorted(counts.items()) if name not in named]
    for line in off:
        print(line, file=sys.stderr)
    return 1 if args.check and off else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The command line of a tool that generates a page of docs/ from the code: write it, or ``--check`` it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def main(doc: Path, render: Callable[[], str], description: str) -> int:
    """Write ``render()`` to ``doc``; with ``--check``, exit 1 when ``doc`` is not what it would be."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not doc.is_file() or doc.read_text(encoding="utf-8") != text:
            print(f"{doc} is out of date: run python {Path(sys.argv[0]).as_posix()}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(text, encoding="utf-8")
    print(f"wrote {doc}")
    return 0

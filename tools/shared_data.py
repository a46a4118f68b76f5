"""Where the benchmarks read the shared real data sets (``MGFREC_SHARED_DATA``, else ``../shared/data`` beside the
repository), the one line they end with when a file of it is not there, and how a tool ends on a user error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MGFREC_SHARED_DATA", REPO.parent / "shared" / "data"))


def need_shared(path: Path, holding: str = "amazon2023-cds/", hint: str = "") -> None:
    """Exit with ``error: PATH missing; ...`` (code 2) unless ``path`` exists: a benchmark's traceback said nothing
    of how to point it at the data."""
    if not path.exists():
        print(
            f"error: {path} missing; set MGFREC_SHARED_DATA to the folder holding {holding} (default ../shared/data "
            f"beside the repository){hint}",
            file=sys.stderr,
        )
        raise SystemExit(2)


def refuse(message: str) -> None:
    """``error: message`` on stderr (one line), exit code 2: how mgfrec's commands end on a user error."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)

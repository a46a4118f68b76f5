"""docs/reliability.md's counts are the suite's: tools/reliability_counts.py recounts them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "reliability_counts.py"


def test_the_reliability_page_counts_what_the_suite_holds():
    """Its per-area counts had drifted (99 stated for 102 csv tests, 3 for 6 vLLM option tests) and two files'
    tests were in no row (session 31)."""
    result = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def test_a_row_counts_its_whole_files_and_the_numbers_it_names():
    spec = importlib.util.spec_from_file_location("reliability_counts", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = (
        "| Area | Tests | What is tried |\n|---|---:|---|\n"
        "| config (`tests/config/test_a.py`, `test_b.py`, 3 in `tests/cli/test_c.py`, "
        "1 more in `test_d.py`) | 9 | x |\n"
    )
    [(area, stated, names)] = tool.rows(text)
    assert (area, stated) == ("config", 9)
    assert names == [
        (None, "tests/config/test_a.py"),
        (None, "tests/config/test_b.py"),
        (3, "tests/cli/test_c.py"),
        (1, "tests/cli/test_d.py"),
    ]

"""The ``mgfrec`` entry point: DeepSpeed's stdout logging never reaches a ``--json`` stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_deepspeed_records_go_to_stderr_and_the_no_gpu_warning_is_dropped():
    code = (
        "import logging, mgfrec.cli.main\n"
        "from deepspeed.utils.logging import logger\n"  # DeepSpeed's own logger with its stdout handler
        "logger.warning('accelerator: we were unable to detect it')\n"
        "logger.warning('a real DeepSpeed warning')\n"
        "import json; print(json.dumps({'ok': True}))\n"
    )
    pytest.importorskip("deepspeed", reason="deepspeed is in the dev extra")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True}  # stdout holds the JSON and nothing else
    assert "a real DeepSpeed warning" in result.stderr and "unable to detect" not in result.stderr + result.stdout

"""``cli.quiet.library_output``'s settings, without a subprocess (``test_quiet.py`` runs real commands)."""

from __future__ import annotations

import logging
import os

from mgfrec.cli.quiet import library_output


def test_vllms_logs_are_hidden_unless_verbose_and_put_back_after(monkeypatch):
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    logger = logging.getLogger("vllm")
    before = logger.level
    with library_output(verbose=False):
        # vLLM reads the variable when first imported, and warns once before it sets its logger up
        assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR" and logger.level == logging.ERROR
    assert "VLLM_LOGGING_LEVEL" not in os.environ and logger.level == before
    with library_output(verbose=True):
        assert "VLLM_LOGGING_LEVEL" not in os.environ and logger.level == before
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")  # the user's own setting wins
    with library_output(verbose=False):
        assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG" and logger.level == before

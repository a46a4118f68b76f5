"""``mgfrec evaluate``: (being built)."""

from __future__ import annotations


def evaluate() -> None:
    """(being built)"""
    raise NotImplementedError

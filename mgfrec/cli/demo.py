"""``mgfrec demo``: (being built)."""

from __future__ import annotations


def demo() -> None:
    """(being built)"""
    raise NotImplementedError

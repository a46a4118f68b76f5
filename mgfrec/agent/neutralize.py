"""Moved to :mod:`mgfrec.text.neutralize` (docs/architecture.md); this path keeps working."""

from mgfrec.text.neutralize import (
    WORD_JOINER,
    neutralize,
    neutralize_title,
    reserved_strings,
)

__all__ = [
    "WORD_JOINER",
    "neutralize",
    "neutralize_title",
    "reserved_strings",
]

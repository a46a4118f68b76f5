"""The CLI's shared helpers (mgfrec/cli/common.py)."""

from __future__ import annotations


def test_a_negative_zero_score_is_shown_as_zero():
    # recommend's table showed the answered item's -0.0 distance as -0.0000
    from mgfrec.cli.common import shown_score

    assert [shown_score(v) for v in (-0.0, -0.00004, 0.5, -0.25)] == ["0.0000", "0.0000", "0.5000", "-0.2500"]

"""The retrievers' training: where the Lightning trainer runs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("device", "why"),
    [("cpu:1", "only cuda takes an index"), ("mps:0", "only cuda takes an index"), ("cuda:x", "not a number")],
)
def test_a_device_index_the_trainer_cannot_take_is_refused_by_name(device, why):
    """`cpu:1` trained on the CPU with the index dropped, and `cuda:x` was int()'s own message (review s40)."""
    from mgfrec.retrievers.training import lightning_device

    with pytest.raises(ValueError, match=rf"retriever.device: '{device}': .*{why}"):
        lightning_device(device)
    assert lightning_device("cpu") == ("cpu", 1) and lightning_device("auto") == ("auto", "auto")

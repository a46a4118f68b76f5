"""The retrievers' training: where the Lightning trainer runs."""

from __future__ import annotations

import pytest
import torch


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


def test_a_bce_negative_is_never_the_target_or_a_history_item():
    """``loss: bce`` drew its negative uniformly over every item but the target, history items included: the model
    was taught to push down what the user had chosen (noted in review s40). SASRec's rule: neither the target nor an
    item of the row's history window; a row whose history holds every other item keeps a draw."""
    from mgfrec.retrievers.training import sample_negatives

    torch.manual_seed(0)
    num_items, rows = 10, 2000
    history = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6]]).repeat(rows, 1)  # items 0..5 as item + 1, left-padded
    target = torch.full((rows,), 7)
    negative = sample_negatives(history, target, num_items)
    assert set(negative.tolist()) == {6, 8, 9}  # every item outside the history and the target, each drawn
    full = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9]])  # items 0..8: only the target, 9, is left
    assert sample_negatives(full, torch.tensor([9]), num_items).item() != 9
    torch.manual_seed(0)
    before = torch.randint(0, num_items - 1, (rows,))
    torch.manual_seed(0)
    plain = sample_negatives(torch.zeros(rows, 8, dtype=torch.long), torch.full((rows,), 7), num_items)
    assert torch.equal(plain, before + (before >= 7).long())  # without a history: the draw as before

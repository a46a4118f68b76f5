"""Padding of histories into fixed-width tensors."""

from __future__ import annotations

import numpy as np
import torch

from mgfrec.retrievers.sequences import pad_left, right_align, unpad


def test_pad_left_keeps_most_recent_items_last_and_shifts_by_one():
    seq = pad_left([np.array([4, 5]), np.array([1, 2, 3, 4]), np.array([], dtype=np.int64)], 3)
    assert seq.tolist() == [[0, 5, 6], [3, 4, 5], [0, 0, 0]]


def test_unpad_inverts_pad_left_within_the_window():
    histories = [np.array([7, 0, 3]), np.array([2])]
    assert [h.tolist() for h in unpad(pad_left(histories, 4))] == [[7, 0, 3], [2]]


def test_right_align_moves_items_to_the_front_and_counts_them():
    aligned, lengths = right_align(torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]]))
    assert aligned.tolist() == [[3, 4, 5, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]]
    assert lengths.tolist() == [3, 5, 1]  # an empty history still yields one (padding) step

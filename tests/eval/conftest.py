"""Fixtures for the evaluation tests (helpers live in evalkit.py)."""

from __future__ import annotations

import pytest
from evalkit import make_dataset

from mgfrec.data.prepared import PreparedDataset


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory) -> PreparedDataset:
    return make_dataset(tmp_path_factory.mktemp("tiny"))

"""What a caller's own random generators draw after a call: a stage that seeds itself must leave them as they were.
(A uniquely named module, not ``conftest``, so that any test folder can import it.)"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mgfrec.seeding import SEED_VARIABLES


def draws_after(call: Callable[[], Any]) -> tuple[float, float, float]:
    """Python's, NumPy's and torch's global generators seeded by the caller, ``call()``, then one draw of each."""
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    call()
    return random.random(), float(np.random.random()), float(torch.rand(()))


def assert_caller_rng_kept(call: Callable[[], Any]) -> Any:
    """``call()``'s result, checking it left the caller's generators and the environment's seed variables alone."""
    for name in SEED_VARIABLES:
        os.environ.pop(name, None)
    result: list[Any] = []
    after = draws_after(lambda: result.append(call()))
    assert after == draws_after(lambda: None), "the call moved or reseeded the caller's global generators"
    left = [name for name in SEED_VARIABLES if name in os.environ]
    assert not left, f"the call left {left} in the environment"
    return result[0]

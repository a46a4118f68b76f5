"""The caller's random state, kept across a seeded stage.

A fit seeds itself (``seed`` in its settings) so that its result does not depend on what ran before it. Seeding
means setting the process's global generators, Python's, NumPy's and torch's, and Lightning's
``seed_everything`` also leaves ``PL_GLOBAL_SEED`` and ``PL_SEED_WORKERS`` in the environment. A library caller's
own random numbers after ``fit_baseline(...)`` were then the fit's seed's, not theirs, and a later Lightning run
of theirs read the fit's seed from the environment (review s35). :func:`kept_global_rng` puts all of it back
when the stage ends, however it ends; the stage itself sees exactly what it saw before, so its results do not
change.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

#: What Lightning's ``seed_everything`` writes into the environment.
SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextmanager
def kept_global_rng() -> Iterator[None]:
    """Python's, NumPy's and torch's global generators (CPU and every CUDA device already in use) and the
    environment's seed variables as they were on entry, put back on exit. Usable as a decorator too."""
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    variables = {name: os.environ.get(name) for name in SEED_VARIABLES}
    # A CUDA device not yet initialised has no state to keep (and reading it would initialise it).
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

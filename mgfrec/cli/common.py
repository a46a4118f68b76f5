"""Shared CLI plumbing: config loading from --config/--set, clean error exits, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console(stderr=True)  # progress, messages, errors
out = Console()  # tables meant as the command's output
T = TypeVar("T")

CONFIG_HELP = "YAML config file (default: built-in defaults; see configs/)."
SET_HELP = "Override any config field, e.g. --set agent.max_groundings=3 (repeatable)."


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected errors (bad input, bad config, unknown component) into a message and exit code 2."""
    from mgfrec.config.load import ConfigError
    from mgfrec.registry import RegistryError

    try:
        yield
    except (ConfigError, RegistryError, ValueError, FileNotFoundError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2) from None


def run(fn: Callable[[], T]) -> T:
    """``fn()`` with clean errors. Anything printed to stdout while it works (DeepSpeed and other libraries
    print there) goes to stderr: a command's stdout is only what it prints afterwards (its table or --json).
    Long stages show their progress on stderr (:mod:`mgfrec.progress`)."""
    from mgfrec import progress
    from mgfrec.cli.quiet import library_output

    try:
        with user_errors(), redirect_stdout(sys.stderr), progress.reporting(), library_output():
            return fn()
    except KeyboardInterrupt:
        console.print("stopped by the user (Ctrl-C)", highlight=False)
        raise typer.Exit(130) from None


def load(config: str | None, sets: list[str] | None, values: Mapping[str, Any] | None = None):
    from mgfrec.config.load import load_config

    return load_config(config, sets or (), values)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()

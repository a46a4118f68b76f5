"""The config a trained run is loaded with: its ``config.yaml``, with the files it names found again.

A run folder names files by path: the template files it was trained with (the agent's and the user agent's,
copied into ``RUN/prompts/`` by :func:`~mgfrec.text.prompts.keep_run_prompts`) and the user agent's response
cache. A run moved elsewhere reads its own copies instead of paths that are gone
(:func:`~mgfrec.text.prompts.run_prompts`, :func:`~mgfrec.user_agents.base.cache_of_run`). ``evaluate``,
``recommend``, ``serve`` and ``chat`` load runs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mgfrec.config.load import load_config
from mgfrec.config.schema import MGFRecConfig
from mgfrec.text.prompts import run_prompts
from mgfrec.user_agents.base import cache_of_run


def load_run_config(run_dir: str | Path, sets: Sequence[str] = ()) -> MGFRecConfig:
    """``RUN/config.yaml`` with ``sets`` applied, its template files and response cache found in the run folder
    when the paths it records are gone."""
    cfg = load_config(Path(run_dir) / "config.yaml", tuple(sets))
    cfg = run_prompts(cfg, run_dir)
    return cfg.model_copy(update={"user_agent": cache_of_run(cfg.user_agent, run_dir)})

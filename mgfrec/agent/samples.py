"""The samples the agent is trained and validated on, and how their recall lists are made.

One :class:`AgentSample` is one user of a split as item indices: history (oldest first), the recall list
(best first) and the target. SFT (:mod:`mgfrec.rl.sft`), GRPO (:mod:`mgfrec.rl.fit`) and the per-epoch
policy evaluation (:mod:`mgfrec.eval.policy_eval`) all start from these; :func:`to_rollout_sample` turns one
into what the agent is shown (titles, never the target).

The recall lists come from a baseline run folder (:class:`RecallOptions`): an existing one
(``recall_run``), or a retriever of ``recall_model`` fitted into ``OUT/recall/`` with
:func:`~mgfrec.retrievers.fit.fit_baseline` and reused while it matches. :func:`recall_samples` does all of
it: the recall run, the config with ``retriever.model`` set to the recall model actually used, and seeded
train and valid samples carrying their top ``retriever.recall_size`` lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgfrec.agent.loop import RolloutSample
from mgfrec.config.schema import MGFRecConfig, RetrieverConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.data.protocol import subsample_rows
from mgfrec.registry import Registry, with_registry
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.retrievers.recall import recall_lists
from mgfrec.runs import RUN_FILE, read_run_info, shown_path, wait_until
from mgfrec.signals import stop_exception


@dataclass(frozen=True)
class AgentSample:
    """One sample as item indices: history (oldest first), recall list (best first, ``-1`` pads), target."""

    history: tuple[int, ...]
    recall: tuple[int, ...]
    target: int
    sample_id: Any = None


SFTSample = AgentSample
"""The name SFT trajectory synthesis (:mod:`mgfrec.rl.sft_data`) uses for the same sample."""


@dataclass(frozen=True)
class RecallOptions:
    """Where the recall lists come from: an existing baseline run folder, else a fit of ``recall_model`` (None: the
    config's ``retriever.model``, which ``--recall-model``, ``--set`` and a sweep's grid set)."""

    recall_model: str | None = None
    recall_run: str | None = None  # an existing baseline run folder; overrides recall_model


def to_rollout_sample(sample: AgentSample, titles: Sequence[str]) -> RolloutSample:
    """What the agent is shown of ``sample`` (titles of its history and recall list; never the target)."""
    return RolloutSample(
        tuple(titles[i] for i in sample.history),
        tuple(titles[i] for i in sample.recall if i >= 0) or None,
        sample_id=sample.sample_id,
    )


@with_registry
def recall_for(
    ds: PreparedDataset,
    cfg: MGFRecConfig,
    options: RecallOptions,
    out: Path,
    reg: Registry | None = None,
    before_fit: Callable[[], None] = lambda: None,
    may_fit: bool = True,
) -> tuple[Path, str]:
    """The recall run folder and its model name: ``options.recall_run`` as given, else a fit into ``OUT/recall``
    (reused when it already holds a finished fit of the same model on the same data). ``before_fit`` runs once
    ``OUT/recall`` was fitted anew: an earlier run in OUT no longer matches its recall model from then on (a fit
    refused or failed puts the earlier recall run back, and the earlier run stays whole). ``may_fit=False``: another
    process (the first of a multi-process fit) fits ``OUT/recall``; this one waits until it holds a reusable fit."""
    if options.recall_run is not None:
        info = read_run_info(options.recall_run)
        if info.kind != "baseline":
            recall = info.extra.get("recall_run") if info.kind == "agent" else None  # what the user likely meant
            hint = f" (an agent run; its recall run is {recall})" if recall else ""
            raise ValueError(
                f"--recall-run {options.recall_run}: a baseline run folder is needed, got kind '{info.kind}'{hint}"
            )
        if info.data_checksum != ds.checksum:
            raise ValueError(
                f"--recall-run {options.recall_run}: it was trained on other data ({info.data}) than --data {ds.root}"
            )
        return Path(options.recall_run), info.model
    run_dir = Path(out) / "recall"
    model = options.recall_model or cfg.retriever.model  # --set retriever.model and a grid's were overwritten
    fit_cfg = cfg.model_copy(update={"retriever": cfg.retriever.model_copy(update={"model": model})})
    if not may_fit:  # an old OUT/recall that the first process is replacing must not be read, nor fitted here too
        wait_until(lambda: _reusable(run_dir, ds, fit_cfg), "the recall run", run_dir / RUN_FILE)
        return run_dir, model
    if (run_dir / RUN_FILE).is_file() and _reusable(run_dir, ds, fit_cfg, quiet=False):
        return run_dir, model
    fitted = fit_baseline(ds, fit_cfg, run_dir, reg)  # a fit that fails puts the earlier OUT/recall back
    before_fit()
    if getattr(fitted.retriever, "stopped", None) == "user":
        # The recall fit's Ctrl-C stops it gracefully (its best epoch is saved), as in `mgfrec baseline fit`; here it
        # is the whole command the user stopped, not one stage of it (the command went on, and exited 0); a SIGTERM
        # stops it as SIGTERM (exit 143), not as Ctrl-C
        raise stop_exception(getattr(fitted.retriever, "stop_signal", None))
    return run_dir, model


def _reusable(run_dir: Path, ds: PreparedDataset, fit_cfg: MGFRecConfig, quiet: bool = True) -> bool:
    """Whether ``run_dir`` holds a finished recall fit of ``fit_cfg``'s model and settings on ``ds``; one cut short
    by Ctrl-C is fitted again. ``quiet``: a run file being written (or unreadable) counts as not yet there."""
    try:
        info = read_run_info(run_dir)
    except (OSError, ValueError):
        if quiet:
            return False
        raise
    return (
        info.model == fit_cfg.retriever.model
        and info.data_checksum == ds.checksum
        and info.extra.get("stopped") != "user"
        and _same_fit(run_dir, fit_cfg)
    )


def _same_fit(run_dir: Path, cfg: MGFRecConfig) -> bool:
    """Whether the recall run in ``run_dir`` was fitted with ``cfg``'s retriever and embedding settings (the
    recall list's length aside, which is read from it later), so that reusing it gives what a fit would."""
    from mgfrec.config.load import load_config
    from mgfrec.registry import registry

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return False
    try:
        old = load_config(saved)
    except Exception:  # noqa: BLE001 - an unreadable config is refitted, not trusted
        return False

    # a model that never reads a title (SASRec, GRU4Rec, Caser, pop) was fitted again for another embedder (s35)
    # (a plugin that does not say, or cannot be loaded, is refitted rather than trusted)
    reads = registry().declares("retriever", cfg.retriever.model, "reads_titles")

    def settings(c: MGFRecConfig) -> tuple[dict, dict]:  # where and in what batches it ran changes nothing
        return (
            c.retriever.model_dump(exclude={"recall_size", "device"}),
            c.embedding.model_dump(exclude={"batch_size", "device", "cache_dir"}) if reads else {},
        )

    return settings(old) == settings(cfg)


def _recall_retriever(cfg: MGFRecConfig, recall_dir: Path, model: str, reused: str | None) -> RetrieverConfig:
    """``cfg.retriever`` as the recall lists were made: the model, and for a reused recall run (``reused``) its
    own ``config.yaml``'s settings and options, the recall list's length kept (the agent's setting). It was the
    model alone: a config's options for another model were recorded beside it, and every later reader of the run's
    config.yaml (``derive``, ``evaluate``, ``--resume``) refused them."""
    if reused is not None and (recall_dir / "config.yaml").is_file():
        from mgfrec.config.load import load_config

        try:
            saved = load_config(recall_dir / "config.yaml").retriever
        except Exception:  # noqa: BLE001 - unreadable: its model alone, below
            saved = None
        if saved is not None and saved.model == model:
            return saved.model_copy(update={"recall_size": cfg.retriever.recall_size})
    if reused is None or model == cfg.retriever.model:  # fitted here: with the config's options
        return cfg.retriever.model_copy(update={"model": model})
    return cfg.retriever.model_copy(update={"model": model, "options": {}})  # the config's were another model's


def split_samples(
    ds: PreparedDataset, split: str, recall: np.ndarray, limit: int | None, seed: int
) -> list[AgentSample]:
    """The samples of ``split`` with their recall rows; a seeded subsample of ``limit`` when smaller."""
    frame = ds.split(split)
    return [
        AgentSample(
            tuple(int(i) for i in frame["history"].iloc[n]),
            tuple(int(i) for i in recall[n]),
            int(frame["target"].iloc[n]),
            frame["sample_id"].iloc[n],
        )
        for n in subsample_rows(len(frame), limit, seed)
    ]


@with_registry
def recall_samples(
    ds: PreparedDataset,
    cfg: MGFRecConfig,
    recall: RecallOptions,
    out: Path,
    reg: Registry | None,
    *,
    max_train: int | None,
    max_valid: int | None,
    seed: int,
    say: Callable[[str], None] = lambda _: None,
    before_fit: Callable[[], None] = lambda: None,
    may_fit: bool = True,
) -> tuple[MGFRecConfig, Path, list[AgentSample], list[AgentSample]]:
    """The recall run (:func:`recall_for` with ``recall``'s settings), ``cfg`` with ``retriever.model`` set
    to its model, and seeded train and valid samples carrying their recall lists; shared by SFT and GRPO."""
    recall_dir, recall_model = recall_for(ds, cfg, recall, out, reg, before_fit, may_fit)
    cfg = cfg.model_copy(update={"retriever": _recall_retriever(cfg, recall_dir, recall_model, recall.recall_run)})
    size = cfg.retriever.recall_size
    train = split_samples(ds, "train", recall_lists(ds, "train", size, recall_dir), max_train, seed)
    valid = split_samples(ds, "valid", recall_lists(ds, "valid", size, recall_dir), max_valid, seed)
    say(f"recall: {recall_model} ({shown_path(recall_dir)}); {len(train)} train and {len(valid)} valid samples")
    if recall.recall_run is not None and read_run_info(recall_dir).extra.get("stopped") == "user":
        say(  # a fit into OUT/recall stopped so is fitted again (_reusable); one given by the user is theirs to keep
            f"note: the recall run {shown_path(recall_dir)} was stopped (Ctrl-C or SIGTERM) before its training "
            "ended; its recall lists are its best epoch so far"
        )
    if size > ds.num_items:  # the lists hold every item: a typo (300 for 30) was otherwise silent
        n = ds.num_items
        say(f"note: retriever.recall_size {size} is above the catalogue's {n} items; each recall list holds all {n}")
    return cfg, recall_dir, train, valid

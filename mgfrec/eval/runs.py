"""From a run folder to an evaluation: load the run's model as a scorer, evaluate it, store the result.

``mgfrec evaluate`` and ``mgfrec report`` are thin wrappers over :func:`evaluate_run` and
:func:`result_for_run`. Baseline runs (``kind: baseline``) are loaded through the ``retriever`` registry
exactly as a plugin's retriever would be. Agent runs are evaluated by the agent code, which writes the same
``eval_<split>.json`` / ``ranks_<split>.csv`` through :meth:`EvalResult.save`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mgfrec.config.schema import EvalConfig, MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.data.protocol import check_limit, subsample_ids
from mgfrec.ranking.evaluator import evaluate
from mgfrec.ranking.results import EvalResult, result_paths
from mgfrec.registry import Registry, registry, with_registry
from mgfrec.retrievers.fit import (
    AgentEvaluationUnavailable,
    LoadedRun,
    check_retriever_current,
    load_scorer,
    open_data,
)
from mgfrec.runs import RUN_FILE, RunInfo, check_same_run, read_run_info, with_run_plugins
from mgfrec.staleness import check_agent_current

__all__ = [
    "AgentEvaluationUnavailable",
    "LoadedRun",
    "evaluate_run",
    "load_scorer",
    "open_data",
    "result_for_run",
    "subsampled",
]


@with_registry
@with_run_plugins
def evaluate_run(
    run_dir: str | Path,
    split: str | None = None,
    config: EvalConfig | None = None,
    *,
    data: str | Path | None = None,
    batch_size: int | None = None,
    exclude_history: bool | None = None,
    write: bool = True,
    reg: Registry | None = None,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
    secrets_from: MGFRecConfig | None = None,
    secret_sets: Sequence[str] = (),
) -> EvalResult:
    """Evaluate a run on ``split`` (default ``config.split``) and, if ``write``, save the result into the
    run folder (eval_<split>.json, eval_<split>.csv, ranks_<split>.csv). Baselines are scored over the
    whole catalogue; agent runs are rolled out and ranked from their answers
    (:mod:`mgfrec.eval.agent_eval`; ``limit`` evaluates a seeded subsample, as it does for a baseline that writes
    per sample: :func:`subsampled`). ``progress(done, total)`` is
    called after each batch of a baseline. ``secrets_from``: an agent run's training config held in memory, for
    the secrets its ``config.yaml`` does not record (``mgfrec sweep`` evaluating the cell it trained).
    ``secret_sets``: ``--set`` overrides giving such secrets again (``user_agent.base_url=https://bob:pw@...``); each
    fills only a section that, its secrets left out, is the one the run recorded (``with_secrets_of``), and
    changes nothing else."""
    check_limit(limit)
    config = config or EvalConfig()
    info = read_run_info(run_dir)
    if info.kind == "agent":
        from mgfrec.eval.agent_eval import evaluate_agent  # late: loads the policy stack

        check_agent_current(run_dir, info, rolling_out=True)  # its config is the trained run's of that time
        if secrets_from is None and secret_sets:
            from mgfrec.agent.run_config import load_run_config
            from mgfrec.config.redaction import check_secret_sets

            secrets_from = load_run_config(run_dir, secret_sets)
            check_secret_sets(load_run_config(run_dir), secrets_from, secret_sets, str(run_dir))
        result, _ = evaluate_agent(
            Path(run_dir),
            info,
            open_data(Path(run_dir), info, data),
            split or config.split,
            config,
            limit=limit,
            exclude_history=exclude_history,
            write=write,
            secrets_from=secrets_from,
        )
        if write:
            check_same_run(run_dir, info)
            result.save(run_dir)
        return result
    loaded = load_scorer(run_dir, data, reg)
    result = evaluate(
        loaded.scorer,
        loaded.ds,
        split or config.split,
        config,
        method=loaded.info.model,
        batch_size=config.batch_size if batch_size is None else batch_size,
        exclude_history=config.exclude_history if exclude_history is None else exclude_history,
        progress=progress,
        limit=limit if subsampled(info, reg) else None,
    )
    if write:
        check_same_run(loaded.run_dir, loaded.info)  # not fitted again meanwhile (review s33)
        result.save(loaded.run_dir)
    return result


@with_registry
@with_run_plugins
def result_for_run(
    run_dir: str | Path,
    split: str = "test",
    config: EvalConfig | None = None,
    *,
    evaluate_missing: bool = True,
    batch_size: int | None = None,
    exclude_history: bool | None = None,
    reg: Registry | None = None,
    limit: int | None = None,
    secret_sets: Sequence[str] = (),
) -> EvalResult:
    """The run's stored result for ``split``; evaluates (and stores) it first when missing, when it was ranked
    with the other ``exclude_history``, or, for a ``limit`` and a run it subsamples (:func:`subsampled`: an agent run,
    BIGRec), when the stored result is neither that
    very subsample (the same sample ids: ``limit`` and ``config.seed``) nor the whole split (which holds the
    subsample: the report cuts it, so a whole-split result is neither rolled out again nor overwritten)."""
    if not (Path(run_dir) / RUN_FILE).is_file():
        read_run_info(run_dir)  # a typo or a data set is named for what it is, not as a result to evaluate
    paths = result_paths(run_dir, split)
    wanted = (config or EvalConfig()).exclude_history if exclude_history is None else exclude_history
    why = "missing"  # why no stored result is this comparison's, for --no-evaluate
    other_way = None  # a stored result ranked the other way, which an evaluation now replaces
    missing = next((paths[k] for k in ("json", "ranks") if not paths[k].is_file()), None)
    if missing is None:
        stored = EvalResult.load(run_dir, split)
        if stored.exclude_history is not None and stored.exclude_history != wanted:
            stored, other_way = None, stored  # ranked the other way (--no-exclude-history): not this comparison's
            why = (
                f"ranked with exclude_history: {str(not wanted).lower()}, and this comparison needs "
                f"{str(wanted).lower()}"
            )
    else:
        stored = None
    if stored is not None:
        ds = _check_current(run_dir, reg)
        if limit is None:
            return stored
        info = read_run_info(run_dir)
        if not subsampled(info, reg):
            return stored
        ds = ds if ds is not None else open_data(Path(run_dir), info)
        whole = int(ds.counts["samples"][split])
        if len(stored.ranks) == whole:
            return stored  # the whole split, which the report cuts to the subsample
        wanted_ids = subsample_ids(ds.split(split)["sample_id"].to_numpy(), limit, (config or EvalConfig()).seed)
        if np.array_equal(np.sort(stored.sample_ids), wanted_ids):
            return stored  # this very subsample (the same size and eval.seed)
        seed = (config or EvalConfig()).seed
        why = f"holds {len(stored.ranks)} samples, not the {limit}-sample subsample of eval.seed {seed}"
    if not evaluate_missing:
        again = (  # the comparison's own ranking: without the flag, the command made the refused result again
            f"mgfrec evaluate {run_dir} --split {split}"
            + ("" if wanted else " --no-exclude-history")
            + (f" --limit {limit}" if limit is not None else "")
            # the seed decides which subsample: without it the hint made eval.seed 0's again (review s40)
            + (f" --set eval.seed={seed}" if limit is not None and (seed := (config or EvalConfig()).seed) else "")
            + ("" if (config or EvalConfig()).greedy else " --set eval.greedy=false")
        )
        if why == "missing":  # the file that is missing: the JSON was named when only the ranks file was gone
            raise FileNotFoundError(f"{missing}: missing; run '{again}'")
        raise FileNotFoundError(f"{paths['json']}: {why}; run '{again}', or leave out --no-evaluate")
    if other_way is not None:  # replaced without a word, an agent's rollouts included (review s29)
        flag = "" if other_way.exclude_history else " --no-exclude-history"
        warnings.warn(
            f"{run_dir}: its stored {split} evaluation, ranked with exclude_history: "
            f"{str(other_way.exclude_history).lower()}, is replaced by one ranked with {str(wanted).lower()}; "
            f"'mgfrec evaluate {run_dir} --split {split}{flag}' makes it again",
            ResultReplacedWarning,
            stacklevel=2,
        )
    if stored is not None:  # a subsample of other samples: this evaluation replaces it in the run folder
        # a limit of the split's size or more is the whole split: it was called a subsample, with a hint to do
        # what was being done (demo --eval-samples 0, review s33)
        replacement = (
            f"one on the whole {split} split ({whole} samples)"
            if limit >= whole
            else f"one on the {limit}-sample subsample of eval.seed {(config or EvalConfig()).seed}; 'mgfrec "
            f"evaluate {run_dir} --split {split}' evaluates the whole split again"
        )
        warnings.warn(
            f"{run_dir}: its stored {split} evaluation ({len(stored.ranks)} samples) is replaced by {replacement}",
            ResultReplacedWarning,
            stacklevel=2,
        )
    return evaluate_run(
        run_dir,
        split,
        config,
        batch_size=batch_size,
        exclude_history=exclude_history,
        reg=reg,
        limit=limit,
        secret_sets=secret_sets,
    )


def subsampled(info: RunInfo, reg: Registry | None = None) -> bool:
    """Whether ``limit`` cuts this run's evaluation to a seeded subsample: an agent run's (rolled out per sample)
    and a baseline's whose retriever writes per sample (its class says ``generates = True``: BIGRec). Other
    baselines score the whole split, which is cheap, and the report cuts it; BIGRec wrote a title for each of
    3,162 samples where a comparison used 100 (review s38)."""
    if info.kind == "agent":
        return True
    try:
        cls = (reg or registry()).load("retriever", info.model)
    except Exception:  # noqa: BLE001 - an unknown or broken retriever is named where it is built
        return False
    return bool(getattr(cls, "generates", False))


class ResultReplacedWarning(UserWarning):
    """A run's stored evaluation was replaced by one on another subsample (``mgfrec report --limit``)."""


def _check_current(run_dir: str | Path, reg: Registry | None) -> PreparedDataset | None:
    """A run whose data set was prepared again since (its checksum), a baseline whose retriever can tell that its
    stored results are stale (``check_current``: a hybrid whose reused collaborative run was fitted again), or a
    derived agent run whose trained run was trained again, refuses before a stored result is read. Returns the
    run's data set where it was opened to check it (None where it is not there to check)."""
    info = read_run_info(run_dir)
    ds = None
    if info.data_checksum and (Path(info.data) / "manifest.json").is_file():
        # its data set prepared again in place: evaluate refused the run, and report showed its old numbers
        ds = open_data(Path(run_dir), info)
    if info.kind == "agent":
        check_agent_current(run_dir, info)  # a derived run whose trained run was trained again, a refitted recall run
        return ds
    if info.kind == "baseline":
        check_retriever_current(run_dir, info.model, reg)
    return ds

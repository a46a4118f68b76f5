"""Whether a run's results are still its own: a derived run whose trained run was trained again, or an agent run
whose recall run was fitted again, holds another policy's or another recall model's results. ``evaluate``,
``report``, ``fit --init``, ``recommend``, ``serve``, ``chat``, ``derive`` and the demo refuse (or retrain) such a
run; ``sft``, ``fit`` and ``derive`` record what the checks compare (``extra.trained_created``,
``extra.recall_created``).
"""

from __future__ import annotations

from pathlib import Path

from mgfrec.runs import RUN_FILE, RunInfo, read_run_info
from mgfrec.runs import created_stamp as recall_created  # noqa: F401 (its name before mgfrec.runs had it)


def check_derived_current(run_dir: str | Path, info: RunInfo, *, rolling_out: bool = False) -> None:
    """Refuse a derived run whose trained run was trained again since it was derived (its ``run.json`` ``created``
    differs from ``extra.trained_created``): it points at that run's ``policy/`` by path, so its stored results are
    another policy's, and its config the earlier run's. A run derived from a derived run is checked down the chain
    to the trained run (only the first link was). ``rolling_out`` (``evaluate``, which needs the policy) also
    refuses a trained run that is gone; reading stored results (``report`` of a moved or archived folder) does not.
    A run that is not derived, or was derived before ``trained_created`` existed, passes."""
    seen = {Path(run_dir).resolve()}
    chain: list[tuple[str | Path, RunInfo]] = []  # the derived links read so far, this run first
    link = run_dir
    while True:
        trained, recorded = info.extra.get("trained_run"), info.extra.get("trained_created")
        if not trained or not recorded:
            return
        chain.append((link, info))
        # every link from this one up to the run asked about, each with its own preset and --set overrides: the
        # top run's preset alone, from the bottom run, turned a no-feedback + no-recall run into a no-feedback one
        # and dropped the overrides (review s30)
        again = "derive it again: " + " && ".join(derive_command(d, i) for d, i in reversed(chain))
        if not (Path(trained) / RUN_FILE).is_file():
            if (Path(trained) / "fit_start.json").is_file():
                # its folder holds a fit started since (the earlier policy already deleted): report showed the
                # stored results of a policy that is gone, beside the unfinished run, while evaluate refused
                raise ValueError(
                    f"{run_dir}: its trained run {trained} is being trained again (an unfinished fit is there, the "
                    f"policy this run was derived from is gone); {again} once that fit has finished"
                )
            if rolling_out:
                raise FileNotFoundError(
                    f"{run_dir}: its trained run {trained} ({RUN_FILE} extra.trained_run) is not a run folder any "
                    f"more (moved, deleted, or being trained again); {again} once it is back"
                )
            return
        trained_info = read_run_info(trained)
        if trained_info.created != recorded:
            raise ValueError(
                f"{run_dir}: derived from {trained} before it was trained again; its results and config are the "
                f"earlier policy's: {again}"
            )
        if Path(trained).resolve() in seen:  # a hand-edited loop of extra.trained_run
            return
        seen.add(Path(trained).resolve())
        link, info = trained, trained_info


def derive_command(run_dir: str | Path, info: RunInfo) -> str:
    """The ``mgfrec derive`` command that made ``run_dir`` (a derived run's ``run.json``): its trained run, its
    preset and its ``--set`` overrides as recorded (a secret in them reads ``<redacted>``: give it again)."""
    import shlex

    tag = next((f"--{k} {info.extra[k]}" for k in ("ablation", "variant") if info.extra.get(k)), "--ablation ...")
    sets = "".join(f" --set {shlex.quote(str(o))}" for o in info.extra.get("overrides") or [])
    trained = shlex.quote(str(info.extra["trained_run"]))
    return f"mgfrec derive {trained} {shlex.quote(str(run_dir))} {tag}{sets}"


def check_recall_current(run_dir: str | Path, info: RunInfo) -> None:
    """Refuse an agent run whose recall run was fitted again since the agent was trained over it (its ``run.json``
    ``created`` differs from ``extra.recall_created``): the agent's recall lists, and so its stored results and
    any new evaluation, would be another recall model's. Runs made before ``recall_created`` existed pass."""
    recall, recorded = info.extra.get("recall_run"), info.extra.get("recall_created")
    if not recall or not recorded or not (Path(recall) / RUN_FILE).is_file():
        return  # a recall run that is gone is named by recall_run_of where it is needed
    if read_run_info(recall).created != recorded:
        raise ValueError(
            f"{run_dir}: its recall run {recall} was fitted again since this run was trained over it "
            f"({RUN_FILE} created differs from extra.recall_created), so its recall lists and results would be "
            "another recall model's; train the agent again over it (mgfrec sft / fit)"
        )


def check_agent_current(run_dir: str | Path, info: RunInfo, *, rolling_out: bool = False) -> None:
    """:func:`check_derived_current` then :func:`check_recall_current`: an agent run's stored results, or a new
    evaluation of it, would be another policy's or another recall model's."""
    check_derived_current(run_dir, info, rolling_out=rolling_out)
    check_recall_current(run_dir, info)

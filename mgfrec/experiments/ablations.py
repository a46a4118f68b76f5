"""Ablation presets of the paper's Table 5 as named lists of config overrides.

A preset is data (``section.field=value`` strings, the same syntax as ``--set``), so an ablation is
visible in a run's ``config.yaml`` and can be combined with a sweep. This module must not train anything.

Two ways to use a preset: ``mgfrec fit --ablation NAME`` trains a policy with the part removed (the
paper's Table 5), and :func:`derive_ablation_run` makes an evaluation-only run folder that applies the
preset at inference to an already trained policy (what ``mgfrec demo`` shows on a CPU budget). The second
is cheaper and answers a different question: how much the trained agent leans on that part.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mgfrec.agent.final_ranking import check_final_ranking
from mgfrec.agent.run_config import load_run_config
from mgfrec.config.components import check_components, plugins_named
from mgfrec.config.load import (
    _merge,
    entries_besides_config,
    flat_fields,
    parse_override,
    redacted_override,
    validate,
    write_resolved,
)
from mgfrec.config.schema import MGFRecConfig
from mgfrec.experiments.reuse import config_digest
from mgfrec.output_folders import clear_results
from mgfrec.runs import (
    RELATIVE_PATHS,
    RUN_FILE,
    RunInfo,
    json_ready,
    plugins_of_run,
    read_run_info,
    recall_run_of,
    write_run_info,
)
from mgfrec.staleness import check_agent_current
from mgfrec.text.prompts import RUN_PROMPTS, keep_run_prompts

# Each preset removes one of MGFRec's parts; "full" keeps all of them so that a table can list it by name.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no-multi-grounding": ("agent.max_groundings=1",),
    # the trained run's user agent options are its backend's, which "none" does not take: derive refused the run
    "no-feedback": ("user_agent.backend=none", "user_agent.options={}"),
    "no-recall": ("agent.use_recall=false",),
}


# Evaluation variants: not ablations (nothing is removed) but other readings of the same trained agent,
# each reported as its own row beside the paper's.
EVAL_VARIANTS: dict[str, tuple[str, ...]] = {
    # the answered item first, then the recall run's order (the paper ranks by L2 to the answer's title)
    "answer-first": ("agent.final_ranking=answer_then_recall",),
    # L2 to the answered item over its title embedding joined to the recall model's item embedding
    "joint-l2": ("agent.final_ranking=l2_joint",),
}


def ablation_overrides(name: str) -> tuple[str, ...]:
    """The overrides of preset ``name``; an unknown name is refused with the list of known ones."""
    try:
        return ABLATIONS[name]
    except KeyError:
        raise ValueError(f"--ablation {name}: unknown ablation; choose one of {', '.join(ABLATIONS)}") from None


def apply_overrides(cfg: MGFRecConfig, overrides: Iterable[str], source: str = "<overrides>") -> MGFRecConfig:
    """``cfg`` with ``section.field=value`` overrides merged in and the result validated again, so a wrong
    field path or value is refused with its dotted path (:class:`~mgfrec.config.load.ConfigError`)."""
    raw = cfg.model_dump(mode="json")
    for text in overrides:
        raw = _merge(raw, parse_override(text))
    return validate(raw, source)


def check_ablation_removes(cfg: MGFRecConfig, name: str, source: str) -> None:
    """Refuse an ablation that would add to ``cfg`` what it is named for removing: ``no-multi-grounding`` (at most
    one grounding) over a run of ``agent.max_groundings: 0`` gave it a grounding turn it never had, and a row
    labelled as removing something scored otherwise (review s39)."""
    if name == "no-multi-grounding" and cfg.agent.max_groundings < 1:
        raise ValueError(
            f"{source}: agent.max_groundings is {cfg.agent.max_groundings}, so the agent never grounds more than "
            "once; no-multi-grounding (at most 1) would add a grounding, not remove one"
        )


def apply_ablation(cfg: MGFRecConfig, name: str) -> MGFRecConfig:
    """``cfg`` with ablation preset ``name`` applied (``full`` returns an equal config)."""
    check_ablation_removes(cfg, name, f"--ablation {name}")
    return apply_overrides(cfg, ablation_overrides(name), f"--ablation {name}")


def derive_ablation_run(run_dir: str | Path, name: str, out: str | Path, overrides: Iterable[str] = ()) -> Path:
    """An agent run folder ``out`` that evaluates ``run_dir``'s policy (and recall run) with preset ``name``
    applied at inference only: ``config.yaml`` with the overrides, ``run.json`` pointing at the policy.
    ``mgfrec evaluate`` / ``mgfrec report`` treat it like any agent run; nothing is copied or trained.
    ``overrides`` (``section.field=value``, as ``--set``) apply after the preset's."""
    return _derive(
        run_dir, out, ablation_overrides(name), f"--ablation {name}", name, {"ablation": name}, tuple(overrides)
    )


def derive_variant_run(run_dir: str | Path, name: str, out: str | Path, overrides: Iterable[str] = ()) -> Path:
    """Like :func:`derive_ablation_run` for an evaluation variant of :data:`EVAL_VARIANTS` (``answer-first``,
    ``joint-l2``)."""
    if name not in EVAL_VARIANTS:
        raise ValueError(f"--variant {name}: unknown; choose one of {', '.join(EVAL_VARIANTS)}")
    return _derive(run_dir, out, EVAL_VARIANTS[name], f"variant {name}", name, {"variant": name}, tuple(overrides))


# What a derived run never reads: it evaluates the trained run's policy, so training settings and the policy's
# source are the trained run's (policy.dtype and the rest of the policy section still apply when it is loaded;
# grpo.rewards makes the reward columns of agent_<split>.json)
_NOT_READ_BY_DERIVE = ("trainer.", "policy.model", "grpo.", "retriever.", "data.")
# read all the same: the rewards (validation's score), and the recall list's length (the recall run is the trained
# run's; its model and training settings were fixed when it was fitted)
_READ_OF_GRPO = ("grpo.rewards", "grpo.reward_options", "retriever.recall_size")


def _check_derive_overrides(overrides: Iterable[str], preset: Iterable[str], source: str, run_dir: Path) -> None:
    """Refuse a ``--set`` that would undo the preset the derived run is named for (a row labelled ``no-recall``
    with ``agent.use_recall=true`` is the full agent), or that sets what the derived run never reads. A section
    given whole (``--set 'agent={use_recall: true}'``) is checked field by field."""
    fixed = {o.partition("=")[0].strip(): o.partition("=")[2].strip() for o in preset}
    for text in overrides:
        for field in flat_fields(parse_override(text)):  # the dotted fields it sets: agent={use_recall: true}
            key = next((k for k in fixed if field == k or field.startswith(f"{k}.")), None)  # options.x: options
            if key is not None:
                raise ValueError(
                    f"--set {field}: {source} sets it ({key}={fixed[key]}), and the derived run is named for "
                    "that; leave it to the preset"
                )
            if field.startswith(_NOT_READ_BY_DERIVE) and not field.startswith(_READ_OF_GRPO):
                raise ValueError(
                    f"--set {field}: a derived run evaluates {run_dir}'s trained policy with its recall run on its "
                    "data set, so training settings, policy.model, data.* and the recall model's settings "
                    "(retriever.*, but retriever.recall_size) are not read; fit a new run to change them"
                )


def _derive(
    run_dir: str | Path,
    out: str | Path,
    preset: tuple[str, ...],
    source: str,
    name: str,
    tag: dict[str, str],
    overrides: tuple[str, ...] = (),
) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    info = read_run_info(run_dir)
    if info.kind != "agent":
        raise ValueError(f"{run_dir}: {source} needs an agent run (mgfrec sft / fit), got kind '{info.kind}'")
    # a trained run over a refitted recall run (or derived from a run trained again): the derived run was written,
    # and every evaluation of it refused (review s38)
    check_agent_current(run_dir, info)
    if out.resolve() == run_dir.resolve():
        raise ValueError(f"{out}: the derived run needs its own folder, not the trained run's")
    if run_dir.resolve() in out.resolve().parents:
        raise ValueError(f"{out}: inside the trained run {run_dir}; the derived run needs a folder of its own")
    if (out / "run.json").is_file():
        if "trained_run" not in read_run_info(out).extra:
            raise ValueError(
                f"{out}: holds a run that was not derived (mgfrec derive writes only its own); choose another"
            )
    elif out.is_dir():
        # config.yaml (and its prompts/) alone: a derive cut short; anything else (an interrupted fit, a data set, a
        # sweep) is not the derive's to write; a user's kept config (config.user.yaml) may stay
        if entries_besides_config(out, RUN_PROMPTS):
            raise ValueError(f"{out}: not empty and not a derived run; give a new or empty folder")
    _check_derive_overrides(overrides, preset, source, run_dir)
    trained = load_run_config(run_dir)
    if "ablation" in tag:
        check_ablation_removes(trained, tag["ablation"], f"{source} of {run_dir}")
    cfg = apply_overrides(trained, preset, source)
    if overrides:
        cfg = apply_overrides(cfg, overrides, "--set")
    recall_run = recall_run_of(run_dir, info)
    with plugins_of_run(run_dir):  # a derived run names only components that exist, a missing plugin's package
        check_components(cfg, source=f"{source} of {run_dir}", data=False)  # the run's data set, not a source
        # joint-l2 over a last-title recall run: a run written that every evaluation refused (review s37)
        check_final_ranking(cfg.agent, f"{source} of {run_dir}", recall_run=recall_run)
    extra = {
        "policy": str((run_dir / str(info.extra.get("policy", "policy"))).resolve()),
        "recall_run": recall_run,
        **tag,
        f"{next(iter(tag))}_applied_at": "evaluation",
        "trained_run": str(run_dir.resolve()),
        "trained_created": info.created,  # which training of it: a refit there makes this run stale
        **({"recall_created": info.extra["recall_created"]} if info.extra.get("recall_created") else {}),
        **({"overrides": [redacted_override(o) for o in overrides]} if overrides else {}),
    }
    extra.update(plugins_named(cfg))  # a run given where a package is missing names it
    derived = RunInfo(
        kind="agent",
        model=f"{info.model} ({name}, eval-time)",
        data=info.data,
        data_checksum=info.data_checksum,
        extra=extra,
    )
    if _already_derived(out, cfg, derived):
        # this very derived run, finished: its evaluations are its own (the demo derives its rows on every rerun,
        # and rolled each out again; review s31)
        return out
    out.mkdir(parents=True, exist_ok=True)
    # results of an earlier derivation belong to another config: cleared first, so that a derive cut short after
    # its new run.json never leaves them beside it (result_for_run would take them for this config's)
    clear_results(out)
    cfg = keep_run_prompts(cfg, out)  # its own copies, as a trained run's
    write_resolved(cfg, out)
    write_run_info(out, derived)
    return out


def _already_derived(out: Path, cfg: MGFRecConfig, derived: RunInfo) -> bool:
    """Whether ``out`` holds a finished derived run equal to ``derived`` (the same trained run and training of it,
    recall run, reading, overrides and plugins) under a config equal to ``cfg`` (template files by their text)."""
    if not (out / RUN_FILE).is_file():
        return False
    try:
        held, held_cfg = read_run_info(out), load_run_config(out)
    except (OSError, ValueError):
        return False  # damaged or of another version: derived again
    recorded = {k: v for k, v in held.extra.items() if k != RELATIVE_PATHS}
    same_run = (held.kind, held.model, held.data, held.data_checksum) == (
        derived.kind,
        derived.model,
        derived.data,
        derived.data_checksum,
    )
    return same_run and recorded == json_ready(derived.extra) and config_digest(held_cfg) == config_digest(cfg)

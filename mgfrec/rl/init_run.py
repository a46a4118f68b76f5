"""The run a fit starts from with ``--init``: its policy folder and recall run, checked (:func:`start_point`), and
the settings it was trained under that the fit's own config differs in (:func:`init_differences`), which the fit
notes, and whether the recall model the fit starts with serves its ``agent.final_ranking``
(:func:`check_start_ranking`). Split from :mod:`mgfrec.rl.fit`, which imports both from here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgfrec.agent.final_ranking import check_start_recall
from mgfrec.agent.samples import RecallOptions
from mgfrec.config.redaction import redacted
from mgfrec.config.schema import AgentConfig, MGFRecConfig
from mgfrec.data.prepared import PreparedDataset
from mgfrec.runs import RUN_FILE, policy_folder, read_run_info, recall_run_of
from mgfrec.staleness import check_agent_current

if TYPE_CHECKING:
    from mgfrec.registry import Registry
    from mgfrec.rl.fit import FitOptions


def start_point(options: FitOptions, ds: PreparedDataset) -> tuple[RecallOptions, Path | None]:
    """Where a fit starts: ``--init``'s policy folder and recall run (checked: an agent run on ``ds``), or no
    policy folder and a recall model to fit."""
    if options.init is None:
        return RecallOptions(recall_model=options.recall_model), None
    try:
        info = read_run_info(options.init)
    except FileNotFoundError as exc:  # it named no flag, and sent the user to 'mgfrec baseline fit' (review s35)
        text = str(exc).replace("'mgfrec baseline fit' or 'mgfrec fit'", "'mgfrec sft' (or 'mgfrec fit')")
        raise FileNotFoundError(f"--init {text}") from None
    if info.kind != "agent" or "policy" not in info.extra:
        raise ValueError(f"--init {options.init}: an agent run folder with a policy is needed, got kind '{info.kind}'")
    if info.data_checksum != ds.checksum:
        raise ValueError(f"--init {options.init}: it was trained on other data ({info.data}) than --data {ds.root}")
    recall_run = recall_run_of(f"--init {options.init}", info)
    check_agent_current(f"--init {options.init}", info)  # a policy trained over a recall model since refitted
    if recall_run is None:
        raise ValueError(f"--init {options.init}: its {RUN_FILE} names no recall run (extra.recall_run)")
    return RecallOptions(recall_run=recall_run), policy_folder(options.init, info)


def check_start_ranking(cfg: MGFRecConfig, options: FitOptions, reg: Registry) -> None:
    """``agent.final_ranking`` against the recall model the fit will use: ``--init``'s recall run, else the one it
    fits (``--recall-model``, ``retriever.model``). A sweep's ``l2_joint`` cell over ``pop`` failed at its fit's
    start, after the cells before it had trained (review s37). An ``--init`` that cannot be read is named later,
    by its own checks."""
    recall_run = None
    if options.init is not None:
        try:
            recall_run = recall_run_of(f"--init {options.init}", read_run_info(options.init))
        except (OSError, ValueError):
            return
        if recall_run is None:
            return
    model = options.recall_model or cfg.retriever.model
    check_start_recall(cfg.agent, recall_run, model, f"--init {options.init}", reg)


INIT_SHAPED = (
    "retriever.recall_size",
    "grounding.grounder",
    "grounding.top_k",
    "grounding.options",
    "embedding.embedder",
    "embedding.model",
    "embedding.query_instruction",
    "embedding.normalize",
    "embedding.options",
)
"""Besides ``agent.*``: the settings that shape what a policy was trained on (its prompts, what a grounding
shows), compared by :func:`init_differences`. The embedder, its options, its query prefix and normalisation, and the
grounder's options change which items a ``<ground>`` returns as much as the model does (review s37: only the model
and the grounder's name were compared)."""


def init_differences(init: str | Path, cfg: MGFRecConfig) -> list[tuple[str, Any, Any]]:
    """``(field, the --init run's value, this fit's value)`` for each ``agent.*`` field and each of
    :data:`INIT_SHAPED` where they differ: a fit does not take them from ``--init``'s ``config.yaml``, so an SFT
    trained on 10 recall titles and 10 history items went on with 30 and the whole history without a word (review
    s30). Template files are compared by their text. Empty when the run's config cannot be read (its own checks
    name that)."""
    import yaml

    from mgfrec.text.prompts import PROMPT_FIELDS, RUN_PROMPTS, same_prompt

    try:
        theirs = yaml.safe_load((Path(init) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    # as config.yaml records it, secrets redacted: the note is printed, and a key in a plugin embedder's options was
    # shown in clear, as differing from the run's "<redacted>" (review s38)
    mine = redacted(cfg)
    fields = [f"agent.{name}" for name in AgentConfig.model_fields] + list(INIT_SHAPED)
    found = []
    for field in fields:
        section, name = field.split(".", 1)
        if not isinstance(theirs, dict) or not isinstance(theirs.get(section), dict) or name not in theirs[section]:
            continue
        old, new = theirs[section][name], mine[section][name]
        template = section == "agent" and name in PROMPT_FIELDS
        copy = Path(init) / RUN_PROMPTS / f"{PROMPT_FIELDS[name]}.txt" if template else None
        if copy is not None and old is not None and copy.is_file():
            # the template it trained on is its own copy: config.yaml names it where the run was made, so a moved
            # --init was noted as trained under another template, the path of before shown (note s33)
            old = str(copy.resolve())
        if not (same_prompt(old, new) if template else old == new):
            found.append((field, old, new))
    return found


def init_note(init: str | Path, cfg: MGFRecConfig, *, swept: tuple[str, ...] = (), what: str = "this fit's") -> str:
    """The note ``fit --init`` and ``sweep --init`` print when :func:`init_differences` finds any ("" when none);
    fields of ``swept`` (a sweep's grid: they differ on purpose) and those under them are left out."""
    import json

    differ = [d for d in init_differences(init, cfg) if not any(d[0] == s or d[0].startswith(s + ".") for s in swept)]
    if not differ:
        return ""
    shown = ", ".join(f"{f} {json.dumps(old)} -> {json.dumps(new)}" for f, old, new in differ[:6])
    return (
        f"note: --init {init} was trained under other settings than {what} ({shown}"
        f"{', ...' if len(differ) > 6 else ''}): its policy learned prompts of another shape; give them "
        f"with --set, or --config {Path(init) / 'config.yaml'}, to keep them"
    )

"""What a demo is made with and what its folder keeps of it: the options of its CPU budget (:class:`DemoOptions`),
``OUT/demo.json`` (the settings its stages were made with, which bind a rerun once a stage has finished), and
whether a finished stage may be reused (a hybrid over a refitted SASRec, an agent over a refitted recall run may not).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mgfrec.config.load import entries_besides_config, flat_fields
from mgfrec.config.redaction import redacted
from mgfrec.config.schema import DataConfig, MGFRecConfig
from mgfrec.output_folders import NOT_A_RUN, refuse_held
from mgfrec.runs import RUN_FILE, read_json_object, read_run_info
from mgfrec.staleness import check_recall_current


@dataclass(frozen=True)
class DemoOptions:
    """The CPU budget of the demo's learned stages (sized for minutes on 2 cores, not for quality)."""

    agent: bool = True  # the agent stages (SFT, GRPO, ablations); False stops after the baselines
    # The agent reads the recall list of the strongest baseline the demo trains (hybrid on most sets) and,
    # with constrained decoding (configs/default.yaml), answers one of the titles it was shown.
    agent_recall: tuple[str, ...] = ("hybrid", "sasrec", "last-title")  # the first of these the demo fitted
    recall_size: int = 10  # items in the first prompt (the paper's 30 makes every CPU forward pass longer)
    prompt_history: int | None = 10  # most recent history titles in the first prompt (agent.prompt_history)
    # The agent's policy (policy.model): one token per title raised the demo's agent N_full from 0.19 (preset:tiny)
    # to 0.31 and halved its SFT time (docs/agent-cpu.md). None keeps the config's policy.model.
    policy: str | None = "preset:tiny-items"
    # agent.recall_prior of the agent stages: the answer is sampled under a prior rank**-4 over the recall list,
    # so the policy answers the recall model's first title unless its own logits disagree. The tiny policy never
    # learns that choice by itself; with it the demo's agent went from N_full 0.31 to 0.59 (docs/agent-cpu.md).
    # None keeps the config's agent.recall_prior.
    recall_prior: float | None = 4.0
    sft_train_samples: int = 200
    sft_epochs: int = 1  # more SFT epochs moved the prior-guided policy away from its start (0.565 -> 0.513)
    sft_batch_size: int = 8
    fit_steps: int = 3
    fit_batch: int = 2  # prompts per GRPO step (each with grpo.group_size rollouts)
    valid_samples: int = 20  # valid subsample of the SFT and GRPO validations
    eval_samples: int | None = 100  # seeded test subsample every method is compared on; None = whole split
    bigrec: dict = field(default_factory=lambda: {"max_train_samples": 500, "epochs": 2, "valid_samples": 50})
    # Training-time cap of each learned baseline (retriever.max_seconds): a busy machine trains fewer epochs
    # instead of taking longer; early stopping (the CLI sets patience and min_delta) may stop sooner.
    baseline_seconds: float | None = 60.0
    # ... and its step cap (retriever.max_steps): about the same work on 2 idle cores (SASRec: ~14 epochs of
    # the synthetic data), so that an idle machine's result does not depend on its speed.
    baseline_steps: int | None = 300


SETTINGS_FILE = "demo.json"
"""``OUT/demo.json``: the settings the demo's stages were made with (the config, secrets removed, and the options
that shape a stage); a rerun into OUT with other ones is refused, since it would reuse stages made otherwise."""

# options that do not shape a reusable stage: whether the agent stages run, and how many test samples are compared
_RERUN_FREE = ("agent", "eval_samples")
# options and config sections that shape only the agent stages: they bind a rerun once one of those has finished
# (a folder of baselines alone, from --no-agent, takes any agent settings on its first run with the agent)
AGENT_OPTIONS = frozenset(
    {
        "agent_recall",
        "recall_size",
        "prompt_history",
        "policy",
        "recall_prior",
        "sft_train_samples",
        "sft_epochs",
        "sft_batch_size",
        "fit_steps",
        "fit_batch",
        "valid_samples",
    }
)
# (policy and trainer: BIGRec's too; of eval only eval.greedy is recorded: how the agent rows were rolled out)
AGENT_SECTIONS = frozenset({"agent", "user_agent", "rollout", "grpo", "eval"})
AGENT_STAGES = ("sft", "mgfrec")  # the agent stages' run folders in OUT; the ablations derive from mgfrec
# the options `mgfrec demo` has a flag for, named as the user typed them; the rest are DemoOptions' fields
OPTION_FLAGS = {
    "policy": "--policy",
    "recall_prior": "--recall-prior",
    "sft_train_samples": "--sft-samples",
    "fit_steps": "--fit-steps",
    "baseline_seconds": "--baseline-seconds",
    "baseline_steps": "--baseline-steps",
}


def demo_settings(config: MGFRecConfig, options: DemoOptions) -> dict[str, Any]:
    """What ``OUT/demo.json`` records: ``config`` (as ``config.yaml`` writes it, of ``eval`` only ``greedy``) and
    ``options``. ``eval.greedy``: a rerun with another value reused the agent rows' rollouts while ``config.yaml``
    recorded the new value (review s40); the rest of ``eval`` re-evaluates and binds nothing."""
    cfg = {k: v for k, v in redacted(config).items() if k != "eval"}
    cfg["eval"] = {"greedy": config.eval.greedy}
    opts = {k: v for k, v in asdict(options).items() if k not in _RERUN_FREE}
    return json.loads(json.dumps({"config": cfg, "options": opts}, default=str))  # as demo.json reads back


def check_demo_output(out: Path) -> None:
    """Refuse, in one line and before anything is written, an ``--out`` that is a file, or a folder holding
    something other than a demo: a run, a data set, a sweep, or anything at all without the demo's
    ``demo.json`` (written before its first stage) or an older demo's ``data/manifest.json``. A new or empty
    folder, or one holding only a user's ``config.yaml``, is fine."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file; the demo writes a folder (give a new or empty one)")
    if not out.is_dir() or (out / SETTINGS_FILE).is_file() or (out / "data" / "manifest.json").is_file():
        return
    refuse_held(out, "the demo", {RUN_FILE: "a run", **NOT_A_RUN})  # (demo.json: returned above)
    others = sorted(entries_besides_config(out))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise ValueError(
            f"--out {out}: not empty ({shown}) and not a demo's folder (no {SETTINGS_FILE}); give a new or empty folder"
        )


CONFIG_FLAGS = {"retriever.max_epochs": "--retriever-epochs"}
"""Config fields the demo has a flag of its own for: a refused rerun names the flag the user typed too (s40)."""


def _with_flag(field: str) -> str:
    return f"{field} ({CONFIG_FLAGS[field]})" if field in CONFIG_FLAGS else field


def check_same_settings(out: Path, config: MGFRecConfig, options: DemoOptions) -> None:
    """Refuse, in one line, a rerun into ``out`` whose settings differ from those its stages were made with."""
    path = out / SETTINGS_FILE
    if not path.is_file():  # a new folder, or one from before the file: nothing to compare
        return
    if not any_stage_finished(out):  # a first try that failed before any stage (a bad row): nothing to reuse
        return
    new = demo_settings(config, options)
    remedy = "it records the settings the demo's stages were made with: restore it, or give another --out"
    old = read_json_object(path, remedy)
    if not (isinstance(old.get("config"), dict) and isinstance(old.get("options"), dict)):
        raise ValueError(f"{path}: expected an object with 'config' and 'options' objects; {remedy}")

    agent_made = any((out / name / RUN_FILE).is_file() for name in AGENT_STAGES)

    def bound(key: str, agent_only: frozenset[str]) -> bool:
        return agent_made or key.split(".", 1)[0] not in agent_only

    def option_name(key: str) -> str:
        field_name, _, rest = key.partition(".")
        return OPTION_FLAGS.get(field_name, f"DemoOptions.{field_name}") + (f".{rest}" if rest else "")

    def flat(node: dict[str, Any]) -> dict[str, Any]:  # an empty mapping is no setting of its own here
        return {k: v for k, v in flat_fields(node).items() if v != {}}

    a, b = flat(old["config"]), flat(new["config"])
    if "eval" not in old["config"]:  # a demo.json from before eval.greedy was recorded: nothing to compare
        b = {k: v for k, v in b.items() if not k.startswith("eval.")}
    oa, ob = flat(old["options"]), flat(new["options"])
    differ = [_with_flag(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and bound(k, AGENT_SECTIONS)]
    differ += [option_name(k) for k in sorted(set(oa) | set(ob)) if oa.get(k) != ob.get(k) and bound(k, AGENT_OPTIONS)]
    if differ:
        raise ValueError(
            f"{out}: its stages were made with other settings ({', '.join(differ)}); a rerun reuses finished stages, "
            f"so give another --out (or delete {out})"
        )


def check_data_current(data_dir: Path, data: DataConfig, out: Path) -> None:
    """Refuse a rerun whose data source now reads otherwise than when ``data_dir`` (``OUT/data``) was prepared: the
    demo reused the prepared set and every finished stage after the CSV files were edited, and reported on data
    the folder no longer held. The source is prepared again into a scratch folder inside ``out`` (a second or
    two for the demo's sets) and compared by content; one that cannot be read now is named the same way."""
    import pandas as pd

    from mgfrec.data.prepared import SPLITS, PreparedDataset, prepare

    where = data.path or f"data source {data.source!r}"
    remedy = f"its stages were made from the data as it was, so give another --out (or delete {out})"
    kept = PreparedDataset(data_dir)
    with tempfile.TemporaryDirectory(dir=out, prefix=".data-check-") as scratch:
        try:
            fresh = prepare(data, Path(scratch) / "data", allow_empty=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{out}: {where} cannot be prepared again to check {data_dir} ({exc}); {remedy}") from None
        if fresh.checksum == kept.checksum:
            return

        def rows(ds: PreparedDataset, name: str) -> pd.DataFrame:
            frame = ds.items if name == "items" else ds.interactions if name == "interactions" else ds.split(name)
            return frame.assign(history=frame["history"].map(tuple)) if "history" in frame else frame

        for name in ("items", "interactions", *SPLITS):  # other bytes, the same rows (another pyarrow): reused
            try:
                pd.testing.assert_frame_equal(rows(kept, name), rows(fresh, name))
            except AssertionError:
                raise ValueError(
                    f"{out}: {where} no longer reads as when {data_dir} was prepared (its {name} differ); {remedy}"
                ) from None


def any_stage_finished(out: Path) -> bool:
    """Whether a stage of the demo in ``out`` has finished (its data set prepared, or a run written): settings bind
    a rerun only then. A first try that failed before any (a bad CSV row, a data set too small for a setting) left
    only ``demo.json``, and the fixed rerun was refused as "made with other settings"."""
    return (out / "data" / "manifest.json").is_file() or any(out.glob(f"*/{RUN_FILE}"))


def baseline_reusable(run_dir: Path, name: str, say: Callable[[str], None]) -> bool:
    """Whether the finished baseline in ``run_dir`` may be reused: not a hybrid whose collaborative run was fitted
    again since its weight was tuned (the rerun then failed naming a ``baseline fit`` to run by hand). One a signal
    stopped (``stopped: user``, finished from its best checkpoint so far, as the stop said the rerun would go on
    from) is reused with a note: it was the report's row and the agent's recall model without a word."""
    if not (run_dir / RUN_FILE).is_file():
        return False
    try:
        info = read_run_info(run_dir)
    except (OSError, ValueError):
        return True  # reused as before: the report names the damage
    if info.extra.get("stopped") == "user":
        say(
            f"[{name}] note: {run_dir} was stopped before its training ended and is reused as it is (its best "
            "checkpoint); delete that folder to train it whole"
        )
    if info.model == "hybrid":
        from mgfrec.retrievers.hybrid import HybridRetriever

        try:
            HybridRetriever.check_current(run_dir)
        except ValueError:
            say(f"[{name}] {run_dir} blends a collaborative run fitted again since; fitting it again")
            return False
    return True


def agent_stage_reusable(run_dir: Path, name: str, say: Callable[[str], None]) -> bool:
    """Whether the finished agent stage in ``run_dir`` may be reused: not when its recall run was fitted again
    since it was trained (a baseline folder deleted and refitted by this rerun), which made its results another
    recall model's; the report refused it then."""
    if not (run_dir / RUN_FILE).is_file():
        return False
    try:
        check_recall_current(run_dir, read_run_info(run_dir))
    except ValueError:
        say(f"[{name}] {run_dir} was trained over a recall run fitted again since; training it again")
        return False
    return True

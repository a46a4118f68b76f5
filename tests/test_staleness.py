"""Whether a run's results are still its own (``mgfrec.staleness``): a refitted recall run, a trained run trained
again under a derived run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _run(folder: Path, kind: str = "agent", **extra) -> Path:
    from mgfrec.runs import RunInfo, write_run_info

    write_run_info(folder, RunInfo(kind=kind, model="m", data="/d", data_checksum="c", extra=extra))
    return folder


def _created(folder: Path) -> str:
    return json.loads((folder / "run.json").read_text())["created"]


@pytest.mark.reliability
def test_an_agent_run_over_a_refitted_recall_run_is_refused_and_the_demo_trains_it_again(tmp_path):
    """A recall run fitted again (baseline fit into its folder) left the agent runs trained over it reporting their
    old results, and evaluate rolled them out over the new recall model, without a word."""
    from mgfrec.demo_settings import agent_stage_reusable as _reusable
    from mgfrec.runs import read_run_info
    from mgfrec.staleness import check_agent_current

    recall = _run(tmp_path / "hybrid", kind="baseline")
    agent = _run(tmp_path / "sft", recall_run=str(recall), recall_created=_created(recall))
    old = _run(tmp_path / "old", recall_run=str(recall))  # made before recall_created existed: passes
    said: list[str] = []
    check_agent_current(agent, read_run_info(agent))
    assert _reusable(agent, "sft", said.append) and not said
    _run(recall, kind="baseline")  # fitted again
    with pytest.raises(ValueError, match=r"sft: its recall run .*hybrid was fitted again since this run was trained"):
        check_agent_current(agent, read_run_info(agent))
    check_agent_current(old, read_run_info(old))
    assert not _reusable(agent, "sft", said.append)
    assert said == [f"[sft] {agent} was trained over a recall run fitted again since; training it again"]


@pytest.mark.reliability
def test_a_run_derived_from_a_derived_run_is_checked_down_to_the_trained_run(tmp_path):
    """Only the first link was checked: a run derived from a derived run kept reporting, and evaluating, after the
    trained run at the root was trained again."""
    from mgfrec.runs import read_run_info
    from mgfrec.staleness import check_agent_current

    root = _run(tmp_path / "fit")
    first = _run(tmp_path / "d1", trained_run=str(root), trained_created=_created(root), ablation="no-feedback")
    second = _run(tmp_path / "d2", trained_run=str(first), trained_created=_created(first), variant="joint-l2")
    check_agent_current(second, read_run_info(second))
    _run(root)  # trained again
    for run in (first, second):
        with pytest.raises(ValueError, match=r"derived from .*fit before it was trained again"):
            check_agent_current(run, read_run_info(run))
    # a hand-edited loop of extra.trained_run ends
    from mgfrec.runs import RunInfo, write_run_info

    for name, other in (("a", "b"), ("b", "a")):
        extra = {"trained_run": str(tmp_path / other), "trained_created": f"t-{other}"}
        write_run_info(tmp_path / name, RunInfo("agent", "m", "/d", "c", created=f"t-{name}", extra=extra))
    check_agent_current(tmp_path / "a", read_run_info(tmp_path / "a"))


def test_the_derive_command_quotes_paths_and_overrides():
    """The chain's command named paths with spaces bare: pasted, it failed "Got unexpected extra argument(s)"."""
    from mgfrec.runs import RunInfo
    from mgfrec.staleness import derive_command

    info = RunInfo(
        kind="agent",
        model="mgfrec",
        data="d",
        data_checksum="",
        extra={"trained_run": "/r/my runs/agent", "ablation": "no-feedback", "overrides": ["agent.x=a b"]},
    )
    assert derive_command("my runs/no fb", info) == (
        "mgfrec derive '/r/my runs/agent' 'my runs/no fb' --ablation no-feedback --set 'agent.x=a b'"
    )


@pytest.mark.reliability
def test_recommend_serve_chat_and_derive_refuse_an_agent_run_over_a_refitted_recall_run(tmp_path):
    """`evaluate` refused an agent run whose recall run was fitted again since; `recommend`, `serve` and `chat`
    (which load a run through `load_recommender`) answered over the new recall model's list without a word, and
    `derive` wrote a run every evaluation then refused (review s38)."""
    from agentkit import tiny_agent_run

    from mgfrec.experiments.ablations import derive_variant_run
    from mgfrec.recommend import load_recommender
    from mgfrec.runs import RunInfo, read_run_info, write_run_info

    run, _, _ = tiny_agent_run(tmp_path)
    info = read_run_info(run)
    recall = Path(info.extra["recall_run"])
    stamped = RunInfo(**{**info.__dict__, "extra": {**info.extra, "recall_created": _created(recall)}})
    write_run_info(run, stamped)
    load_recommender(run).close()  # current: served
    derive_variant_run(run, "answer-first", tmp_path / "first")
    refit = read_run_info(recall)
    write_run_info(recall, RunInfo(refit.kind, refit.model, refit.data, refit.data_checksum, extra=refit.extra))
    assert _created(recall) != stamped.extra["recall_created"]
    said = r"its recall run .*last-title was fitted again since this run was trained over it"
    with pytest.raises(ValueError, match=said):
        load_recommender(run)
    with pytest.raises(ValueError, match=said):
        derive_variant_run(run, "answer-first", tmp_path / "second")
    assert not (tmp_path / "second").exists()

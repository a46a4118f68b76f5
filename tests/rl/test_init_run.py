"""``mgfrec.rl.init_run``: whether the recall model a fit starts with serves its ``agent.final_ranking``."""

from __future__ import annotations

import pytest
from agentkit import over_sasrec, tiny_agent_run

from mgfrec.config.load import load_config
from mgfrec.registry import registry
from mgfrec.rl.fit import FitOptions
from mgfrec.rl.init_run import check_start_ranking


@pytest.mark.reliability
def test_the_final_ranking_is_checked_against_the_recall_model_the_fit_starts_with(tmp_path):
    """`fit --init RUN --set agent.final_ranking=l2_joint` over a last-title recall run loaded the policy and the
    recall run, then stopped; a sweep cell's found it after the cells before had trained (review s37)."""
    run, _, _ = tiny_agent_run(tmp_path)
    joint = load_config(None, ["agent.final_ranking=l2_joint"])
    with pytest.raises(ValueError, match=rf"--init {run}: agent.final_ranking: l2_joint needs .*\(last-title\) has"):
        check_start_ranking(joint, FitOptions(init=str(run)), registry())
    check_start_ranking(joint, FitOptions(init=str(over_sasrec(tmp_path))), registry())  # item embeddings: fine
    for rule in ("l2", "answer_then_recall"):  # any recall run serves these
        check_start_ranking(load_config(None, [f"agent.final_ranking={rule}"]), FitOptions(init=str(run)), registry())
    # without --init: the recall model the fit trains
    with pytest.raises(ValueError, match=r"the recall model 'pop' \(--recall-model, retriever.model\): agent"):
        check_start_ranking(joint, FitOptions(recall_model="pop"), registry())
    check_start_ranking(joint, FitOptions(recall_model="gru4rec"), registry())
    # an --init that cannot be read is left to its own checks, which name it
    check_start_ranking(joint, FitOptions(init=str(tmp_path / "nowhere")), registry())

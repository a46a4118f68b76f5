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


@pytest.mark.reliability
def test_init_differences_names_the_embedder_and_the_grounder_options_a_policy_was_trained_under(tmp_path):
    """A policy trained where ``<ground>`` ran with normalised embeddings, a query prefix or an HNSW grounder's
    ``ef`` sees other item lists under the defaults: ``fit --init`` compared only the embedding model and the
    grounder's name, so these changed without a note (review s37)."""
    import yaml

    from mgfrec.rl.init_run import init_differences

    run, _, _ = tiny_agent_run(tmp_path)
    written = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    written["embedding"].update(normalize=True, query_instruction="q: ", options={"pool": "mean"})
    written["grounding"]["options"] = {"ef": 64}
    (run / "config.yaml").write_text(yaml.safe_dump(written), encoding="utf-8")
    mine = load_config(run / "config.yaml")
    assert init_differences(run, mine) == []
    found = {field: (old, new) for field, old, new in init_differences(run, load_config(None))}
    assert found["embedding.normalize"] == (True, False)
    assert found["embedding.query_instruction"] == ("q: ", None)
    assert found["embedding.options"] == ({"pool": "mean"}, {})
    assert found["grounding.options"] == ({"ef": 64}, {})
    # a secret in those options is compared, and shown, as config.yaml records it: it was printed in clear, and
    # always as differing from the run's "<redacted>" (review s38)
    keyed = load_config(None, ["embedding.options={api_key: sk-live-SECRET123, pool: mean}"])
    written["embedding"]["options"] = {"api_key": "<redacted>", "pool": "mean"}
    (run / "config.yaml").write_text(yaml.safe_dump(written), encoding="utf-8")
    found = {field: (old, new) for field, old, new in init_differences(run, keyed)}
    assert "embedding.options" not in found and "SECRET" not in repr(found)
    other = load_config(None, ["embedding.options={api_key: sk-live-SECRET123, pool: max}"])
    found = {field: (old, new) for field, old, new in init_differences(run, other)}
    assert found["embedding.options"] == (
        {"api_key": "<redacted>", "pool": "mean"},
        {"api_key": "<redacted>", "pool": "max"},
    )

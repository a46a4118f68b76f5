"""From run folders to results: registry loading, stored results, agent runs, data mismatches."""

from __future__ import annotations

import numpy as np
import pytest
from evalkit import N_ITEMS, FixedScorer, make_dataset, make_run

from mgfrec.config.schema import EvalConfig
from mgfrec.eval.runs import (
    AgentEvaluationUnavailable,
    ResultReplacedWarning,
    evaluate_run,
    load_scorer,
    result_for_run,
)
from mgfrec.ranking.results import result_paths
from mgfrec.registry import RegistryError

FAST = EvalConfig(bootstrap_samples=100)


def test_load_scorer_goes_through_the_registry(tiny_ds, tmp_path):
    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.arange(N_ITEMS, dtype=float))
    loaded = load_scorer(run)
    assert isinstance(loaded.scorer, FixedScorer) and loaded.ds.checksum == tiny_ds.checksum
    assert loaded.scorer.vector.tolist() == list(range(N_ITEMS))


def test_evaluate_run_writes_the_three_files(tiny_ds, tmp_path):
    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.arange(N_ITEMS, dtype=float))
    result = evaluate_run(run, "valid", FAST)
    assert result.method == FixedScorer.name and result.split == "valid"
    assert all(p.is_file() for p in result_paths(run, "valid").values())
    assert not result_paths(run, "test")["json"].exists()


@pytest.mark.reliability
@pytest.mark.parametrize("refit", ["another run made", "a run being made"])
def test_a_run_made_anew_while_it_is_evaluated_gets_no_results_of_the_earlier_one(tiny_ds, tmp_path, refit):
    """An evaluation overlapping a fit into the same folder saved the earlier model's results into the new run, and
    report showed them as its own (review s33)."""
    import json

    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.arange(N_ITEMS, dtype=float))
    before = json.loads((run / "run.json").read_text())

    def fit_meanwhile(done: int, total: int) -> None:
        if refit == "a run being made":
            (run / "run.json").unlink(missing_ok=True)
        else:
            (run / "run.json").write_text(json.dumps({**before, "created": "2026-12-07T00:00:00.000001+00:00"}))

    with pytest.raises(ValueError) as info:
        evaluate_run(run, "valid", EvalConfig(bootstrap_samples=0, batch_size=4), progress=fit_meanwhile)
    why = {
        "a run being made": "run.json is gone: a run is being made in it",
        "another run made": "another run was made in it",
    }
    assert str(info.value) == (
        f"{run}: {why[refit]} while it was evaluated; nothing written (the results were the earlier run's): evaluate "
        "it again once that command has ended"
    )
    assert not any(p.exists() for p in result_paths(run, "valid").values())


def test_result_for_run_reads_a_stored_result_instead_of_evaluating(tiny_ds, tmp_path):
    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.arange(N_ITEMS, dtype=float))
    first = result_for_run(run, "test", FAST)
    np.save(run / "scores.npy", -np.arange(N_ITEMS, dtype=float))  # a re-evaluation would now differ
    assert result_for_run(run, "test", FAST).ranks.tolist() == first.ranks.tolist()
    assert evaluate_run(run, "test", FAST).ranks.tolist() != first.ranks.tolist()


def test_a_stored_result_ranked_the_other_way_is_evaluated_again(tiny_ds, tmp_path):
    """A result stored by --no-exclude-history is not reused where the history is left out, and the other way."""
    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.arange(N_ITEMS, dtype=float))
    ranked_too = result_for_run(run, "test", FAST, exclude_history=False)
    assert ranked_too.exclude_history is False
    # replaced, as a subsample is, with a warning naming how it was ranked (it was replaced without a word: an
    # agent's rollouts too, review s29)
    with pytest.warns(ResultReplacedWarning, match=r"ranked with exclude_history: false, is replaced by one ranked"):
        left_out = result_for_run(run, "test", FAST)
    assert left_out.exclude_history is True and left_out.ranks.tolist() != ranked_too.ranks.tolist()
    with pytest.warns(ResultReplacedWarning, match=r"'mgfrec evaluate .* --split test' makes it again"):
        assert result_for_run(run, "test", FAST, exclude_history=False).exclude_history is False
    # --no-evaluate (report) said "eval_test.json: missing" of a file that is there, ranked the other way
    with pytest.raises(FileNotFoundError, match=r"ranked with exclude_history: false, and this comparison needs true"):
        result_for_run(run, "test", FAST, evaluate_missing=False)
    # the other way, the command it gave made the refused result again: it needs --no-exclude-history
    with pytest.warns(ResultReplacedWarning):
        result_for_run(run, "test", FAST)
    with pytest.raises(
        FileNotFoundError, match=r"needs false; run 'mgfrec evaluate .* --split test --no-exclude-history'"
    ):
        result_for_run(run, "test", FAST, exclude_history=False, evaluate_missing=False)


def test_refitting_a_baseline_into_its_folder_removes_the_earlier_models_results(tiny_ds, tmp_path):
    from mgfrec.config.load import load_config
    from mgfrec.retrievers.fit import fit_baseline

    out = tmp_path / "refit"
    fit_baseline(tiny_ds, load_config(None, ["retriever.model=pop"]), out)
    evaluate_run(out, "test", FAST)
    assert result_paths(out, "test")["json"].is_file()
    fit_baseline(tiny_ds, load_config(None, ["retriever.model=pop"]), out)
    assert not [p.name for p in out.iterdir() if p.name.startswith(("eval_", "ranks_", "agent_"))]
    with pytest.raises(FileNotFoundError, match="mgfrec evaluate"):
        result_for_run(out, "test", FAST, evaluate_missing=False)


def test_result_for_run_without_evaluating_names_the_command(tiny_ds, tmp_path):
    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.zeros(N_ITEMS))
    with pytest.raises(FileNotFoundError, match="mgfrec evaluate"):
        result_for_run(run, "test", FAST, evaluate_missing=False)
    # only the ranks file gone: it is the one named ("eval_test.json: missing" of a file that is there, review s29)
    evaluate_run(run, "test", FAST)
    result_paths(run, "test")["ranks"].unlink()
    with pytest.raises(FileNotFoundError, match=r"ranks_test.csv: missing; run 'mgfrec evaluate"):
        result_for_run(run, "test", FAST, evaluate_missing=False)


def test_agent_runs_have_no_scorer_and_need_a_policy(tiny_ds, tmp_path):
    run = make_run(tmp_path / "agent", tiny_ds, "mgfrec", kind="agent")
    with pytest.raises(AgentEvaluationUnavailable, match="ranks items from its answers"):
        load_scorer(run)
    with pytest.raises(FileNotFoundError, match=r"policy: no policy in this agent run"):
        evaluate_run(run, "test", FAST)


def test_unknown_kind_and_unknown_model_are_named(tiny_ds, tmp_path):
    with pytest.raises(ValueError, match="field 'kind' is 'mystery'"):
        load_scorer(make_run(tmp_path / "odd", tiny_ds, FixedScorer.name, kind="mystery"))
    with pytest.raises(RegistryError, match="unknown retriever 'no-such-model'"):
        load_scorer(make_run(tmp_path / "nope", tiny_ds, "no-such-model"))


def test_data_override_must_be_the_run_data_set(tiny_ds, tmp_path):
    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.zeros(N_ITEMS))
    assert load_scorer(run, data=tiny_ds.root).ds.root == tiny_ds.root
    other = make_dataset(tmp_path / "other", n_users=30)
    with pytest.raises(ValueError, match=r"--data .*not the one the run was trained on"):
        load_scorer(run, data=other.root)


@pytest.mark.reliability
def test_a_data_mismatch_names_where_the_data_set_came_from(tiny_ds, tmp_path):
    """A recall run loaded beside an agent run on another data set told the user to 'pass --data', a flag that
    serve, chat and recommend do not have."""
    from mgfrec.retrievers.fit import load_retriever

    run = make_run(tmp_path / "fixed", tiny_ds, FixedScorer.name, np.arange(N_ITEMS, dtype=float))
    other = make_dataset(tmp_path / "other", n_users=7)
    with pytest.raises(ValueError, match=r"^--data .*: this data set .* pass --data with the right folder$"):
        load_scorer(run, other.root)
    with pytest.raises(ValueError, match=r"^the agent run's data set .*refit .* or use the data set it was") as err:
        load_retriever(run, other)
    assert "--data" not in str(err.value)


def test_a_report_of_a_path_that_is_not_there_says_so(tmp_path):
    # "nosuch/eval_test.json: missing; run 'mgfrec evaluate nosuch ...'" for a typo
    from mgfrec.eval.runs import result_for_run

    with pytest.raises(FileNotFoundError, match=r"nosuch: not a run folder \(no such file or folder\)"):
        result_for_run(tmp_path / "nosuch", "test", evaluate_missing=False)

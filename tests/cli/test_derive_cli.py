"""``mgfrec derive``: an evaluation-only run folder from a trained agent run, and its refusals."""

from __future__ import annotations

import json
import shutil

import pytest
from agentkit import over_sasrec, tiny_agent_run
from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.config.load import load_config
from mgfrec.runs import read_run_info


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("derive")
    tiny_agent_run(root)
    over_sasrec(root)
    return root


def invoke(*args: str):
    return CliRunner().invoke(app, ["derive", *args])


def test_a_variant_with_an_override_is_written_and_recorded(runs):
    out = runs / "joint"
    weight = "agent.joint_title_weight=0.5"
    res = invoke(str(runs / "over-sasrec"), str(out), "--variant", "joint-l2", "--set", weight, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {
        "run": str(out),
        "trained_run": str(runs / "over-sasrec"),
        "variant": "joint-l2",
        "overrides": ["agent.joint_title_weight=0.5"],
        "kept_evaluations": [],
    }
    cfg = load_config(out / "config.yaml")
    assert cfg.agent.final_ranking == "l2_joint" and cfg.agent.joint_title_weight == 0.5
    info = read_run_info(out)
    assert info.kind == "agent" and info.extra["variant"] == "joint-l2"
    assert info.extra["overrides"] == ["agent.joint_title_weight=0.5"]
    assert info.extra["policy"] == str((runs / "over-sasrec" / "policy").resolve())
    # an ablation, into a folder derived before: rewritten
    res = invoke(str(runs / "over-sasrec"), str(out), "--ablation", "no-feedback")
    assert res.exit_code == 0 and res.output.strip() == f"wrote {out}; evaluate it with: mgfrec evaluate {out}"
    assert load_config(out / "config.yaml").user_agent.backend == "none"
    assert load_config(out / "config.yaml").agent.final_ranking == "l2"


def test_joint_l2_over_a_recall_run_without_item_embeddings_is_refused_before_writing(runs, tmp_path):
    """Over a last-title recall run, `derive --variant joint-l2` wrote a run, said "evaluate it with ...", and
    every evaluation of it failed; `report` found it only after rolling out the runs named before it (review s37)."""
    res = invoke(str(runs / "run"), str(tmp_path / "d"), "--variant", "joint-l2")
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "Traceback" not in res.output, res.output
    said = " ".join(res.output.split())
    assert "agent.final_ranking: l2_joint needs a recall run with item embeddings" in said
    assert f"{runs / 'last-title'} (last-title) has none" in said and not (tmp_path / "d").exists()
    # the same setting given to a run's evaluation in `report` is refused before any run is rolled out
    from mgfrec.eval.report import build_report

    bad = tmp_path / "bad"
    shutil.copytree(runs / "run", bad)
    (bad / "config.yaml").write_text(
        (bad / "config.yaml").read_text().replace("final_ranking: l2", "final_ranking: l2_joint")
    )
    with pytest.raises(ValueError, match=r"bad: agent.final_ranking: l2_joint needs"):
        build_report([runs / "over-sasrec", bad], split="test", limit=2)
    assert not list((runs / "over-sasrec").glob("agent_test*"))  # the first run was not rolled out


def test_an_eval_override_is_written_and_a_note_says_where_evaluation_reads_it(runs):
    out = runs / "greedy-off"
    res = invoke(str(runs / "run"), str(out), "--variant", "answer-first", "--set", "eval.greedy=false", "--json")
    assert res.exit_code == 0, res.output
    assert load_config(out / "config.yaml").eval.greedy is False
    assert (
        "note: --set eval.greedy=false: recorded in" in res.stderr and "take eval.* from their own --set" in res.stderr
    )
    plain = invoke(
        str(runs / "run"), str(runs / "plain"), "--variant", "answer-first", "--set", "agent.max_groundings=2"
    )
    assert plain.exit_code == 0 and "note:" not in plain.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --ablation or --variant"),
        (["--ablation", "no-feedback", "--variant", "joint-l2"], "give exactly one of --ablation or --variant"),
        (["--variant", "nope"], "--variant nope: unknown; choose one of answer-first, joint-l2"),
        (["--ablation", "full", "--set", "grounding.grounder=nope"], "unknown grounder 'nope'"),  # was written
        (["--ablation", "nope"], "unknown ablation"),
        (["--variant", "joint-l2", "--set", "agent.no_such_field=1"], "agent.no_such_field"),
    ],
)
def test_bad_arguments_get_one_line_and_write_nothing(runs, args, message):
    out = runs / "bad"
    res = invoke(str(runs / "run"), str(out), *args)
    assert res.exit_code == 2 and message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not (out / "run.json").exists()


def test_the_trained_run_and_other_runs_are_never_overwritten(runs):
    before = (runs / "run" / "config.yaml").read_text()
    res = invoke(str(runs / "run"), str(runs / "run"), "--variant", "joint-l2")
    assert res.exit_code == 2 and "its own folder" in res.output
    res = invoke(str(runs / "run"), str(runs / "last-title"), "--variant", "answer-first")
    assert res.exit_code == 2 and "not derived" in " ".join(res.output.split())
    res = invoke(str(runs / "last-title"), str(runs / "x"), "--variant", "answer-first")
    assert res.exit_code == 2 and "needs an agent run" in " ".join(res.output.split())
    assert (runs / "run" / "config.yaml").read_text() == before
    assert read_run_info(runs / "last-title").kind == "baseline"


@pytest.mark.reliability
def test_a_folder_that_is_not_a_derived_run_is_never_written(runs, tmp_path):
    # an interrupted fit (its config.yaml is what --resume compares), a data set, a sweep, the run's own policy/:
    # each got a config.yaml and a run.json
    fit = tmp_path / "fit"
    (fit / "checkpoints").mkdir(parents=True)
    (fit / "config.yaml").write_text("agent: {max_groundings: 3}\n")
    (fit / "checkpoints" / "last.ckpt").write_text("x")
    res = invoke(str(runs / "run"), str(fit), "--ablation", "no-feedback")
    assert res.exit_code == 2 and "not empty and not a derived run" in " ".join(res.output.split())
    assert (fit / "config.yaml").read_text() == "agent: {max_groundings: 3}\n" and not (fit / "run.json").exists()
    res = invoke(str(runs / "run"), str(runs / "run" / "policy"), "--ablation", "full")
    assert res.exit_code == 2 and "inside the trained run" in " ".join(res.output.split())
    assert not (runs / "run" / "policy" / "run.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(str(runs / "run"), str(empty), "--ablation", "full").exit_code == 0  # an empty folder is fine
    assert invoke(str(runs / "run"), str(empty), "--ablation", "no-feedback").exit_code == 0  # and derived again


def test_a_recall_run_that_is_gone_is_named_in_one_line_by_every_command(runs, tmp_path):
    """An agent run whose run.json names a recall run that was moved away: each command that reads it says
    where the path came from (extra.recall_run) in one line, before any work, and writes nothing."""

    moved = tmp_path / "moved"
    shutil.copytree(runs / "run", moved)
    info = json.loads((moved / "run.json").read_text())
    info["extra"]["recall_run"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(info))
    commands = {
        "evaluate": ["evaluate", str(moved), "--split", "test", "--limit", "2"],
        "recommend": ["recommend", str(moved), "--history", "a;b"],
        "derive": ["derive", str(moved), str(tmp_path / "d"), "--variant", "joint-l2"],
        "fit": ["fit", "--init", str(moved), "--data", info["data"], "--out", str(tmp_path / "f"), "--max-steps", "1"],
    }
    for name, args in commands.items():
        res = CliRunner().invoke(app, args)
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert res.exit_code != 0 and len(errors) == 1 and "Traceback" not in res.output, (name, res.output)
        assert f"its recall run {tmp_path / 'gone'} (run.json extra.recall_run)" in errors[0], (name, errors)
    assert not (tmp_path / "d" / "run.json").exists() and not (tmp_path / "f" / "run.json").exists()
    assert not list(moved.glob("agent_*"))


@pytest.mark.reliability
def test_a_secret_in_an_override_is_recorded_and_printed_redacted(runs):
    """run.json extra.overrides and the --json output held the key in clear (config.yaml had it redacted)."""
    out = runs / "secret"
    url = "user_agent.base_url=https://bob:SECRETPW@api.example.com/v1?api_key=sk-SECRET999"
    res = invoke(str(runs / "run"), str(out), "--ablation", "full", "--set", url, "--json")
    assert res.exit_code == 0, res.output
    written = (out / "run.json").read_text() + res.stdout + res.stderr + (out / "config.yaml").read_text()
    assert "SECRET" not in written
    assert json.loads(res.stdout)["overrides"] == [
        "user_agent.base_url=https://bob:<redacted>@api.example.com/v1?api_key=<redacted>"
    ]


def test_a_reward_override_is_read_by_a_derived_run(runs):
    """grpo.rewards makes agent_<split>.json's reward columns: refusing it with the rest of grpo.* was wrong."""
    res = invoke(str(runs / "run"), str(runs / "rewards"), "--ablation", "full", "--set", "grpo.rewards=[ndcg]")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ["--ablation", "no-recall", "--set", "agent.use_recall=true"],
            "--set agent.use_recall: --ablation no-recall sets",
        ),
        (["--ablation", "full", "--set", "policy.model=preset:small"], "--set policy.model: a derived run evaluates"),
        (["--variant", "answer-first", "--set", "trainer.lr=5"], "--set trainer.lr: a derived run evaluates"),
        # data.* was taken and recorded without a word: the derived run reads its trained run's data set
        (["--ablation", "full", "--set", "data.history_length=3"], "--set data.history_length: a derived run"),
        (
            ["--ablation", "no-recall", "--set", "agent={use_recall: true}"],
            "--set agent.use_recall: --ablation no-recall",
        ),
        (
            ["--ablation", "full", "--set", "policy={model: preset:small}"],
            "--set policy.model: a derived run evaluates",
        ),
        (["--ablation", "full", "--set", "grpo.kl_beta=0.5"], "--set grpo.kl_beta: a derived run evaluates"),
        # recorded in config.yaml, while the derived run ranked with the trained run's recall run
        (["--variant", "joint-l2", "--set", "retriever.model=pop"], "--set retriever.model: a derived run evaluates"),
    ],
)
def test_an_override_that_undoes_the_preset_or_is_never_read_is_refused(runs, flags, words):
    """A row labelled "no-recall" with agent.use_recall=true was the full agent; policy.model was recorded in
    config.yaml while the trained run's policy was evaluated."""
    out = runs / "contradicts"
    res = invoke(str(runs / "run"), str(out), *flags)
    assert res.exit_code == 2 and words in " ".join(res.output.split()), res.output
    assert not out.exists()


@pytest.mark.reliability
def test_a_derived_run_is_refused_once_its_trained_run_was_trained_again_or_is_gone(runs, tmp_path):
    """A derived run points at its trained run's policy/ by path: after a refit there, report paired its stored
    results (the earlier policy's) against the new policy, and evaluate rolled the new policy out under the earlier
    config. A trained run that was deleted was "no policy in this agent run"."""

    trained = tmp_path / "trained"
    shutil.copytree(runs / "run", trained)
    derived = tmp_path / "derived"
    assert invoke(str(trained), str(derived), "--ablation", "no-feedback").exit_code == 0
    assert read_run_info(derived).extra["trained_created"] == read_run_info(trained).created
    info = json.loads((trained / "run.json").read_text())
    info["created"] = "2030-01-01T00:00:00+00:00"  # what a refit into the trained run's folder writes
    (trained / "run.json").write_text(json.dumps(info))
    (derived / "ranks_test.csv").write_text("sample_id,target,rank\n" + "".join(f"{i},1,1\n" for i in range(5)))
    res = CliRunner().invoke(app, ["evaluate", str(derived), "--split", "test", "--limit", "2"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "before it was trained again" in text, text
    assert "is replaced by this one" not in text, text  # announced before the refusal, and nothing was replaced
    (derived / "ranks_test.csv").unlink()
    assert f"derive it again: mgfrec derive {trained.resolve()} {derived} --ablation no-feedback" in text, text
    # a run derived from the derived run, with an override: the command named the bottom run with the top run's
    # preset and no override, which rebuilt another run under the same name (review s30)
    info = json.loads((trained / "run.json").read_text())
    info["created"] = read_run_info(derived).extra["trained_created"]  # current again, to derive from it
    (trained / "run.json").write_text(json.dumps(info))
    top = tmp_path / "top"
    made = invoke(str(derived), str(top), "--ablation", "no-recall", "--set", "agent.max_groundings=2")
    assert made.exit_code == 0, made.output
    info["created"] = "2030-01-01T00:00:00+00:00"
    (trained / "run.json").write_text(json.dumps(info))
    res = CliRunner().invoke(app, ["evaluate", str(top), "--split", "test", "--limit", "2"])
    text = " ".join(res.output.split())
    both = (
        f"derive it again: mgfrec derive {trained.resolve()} {derived.resolve()} --ablation no-feedback && "
        f"mgfrec derive {derived.resolve()} {top} --ablation no-recall --set agent.max_groundings=2"
    )
    assert res.exit_code == 2 and both in text, text
    # the trained run's folder holds a fit started again (its policy deleted, no run.json yet): report showed the
    # derived run's stored results of the policy that is gone (review s28)
    (derived / "ranks_test.csv").write_text("sample_id,target,rank\n" + "".join(f"{i},1,1\n" for i in range(5)))
    moved = trained / "run.json.kept"
    (trained / "run.json").replace(moved)
    (trained / "fit_start.json").write_text("{}")
    res = CliRunner().invoke(app, ["report", str(derived), "--split", "test"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "is being trained again (an unfinished fit is there" in text, text
    (trained / "fit_start.json").unlink()
    (derived / "ranks_test.csv").unlink()
    moved.replace(trained / "run.json")
    (trained / "run.json").unlink()
    res = CliRunner().invoke(app, ["evaluate", str(derived), "--split", "test", "--limit", "2"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "is not a run folder any more" in text and "Traceback" not in text, text
    assert not list(derived.glob("eval_*"))
    # stored results of a moved or archived folder are still read (report needs no policy), and a run derived
    # before the field existed is not checked at all
    from mgfrec.staleness import check_derived_current

    check_derived_current(derived, read_run_info(derived))
    old = read_run_info(derived)
    old.extra.pop("trained_created")
    check_derived_current(derived, old, rolling_out=True)


@pytest.mark.reliability
def test_no_feedback_of_a_run_trained_with_user_agent_options_drops_them(tmp_path):
    """The demo's own ablation was refused for any run trained with user_agent.options ("this component takes no
    options, got ['summary_size']"): no-feedback set the backend to none and kept the simulated user's options."""
    run, _, _ = tiny_agent_run(tmp_path, ["user_agent.options.summary_size=5"])
    res = invoke(str(run), str(tmp_path / "nf"), "--ablation", "no-feedback")
    assert res.exit_code == 0, res.output
    cfg = load_config(tmp_path / "nf" / "config.yaml")
    assert (cfg.user_agent.backend, cfg.user_agent.options) == ("none", {})
    # a --set of the options beside the preset would only be dropped by it: refused, naming both
    res = invoke(str(run), str(tmp_path / "nf2"), "--ablation", "no-feedback", "--set", "user_agent.options.x=1")
    assert res.exit_code == 2 and "--ablation no-feedback sets it (user_agent.options={})" in res.output, res.output


def test_a_derived_run_keeps_its_own_copy_of_the_trained_runs_template(tmp_path):
    """A derived run named the trained run's template file by path: moving the two apart lost it."""

    from mgfrec.agent.run_config import load_run_config

    template = tmp_path / "system.txt"
    template.write_text("You recommend music. Answer in <answer> </answer>.", encoding="utf-8")
    run, _, _ = tiny_agent_run(tmp_path, [f"agent.template={template}"])
    res = invoke(str(run), str(tmp_path / "derived"), "--ablation", "no-feedback")
    assert res.exit_code == 0, res.output
    copy = (tmp_path / "derived").resolve() / "prompts" / "recommendation_agent.txt"
    assert load_config(tmp_path / "derived" / "config.yaml").agent.template == str(copy)
    shutil.move(tmp_path / "derived", tmp_path / "moved")
    template.unlink()
    moved = load_run_config(tmp_path / "moved").agent.template
    assert moved == str((tmp_path / "moved" / "prompts" / "recommendation_agent.txt").resolve())
    again = invoke(str(run), str(tmp_path / "moved"), "--ablation", "no-recall")  # a derived run, derived again
    assert again.exit_code == 2 and "template file not found" in again.output  # the trained run's file is gone


def test_a_derive_cut_short_leaves_no_earlier_results_beside_its_new_config(runs, tmp_path, monkeypatch):
    """A derive into a folder derived before cleared the earlier evaluation last, after the new config.yaml: cut
    short in between, the old results sat beside the new config, and a report took them for it (review s27)."""
    from mgfrec.experiments import ablations

    out = tmp_path / "again"
    assert invoke(str(runs / "run"), str(out), "--ablation", "no-feedback").exit_code == 0
    (out / "eval_test.json").write_text("{}")  # the earlier derivation's stored result

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ablations, "write_run_info", killed)
    with pytest.raises(KeyboardInterrupt):
        ablations.derive_variant_run(runs / "run", "answer-first", out)
    assert not (out / "eval_test.json").exists()


@pytest.mark.reliability
def test_deriving_the_same_run_again_keeps_its_evaluations(runs, tmp_path):
    """Every derive cleared the folder's results, so the demo, which derives its rows on every rerun, rolled each
    of them out again (about 3 minutes idle; review s31). The same derivation keeps them; any change (another
    reading, an override, the trained run trained again) clears them."""

    from mgfrec.experiments import ablations

    out = tmp_path / "same"
    assert invoke(str(runs / "run"), str(out), "--ablation", "no-feedback").exit_code == 0
    created = json.loads((out / "run.json").read_text())["created"]
    (out / "eval_test.json").write_text("{}")  # its evaluation
    again = invoke(str(runs / "run"), str(out), "--ablation", "no-feedback")
    assert again.exit_code == 0 and "holds this derivation already; its evaluations (eval_test.json) are kept" in (
        " ".join(again.output.split())
    ), again.output  # not "wrote OUT; evaluate it"
    assert (out / "eval_test.json").is_file() and json.loads((out / "run.json").read_text())["created"] == created
    ablations.derive_ablation_run(runs / "run", "no-feedback", out, overrides=("agent.max_groundings=1",))
    assert not (out / "eval_test.json").exists()  # another config: another run's results
    (out / "eval_test.json").write_text("{}")
    ablations.derive_ablation_run(runs / "run", "no-recall", out)
    assert not (out / "eval_test.json").exists()
    # the trained run trained again in place (its run.json's created): the same paths, another policy
    mine = tmp_path / "mine"
    shutil.copytree(runs / "run", mine)
    ablations.derive_ablation_run(mine, "no-recall", out)
    (out / "eval_test.json").write_text("{}")
    ablations.derive_ablation_run(mine, "no-recall", out)
    assert (out / "eval_test.json").is_file()
    info = json.loads((mine / "run.json").read_text())
    (mine / "run.json").write_text(json.dumps({**info, "created": "2030-01-01T00:00:00+00:00"}))
    ablations.derive_ablation_run(mine, "no-recall", out)
    assert not (out / "eval_test.json").exists()


@pytest.mark.reliability
def test_no_multi_grounding_over_a_run_that_never_grounds_is_refused(runs, tmp_path):
    """It set agent.max_groundings=1 over a run trained with 0: the "ablation" row added a grounding turn the policy
    never had, and scored otherwise (review s39)."""
    import yaml

    from mgfrec.experiments.ablations import apply_ablation

    trained = tmp_path / "never"
    shutil.copytree(runs / "run", trained)
    config = yaml.safe_load((trained / "config.yaml").read_text(encoding="utf-8"))
    config["agent"]["max_groundings"] = 0
    (trained / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "derived"
    res = invoke(str(trained), str(out), "--ablation", "no-multi-grounding")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "agent.max_groundings is 0" in said and "would add a grounding" in said, said
    assert not out.exists()
    with pytest.raises(ValueError, match="would add a grounding"):  # fit --ablation and the sweep's cells
        apply_ablation(load_config(None, ["agent.max_groundings=0"]), "no-multi-grounding")
    assert apply_ablation(load_config(None, []), "no-multi-grounding").agent.max_groundings == 1

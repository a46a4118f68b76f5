"""``mgfrec sft``: synthesized trajectories follow the format rule token-exactly, training on them lowers the
loss and teaches the format, and the CLI leaves a run folder a later command can load.

A tiny synthetic data set and a short system prompt keep every trajectory a few hundred tokens, so the
tiny preset memorises the format within seconds on one CPU thread.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from rngkit import assert_caller_rng_kept
from typer.testing import CliRunner

from mgfrec.agent.environment import build_environment
from mgfrec.agent.parser import parse_transcript, parse_turn
from mgfrec.agent.samples import RecallOptions, recall_for, split_samples
from mgfrec.agent.trajectory import PolicySegment
from mgfrec.cli.sft import sft
from mgfrec.config.schema import (
    AgentConfig,
    DataConfig,
    GroundingConfig,
    MGFRecConfig,
    PolicyConfig,
    RetrieverConfig,
    UserAgentConfig,
)
from mgfrec.data.prepared import prepare
from mgfrec.eval.policy_eval import evaluate_policy
from mgfrec.grounding.engine import load_grounding
from mgfrec.models.policy import load_policy
from mgfrec.retrievers.recall import recall_lists
from mgfrec.rl.sft import train_epoch
from mgfrec.rl.sft_data import TURN_TAGS, build_plans, synthesize
from mgfrec.rollout.scripted_engine import encode_split
from mgfrec.text.prompts import AgentPrompts

pytestmark = pytest.mark.slow  # loads the embedding model once per session

SHORT_SYSTEM = (
    "You recommend music. Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>."
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm):
    root = tmp_path_factory.mktemp("sft")
    ds = prepare(
        DataConfig(source="synthetic", options={"n_users": 60, "n_items": 120, "n_artists": 15, "max_length": 8}),
        root / "data",
    )
    template = root / "system.txt"
    template.write_text(SHORT_SYSTEM, encoding="utf-8")
    cfg = MGFRecConfig(
        agent=AgentConfig(template=str(template), max_groundings=3),
        retriever=RetrieverConfig(recall_size=5),
        grounding=GroundingConfig(top_k=3),
    )
    recall_dir, _ = recall_for(ds, cfg, RecallOptions(recall_model="pop"), root)
    train = split_samples(ds, "train", recall_lists(ds, "train", 5, recall_dir), 40, seed=0)
    grounding = load_grounding(ds, cfg, embedder=minilm)
    model, tokenizer = load_policy(PolicyConfig(model="preset:tiny"), ds.titles, seed=0)
    return {"root": root, "ds": ds, "cfg": cfg, "train": train, "grounding": grounding, "policy": (model, tokenizer)}


def test_synthesized_trajectories_are_format_correct_and_copy_shown_titles(setup):
    cfg, grounding, (_, tokenizer) = setup["cfg"], setup["grounding"], setup["policy"]
    env = build_environment(grounding, tokenizer, cfg)
    result = synthesize(setup["train"], env, cfg.agent, prompts=AgentPrompts.from_config(cfg.agent))
    assert result.stats["kept"] == len(setup["train"]) and result.stats["plan_mismatch"] == 0
    assert len(result.trajectories) == len(result.plans) == len(result.samples)
    groundings = set()
    for traj, plan, sample in zip(result.trajectories, result.plans, result.samples, strict=True):
        assert traj.end_reason == "answered" and traj.format_ok
        assert parse_transcript(traj.response_text(), cfg.agent.max_groundings).format_ok
        assert 1 <= traj.num_groundings <= cfg.agent.max_groundings
        groundings.add(traj.num_groundings)
        # the action mask covers exactly the scripted turns, token for token
        ids, mask = traj.token_ids(), traj.action_mask()
        masked = [t for t, m in zip(ids, mask, strict=True) if m]
        scripted = [t for turn in plan.turns for t in tokenizer.encode(turn, add_special_tokens=False)]
        assert masked == scripted
        assert [seg.text for seg in traj.segments if isinstance(seg, PolicySegment)] == list(plan.turns)
        assert not any(mask[: len(traj.prompt_ids)])
        # grounded titles come from the lists in context; the answer is a copy of a shown title
        recall = [grounding.titles[i] for i in sample.recall if i >= 0]
        shown = list(recall)
        for turn, step in zip(traj.turns, traj.steps, strict=False):
            assert turn.title in shown or turn.title == grounding.titles[sample.history[-1]]
            shown.extend(step.item_titles)
        assert traj.answer in shown
        target_shown = grounding.titles[sample.target] in shown
        assert plan.target_shown == target_shown
        assert traj.answer == (grounding.titles[sample.target] if target_shown else recall[0])
    assert groundings == {1, 2}  # the optional second grounding happens, and not always


def test_second_grounding_respects_max_groundings(setup):
    cfg, grounding, (_, tokenizer) = setup["cfg"], setup["grounding"], setup["policy"]
    agent = cfg.agent.model_copy(update={"max_groundings": 1})
    plans = build_plans(setup["train"], grounding, tokenizer, agent)
    assert all(len(p.grounded) == 1 and len(p.turns) == 2 for p in plans)
    assert all(parse_turn(p.turns[-1]).kind == "answer" for p in plans)


def test_a_second_grounding_dropped_for_the_token_total_takes_its_answer_with_it(setup):
    """A plan whose target only the second grounding shows, when the three turns exceed
    agent.max_new_tokens_total: the second grounding is dropped and the answer is chosen again among what the
    trajectory is still shown, never the target it can no longer see."""
    cfg, grounding, (_, tokenizer) = setup["cfg"], setup["grounding"], setup["policy"]
    samples = setup["train"]
    plans = build_plans(samples, grounding, tokenizer, cfg.agent)
    second = [(s, p) for s, p in zip(samples, plans, strict=True) if len(p.grounded) == 2 and p.target_shown]
    second = [(s, p) for s, p in second if s.target in p.grounded[1] and s.target not in p.grounded[0]]
    assert second, "no plan shows its target only in the second grounding"
    sample, plan = second[0]
    total = sum(len(encode_split(tokenizer, t, TURN_TAGS)) for t in plan.turns)
    agent = cfg.agent.model_copy(update={"max_new_tokens_total": total - 1})
    (short,) = build_plans([sample], grounding, tokenizer, agent)
    shown = [*(i for i in sample.recall if i >= 0), *short.grounded[0]]
    assert len(short.turns) == 2 and len(short.grounded) == 1
    assert short.answer_item in shown and short.answer_item != sample.target and not short.target_shown
    assert parse_turn(short.turns[-1]).title == grounding.titles[short.answer_item]


def test_plans_the_constrained_grammar_refuses_are_dropped_not_fatal(setup):
    """Under constrained decoding a grounding needs room for an answer turn after it (the shortest thought, the
    answer's tags and 24 tokens of title); a plan that fits the token total but not that rule made synthesize()
    raise for the whole batch. It is dropped now."""
    cfg, grounding, (_, tokenizer) = setup["cfg"], setup["grounding"], setup["policy"]
    env = build_environment(grounding, tokenizer, cfg)
    samples = setup["train"][:12]
    plans = build_plans(samples, grounding, tokenizer, cfg.agent)
    assert {len(p.grounded) for p in plans} == {1, 2}
    # every plan fits the total, but the longest leaves less than an answer turn's room after its last grounding
    sizes = [sum(len(encode_split(tokenizer, t, TURN_TAGS)) for t in p.turns) for p in plans]
    total = max(sizes)
    agent = cfg.agent.model_copy(update={"max_new_tokens_total": total, "decoding": "constrained"})
    result = synthesize(samples, env, agent, prompts=AgentPrompts.from_config(agent), batch_size=4)
    stats = result.stats
    assert stats["dropped_off_grammar"] > 0 and stats["kept"] > 0
    assert stats["kept"] + stats["dropped"] == len(samples) and stats["dropped_off_grammar"] <= stats["dropped"]
    assert all(t.end_reason == "answered" for t in result.trajectories)
    assert [s.sample_id for s in result.samples] == sorted(
        (s.sample_id for s in result.samples), key=[x.sample_id for x in samples].index
    )


def test_the_recall_teacher_grounds_and_answers_the_recall_lists_first_item(setup):
    cfg, grounding, (_, tokenizer) = setup["cfg"], setup["grounding"], setup["policy"]
    samples = setup["train"]
    plans = build_plans(samples, grounding, tokenizer, cfg.agent, teacher="recall")
    for sample, plan in zip(samples, plans, strict=True):
        first = [i for i in sample.recall if i >= 0][0]
        assert len(plan.turns) == 2 and parse_turn(plan.turns[0]).title == grounding.titles[first]
        assert plan.answer_item == first and parse_turn(plan.turns[-1]).title == grounding.titles[first]
        assert plan.target_shown == (first == sample.target)
    # under the default constrained decoding every demonstration replays through the grammar: none is dropped
    result = synthesize(samples[:6], build_environment(grounding, tokenizer, cfg), cfg.agent, teacher="recall")
    assert cfg.agent.decoding == "constrained" and result.stats["kept"] == 6
    assert all(t.constrained for t in result.trajectories)


@pytest.mark.reliability
def test_no_demonstration_answers_a_history_item_that_is_not_the_target(setup):
    """With agent.use_recall false the first grounding (the last history title) shows that item first, and the
    recall fallback and the recall teacher answered it for every sample: an answer the ranking leaves out, so it can
    never be the target (review s32: 113 of 200 demonstrations, and all 200 under --teacher recall)."""
    cfg, grounding, (_, tokenizer) = setup["cfg"], setup["grounding"], setup["policy"]
    samples = setup["train"]
    no_recall = cfg.agent.model_copy(update={"use_recall": False})
    for teacher, fallback in (("target", "recall"), ("target", "nearest"), ("recall", "recall")):
        plans = build_plans(samples, grounding, tokenizer, no_recall, teacher=teacher, fallback=fallback)
        wrong = [
            (s.sample_id, p.answer_item)
            for s, p in zip(samples, plans, strict=True)
            if p.answer_item in s.history
            and p.answer_item != s.target
            and not {i for row in p.grounded for i in row} <= set(s.history)  # (all it was shown is history)
        ]
        assert not wrong, (teacher, fallback, wrong[:5])
        for plan in plans:  # the answer is still one the trajectory was shown
            assert plan.answer_item in {i for row in plan.grounded for i in row}
    # a target the user consumed before (a repeat) is still answered when shown: the ranking never leaves it out
    from dataclasses import replace

    repeats = [replace(s, target=s.history[-1]) for s in samples[:10]]
    plans = build_plans(repeats, grounding, tokenizer, no_recall, teacher="recall")
    assert [p.answer_item for p in plans] == [s.target for s in repeats]


def test_sft_lowers_the_loss_and_teaches_the_format(setup):
    cfg, grounding, ds = setup["cfg"], setup["grounding"], setup["ds"]
    # No feedback block: shorter trajectories, and the format is what is learnt here: free decoding (under
    # constrained decoding the format holds by construction; tests/rollout/test_constrained.py checks that).
    cfg = cfg.model_copy(
        update={
            "user_agent": UserAgentConfig(backend="none"),
            "agent": cfg.agent.model_copy(update={"decoding": "free"}),
        }
    )
    model, tokenizer = load_policy(PolicyConfig(model="preset:tiny"), ds.titles, seed=0)
    env = build_environment(grounding, tokenizer, cfg)
    samples = setup["train"][:8]
    trajs = synthesize(samples, env, cfg.agent).trajectories
    before = evaluate_policy(model, tokenizer, env, samples, cfg)
    assert before["format_valid"] <= 0.1
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    # Enough single-trajectory steps (480) to memorise eight trajectories: measured 1.0 format-valid (loss
    # 0.003) on 1 and 2 threads, 1.0 already at 50 epochs. The earlier 30 epochs at lr 2e-3 ended at loss 0.15
    # and 0.125-1.0 format-valid depending on the machine's float rounding: too close to the edge.
    losses = [train_epoch(model, optimizer, trajs, tokenizer.pad_token_id, 1, rng) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
    after = evaluate_policy(model, tokenizer, env, samples, cfg)
    assert after["format_valid"] >= 0.5  # the untrained policy: <= 0.1 (above)
    assert after["mean_groundings"] >= 1.0
    assert 0.0 <= after["ndcg@10"] <= after["ndcg_full"] <= 1.0


@pytest.mark.reliability
def test_a_non_finite_loss_stops_the_epoch_naming_the_learning_rate(setup, monkeypatch):
    """`sft --lr 1e10` trained weights of NaN and ended with "token 0 is not allowed in phase 'forced' of the turn
    grammar" (review s28)."""
    from mgfrec.rl import sft as sft_mod

    cfg, grounding, ds = setup["cfg"], setup["grounding"], setup["ds"]
    cfg = cfg.model_copy(update={"user_agent": UserAgentConfig(backend="none")})
    model, tokenizer = load_policy(PolicyConfig(model="preset:tiny"), ds.titles, seed=0)
    trajs = synthesize(setup["train"][:2], build_environment(grounding, tokenizer, cfg), cfg.agent).trajectories
    real = sft_mod.sft_loss
    monkeypatch.setattr(sft_mod, "sft_loss", lambda m, b: real(m, b) * float("inf"))  # weights gone to inf
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.25)
    with pytest.raises(ValueError, match=r"the SFT loss became inf .*: give a smaller --lr \(now 0.25\)"):
        train_epoch(model, optimizer, trajs, tokenizer.pad_token_id, 1, np.random.default_rng(0))


def test_cli_writes_a_loadable_run_folder(setup):
    root, ds = setup["root"], setup["ds"]
    out = root / "run"
    app = typer.Typer()
    app.command()(sft)
    args = [
        "--data",
        ds.root,
        "--out",
        out,
        "--recall-model",
        "pop",
        "--epochs",
        "1",
        "--max-train-samples",
        "6",
        "--valid-samples",
        "3",
        "--no-progress",
        "--json",
        "--gradient-checkpointing",
        "--set",
        f"agent.template={root / 'system.txt'}",
        "--set",
        "retriever.recall_size=5",
        "--set",
        "grounding.top_k=3",
        "--set",
        "user_agent.backend=none",
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output

    def strict(token):  # JSON has no NaN: Python's default would write one, JavaScript and jq refuse it
        raise AssertionError(f"{token} in JSON output")

    summary = json.loads(result.stdout, parse_constant=strict)
    assert summary["untrained"]["train_loss"] is None and summary["final"]["train_loss"] > 0
    info = json.loads((out / "run.json").read_text(), parse_constant=strict)
    assert info["kind"] == "agent" and info["model"] == "mgfrec-sft" and info["extra"]["policy"] == "policy"
    assert info["data_checksum"] == ds.checksum
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["retriever"]["model"] == "pop" and config["policy"]["model"] == "preset:tiny"
    assert config["policy"]["gradient_checkpointing"] is True  # the flag reached the run's config
    rows = list(csv.DictReader((out / "sft_metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"] and float(rows[1]["train_loss"]) > 0
    model, tokenizer = load_policy(PolicyConfig(model=str(out / "policy")))
    assert model.config.num_hidden_layers == 4 and tokenizer.convert_tokens_to_ids("<ground>") is not None
    assert (out / "recall" / "run.json").is_file()
    # which fit of the recall run it was trained over: a refit there makes the run stale (check_recall_current)
    assert info["extra"]["recall_created"] == json.loads((out / "recall" / "run.json").read_text())["created"]
    # a re-run into the finished run with a typo that shows only once the recall model is there: run.json and the
    # saved evaluations were deleted first, and the run could no longer be evaluated or used as --init
    (out / "eval_valid.json").write_text("{}")
    recall = args.index("--recall-model")
    rerun = [*args[:recall], "--recall-run", out / "recall", *args[recall + 2 :], "--set", "embedding.model=/no/such/m"]
    again = CliRunner().invoke(app, [str(a) for a in rerun])
    assert again.exit_code == 2 and "/no/such/m" in again.output, again.output
    assert json.loads((out / "run.json").read_text()) == info and (out / "eval_valid.json").is_file()
    # the vllm engine without vLLM: it was a ModuleNotFoundError traceback once run.json had been deleted
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "vllm", None)
        again = CliRunner().invoke(app, [str(a) for a in [*rerun[:-2], "--set", "rollout.engine=vllm"]])
    assert again.exit_code == 2 and "rollout.engine 'vllm' needs vLLM" in again.output, again.output
    assert json.loads((out / "run.json").read_text()) == info and (out / "eval_valid.json").is_file()
    # a config no trajectory can be made under was found by synthesis, after the earlier run had been retired; the
    # error said every sample "exceeded the turn budgets" when the constrained grammar had refused them all
    for setting, words in (
        ("agent.max_groundings=0", "agent.max_groundings"),
        ("agent.max_think_tokens=1", "6 refused by the constrained turn grammar"),
    ):
        again = CliRunner().invoke(app, [str(a) for a in [*rerun[:-2], "--set", setting]])
        text = " ".join(again.output.split())
        assert again.exit_code == 2 and words in text and "Traceback" not in text, text
        assert json.loads((out / "run.json").read_text()) == info and (out / "eval_valid.json").is_file()


def test_every_validation_uses_one_engine_given_the_trained_weights(setup, monkeypatch):
    """SFT builds its rollout engine once; an engine holding its own copy of the weights (copy_model) is given the
    trained weights before each validation, so it validates exactly as the engine that shares the model."""
    from mgfrec.rl import sft as sft_mod

    root, ds = setup["root"], setup["ds"]
    built = []
    real = sft_mod.build_engine

    def counting(*args, **kwargs):
        built.append(args[0].options)
        return real(*args, **kwargs)

    monkeypatch.setattr(sft_mod, "build_engine", counting)
    app = typer.Typer()
    app.command()(sft)
    rows = {}
    for copy in ("false", "true"):
        out = root / f"engine-{copy}"
        args = ["--data", ds.root, "--out", out, "--recall-model", "pop", "--epochs", "2", "--max-train-samples", "6"]
        args += ["--valid-samples", "4", "--no-progress", "--set", f"agent.template={root / 'system.txt'}"]
        args += ["--set", "retriever.recall_size=5", "--set", "grounding.top_k=3", "--set", "user_agent.backend=none"]
        args += ["--set", f"rollout.options.copy_model={copy}"]
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        rows[copy] = list(csv.DictReader((out / "sft_metrics.csv").open()))
    assert len(built) == 2  # one engine per run, not one per validation
    valid = [k for k in rows["false"][0] if k.startswith("valid") or k in ("ndcg_full", "ndcg@10", "format_valid")]
    assert valid and [[r[k] for k in valid] for r in rows["true"]] == [[r[k] for k in valid] for r in rows["false"]]


def test_cli_names_a_bad_fallback(setup):
    app = typer.Typer()
    app.command()(sft)
    result = CliRunner().invoke(
        app, ["--data", str(setup["ds"].root), "--out", str(Path(setup["root"]) / "x"), "--fallback", "oracle"]
    )
    assert result.exit_code == 2 and "--fallback" in result.output


@pytest.mark.reliability
def test_a_run_keeps_the_template_it_was_trained_with_and_is_evaluated_with_it_when_moved(setup, tmp_path):
    """agent.template was recorded as the user's path: editing or deleting that file changed (or broke) what
    `mgfrec evaluate` prompted the trained policy with, and a moved run could not find it."""
    import shutil

    from mgfrec.agent.run_config import load_run_config
    from mgfrec.eval.runs import evaluate_run

    ds = setup["ds"]
    mine = tmp_path / "mine.txt"
    mine.write_text(SHORT_SYSTEM, encoding="utf-8")
    simulator = tmp_path / "simulator.txt"  # user_agent.prompt: kept too (it was recorded as the user's path)
    user_prompt = "Liked: {history}. Searched: {grounded_title}. Shown: {item_list}. Say what fits."
    simulator.write_text(user_prompt, encoding="utf-8")
    out = tmp_path / "first" / "run"
    app = typer.Typer()
    app.command()(sft)
    args = [
        "--data", ds.root, "--out", out, "--recall-model", "pop", "--epochs", "1", "--max-train-samples", "4",
        "--valid-samples", "0", "--no-progress", "--set", f"agent.template={mine}", "--set", "retriever.recall_size=5",
        "--set", "grounding.top_k=3", "--set", "user_agent.backend=none", "--set", f"user_agent.prompt={simulator}",
    ]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "valid: no validation (--valid-samples 0); policy" in result.output, result.output
    copy = out.resolve() / "prompts" / "recommendation_agent.txt"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["agent"]["template"] == str(copy) and copy.read_text(encoding="utf-8") == SHORT_SYSTEM
    assert config["agent"]["first_prompt"] is None  # the shipped default, not copied
    kept = out.resolve() / "prompts" / "user_agent.txt"
    assert config["user_agent"]["prompt"] == str(kept) and kept.read_text(encoding="utf-8") == user_prompt
    mine.write_text("You are someone else now.", encoding="utf-8")  # the user's file edited after training
    assert AgentPrompts.from_config(load_run_config(out).agent).system.text == SHORT_SYSTEM
    moved = tmp_path / "second" / "run"
    moved.parent.mkdir()
    shutil.move(out, moved)
    mine.unlink()
    assert load_run_config(moved).agent.template == str(moved.resolve() / "prompts" / "recommendation_agent.txt")
    assert load_run_config(moved).user_agent.prompt == str(moved.resolve() / "prompts" / "user_agent.txt")
    evaluated = evaluate_run(moved, "valid", limit=2, write=False)  # its recall run moved with it, inside it
    assert evaluated.metrics


@pytest.mark.reliability
def test_recall_model_beside_recall_run_is_refused(tmp_path):
    # --recall-model was taken with --recall-run and overwritten by the recall run's model without a word
    app = typer.Typer()
    app.command()(sft)
    args = ["--data", tmp_path, "--out", tmp_path / "o", "--recall-run", tmp_path / "sas", "--recall-model", "pop"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert f"--recall-model pop and --recall-run {tmp_path / 'sas'}: the recall lists come from" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.reliability
def test_the_template_kept_is_the_one_trained_on_when_the_users_file_changes_during_training(setup, tmp_path):
    """sft read the templates at its start and copied them into the run at its end: a template edited during a
    long SFT was recorded as the one trained on, and evaluation and `fit --init` prompted with it (review s27)."""
    from mgfrec.rl.sft import SFTOptions, run_sft

    mine = tmp_path / "mine.txt"
    mine.write_text(SHORT_SYSTEM, encoding="utf-8")
    cfg = setup["cfg"].model_copy(
        update={"agent": setup["cfg"].agent.model_copy(update={"template": str(mine)}), "policy": PolicyConfig()}
    )

    def say(line: str) -> None:
        if line.startswith("synthesized"):  # training starts next: the user edits their file
            mine.write_text("You are someone else now.", encoding="utf-8")

    import mgfrec.rl.sft as sft_module

    calls = []
    real = sft_module.synthesize
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft_module, "synthesize", lambda *a, **k: calls.append(1) or real(*a, **k))
        options = SFTOptions(recall_model="pop", epochs=1, max_train_samples=4, valid_samples=0)
        run_sft(setup["ds"].root, tmp_path / "run", cfg, options, say=say)
    kept = (tmp_path / "run" / "prompts" / "recommendation_agent.txt").read_text(encoding="utf-8")
    assert kept == SHORT_SYSTEM
    # synthesized once: the run's copy of the template is another path with the same text (it ran twice for every
    # run with a template file of its own; the review of session 30's change)
    assert len(calls) == 1


def test_an_answer_is_found_among_shown_titles_however_wordpiece_writes_it(tmp_path, minilm):
    """preset:tiny-minilm writes "Sessions, Vol. 4 (Folk)" back as "sessions, vol. 4 ( folk )" and "Café del Mar"
    as "cafe del mar": compared with spaces collapsed only, no answer matched a shown title, and answer_in_shown
    read 0 at every validation (review s27). Under constrained turns every answer is a shown title: 1.0."""
    # every title accented: whichever the untrained policy answers, WordPiece writes it back otherwise
    titles = ["Sessions, Vol. 4 (Fölk)", "Café del Mar", "Beyoncé", "Mötley Crüe", "Björk: Homogenic", "Édith à 86>98"]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_text(
        "item_id,title\n" + "".join(f'i{n},"{t}"\n' for n, t in enumerate(titles)), encoding="utf-8"
    )
    log = [f"u{u},i{(u + k) % len(titles)},{k}" for u in range(12) for k in range(5)]
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(log) + "\n", encoding="utf-8")
    ds = prepare(DataConfig(source="csv", path=str(raw)), tmp_path / "data")
    cfg = MGFRecConfig(
        agent=AgentConfig(max_groundings=1),
        retriever=RetrieverConfig(recall_size=3),
        grounding=GroundingConfig(top_k=3),
    )
    recall_dir, _ = recall_for(ds, cfg, RecallOptions(recall_model="pop"), tmp_path)
    samples = split_samples(ds, "train", recall_lists(ds, "train", 3, recall_dir), 12, seed=0)
    model, tokenizer = load_policy(PolicyConfig(model="preset:tiny-minilm"), ds.titles, seed=0)
    env = build_environment(load_grounding(ds, cfg, embedder=minilm), tokenizer, cfg)
    metrics = evaluate_policy(model, tokenizer, env, samples, cfg)
    assert metrics["format_valid"] == 1.0 and metrics["answer_in_shown"] == 1.0, metrics


def test_a_stopped_rerun_leaves_no_earlier_policy_beside_its_own_metrics(setup, tmp_path, monkeypatch):
    """A re-run stopped in training left its new epochs' sft_metrics.csv beside the earlier run's policy/ and
    config.yaml: a folder of two runs whose policy looked like this one's (review s30)."""
    import mgfrec.rl.sft as sft_module
    from mgfrec.rl.sft import SFTOptions, run_sft

    cfg = setup["cfg"].model_copy(update={"policy": PolicyConfig()})
    out = tmp_path / "run"
    options = SFTOptions(recall_model="pop", epochs=0, max_train_samples=4, valid_samples=0)
    # it seeds torch for itself; the caller's generators are as they were after it (review s35)
    assert_caller_rng_kept(lambda: run_sft(setup["ds"].root, out, cfg, options))
    assert (out / "policy").is_dir() and (out / "run.json").is_file()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sft_module, "_train", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_sft(setup["ds"].root, out, cfg, options)
    assert not (out / "policy").exists() and not (out / "run.json").exists()
    assert (out / "sft_metrics.csv").read_text().strip() == ""  # no row of the earlier run: the mark of this one
    from mgfrec.runs import read_run_info

    with pytest.raises(FileNotFoundError, match="an SFT that did not finish|an agent run that did not finish"):
        read_run_info(out)


@pytest.mark.reliability
def test_an_sft_stopped_before_its_first_metrics_row_is_taken_up_by_the_same_command(setup, tmp_path, monkeypatch):
    """With --recall-run (no OUT/recall) and a template, a stop during the first validation (minutes on CDs) left
    only prompts/, and the same command was refused: "not empty (prompts) and not a run folder" (review s41)."""
    import mgfrec.rl.sft as sft_module
    from mgfrec.output_folders import check_output_run
    from mgfrec.rl.sft import SFTOptions, run_sft
    from mgfrec.runs import read_run_info

    recall = tmp_path / "pop"
    run_sft(
        setup["ds"].root,
        tmp_path / "first",
        setup["cfg"],
        SFTOptions(recall_model="pop", epochs=0, max_train_samples=4, valid_samples=0),
        say=lambda line: None,
    )
    shutil.copytree(tmp_path / "first" / "recall", recall)
    out = tmp_path / "run"
    options = SFTOptions(recall_run=str(recall), epochs=0, max_train_samples=4, valid_samples=2)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sft_module, "_train", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_sft(setup["ds"].root, out, setup["cfg"], options, say=lambda line: None)
    assert (out / "prompts").is_dir() and not (out / "recall").exists()
    check_output_run(out, "mgfrec-sft", data=setup["ds"].root)  # the same command may go on in it
    with pytest.raises(FileNotFoundError, match="an SFT that did not finish"):
        read_run_info(out)
    monkeypatch.undo()
    run_sft(setup["ds"].root, out, setup["cfg"], options, say=lambda line: None)
    assert (out / "run.json").is_file()
    # refused before any answer was paid for or any template copied: no mark left behind (a folder that said "an
    # SFT that did not finish" to every command, its own rerun failing the same way)
    refused = tmp_path / "refused"
    cfg = setup["cfg"].model_copy(update={"agent": setup["cfg"].agent.model_copy(update={"max_groundings": 0})})
    with pytest.raises(ValueError):
        run_sft(setup["ds"].root, refused, cfg, options, say=lambda line: None)
    assert not (refused / "sft_metrics.csv").exists()


@pytest.mark.reliability
def test_a_rerun_says_it_replaces_the_earlier_run_and_a_stop_in_its_first_epoch_is_named(setup, tmp_path, monkeypatch):
    """A rerun into a finished SFT's folder removed it without a word, and one stopped in its only epoch left a folder
    read as "not a run folder ... train one with 'mgfrec baseline fit'" (review s36)."""
    import mgfrec.rl.sft as sft_module
    from mgfrec.rl.sft import SFTOptions, run_sft
    from mgfrec.runs import read_run_info

    cfg = setup["cfg"].model_copy(update={"policy": PolicyConfig()})
    out = tmp_path / "run"
    options = SFTOptions(recall_model="pop", epochs=0, max_train_samples=4, valid_samples=2)
    run_sft(setup["ds"].root, out, cfg, options, say=lambda line: None)
    said: list[str] = []

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sft_module, "train_epoch", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_sft(setup["ds"].root, out, cfg, dataclasses.replace(options, epochs=1), say=said.append)
    assert any(line.startswith(f"note: {out} holds an earlier SFT run; this SFT replaces it") for line in said), said
    with pytest.raises(FileNotFoundError, match="an SFT that did not finish"):
        read_run_info(out)


def test_a_second_sft_into_a_folder_being_trained_is_refused(setup, tmp_path):
    """Two SFTs into one --out each retired the other's files and saved one policy over the other's (note s31)."""
    from mgfrec.locks import only_one_in
    from mgfrec.rl.sft import SFTOptions, run_sft

    cfg = setup["cfg"].model_copy(update={"policy": PolicyConfig()})
    out = tmp_path / "run"
    options = SFTOptions(recall_model="pop", epochs=0, max_train_samples=4, valid_samples=0)
    run_sft(setup["ds"].root, out, cfg, options)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    with only_one_in(out, "mgfrec fit"):  # a fit or another SFT: told so before the checks of what OUT holds
        with pytest.raises(ValueError, match=r"another mgfrec command is writing it now; wait for it to end"):
            run_sft(setup["ds"].root, out, cfg, options)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before


@pytest.mark.reliability
def test_a_run_another_command_makes_in_out_after_the_check_is_not_retired(setup, tmp_path, monkeypatch):
    """OUT was checked before its lock was taken: a baseline run made there in between was retired by the SFT,
    after its command had said it finished (review s33)."""
    import mgfrec.rl.sft as sft_mod
    from mgfrec.config.load import load_config
    from mgfrec.retrievers.fit import fit_baseline
    from mgfrec.rl.sft import SFTOptions, run_sft
    from mgfrec.runs import read_run_info

    cfg = setup["cfg"].model_copy(update={"policy": PolicyConfig()})
    out, real = tmp_path / "raced", sft_mod.check_output_run

    def checked_then_raced(folder, producer, **kwargs):
        real(folder, producer, **kwargs)
        if not (out / "run.json").exists():  # the first check passed: a baseline fit lands now
            fit_baseline(setup["ds"], load_config(None, ["retriever.model=pop"]), out)

    monkeypatch.setattr(sft_mod, "check_output_run", checked_then_raced)
    options = SFTOptions(recall_model="pop", epochs=0, max_train_samples=4, valid_samples=0)
    with pytest.raises(ValueError, match=r"holds a baseline run"):
        run_sft(setup["ds"].root, out, cfg, options)
    assert read_run_info(out).model == "pop" and (out / "popularity.npy").is_file()


@pytest.mark.reliability
def test_a_final_ranking_the_recall_model_cannot_serve_is_refused_before_the_recall_fit(setup, tmp_path):
    """`agent.final_ranking: l2_joint` over pop fitted the recall model, then stopped (review s37)."""
    from mgfrec.rl.sft import SFTOptions, run_sft

    cfg = setup["cfg"].model_copy(update={"agent": setup["cfg"].agent.model_copy(update={"final_ranking": "l2_joint"})})
    options = SFTOptions(recall_model="pop", epochs=1, max_train_samples=4, valid_samples=0)
    with pytest.raises(ValueError, match=r"the recall model 'pop' \(--recall-model, retriever.model\): agent.final"):
        run_sft(setup["ds"].root, tmp_path / "run", cfg, options)
    over_run = SFTOptions(recall_run=str(setup["root"] / "recall"), epochs=1, max_train_samples=4, valid_samples=0)
    with pytest.raises(ValueError, match=r"--recall-run .*recall: agent.final_ranking: l2_joint .*\(pop\) has none"):
        run_sft(setup["ds"].root, tmp_path / "run", cfg, over_run)
    assert not (tmp_path / "run").exists()


def test_the_user_agent_is_closed_when_sft_and_evaluate_end(setup, tmp_path, monkeypatch):
    """Only `recommend` closed the user agent it built: `fit`, `sft` and `evaluate` never called `close()`, so a
    plugin's flush or end of session was lost and in-process callers kept the built-ins' pools, clients and SQLite
    connections (review s41). A `close()` that fails is a warning naming it, after the work."""
    from mgfrec.agent.environment import UserAgentCloseWarning
    from mgfrec.eval.runs import evaluate_run
    from mgfrec.rl.sft import SFTOptions, run_sft
    from mgfrec.user_agents.simulated import SimulatedUserAgent

    closed: list[object] = []
    monkeypatch.setattr(SimulatedUserAgent, "close", lambda self: closed.append(self))
    out = tmp_path / "run"
    options = SFTOptions(recall_model="pop", epochs=0, max_train_samples=4, valid_samples=2)
    run_sft(setup["ds"].root, out, setup["cfg"], options, say=lambda line: None)
    assert len(closed) == 1
    evaluate_run(out, "valid", limit=2, write=False)
    assert len(closed) == 2

    def broken(self):
        raise RuntimeError("the session could not be ended")

    monkeypatch.setattr(SimulatedUserAgent, "close", broken)
    with pytest.warns(UserAgentCloseWarning, match=r"RuntimeError: the session could not be ended \(the work"):
        result = evaluate_run(out, "valid", limit=2, write=False)
    assert result.samples == 2

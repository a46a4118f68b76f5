"""GRPOModule / run_fit: two GRPO steps on a tiny synthetic set log finite metrics, keep the engine in sync
with the policy, update only through the policy's own tokens, and resume from the last checkpoint."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from rngkit import assert_caller_rng_kept

from mgfrec.config.schema import (
    AgentConfig,
    DataConfig,
    GroundingConfig,
    GRPOConfig,
    MGFRecConfig,
    RetrieverConfig,
    RolloutConfig,
    TrainerConfig,
)
from mgfrec.data.prepared import prepare
from mgfrec.rl import module as module_mod
from mgfrec.rl.fit import FitOptions, run_fit

pytestmark = pytest.mark.slow  # loads the embedding model once per session

SHORT_SYSTEM = (
    "You recommend music. Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>."
)


def tiny_config(root, **trainer) -> MGFRecConfig:
    template = root / "system.txt"
    template.write_text(SHORT_SYSTEM, encoding="utf-8")
    return MGFRecConfig(
        agent=AgentConfig(
            template=str(template), max_groundings=1, max_new_tokens_per_turn=16, max_new_tokens_total=48
        ),
        retriever=RetrieverConfig(recall_size=5),
        grounding=GroundingConfig(top_k=3),
        grpo=GRPOConfig(group_size=2, kl_beta=0.04),
        rollout=RolloutConfig(options={"copy_model": True}),  # a private engine copy: weight sync must happen
        trainer=TrainerConfig(
            **{"max_steps": 2, "global_batch_size": 3, "micro_batch_size": 4, "val_check_interval": 2, **trainer}
        ),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, minilm):
    root = tmp_path_factory.mktemp("grpo")
    ds = prepare(
        DataConfig(source="synthetic", options={"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}),
        root / "data",
    )
    cfg = tiny_config(root)
    # it seeds torch for itself; the caller's generators are as they were after it (review s35)
    result = assert_caller_rng_kept(
        lambda: run_fit(ds.root, root / "run", cfg, FitOptions(valid_samples=4), embedder=minilm)
    )
    return {"root": root, "ds": ds, "cfg": cfg, "result": result, "minilm": minilm}


def read_rows(path):
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_two_steps_log_finite_metrics_and_write_the_run_folder(run):
    out = run["result"].out
    rows = read_rows(out / "metrics.csv")
    assert [float(r["step"]) for r in rows] == [0.0, 1.0, 2.0]  # step 0: the starting policy's validation
    assert math.isfinite(float(rows[0]["valid/ndcg_full"])) and rows[0]["reward/mean"] == ""
    # step 0's validation calls in its own row, not step 1's (review s31): one user-agent call per grounding
    assert float(rows[0]["user_agent/calls"]) == round(float(rows[0]["valid/mean_groundings"]) * 4)
    rows = rows[1:]
    for column in (
        "reward/mean",
        "reward/std",
        "ndcg",
        "format_valid",
        "groundings",
        "end/answered",
        "response_length",
        "kl",
        "entropy",
        "clip_fraction/total",
        "grad_norm",
        "user_agent/calls",
        "time/rollout",
        "time/environment",
        "time/train",
    ):
        assert all(math.isfinite(float(r[column])) for r in rows), column
    assert math.isfinite(float(rows[-1]["valid/ndcg@10"])) and math.isfinite(float(rows[-1]["valid/ndcg_full"]))
    assert (out / "policy" / "config.json").is_file() and (out / "best_policy" / "config.json").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "config.yaml").is_file()
    assert run["result"].extra["policy"] == "policy" and run["result"].extra["recall_run"]
    recall = json.loads((Path(run["result"].extra["recall_run"]) / "run.json").read_text())
    assert run["result"].extra["recall_created"] == recall["created"]  # a refit there makes the run stale


def test_engine_weights_equal_the_policy_after_a_step(run):
    module = run["result"].module
    assert module.engine.model is not module.policy  # copy_model: equality below is the sync, not sharing
    engine_state = module.engine.model.state_dict()
    for name, value in module.policy.state_dict().items():
        assert torch.equal(engine_state[name], value), name


def _two_groups(module):
    """Two train samples rolled out twice each with the module's engine: what one update trains on."""
    from mgfrec.agent.loop import rollout
    from mgfrec.agent.samples import to_rollout_sample

    return rollout(
        module.engine,
        module.environment,
        [to_rollout_sample(s, module.environment.grounding.titles) for s in module.train_samples[:2]],
        group_size=2,
        agent=module.cfg.agent,
        seed=1,
        prompts=module.prompts,
    )


def test_update_changes_weights_through_action_tokens_only(run, monkeypatch):
    module = run["result"].module
    result = _two_groups(module)
    seen = []
    real = module_mod.grpo_loss

    def spy(logprobs, old, ref, adv, mask, **kw):
        seen.append(mask.clone())
        return real(logprobs, old, ref, adv, mask, **kw)

    monkeypatch.setattr(module_mod, "grpo_loss", spy)
    before = {k: v.clone() for k, v in module.policy.state_dict().items()}
    module.update(result.trajectories, torch.tensor([1.0, -1.0, 1.0, -1.0]))
    assert any(not torch.equal(before[k], v) for k, v in module.policy.state_dict().items())
    mask = seen[0]
    for b, t in enumerate(result.trajectories):
        expected = torch.zeros(mask.shape[1], dtype=torch.bool)
        expected[: len(t)] = torch.tensor(t.action_mask())
        assert torch.equal(mask[b].cpu(), expected)  # prompt, observations and padding never enter the loss
        assert not mask[b, : len(t.prompt_ids)].any()


@pytest.mark.reliability
def test_resume_continues_from_the_last_checkpoint(run):
    out = run["result"].out
    first = read_rows(out / "metrics.csv")
    before = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["mgfrec"]["seconds"]
    assert 0 < before <= run["result"].extra["seconds"] + 0.05  # the first session's time, up to its checkpoint
    cfg = run["cfg"].model_copy(update={"trainer": run["cfg"].trainer.model_copy(update={"max_steps": 3})})
    resumed = run_fit(run["ds"].root, out, cfg, FitOptions(valid_samples=4, resume=True), embedder=run["minilm"])
    assert resumed.module.batches_done == 3 and resumed.extra["steps"] == 3
    # the whole run's time: it was the last session's only (review s29: 6.2 s for a run of 20.6 s)
    session = resumed.extra["seconds_this_session"]
    assert resumed.extra["seconds"] == pytest.approx(before + session, abs=0.11) and session < resumed.extra["seconds"]
    rows = read_rows(out / "metrics.csv")
    assert [float(r["step"]) for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert rows[1]["time/step"] == first[1]["time/step"]  # the first two steps were restored, not rerun
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3 and ckpt["mgfrec"]["data_position"] == 3 * cfg.trainer.global_batch_size


def test_a_loss_scaled_precision_clips_and_logs_the_true_gradient_norm(run, tmp_path, monkeypatch):
    """Under 16-mixed with a GradScaler (GPUs; here a CPU scaler given to the real plugin) the gradients are
    clipped and logged after unscaling: the step's grad_norm is the fp32 run's, not the loss scale times it."""
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision

    from mgfrec.rl import fit as fit_mod

    cfg = tiny_config(tmp_path, max_steps=1, val_check_interval=1)
    plain = run_fit(run["ds"].root, tmp_path / "fp32", cfg, FitOptions(valid_samples=2), embedder=run["minilm"])
    real = L.Trainer

    def scaled_trainer(**kw):
        if "precision" not in kw:  # another trainer (the recall model's)
            return real(**kw)
        kw.pop("precision")
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        return real(**kw, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])

    monkeypatch.setattr(fit_mod.L, "Trainer", scaled_trainer)
    scaled = run_fit(run["ds"].root, tmp_path / "fp16", cfg, FitOptions(valid_samples=2), embedder=run["minilm"])
    assert scaled.module.trainer.precision_plugin.scaler is not None
    norms = [float(read_rows(r.out / "metrics.csv")[-1]["grad_norm"]) for r in (plain, scaled)]
    assert all(math.isfinite(n) and n > 0 for n in norms)
    assert 0.5 < norms[1] / norms[0] < 2.0, norms  # not 2**10 times the true norm


def test_a_fit_closes_the_user_agent_it_built(run, tmp_path, monkeypatch):
    """`fit` never called its user agent's `close()` (review s41; tests/rl/test_sft.py checks sft and evaluate)."""
    from mgfrec.agent.environment import Environment

    closed: list[object] = []
    real = Environment.close
    monkeypatch.setattr(Environment, "close", lambda self: closed.append(self) or real(self))
    cfg = tiny_config(tmp_path, max_steps=1, val_check_interval=1)
    run_fit(run["ds"].root, tmp_path / "run", cfg, FitOptions(valid_samples=2), embedder=run["minilm"])
    assert len(closed) == 1


def test_the_reference_takes_the_dtype_the_strategy_gave_the_policy(run, tmp_path, monkeypatch):
    """A strategy that converts the policy (DeepSpeed's bf16, Lightning's bf16-true) left the frozen reference in
    float32: at step 1, policy and reference the same model, the KL was 2.24e-06, not 0 (review s40). Here the
    bf16-true plugin is given to the real Trainer (as DeepSpeed would convert it; the config's own *-true precision
    is refused without DeepSpeed, check_master_weights)."""
    import lightning as L
    from lightning.pytorch.plugins.precision import HalfPrecision

    from mgfrec.rl import fit as fit_mod

    cfg = tiny_config(tmp_path, max_steps=1, val_check_interval=100)
    real = L.Trainer

    def half_trainer(**kw):
        if "precision" not in kw:  # another trainer (the recall model's)
            return real(**kw)
        kw.pop("precision")
        return real(**kw, plugins=[HalfPrecision("bf16-true")])

    monkeypatch.setattr(fit_mod.L, "Trainer", half_trainer)
    result = run_fit(run["ds"].root, tmp_path / "bf16", cfg, FitOptions(valid_samples=2), embedder=run["minilm"])
    assert {p.dtype for p in result.module._ref[0].parameters()} == {torch.bfloat16}
    assert float(read_rows(tmp_path / "bf16" / "metrics.csv")[-1]["kl"]) == 0.0  # the same model at step 1


@pytest.mark.reliability
def test_a_resume_with_other_start_flags_is_refused_before_any_work(run, tmp_path):
    """OUT/fit_start.json holds the flags outside config.yaml; a resume that differs (here: an --init the run did
    not start from, other --valid-samples) is refused in one line naming both, and the run folder is untouched."""
    import json

    out = run["result"].out
    started = json.loads((out / "fit_start.json").read_text())
    recall = run["cfg"].retriever.model  # FitOptions' None: the config's recall model, recorded by its name
    settings, prompts = started.pop("settings"), started.pop("prompts")  # what config.yaml and prompts/ held
    assert settings["grpo.kl_beta"] == run["cfg"].grpo.kl_beta and "trainer.max_steps" not in settings
    assert set(prompts) == {p.name for p in (out / "prompts").glob("*.txt")}
    assert started == {
        "init": None,
        "recall_model": recall,
        "max_train_samples": None,
        "valid_samples": 4,
        "data_checksum": run["ds"].checksum,
    }
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    sft = tmp_path / "sft"
    with pytest.raises(ValueError) as err:
        run_fit(run["ds"].root, out, run["cfg"], FitOptions(valid_samples=4, resume=True, init=str(sft)))
    assert str(err.value) == (
        f"--resume: {out} started with --init (none) --recall-model {recall} (fit_start.json); "
        f"resume it with the same, not --init {sft.resolve()} --recall-model (none)"
    )
    with pytest.raises(ValueError, match=r"started with --valid-samples 4 .* not --valid-samples 9$"):
        run_fit(run["ds"].root, out, run["cfg"], FitOptions(valid_samples=9, resume=True))
    # another data set: its recall run was fitted again there and the last steps trained on it, run.json naming it
    other = prepare(
        DataConfig(source="synthetic", options={"n_users": 30, "n_items": 50, "n_artists": 10}), tmp_path / "d2"
    )
    with pytest.raises(ValueError, match=r"started on another data set than --data .* resume it with the data set"):
        run_fit(other.root, out, run["cfg"], FitOptions(valid_samples=4, resume=True))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before


@pytest.mark.reliability
def test_a_resume_with_other_training_settings_is_refused_before_any_work(run):
    """A resume took --group-size, --kl-beta, --lr ... over config.yaml and rewrote it: the run's first and last
    steps had other settings than the file claimed (and the restored optimizer kept the old lr)."""
    out = run["result"].out
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    grpo = run["cfg"].grpo.model_copy(update={"group_size": 3, "kl_beta": 0.5})
    cfg = run["cfg"].model_copy(update={"grpo": grpo})
    with pytest.raises(ValueError) as err:
        run_fit(run["ds"].root, out, cfg, FitOptions(valid_samples=4, resume=True))
    text = str(err.value)
    assert text.startswith(f"--resume: {out} was started with other settings (grpo.group_size: 2 -> 3;"), text
    assert "grpo.kl_beta" in text and "start a new fit in another folder" in text
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    # fewer steps than done (2, or 3 after test_resume_continues_from_the_last_checkpoint): it "finished" at once
    fewer = run["cfg"].model_copy(update={"trainer": run["cfg"].trainer.model_copy(update={"max_steps": 1})})
    # the run is finished: "give at least N" named a value that is refused in turn, as nothing to train (s38)
    with pytest.raises(
        ValueError,
        match=r"holds ([23]) steps already; --max-steps \(trainer.max_steps\) 1 is fewer: give more than \1 to extend",
    ):
        run_fit(run["ds"].root, out, fewer, FitOptions(valid_samples=4, resume=True))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    # config.yaml gone: the resume continued under the defaults and rewrote it claiming them for the whole run
    from mgfrec.rl.fit import starting_config

    saved = (out / "config.yaml").read_bytes()
    (out / "config.yaml").unlink()
    try:
        with pytest.raises(ValueError, match=r"config.yaml is gone, so the settings the run started with are unknown"):
            starting_config(out, resume=True)
        assert starting_config(out, resume=True, config="mine.yaml") == "mine.yaml"
    finally:
        (out / "config.yaml").write_bytes(saved)


@pytest.mark.reliability
def test_a_run_another_command_makes_in_out_after_the_check_is_not_replaced(run, tmp_path, monkeypatch):
    """OUT was checked before its lock was taken: a baseline fit that made its run there in between (a script
    starting several fits) was told it had finished, and the fit then replaced its run (review s33)."""
    import mgfrec.rl.fit as fit_mod
    from mgfrec.config.load import load_config
    from mgfrec.retrievers.fit import fit_baseline
    from mgfrec.runs import read_run_info

    out, real = tmp_path / "raced", fit_mod.check_output_run

    def checked_then_raced(folder, producer, **kwargs):
        real(folder, producer, **kwargs)
        if not (out / "run.json").exists():  # the first check passed: a baseline fit lands now
            fit_baseline(run["ds"], load_config(None, ["retriever.model=pop"]), out)

    monkeypatch.setattr(fit_mod, "check_output_run", checked_then_raced)
    with pytest.raises(ValueError, match=r"holds a baseline run"):
        run_fit(run["ds"].root, out, run["cfg"], FitOptions(valid_samples=4))
    assert read_run_info(out).model == "pop" and (out / "popularity.npy").is_file()  # kept whole


@pytest.mark.reliability
def test_a_second_fit_into_a_folder_being_fitted_is_refused_and_a_reader_is_told_it_is_running(run, tmp_path):
    """Two fits into one --out wrote one checkpoint, metrics file and policy over the other's, and each retired what
    the other wrote; a reader of a fit in progress was told to --resume it or start it again beside it (note s31).
    The folder is locked as `baseline fit`'s, the demo's and the sweep's are."""
    from mgfrec.locks import only_one_in
    from mgfrec.runs import read_run_info

    out = run["result"].out
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    with only_one_in(out, "mgfrec fit"):  # another fit holds it (flock: another open of the folder)
        # refused before its checks and notes ("holds an earlier fit ...; this fit replaces it"; review s32)
        for resume in (False, True):
            with pytest.raises(ValueError, match=r"another mgfrec command is writing it now; wait for it to end"):
                run_fit(run["ds"].root, out, run["cfg"], FitOptions(valid_samples=4, resume=resume))
        assert read_run_info(out).model == "mgfrec"  # a finished run reads as before
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before  # nothing retired or written
    making = tmp_path / "making"
    making.mkdir()
    (making / "fit_start.json").write_text("{}")
    with only_one_in(making, "mgfrec fit"):
        with pytest.raises(FileNotFoundError, match=r"a run is being made in it now .*; wait for the command making"):
            read_run_info(making)
    with pytest.raises(FileNotFoundError, match="an unfinished fit"):  # and once it ends: as before
        read_run_info(making)
    # a data set, a sweep or a demo folder locked by its own command is named for what it is, not "being made"
    for mark in ("manifest.json", "sweep.json", "demo.json"):
        other = tmp_path / mark.replace(".", "-")
        other.mkdir()
        (other / mark).write_text("{}")
        with only_one_in(other, "mgfrec sweep"):
            with pytest.raises(FileNotFoundError) as said:
                read_run_info(other)
        assert "being made" not in str(said.value), said.value


@pytest.mark.reliability
def test_resume_without_checkpoint_is_refused(tmp_path, run):
    with pytest.raises(FileNotFoundError, match="--resume"):
        run_fit(run["ds"].root, tmp_path / "fresh", run["cfg"], FitOptions(resume=True), embedder=run["minilm"])


@pytest.mark.reliability
def test_a_checkpoint_folder_replaces_the_previous_one(tmp_path, monkeypatch):
    from mgfrec.rl.callbacks import LastCheckpoint

    class FolderTrainer:  # DeepSpeed's save_checkpoint writes a folder of shards
        is_global_zero, local_rank = True, 0

        class strategy:  # noqa: N801 (stands in for the trainer's strategy attribute)
            @staticmethod
            def barrier(name=None):
                pass

        def __init__(self):
            self.count = 0

        def save_checkpoint(self, path):
            self.count += 1
            path.mkdir()
            (path / "shard").write_text(str(self.count))

    trainer, callback = FolderTrainer(), LastCheckpoint(tmp_path, every=1)
    callback.save(trainer, 1)
    callback.save(trainer, 2)
    assert (tmp_path / "last.ckpt" / "shard").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.json"]  # no .tmp or .old left behind
    assert json.loads((tmp_path / "last.json").read_text()) == {"steps": 2}  # what a resume's --max-steps is checked on
    # the first save of a run resumed from last.ckpt.old (its last.ckpt gone): the old folder, the only whole
    # checkpoint, was deleted before the new one moved in, so a kill in between left none (review s37)
    import mgfrec.rl.callbacks as callbacks

    (tmp_path / "last.ckpt").rename(tmp_path / "last.ckpt.old")
    real = callbacks.shutil.rmtree
    removed: list[str] = []

    def rmtree(path, *args, **kwargs):
        removed.append(Path(path).name)
        assert (tmp_path / "last.ckpt" / "shard").is_file() or Path(path).name != "last.ckpt.old", "no whole checkpoint"
        real(path, *args, **kwargs)

    monkeypatch.setattr(callbacks.shutil, "rmtree", rmtree)
    callback.save(trainer, 3)
    assert "last.ckpt.old" in removed and (tmp_path / "last.ckpt" / "shard").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.json"]


def test_tensorboard_gets_every_step_metric(run, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the dev extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, max_steps=2, val_check_interval=100)
    cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"tensorboard": True})})
    run_fit(run["ds"].root, tmp_path / "tb", cfg, FitOptions(valid_samples=2), embedder=run["minilm"])
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"reward", "reward/mean", "kl", "grad_norm", "format_valid", "time/rollout"} <= tags
    # at metrics.csv's steps: they were one behind (a point at x=1 was the csv's step 2), and step 0's validation
    # was missing (review s29)
    assert [e.step for e in events.Scalars("reward/mean")] == [1, 2]
    assert [e.step for e in events.Scalars("valid/ndcg@10")] == [0, 2]
    # trainer.log_every_n_steps still thins the points (review s29); a validation row is always written
    every = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"log_every_n_steps": 2})})
    run_fit(run["ds"].root, tmp_path / "tb2", every, FitOptions(valid_samples=2), embedder=run["minilm"])
    thinned = EventAccumulator(str(tmp_path / "tb2" / "tensorboard")).Reload()
    assert [e.step for e in thinned.Scalars("reward/mean")] == [2]
    assert [e.step for e in thinned.Scalars("valid/ndcg@10")] == [0, 2]
    rows = read_rows(tmp_path / "tb" / "metrics.csv")
    assert [e.value for e in events.Scalars("reward/mean")] == pytest.approx(
        [float(r["reward/mean"]) for r in rows[1:]]
    )


def test_several_updates_per_batch_with_sequence_mean_and_an_offloaded_reference(run, tmp_path):
    cfg = tiny_config(tmp_path, max_steps=1, val_check_interval=100)
    cfg = cfg.model_copy(
        update={
            "grpo": cfg.grpo.model_copy(
                update={"updates_per_batch": 2, "loss_aggregation": "sequence-mean", "reference_device": "cpu"}
            )
        }
    )
    result = run_fit(run["ds"].root, tmp_path / "upd", cfg, FitOptions(valid_samples=2), embedder=run["minilm"])
    ckpt = torch.load(tmp_path / "upd" / "checkpoints" / "last.ckpt", weights_only=False)
    assert result.module.batches_done == 1 and ckpt["global_step"] == 2  # two optimizer steps on one rollout batch
    assert next(result.module._ref[0].parameters()).device.type == "cpu"  # the offloaded reference
    row = read_rows(tmp_path / "upd" / "metrics.csv")[-1]
    assert all(math.isfinite(float(row[k])) for k in ("loss", "kl", "grad_norm", "clip_fraction/total", "ratio/mean"))


def test_the_reward_and_validation_read_the_runs_final_ranking(run, tmp_path, monkeypatch):
    """agent.final_ranking: l2_joint with a SASRec recall run: every GRPO reward's rank is the joint L2 rank of
    the answer (checked by brute force), and validation reads the same rule."""
    import numpy as np

    from mgfrec.agent import final_ranking as final_mod
    from mgfrec.grounding.engine import load_grounding
    from mgfrec.retrievers.fit import load_scorer

    seen, reads = [], []
    original_inputs, original_ranks = module_mod.reward_inputs, final_mod.FinalRanking.ranks

    def spy_inputs(trajectories, grounding, targets, histories, **kw):
        inputs = original_inputs(trajectories, grounding, targets, histories, **kw)
        seen.append(([t.answer for t in trajectories], list(targets), list(histories), inputs))
        return inputs

    def spy_ranks(self, *args, **kw):
        reads.append(self.rule)
        return original_ranks(self, *args, **kw)

    monkeypatch.setattr(module_mod, "reward_inputs", spy_inputs)
    monkeypatch.setattr(final_mod.FinalRanking, "ranks", spy_ranks)
    cfg = tiny_config(tmp_path, max_steps=1, val_check_interval=1)
    cfg = cfg.model_copy(
        update={
            "agent": cfg.agent.model_copy(update={"final_ranking": "l2_joint"}),
            "retriever": cfg.retriever.model_copy(update={"max_epochs": 2}),
        }
    )
    options = FitOptions(valid_samples=2, recall_model="sasrec")
    result = run_fit(run["ds"].root, tmp_path / "joint", cfg, options, embedder=run["minilm"])
    assert result.module.final.rule == "l2_joint"
    assert reads.count("l2_joint") == 3  # validation at steps 0 and 1, and the step's rewards

    grounding = load_grounding(run["ds"], cfg, embedder=run["minilm"])
    ids = load_scorer(result.extra["recall_run"]).scorer.item_vectors().numpy()

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    joined = np.concatenate([unit(np.asarray(grounding.item_embeddings)), unit(ids)], 1)
    ((answers, targets, histories, inputs),) = seen
    assert any(a is not None for a in answers)
    for answer, target, history, inp in zip(answers, targets, histories, inputs, strict=True):
        if answer is None:
            assert inp.target_rank is None
            continue
        item = int(grounding.ground([answer], k=1)[0][0])
        d = np.linalg.norm(joined - joined[item], axis=1)
        others = [i for i in range(len(grounding.titles)) if i != target and i not in set(history)]
        assert inp.target_rank == 1 + sum(d[i] <= d[target] + 1e-5 for i in others)


def test_a_final_ranking_other_than_the_papers_needs_its_ranking_object(run):
    module = run["result"].module
    cfg = module.cfg.model_copy(update={"agent": module.cfg.agent.model_copy(update={"final_ranking": "l2_joint"})})
    with pytest.raises(ValueError, match="l2_joint needs its FinalRanking"):
        module_mod.GRPOModule(
            cfg, module.policy, module.tokenizer, module.environment, module.train_samples, [], module.out, max_steps=1
        )


def test_fit_refuses_a_joint_final_ranking_over_a_recall_run_without_item_embeddings(run, tmp_path):
    cfg = tiny_config(tmp_path, max_steps=1)
    cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"final_ranking": "l2_joint"})})
    with pytest.raises(ValueError, match="l2_joint needs a recall run with item embeddings"):
        run_fit(
            run["ds"].root,
            tmp_path / "lt",
            cfg,
            FitOptions(valid_samples=2, recall_model="last-title"),
            embedder=run["minilm"],
        )
    assert not (tmp_path / "lt" / "policy").exists()


@pytest.mark.reliability
def test_a_non_finite_loss_stops_the_step_naming_the_learning_rate(run, monkeypatch):
    """A diverged GRPO step went on with weights of NaN, to fail later somewhere else (review s28). Last in this
    file: the module's weights and optimizer are put back after it."""
    import copy

    module = run["result"].module
    result = _two_groups(module)
    real = module_mod.grpo_loss

    def diverged(*args, **kw):
        loss, metrics = real(*args, **kw)
        return loss * float("nan"), metrics

    weights = copy.deepcopy(module.policy.state_dict())
    optimizer = copy.deepcopy(module.optimizers().optimizer.state_dict())
    monkeypatch.setattr(module_mod, "grpo_loss", diverged)
    try:
        with pytest.raises(ValueError, match=r"the GRPO loss became nan at step \d+ .*trainer.lr \(--lr, now "):
            module.update(result.trajectories, torch.tensor([1.0, -1.0, 1.0, -1.0]))
    finally:
        module.policy.load_state_dict(weights)
        module.optimizers().optimizer.load_state_dict(optimizer)


def test_the_trained_policy_has_no_dropout(run):
    """GRPOModule turns off the policy's dropout (review s29: a hub model's 0.1 made the first ratio not 1)."""
    import copy

    module = run["result"].module
    noisy = copy.deepcopy(module.policy)
    noisy.add_module("extra_head", torch.nn.Dropout(0.2))
    noisy.model.layers[0].self_attn.attention_dropout = 0.1
    built = module_mod.GRPOModule(
        module.cfg, noisy, module.tokenizer, module.environment, module.train_samples, [], run["root"], max_steps=1
    )
    assert built.policy.extra_head.p == 0.0 and built.policy.model.layers[0].self_attn.attention_dropout == 0.0


def test_the_optimizers_weight_decay_is_the_configs(run):
    """AdamW's default weight decay (0.01) applied without a word: the policy drifted from the reference even on a
    batch whose groups teach nothing (review s29). It is trainer.weight_decay, 0.01 by default as before."""
    module = run["result"].module
    assert module.configure_optimizers().param_groups[0]["weight_decay"] == 0.01
    kept = module.cfg
    module.cfg = kept.model_copy(update={"trainer": kept.trainer.model_copy(update={"weight_decay": 0.0})})
    try:
        assert module.configure_optimizers().param_groups[0]["weight_decay"] == 0.0
    finally:
        module.cfg = kept


@pytest.mark.reliability
def test_a_resumed_fit_purges_the_steps_it_runs_again_from_tensorboard(tmp_path):
    """Killed after step 3 with its checkpoint at step 2, a resumed fit logged step 3 again: TensorBoard drew
    reward/mean at steps 1, 2, 3, 3, 4 while metrics.csv held each step once (review s37)."""
    pytest.importorskip("tensorboard", reason="tensorboard is in the dev extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mgfrec.rl.callbacks import build_logger

    cfg = tiny_config(tmp_path, max_steps=4)
    cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"tensorboard": True})})
    first = build_logger(cfg, tmp_path)
    for step in (1, 2, 3):
        first.log_metrics({"reward/mean": 0.1 * step}, step=step)
    first.finalize("failed")
    resumed = build_logger(cfg, tmp_path, resumed_at=2)  # its checkpoint holds 2 steps: step 3 runs again
    for step in (3, 4):
        resumed.log_metrics({"reward/mean": 1.0 + step}, step=step)
    resumed.finalize("success")
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("reward/mean")
    assert [(e.step, round(e.value, 3)) for e in events] == [(1, 0.1), (2, 0.2), (3, 4.0), (4, 5.0)]

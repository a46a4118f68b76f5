"""``mgfrec fit``: flags land in the run's config.yaml, the run folder is complete, DeepSpeed on CPU is refused."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import typer
import yaml
from fitkit import tiny_fit_sets
from typer.testing import CliRunner

from mgfrec.cli.fit import fit
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare

pytestmark = pytest.mark.slow

SHORT_SYSTEM = (
    "You recommend music. Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>."
)


def invoke(*args):
    app = typer.Typer()
    app.command()(fit)
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitcli")
    prepare(
        DataConfig(source="synthetic", options={"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}),
        root / "data",
    )
    (root / "system.txt").write_text(SHORT_SYSTEM, encoding="utf-8")
    return root


def test_flags_map_to_config_fields(data):
    out = data / "run"
    result = invoke(
        "--data",
        data / "data",
        "--out",
        out,
        "--max-steps",
        1,
        "--group-size",
        2,
        "--kl-beta",
        0,
        "--lr",
        0.001,
        "--max-groundings",
        1,
        "--items-per-grounding",
        3,
        "--no-feedback",
        "--no-recall",
        "--reward",
        "ndcg",
        "--reward",
        "format",
        "--grounder",
        "exact",
        "--rollout-engine",
        "hf",
        "--strategy",
        "auto",
        "--valid-samples",
        2,
        "--no-progress",
        "--json",
        *tiny_fit_sets(data / "system.txt"),
    )
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert (
        cfg["grpo"]["group_size"] == 2 and cfg["grpo"]["kl_beta"] == 0 and cfg["grpo"]["rewards"] == ["ndcg", "format"]
    )
    assert cfg["trainer"]["lr"] == 0.001 and cfg["trainer"]["max_steps"] == 1 and cfg["trainer"]["strategy"] == "auto"
    assert cfg["agent"]["max_groundings"] == 1 and cfg["agent"]["use_recall"] is False
    assert cfg["grounding"]["top_k"] == 3 and cfg["grounding"]["grounder"] == "exact"
    assert cfg["user_agent"]["backend"] == "none" and cfg["rollout"]["engine"] == "hf"
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["kind"] == "agent" and info["model"] == "mgfrec" and info["extra"]["policy"] == "policy"
    assert info["extra"]["recall_run"] and (out / "policy").is_dir() and (out / "metrics.csv").is_file()


@pytest.mark.reliability
def test_a_sigterm_in_the_last_step_finishes_the_run_and_still_stops_the_command(data, monkeypatch):
    """A SIGTERM during the last step let the run finish (right) and the command return as if none had come (exit
    0): a sweep went on to evaluate the cell and run every other, the demo to its next stage (review s28)."""
    import os
    import signal

    from mgfrec.rl.module import GRPOModule

    real = GRPOModule.training_step

    def step_then_term(self, batch, batch_idx):
        os.kill(os.getpid(), signal.SIGTERM)  # recorded by the fit's stop handler; the step goes on
        return real(self, batch, batch_idx)

    monkeypatch.setattr(GRPOModule, "training_step", step_then_term)
    out = data / "termed"
    common = ["--data", data / "data", "--out", out, "--max-steps", 1, "--group-size", 2, "--no-progress"]
    result = invoke(*common, "--valid-samples", 0, *tiny_fit_sets(data / "system.txt"))
    text = " ".join(result.output.split())
    assert result.exit_code == 143, text
    assert "SIGTERM came as the fit ended: the run is complete" in text and "stopped by SIGTERM" in text, text
    assert "keeps its" not in text, text
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["extra"]["steps"] == 1


@pytest.mark.reliability
def test_a_fit_with_init_resumes_when_its_recall_run_was_fitted_with_other_settings(data):
    """The run records its recall run's own retriever settings (review s28): a resume compared them with the
    config's and refused "the same command with --resume" ("retriever.max_epochs: 3 -> 200")."""
    tiny = ["--group-size", 2, "--no-progress", "--valid-samples", 0, *tiny_fit_sets(data / "system.txt")]
    first = data / "init-run"
    made = invoke("--data", data / "data", "--out", first, "--max-steps", 1, "--recall-model", "pop",
                  "--set", "retriever.max_epochs=3", *tiny)  # fmt: skip
    assert made.exit_code == 0, made.output
    out = data / "from-init"
    config = data / "resume-config.yaml"  # the user's own file, given again on resume
    config.write_text("grpo:\n  group_size: 2\n", encoding="utf-8")
    args = ["--data", data / "data", "--out", out, "--init", first, "--config", config, *tiny]
    same = invoke(*args, "--max-steps", 1)
    assert same.exit_code == 0 and "note: --init" not in same.output, same.output  # the init's own settings
    assert yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))["retriever"]["max_epochs"] == 3
    (out / "run.json").unlink()  # a fit stopped before its end
    resumed = invoke(*args, "--max-steps", 2, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["extra"]["steps"] == 2
    # settings the init's policy was not trained under were taken without a word (review s30): an SFT on 10 recall
    # titles went on with 30. And the policy saved records the init policy's preset, not the fit's own policy.model
    # (an SFT of preset:tiny-items went on recorded as "tiny"; review s31)
    meta = first / "policy" / "mgfrec_policy.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text(encoding="utf-8")), "preset": "small"}), encoding="utf-8")
    other = invoke(
        "--data", data / "data", "--out", data / "other-shape", "--init", first, "--max-steps", 1, *tiny,
        "--set", "retriever.recall_size=7", "--set", "agent.prompt_history=2",
    )  # fmt: skip
    text = " ".join(other.output.split())
    assert other.exit_code == 0, text
    assert f"note: --init {first} was trained under other settings than this fit's (" in text, text
    assert "agent.prompt_history null -> 2" in text and "retriever.recall_size 5 -> 7" in text, text
    saved = json.loads((data / "other-shape" / "policy" / "mgfrec_policy.json").read_text(encoding="utf-8"))
    assert saved["preset"] == "small", saved


@pytest.mark.reliability
def test_deepspeed_on_cpu_is_a_message_not_a_traceback(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: DeepSpeed is allowed")
    result = invoke("--data", data / "data", "--out", data / "ds", "--strategy", "deepspeed_stage_3")
    assert result.exit_code == 2
    assert "DeepSpeed strategies need CUDA GPUs; on CPU use --strategy auto" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_fresh_fit_into_a_used_folder_keeps_nothing_of_the_earlier_fit(data):
    """The earlier fit's checkpoint, policies and metrics stayed: --resume then continued the earlier run under the
    new config, and run.json named the earlier run's best_policy."""
    out = data / "reused"
    common = ["--data", data / "data", "--out", out, "--max-steps", 1, "--group-size", 2, "--no-progress"]
    first = invoke(*common, "--valid-samples", 2, *tiny_fit_sets(data / "system.txt"))
    assert first.exit_code == 0, first.output
    assert "1 step: reward" in first.output, first.output  # was "1 steps"
    assert (out / "best_policy").is_dir() and (out / "checkpoints").is_dir()
    again = invoke(*common, "--valid-samples", 0, *tiny_fit_sets(data / "system.txt"))
    assert again.exit_code == 0, again.output
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["extra"]["best_policy"] is None and not (out / "best_policy").exists()
    rows = (out / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2, rows  # the header and this fit's one step
    same = invoke("--data", data / "data", "--out", out, "--init", out, "--max-steps", 1)
    assert same.exit_code == 2 and "are one folder" in " ".join(same.output.split()), same.output
    assert (out / "policy").is_dir() and (out / "run.json").is_file()


@pytest.mark.reliability
def test_a_wrong_init_leaves_the_run_at_out_untouched(data, monkeypatch):
    """--init was checked after OUT's run.json and results were deleted: a typo cost a finished run its marker."""
    out = data / "finished"
    out.mkdir()
    info = '{"kind": "agent", "model": "mgfrec", "data": "d", "data_checksum": "", "extra": {}}'
    (out / "run.json").write_text(info)
    (out / "policy").mkdir()
    (out / "metrics.csv").write_text("step,reward/mean\n1,0.2\n")
    before = sorted(p.name for p in out.iterdir())
    result = invoke("--data", data / "data", "--out", out, "--init", data / "no-such-sft")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "not a run folder" in text and "Traceback" not in text, text
    assert f"--init {data / 'no-such-sft'}: not a run folder" in text  # the flag named (review s35)
    assert sorted(p.name for p in out.iterdir()) == before and (out / "run.json").read_text() == info
    empty = data / "empty-sft"
    empty.mkdir()
    result = invoke("--data", data / "data", "--out", out, "--init", empty)
    text = " ".join(result.output.split())  # the warm start comes from mgfrec sft, not mgfrec baseline fit
    assert result.exit_code == 2 and "train one with 'mgfrec sft' (or 'mgfrec fit')" in text, text
    # checks that came after OUT was cleared (a wrong precision, a template that cannot be read, a data set given
    # as the policy, an engine or a logger whose library is not installed): each wiped policy/, metrics.csv and
    # run.json first; the missing library was a 60-line ModuleNotFoundError traceback, exit 1
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed, wherever the test runs
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for flags, words in (
        (["--set", "trainer.precision=64bit"], "trainer.precision: unknown precision '64bit'"),
        (["--set", "agent.template=nope.txt"], "nope.txt"),
        (["--policy", data / "data"], "holds no config.json"),
        (["--rollout-engine", "vllm"], "rollout.engine 'vllm' needs vLLM: pip install 'mgfrec[vllm]'"),
        (["--set", "trainer.tensorboard=true"], "needs the tensorboard package"),
    ):
        result = invoke("--data", data / "data", "--out", out, "--max-steps", "1", *flags)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and words in text and "Traceback" not in text, text
        assert sorted(p.name for p in out.iterdir()) == before and (out / "run.json").read_text() == info
    # a check that can only come once the recall model is there (the embedding model loads after it): the run was
    # cleared first, and the typo cost it policy/, metrics.csv and run.json
    model = "embedding.model=/no/such/model"
    result = invoke("--data", data / "data", "--out", out, "--max-steps", "1", "--recall-model", "pop", "--set", model)
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "/no/such/model" in text and "Traceback" not in text, text
    assert set(before) <= {p.name for p in out.iterdir()} and (out / "run.json").read_text() == info
    assert (out / "policy").is_dir() and (out / "metrics.csv").is_file()


@pytest.mark.reliability
def test_resume_without_checkpoint_names_the_file(data):
    result = invoke("--data", data / "data", "--out", data / "nothing", "--resume")
    assert result.exit_code == 2 and "last.ckpt" in result.output


def test_ablation_preset_sets_its_field(data):
    out = data / "ablation"
    result = invoke(
        "--data",
        data / "data",
        "--out",
        out,
        "--max-steps",
        1,
        "--group-size",
        2,
        "--kl-beta",
        0,
        "--ablation",
        "no-recall",
        "--valid-samples",
        2,
        "--no-progress",
        *tiny_fit_sets(data / "system.txt"),
    )
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["agent"]["use_recall"] is False and cfg["agent"]["max_groundings"] == 6
    bad = invoke("--data", data / "data", "--out", data / "bad", "--ablation", "no-such-thing")
    assert bad.exit_code == 2 and "no-such-thing" in bad.output


@pytest.mark.reliability
def test_a_fit_killed_with_sigkill_resumes_from_its_last_checkpoint(data):
    """The Done-means of GRPO training: kill -9 mid-run, then --resume finishes the run from the checkpoint."""
    import csv
    import os
    import signal
    import subprocess
    import sys
    import time

    out = data / "killed"
    args = [
        sys.executable,
        "-m",
        "mgfrec.cli.main",
        "fit",
        "--data",
        str(data / "data"),
        "--out",
        str(out),
        "--max-steps",
        "6",
        "--group-size",
        "2",
        "--valid-samples",
        "2",
        "--no-progress",
        *tiny_fit_sets(data / "system.txt", more={"trainer.val_check_interval": 100}),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    metrics = out / "metrics.csv"

    def steps() -> list[float]:
        if not metrics.is_file():
            return []
        with metrics.open(encoding="utf-8") as f:
            return [float(r["step"]) for r in csv.DictReader(f)]

    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while max(steps(), default=0) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # still running: the kill lands mid-run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()  # the run did not finish
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        before = {float(r["step"]): r for r in csv.DictReader(f)}
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["mgfrec"]["batches_done"]
    assert 2 <= saved < 6

    resumed = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Lightning's "can cause unreliable results" warning, on every resume, though the module restores the position
    assert "resuming from a checkpoint that ended before the epoch ended" not in resumed.stderr, resumed.stderr
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        after = list(csv.DictReader(f))
    assert [float(r["step"]) for r in after] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    for row in after[1 : saved + 1]:  # steps up to the checkpoint were restored, not rerun
        assert row["time/step"] == before[float(row["step"])]["time/step"]
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["extra"]["steps"] == 6
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["mgfrec"]["batches_done"] == 6 and ckpt["mgfrec"]["data_position"] == 6 * 2


def test_gradient_checkpointing_gives_the_same_grpo_step(data):
    """--gradient-checkpointing reaches the run's config and changes no number of a GRPO step: the same
    rollouts (the engine runs in eval mode, where checkpointing is off), loss, KL and gradient norm."""
    import csv

    def step(name: str, *flag: str) -> tuple[dict, dict]:
        out = data / name
        one_step = ["--max-steps", 1, "--group-size", 2, "--valid-samples", 2, "--no-progress"]
        result = invoke("--data", data / "data", "--out", out, *one_step, *flag, *tiny_fit_sets(data / "system.txt"))
        assert result.exit_code == 0, result.output
        with (out / "metrics.csv").open(encoding="utf-8") as f:
            row = next(r for r in csv.DictReader(f) if float(r["step"]) == 1.0)
        return row, yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))

    plain, plain_cfg = step("plain")
    ckpt, ckpt_cfg = step("ckpt", "--gradient-checkpointing")
    assert plain_cfg["policy"]["gradient_checkpointing"] is False and ckpt_cfg["policy"]["gradient_checkpointing"]
    assert float(plain["grad_norm"]) > 0  # the step did update the policy
    for key in ("reward/mean", "response_length", "loss", "kl", "grad_norm"):
        assert float(ckpt[key]) == pytest.approx(float(plain[key]), rel=1e-5, abs=1e-7), key


def logged_steps(out) -> list[float]:
    """The steps of ``out/metrics.csv`` (none before it is written)."""
    import csv

    if not (out / "metrics.csv").is_file():
        return []
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        return [float(r["step"]) for r in csv.DictReader(f)]


def running_fit(data, out, *extra: str):
    """A 40-step fit in a subprocess, returned once it has logged two rows (so a signal lands mid-run)."""
    import os
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "mgfrec.cli.main", "fit", "--data", str(data / "data"), "--out", str(out)]
    args += ["--max-steps", "40", "--group-size", "2", "--valid-samples", "0", "--no-progress", *extra]
    args += tiny_fit_sets(data / "system.txt")
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and len(logged_steps(out)) < 2:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    return proc


@pytest.mark.reliability
def test_ctrl_c_stops_a_fit_with_130_and_says_how_to_resume(data):
    """Lightning answers Ctrl-C with a silent sys.exit(1): the fit ended with code 1 and printed nothing."""
    import signal

    out = data / "interrupted"
    proc = running_fit(data, out)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopped by the user (Ctrl-C)" in stderr and "Traceback" not in stderr, stderr[-2000:]
    # what it keeps, and the command that continues it, as typed with --resume (review s37)
    said = " ".join(stderr.split())
    held = json.loads((out / "checkpoints" / "last.json").read_text())["steps"]
    assert f"{out} keeps its checkpoint of {held} step" in said, said[-2000:]
    assert f"; to continue it: mgfrec fit --data {data / 'data'} --out {out} --max-steps 40" in said, said[-2000:]
    (line,) = [line for line in stderr.splitlines() if "to continue it: " in line]
    assert line.endswith(" --resume") and line.count("--resume") == 1, line
    logged = max(logged_steps(out))
    if logged > held:  # steps logged after the checkpoint are named as running again
        assert "logged after it, will run again" in said, said[-2000:]
    assert not (out / "run.json").exists()


@pytest.mark.reliability
def test_sigterm_stops_a_fit_with_143_after_checkpointing_its_last_step(data):
    """SIGTERM (kill, timeout, a scheduler) ended the fit as "stopped by the user (Ctrl-C)", exit 130, and
    lost the steps since the last checkpoint. Now the step under way finishes, is checkpointed, and the fit
    exits 143 saying so; --resume continues from it."""
    import signal

    out = data / "terminated"
    proc = running_fit(data, out, "--checkpoint-every", "100")  # only the stop checkpoints
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert "SIGTERM: the fit stops after this step" in stderr and "; to continue it: mgfrec fit" in stderr
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["mgfrec"]["batches_done"]
    assert saved == max(logged_steps(out)) >= 1 and not (out / "run.json").exists()  # every logged step is in it


@pytest.mark.reliability
def test_a_recall_size_or_batch_above_what_there_is_gets_a_note(data):
    """retriever.recall_size above the catalogue was clamped, and trainer.global_batch_size above the train samples
    took every sample, both without a word (a typo, 300 for 30, trained something else than the user asked)."""
    out = data / "above"
    sets = tiny_fit_sets(data / "system.txt", recall_size=500, more={"trainer.global_batch_size": 8})
    result = invoke(
        "--data", data / "data", "--out", out, "--max-steps", 1, "--group-size", 2, "--valid-samples", 0,
        "--max-train-samples", 3, "--recall-model", "pop", "--no-progress", *sets,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "note: retriever.recall_size 500 is above the catalogue's 80 items; each recall list holds all 80" in text
    assert "note: trainer.global_batch_size 8 is above the 3 train samples; each step takes all 3" in text


@pytest.mark.reliability
def test_recall_model_flag_and_set_retriever_model_are_one_field(tmp_path):
    # --set retriever.model=pop was overwritten by --recall-model's default (sasrec fitted, config.yaml said so,
    # without a word); now the flag sets that field, and the two disagreeing are refused before any work
    result = invoke(
        "--data", tmp_path, "--out", tmp_path / "o", "--recall-model", "pop", "--set", "retriever.model=bpr"
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert "--recall-model pop and --set retriever.model=bpr set retriever.model to two values" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.reliability
def test_recall_model_beside_init_is_refused(tmp_path):
    # --recall-model was taken with --init, recorded nowhere and never used (--init's recall run ranks)
    result = invoke("--data", tmp_path, "--out", tmp_path / "o", "--init", tmp_path / "sft", "--recall-model", "pop")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert f"--recall-model pop and --init {tmp_path / 'sft'}: the fit reads --init's recall run; give one" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.reliability
def test_settings_lightning_refuses_a_damaged_checkpoint_and_a_replaced_fit_lose_nothing_silently(data):
    """A Trainer setting that cannot run here (trainer.accelerator=gpu without one) was a Lightning traceback after
    the earlier run's run.json, policy and checkpoint were gone; trainer.num_nodes=2 without a launcher waited
    forever, deaf to signals; a damaged checkpoint under --resume was a traceback after run.json was retired; and
    a fit without --resume replaced an earlier one without a word."""
    out = data / "kept"
    common = ["--data", data / "data", "--out", out, "--max-steps", 1, "--group-size", 2, "--no-progress"]
    sets = [*tiny_fit_sets(data / "system.txt"), "--valid-samples", 0]
    first = invoke(*common, *sets)
    assert first.exit_code == 0, first.output
    before = sorted(p.name for p in out.iterdir())
    for bad, said in (
        ("trainer.accelerator=gpu", "trainer.accelerator 'gpu'"),
        ("trainer.num_nodes=2", "trainer.num_nodes 2: this process was not started by a multi-node launcher"),
    ):
        result = invoke(*common, *sets, "--set", bad)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in text and said in text, text
        assert sorted(p.name for p in out.iterdir()) == before and (out / "run.json").is_file(), bad
    ckpt = out / "checkpoints" / "last.ckpt"
    original = ckpt.read_bytes()
    ckpt.write_bytes(original[:1000])
    resumed = invoke(*common[:-3], "--max-steps", 2, "--group-size", 2, "--no-progress", *sets, "--resume")
    text = " ".join(resumed.output.split())
    assert resumed.exit_code == 2 and f"--resume: {ckpt} is damaged" in text, text
    assert sorted(p.name for p in out.iterdir()) == before
    # a whole zip whose pickle is garbage passed the zip check: "'utf-8' codec can't decode ...", naming no file,
    # after run.json and the results were retired (review s27)
    import io
    import zipfile

    garbled = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as whole, zipfile.ZipFile(garbled, "w") as copy:
        for entry in whole.infolist():
            body = whole.read(entry)
            copy.writestr(entry, b"\x86" * len(body) if entry.filename.endswith("data.pkl") else body)
    ckpt.write_bytes(garbled.getvalue())
    resumed = invoke(*common[:-3], "--max-steps", 2, "--group-size", 2, "--no-progress", *sets, "--resume")
    text = " ".join(resumed.output.split())
    assert resumed.exit_code == 2 and f"--resume: {ckpt} is damaged" in text, text
    assert sorted(p.name for p in out.iterdir()) == before
    # a resume of a finished run with nothing left to train retired its run.json and results, then trained nothing
    ckpt.write_bytes(original)
    resumed = invoke(*common, *sets, "--resume")
    text = " ".join(resumed.output.split())
    assert resumed.exit_code == 2 and f"--resume: {out} finished at 1 step, which" in text, text
    assert "nothing to train" in text and "give more steps to extend it (--max-steps 2 or more)" in text
    assert sorted(p.name for p in out.iterdir()) == before
    again = invoke(*common, *sets)
    assert again.exit_code == 0, again.output
    assert f"note: {out} holds an earlier fit (1 step checkpointed); this fit replaces it" in " ".join(
        again.output.split()
    )
    # checkpoints/last.json gone: the --max-steps check read 0 steps done and was skipped without a word
    (out / "checkpoints" / "last.json").unlink()
    resumed = invoke(*common[:-3], "--max-steps", 2, "--group-size", 2, "--no-progress", *sets, "--resume")
    text = " ".join(resumed.output.split())
    assert resumed.exit_code == 0, text
    assert f"note: {out / 'checkpoints' / 'last.json'} is missing or damaged, so the steps the checkpoint holds" in text


@pytest.mark.reliability
def test_a_resume_of_a_finished_run_with_an_epochs_budget_keeps_the_run(data):
    """With trainer.max_steps null (a budget in epochs) the "nothing to train" check never ran: --resume of the
    finished run retired its run.json and evaluation results, trained 0 steps, and rewrote run.json (review s29)."""
    out = data / "epochs"
    args = ["--data", data / "data", "--out", out, "--group-size", 2, "--no-progress", "--max-train-samples", 4]
    sets = [*tiny_fit_sets(data / "system.txt"), "--valid-samples", 0, "--set", "trainer.max_steps=null"]
    first = invoke(*args, *sets, "--set", "trainer.epochs=1")
    assert first.exit_code == 0, first.output
    (out / "eval_valid.json").write_text("{}")  # stands for an evaluation of the finished run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    resumed = invoke(*args, *sets, "--set", "trainer.epochs=1", "--resume")
    text = " ".join(resumed.output.split())
    assert resumed.exit_code == 2 and f"--resume: {out} finished at 2 steps, which trainer.epochs 1" in text, text
    assert "(--set trainer.epochs=2)" in text  # fit has no --epochs flag (review s29)
    assert "nothing to train, and the run is kept as it is" in text
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.reliability
def test_the_stopped_fits_command_line_never_shows_a_secret(tmp_path, monkeypatch):
    """The line a stopped fit prints repeats its command with --resume (review s37): a secret given with --set, in
    any form, is redacted there, and the command starts as it was run."""
    from mgfrec.cli.fit import _kept_line

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.json").write_text('{"steps": 2}')
    (tmp_path / "metrics.csv").write_text("step,reward/mean\n0,\n1,0.1\n2,0.2\n3,0.3\n")
    key = "sk-" + "a1B2c3D4e5F6g7H8i9J0" * 2
    sets = [
        "--set", "user_agent.base_url=https://alice:hunter2secret@llm.example/v1",
        f"--set=user_agent.api_key={key}",
        "--set", f"user_agent.model={key}",  # a key-looking value in a field that holds no secret
        "--set", f"user_agent.options={{api_key: {key}}}",
    ]  # fmt: skip
    monkeypatch.setattr("sys.argv", ["/venv/bin/mgfrec", "--verbose", "fit", "--out", str(tmp_path), *sets])
    line = _kept_line(tmp_path)
    assert "hunter2secret" not in line and key not in line and "a1B2c3D4" not in line, line
    assert line.count("<redacted>") == 4 and "(give the redacted values again)" in line, line
    assert f"{tmp_path} keeps its checkpoint of 2 steps (step 3, logged after it, will run again)" in line
    assert f"to continue it (give the redacted values again): mgfrec --verbose fit --out {tmp_path}" in line
    assert line.endswith(" --resume")
    monkeypatch.setattr("sys.argv", ["/x/site-packages/mgfrec/__main__.py", "fit", "--out", str(tmp_path), "--resume"])
    assert _kept_line(tmp_path).endswith(f"{sys.executable} -m mgfrec fit --out {tmp_path} --resume")
    monkeypatch.setattr("sys.argv", ["/x/bin/pytest", "-q"])  # a library caller: no command of its own to repeat
    assert _kept_line(tmp_path).endswith(": the same command with --resume continues it")


def test_a_reward_flag_that_drops_ndcg_or_format_gets_a_note(tmp_path):
    """`fit --reward NAME` replaces grpo.rewards: a plugin's reward given alone trained without the ranking reward and
    the format gate of eq. 8, without a word (review s42)."""
    result = invoke("--data", tmp_path / "none", "--out", tmp_path / "run", "--reward", "ndcg")
    said = " ".join(result.output.split())
    assert (
        "note: --reward replaces grpo.rewards, which now leaves out format; name them too (--reward ndcg --reward "
        in said
    )
    whole = invoke(
        "fit", "--data", tmp_path / "none", "--out", tmp_path / "run", "--reward", "ndcg", "--reward", "format"
    )
    assert "--reward replaces" not in whole.output

"""``rl.resume.check_resume_config`` and the run's copies of its template files: a resume that names the user's
file, unchanged, continues; one whose file was edited since is refused naming the field."""

from __future__ import annotations

import pytest

from mgfrec.config.load import load_config, write_resolved
from mgfrec.rl.resume import check_resume_config
from mgfrec.text.prompts import PROMPT_FILES, keep_run_prompts

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("agent.template", "You recommend music."),
        ("user_agent.prompt", "Liked: {history}. Searched: {grounded_title}. Shown: {item_list}."),
    ],
)
def test_the_users_template_file_resumes_while_it_holds_what_the_run_kept(tmp_path, field, text):
    mine = tmp_path / "mine.txt"
    mine.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    given = load_config(None, (f"{field}={mine}",))
    write_resolved(keep_run_prompts(given, out), out)  # what fit writes: the run's copy, named there
    saved = load_config(out / "config.yaml")
    section, _, name = field.partition(".")
    assert getattr(getattr(saved, section), name) == str(out.resolve() / "prompts" / f"{PROMPT_FILES[field]}.txt")
    check_resume_config(out, given)  # the user's file, unchanged: the same run
    mine.write_text(text + " Edited.", encoding="utf-8")
    with pytest.raises(ValueError, match=f"--resume: .*{field}"):
        check_resume_config(out, given)


def test_a_resume_after_the_init_run_was_trained_again_and_a_damaged_start_file_are_named(tmp_path):
    # --resume after `sft --out INIT` again: accepted, and the resumed steps regularised towards the new SFT policy
    # (KL 2.13 against 0.02 uninterrupted), or failed with a size-mismatch traceback after run.json was retired
    import json

    from mgfrec.rl.fit import FitOptions
    from mgfrec.rl.resume import START_FILE, check_resume_options, start_options
    from mgfrec.runs import RunInfo, write_run_info

    init, out = tmp_path / "sft", tmp_path / "fit"
    write_run_info(init, RunInfo(kind="agent", model="mgfrec-sft", data="d", data_checksum="c", created="2026-01-01"))
    options = FitOptions(init=str(init), resume=True)
    out.mkdir()
    record = {**start_options(options), "init_created": "2026-01-01"}
    (out / START_FILE).write_text(json.dumps(record), encoding="utf-8")
    check_resume_options(out, options)  # the same --init: resumed
    write_run_info(init, RunInfo(kind="agent", model="mgfrec-sft", data="d", data_checksum="c", created="2026-02-02"))
    with pytest.raises(ValueError, match=f"--init {init} was trained again after {out} started from it"):
        check_resume_options(out, options)
    for damaged in ("[1, 2]", '{"init": "'):
        (out / START_FILE).write_text(damaged, encoding="utf-8")  # an AttributeError traceback; a line naming no file
        with pytest.raises(ValueError, match=f"{out / START_FILE}: "):
            check_resume_options(out, options)


def test_a_resume_from_the_init_run_moved_elsewhere_continues(tmp_path):
    """The --init run moved (another disk, the same run) was refused ("resume it with the same, not ..."), and
    without --init too: it could be resumed only by moving it back (review s33). Another run at the new path is
    still refused."""
    import json

    from mgfrec.rl.fit import FitOptions
    from mgfrec.rl.resume import START_FILE, check_resume_options, start_options
    from mgfrec.runs import RunInfo, write_run_info

    init, out = tmp_path / "sft", tmp_path / "fit"
    write_run_info(init, RunInfo(kind="agent", model="mgfrec-sft", data="d", data_checksum="c", created="2026-01-01"))
    out.mkdir()
    record = {**start_options(FitOptions(init=str(init))), "init_created": "2026-01-01"}
    (out / START_FILE).write_text(json.dumps(record), encoding="utf-8")
    moved = tmp_path / "elsewhere" / "sft"
    moved.parent.mkdir()
    init.rename(moved)
    check_resume_options(out, FitOptions(init=str(moved), resume=True))  # the same run: resumed
    other = tmp_path / "other"
    write_run_info(other, RunInfo(kind="agent", model="mgfrec-sft", data="d", data_checksum="c", created="2026-03-03"))
    with pytest.raises(ValueError, match=f"started with --init {init.resolve()} .*not --init {other.resolve()}"):
        check_resume_options(out, FitOptions(init=str(other), resume=True))
    with pytest.raises(ValueError, match=f"started with --init {init.resolve()} .*not --init \\(none\\)"):
        check_resume_options(out, FitOptions(resume=True))


def test_steps_done_is_unknown_without_a_readable_last_json(tmp_path):
    """A missing or damaged checkpoints/last.json read as 0 steps done, and a resume's --max-steps check passed."""
    from mgfrec.rl.resume import steps_done

    assert steps_done(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    side = tmp_path / "checkpoints" / "last.json"
    for text in ("{", "[]", '{"steps": "3"}', '{"steps": true}', '{"steps": -1}', '{"other": 3}'):
        side.write_text(text)
        assert steps_done(tmp_path) is None, text
    side.write_text('{"steps": 3}')
    assert steps_done(tmp_path) == 3


def test_a_resume_may_change_evaluation_but_not_the_rewards_ranking(tmp_path):
    """eval.* may change on a resume (it is evaluation), but eval.exclude_history is read by the GRPO reward: a
    resume with another value trained its last steps on another reward, and config.yaml claimed it for every step
    (review s29). eval.greedy is how validation decodes, and the best policy is chosen by comparing validations:
    greedy and sampled numbers were compared (review s37)."""
    out = tmp_path / "run"
    write_resolved(load_config(None), out)
    check_resume_config(out, load_config(None, ("eval.bootstrap_samples=10", "eval.rollout_batch_size=4")))
    with pytest.raises(ValueError, match=r"--resume: .*eval.exclude_history: True -> False"):
        check_resume_config(out, load_config(None, ("eval.exclude_history=false",)))
    with pytest.raises(ValueError, match=r"--resume: .*eval.greedy: True -> False"):
        check_resume_config(out, load_config(None, ("eval.greedy=false",)))


def test_a_run_over_a_recall_run_resumes_whatever_its_config_recorded_of_the_retriever(tmp_path):
    """A fit with --init made before the run recorded its recall run's retriever section (retriever.options: {})
    could not be resumed: "retriever.options: {} -> None; retriever.options.collaborative: None -> 'sasrec'" (review
    s29). Those fields are the recall run's whatever the config says; the list length is the agent's own."""
    out = tmp_path / "run"
    write_resolved(load_config(None, ("retriever.model=hybrid", "retriever.recall_size=10")), out)
    given = load_config(
        None, ("retriever.model=hybrid", "retriever.recall_size=10", "retriever.options={collaborative: sasrec}")
    )
    check_resume_config(out, given, from_recall_run=True)
    with pytest.raises(ValueError, match=r"retriever.options.collaborative: None -> 'sasrec'"):
        check_resume_config(out, given)  # a recall run of its own (OUT/recall): its settings are the run's
    shorter = load_config(None, ("retriever.model=hybrid", "retriever.recall_size=5"))
    with pytest.raises(ValueError, match=r"retriever.recall_size: 10 -> 5"):
        check_resume_config(out, shorter, from_recall_run=True)


def test_a_resume_after_config_yaml_or_a_template_copy_was_edited_is_refused(tmp_path):
    """A resume compared its settings with OUT/config.yaml alone: an edit of that file (kl_beta, lr) or of the run's
    template copy went on into the resumed steps, and the files claimed the new values for the whole run (review
    s33)."""
    import json

    from mgfrec.rl.resume import START_FILE, started_settings

    mine = tmp_path / "mine.txt"
    mine.write_text("You recommend music.", encoding="utf-8")
    out = tmp_path / "run"
    cfg = keep_run_prompts(load_config(None, (f"agent.template={mine}",)), out)
    write_resolved(cfg, out)
    (out / START_FILE).write_text(json.dumps({"init": None, **started_settings(out)}), encoding="utf-8")
    check_resume_config(out, load_config(out / "config.yaml"))  # as it started: resumed
    saved = (out / "config.yaml").read_text(encoding="utf-8")
    assert "kl_beta: 0.04" in saved
    edited = saved.replace("kl_beta: 0.04", "kl_beta: 0.5")
    (out / "config.yaml").write_text(edited, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        check_resume_config(out, load_config(out / "config.yaml"))
    assert str(info.value).startswith(
        f"--resume: {out / 'config.yaml'} was edited since the run started (grpo.kl_beta: 0.04 -> 0.5; "
    )
    (out / "config.yaml").write_text(saved, encoding="utf-8")
    copy = out / "prompts" / "recommendation_agent.txt"
    copy.write_text("EDITED", encoding="utf-8")
    with pytest.raises(ValueError, match=f"--resume: {copy} was edited since the run started"):
        check_resume_config(out, load_config(out / "config.yaml"))
    copy.write_text("You recommend music.", encoding="utf-8")
    check_resume_config(out, load_config(out / "config.yaml"))
    # what a resume may change (more steps), changed in the file as a resume rewrites it: resumed
    longer = load_config(out / "config.yaml")
    write_resolved(longer.model_copy(update={"trainer": longer.trainer.model_copy(update={"max_steps": 99})}), out)
    check_resume_config(out, load_config(out / "config.yaml"))


def test_a_moved_run_resumes_with_its_own_template_copy_and_a_field_added_since_is_no_edit(tmp_path):
    """config.yaml names the run's template copy by its absolute path: a run moved with its folder was refused as
    "started with other settings" (the old folder's copy against its own). And a field mgfrec added after a run
    started is not in fit_start.json: it read as an edit of config.yaml (review s33)."""
    import json
    import shutil

    from mgfrec.rl.resume import START_FILE, started_settings
    from mgfrec.text.prompts import run_prompts

    mine = tmp_path / "mine.txt"
    mine.write_text("You recommend music.", encoding="utf-8")
    out = tmp_path / "run"
    write_resolved(keep_run_prompts(load_config(None, (f"agent.template={mine}",)), out), out)
    record = {"init": None, **started_settings(out)}
    del record["settings"]["grpo.kl_beta"]  # as if the field came with a later mgfrec
    (out / START_FILE).write_text(json.dumps(record), encoding="utf-8")
    moved = tmp_path / "elsewhere"
    shutil.move(out, moved)
    given = load_config(moved / "config.yaml")  # as fit --resume starts: the run's config.yaml
    assert given.agent.template == str(out.resolve() / "prompts" / "recommendation_agent.txt")  # the old folder's
    check_resume_config(moved, run_prompts(given, moved))  # resumed
    check_resume_config(moved, run_prompts(load_config(moved / "config.yaml", ("agent.template=" + str(mine),)), moved))


def test_the_checkpoint_a_resume_reads_is_checked_file_or_deepspeed_folder(tmp_path):
    """A damaged DeepSpeed checkpoint folder (a truncated shard, no `latest` tag) was a traceback from inside
    `trainer.fit` after the finished run's `run.json` had been retired; only a single-file checkpoint was checked
    (review s37). The folder's shards are each checked, and a killed replacement's `last.ckpt.old` is read."""
    import torch

    from mgfrec.rl.resume import resume_checkpoint

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(FileNotFoundError, match=r"last.ckpt does not exist; run without --resume"):
        resume_checkpoint(tmp_path)
    folder = checkpoints / "last.ckpt.old"
    (folder / "checkpoint").mkdir(parents=True)
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"):
        torch.save({"weights": torch.zeros(64)}, folder / "checkpoint" / name)
    with pytest.raises(ValueError, match=r"last.ckpt.old is damaged \(no latest file\)"):
        resume_checkpoint(tmp_path)
    (folder / "latest").write_text("checkpoint")
    assert resume_checkpoint(tmp_path) == folder  # killed while one folder replaced another: the whole old one
    shard = folder / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"--resume: .*{shard.name} is damaged \(not a checkpoint torch can read\)"):
        resume_checkpoint(tmp_path)
    (folder / "latest").write_text("global_step9")
    with pytest.raises(ValueError, match=r"is damaged \(no shards \(\*.pt\) in .*global_step9\)"):
        resume_checkpoint(tmp_path)
    checkpoints.joinpath("last.ckpt").write_bytes(b"not a zip")  # a single file, as the default strategy writes
    with pytest.raises(ValueError, match=r"last.ckpt is damaged \(not a checkpoint torch can read\)"):
        resume_checkpoint(tmp_path)

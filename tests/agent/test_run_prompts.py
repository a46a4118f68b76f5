"""``text.prompts.keep_run_prompts``: what a run keeps of the template files its config names."""

from __future__ import annotations

import pytest

from mgfrec.config.load import load_config
from mgfrec.text.prompts import keep_run_prompts

pytestmark = pytest.mark.reliability


def test_a_user_agent_prompt_file_is_kept_as_it_is_and_a_missing_one_left_to_its_backend(tmp_path):
    """The simulated and none backends never read user_agent.prompt: a fit failed over a file they never read,
    after the earlier run in OUT had been removed; and a plugin's prompt with its own placeholders was refused
    against the built-in template's."""
    own = tmp_path / "persona.txt"
    own.write_text("You are {persona_name}. {history}", encoding="utf-8")  # a plugin's own placeholders
    kept = keep_run_prompts(load_config(None, (f"user_agent.prompt={own}",)), tmp_path / "run")
    assert kept.user_agent.prompt == str((tmp_path / "run" / "prompts" / "user_agent.txt").resolve())
    assert (tmp_path / "run" / "prompts" / "user_agent.txt").read_text(encoding="utf-8") == own.read_text()
    gone = str(tmp_path / "deleted.txt")
    left = keep_run_prompts(load_config(None, (f"user_agent.prompt={gone}",)), tmp_path / "other")
    assert left.user_agent.prompt == gone and not (tmp_path / "other" / "prompts").exists()


def test_a_missing_agent_template_is_still_named(tmp_path):
    # escaped: "agent.template" matched the pytest folder's "agent_template" in any error quoting the path (s40)
    with pytest.raises(FileNotFoundError, match=r"\(from agent\.template\): template file not found"):
        keep_run_prompts(load_config(None, (f"agent.template={tmp_path / 'none.txt'}",)), tmp_path / "run")


def test_a_copied_run_prompts_with_its_own_copy_not_the_originals(tmp_path):
    """config.yaml names the template copy by its absolute path: a run copied with `cp -r` read the original's
    copy, so a later run made in the original's folder changed the copy's prompt without a word (review s33)."""
    import shutil
    from importlib import resources

    from mgfrec.text.prompts import run_prompts

    mine = tmp_path / "mine.txt"
    mine.write_text(resources.files("mgfrec.text").joinpath("templates/recommendation_agent.v1.txt").read_text())
    original = tmp_path / "original"
    kept = keep_run_prompts(load_config(None, (f"agent.template={mine}",)), original)
    shutil.copytree(original, tmp_path / "backup")
    trained_with = (original / "prompts" / "recommendation_agent.txt").read_text()
    (original / "prompts" / "recommendation_agent.txt").write_text("another fit's template {history}")
    backup = run_prompts(kept, tmp_path / "backup")
    assert backup.agent.template == str((tmp_path / "backup" / "prompts" / "recommendation_agent.txt").resolve())
    assert open(backup.agent.template).read() == trained_with
    assert run_prompts(kept, original).agent.template == kept.agent.template  # its own copy, as recorded
    other = load_config(None, (f"agent.template={mine}",))  # a file that is no run's copy (recommend --set) is read
    assert run_prompts(other, tmp_path / "backup").agent.template == str(mine)

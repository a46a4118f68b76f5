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
    with pytest.raises((ValueError, OSError), match="agent.template"):
        keep_run_prompts(load_config(None, (f"agent.template={tmp_path / 'none.txt'}",)), tmp_path / "run")

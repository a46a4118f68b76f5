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

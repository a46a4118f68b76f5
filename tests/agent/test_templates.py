"""The shipped templates are the paper's text; custom templates are validated; recall and titles render right."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mgfrec.config.schema import AgentConfig
from mgfrec.text.prompts import (
    AgentPrompts,
    build_messages,
    encode_prompt,
    load_template,
    user_agent_prompt,
)

# Table 2 of the paper, copied from the paper's text (markup such as `code` and **bold** removed).
TABLE_2 = (
    "You are a helpful recommendation agent who provides well-reasoned and detailed responses.\n\n"
    "You must conduct reasoning inside <think> and </think> first every time you get new information.\n\n"
    "After reasoning, if you want to find items in the item database, you can call a grounding engine by "
    "using <ground> item title </ground>. It will return the top relevant items between <item_list> and "
    "</item_list>, as well as feedback from a user agent between <feedback> and </feedback>.\n\n"
    "You can use the feedback to conduct further reasoning inside <think> and </think>, or you may call "
    "the grounding engine again. You may repeat the reasoning and grounding process as many times as "
    "needed.\n\n"
    "If you find that no further external information is needed, you can directly provide one "
    "recommended item inside <answer> and </answer>."
)

# Table 1 of the paper, copied likewise; its three {} slots are the named placeholders.
TABLE_1 = (
    "Act as a user agent.\n\n"
    "Record of items you’ve interacted with: {}\n\n"
    "Now, you will be provided with an item title and a list of items from the database related to the "
    "item. Reflect on whether the item title is appropriate and provide feedback.\n\n"
    "Important rules:\n\n"
    "1. Summarize your interests based on your interaction history.\n"
    "2. Provide feedback on the item title in relation to your interests.\n"
    "3. Your feedback may affirm or deny the suitability of the given item title, or offer suggestions "
    "for improvement.\n"
    "4. You may incorporate the list of items related to the item title when providing feedback.\n\n"
    "Given item title: {}\n\n"
    "List of items related to the title: {}\n\n"
    "Output your feedback."
)

PAPER = Path(os.environ.get("MGFREC_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "paper"


def test_default_system_prompt_is_table_2_word_for_word():
    assert load_template("recommendation_agent").render() == TABLE_2
    assert build_messages(["Abbey Road"])[0] == {"role": "system", "content": TABLE_2}


def test_default_user_agent_prompt_is_table_1_with_named_slots():
    text = load_template("user_agent").text
    assert re.findall(r"\{(\w+)\}", text) == ["history", "grounded_title", "item_list"]
    assert re.sub(r"\{\w+\}", "{}", text) == TABLE_1


def test_templates_match_the_papers_text_file_when_present():
    """A cross-check of the copies above against the paper's extracted text (skipped without ../shared)."""
    files = sorted(PAPER.glob("*.txt"))
    if not files:
        pytest.skip(
            f"{PAPER} holds no paper text: this cross-check needs the MGFRec paper's extracted text (*.txt) in "
            "../shared/paper beside the repository (or $MGFREC_SHARED/paper); the copies of Tables 1 and 2 above "
            "are tested without it"
        )
    paper = re.sub(r"\*\*|`", "", files[0].read_text("utf-8"))
    for table in (TABLE_1, TABLE_2):
        for line in filter(None, table.splitlines()):
            assert line in paper, line


def test_user_agent_prompt_fills_history_title_and_list():
    text = user_agent_prompt(["Abbey Road", 'Say "Hi", Bob'], "Let It Be", ["Rumours", "Thriller"])
    assert 'Record of items you’ve interacted with: ["Abbey Road", "Say \\"Hi\\", Bob"]\n' in text
    assert 'Given item title: "Let It Be"\n' in text
    assert 'List of items related to the title: ["Rumours", "Thriller"]\n' in text
    assert "{" not in text.replace('{"', "")  # no placeholder left


def test_first_prompt_lists_history_and_recall_and_drops_recall_when_off():
    with_recall = build_messages(["Abbey Road", "Let It Be"], ["Rumours", "Thriller"])[1]["content"]
    assert with_recall == (
        "The user has interacted with the following items, from the earliest to the most recent:\n"
        "1. Abbey Road\n2. Let It Be\n\n"
        "A recall model retrieved these candidate items from the item database:\n"
        "1. Rumours\n2. Thriller\n\n"
        "Recommend the one item the user is most likely to interact with next."
    )
    without = build_messages(["Abbey Road", "Let It Be"], None)[1]["content"]
    assert without == (
        "The user has interacted with the following items, from the earliest to the most recent:\n"
        "1. Abbey Road\n2. Let It Be\n\n"
        "Recommend the one item the user is most likely to interact with next."
    )
    assert build_messages(["Abbey Road", "Let It Be"], [])[1]["content"] == without
    off = AgentPrompts.from_config(AgentConfig(use_recall=False))
    assert off.messages(["Abbey Road", "Let It Be"], ["Rumours"])[1]["content"] == without


def test_custom_template_files_are_loaded_and_validated(tmp_path):
    system = tmp_path / "system.txt"
    system.write_text("Recommend {well}.\r\nUse <answer>.\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"system.txt \(from agent.template\): unknown placeholder\(s\) \{well\}"):
        AgentPrompts.from_config(AgentConfig(template=str(system)))
    system.write_text('Recommend well; JSON such as {"a": 1} is literal.\r\nUse <answer>.\n\n', encoding="utf-8")
    prompts = AgentPrompts.from_config(AgentConfig(template=str(system)))
    assert prompts.messages(["A"])[0]["content"] == 'Recommend well; JSON such as {"a": 1} is literal.\nUse <answer>.'
    with pytest.raises(FileNotFoundError, match="nope.txt .from agent.template.: template file not found"):
        AgentPrompts.from_config(AgentConfig(template=str(tmp_path / "nope.txt")))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Recommandé {history}".encode("latin-1"))  # was "'utf-8' codec can't decode byte 0xe9"
    with pytest.raises(ValueError, match=r"latin1.txt .from agent.template.: not UTF-8 text"):
        AgentPrompts.from_config(AgentConfig(template=str(latin)))
    ua = tmp_path / "ua.txt"
    ua.write_text("History {history}; title {grounded_title}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"must contain \{item_list\}"):
        load_template("user_agent", ua, field="user_agent.prompt")
    ua.write_text("H={history} T={grounded_title} L={item_list} { spaced } {1}", encoding="utf-8")
    rendered = user_agent_prompt(["{item_list}"], "t", ["x"], template=load_template("user_agent", ua))
    assert rendered == 'H=["{item_list}"] T="t" L=["x"] { spaced } {1}'  # a value is never re-substituted


@pytest.mark.reliability
def test_a_history_sharing_a_paragraph_with_the_optional_recall_is_kept_without_it(tmp_path):
    """A paragraph whose optional placeholder has no value is left out: with {history} and {recall} in one, recall
    off (or an empty recall list) dropped the user's history too, and the policy trained without it (review s27).
    That paragraph is now kept, the recall left empty; a paragraph of the recall alone is still left out."""
    first = tmp_path / "fp.txt"
    first.write_text("History:\n{history}\nCandidates:\n{recall}\n\nPick one.\n", encoding="utf-8")
    for use_recall, recall in ((False, ["C"]), (True, [])):
        prompts = AgentPrompts.from_config(AgentConfig(first_prompt=str(first), use_recall=use_recall))
        said = prompts.messages(["A", "B"], recall if use_recall else None)[1]["content"]
        assert said.startswith("History:\n") and "B" in said and said.endswith("Pick one."), said
    apart = tmp_path / "apart.txt"
    apart.write_text("History:\n{history}\n\nCandidates:\n{recall}\n\nPick one.\n", encoding="utf-8")
    prompts = AgentPrompts.from_config(AgentConfig(first_prompt=str(apart), use_recall=False))
    assert "Candidates" not in prompts.messages(["A", "B"], None)[1]["content"]


def test_encode_prompt_uses_the_chat_template_once(tokenizer):
    messages = build_messages(["Abbey Road"], ["Rumours"])
    ids = encode_prompt(tokenizer, messages)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert ids == tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2

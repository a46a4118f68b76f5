"""agent.prompt_history: the first prompt shows only the most recent history titles."""

from __future__ import annotations

from mgfrec.config.schema import AgentConfig
from mgfrec.text.prompts import AgentPrompts

HISTORY = ["Oldest Album", "Second Album", "Third Album", "Newest Album"]


def test_the_prompt_keeps_the_most_recent_titles():
    user = AgentPrompts.from_config(AgentConfig(prompt_history=2)).messages(HISTORY, ["Recalled"])[1]["content"]
    assert "Third Album" in user and "Newest Album" in user
    assert "Oldest Album" not in user and "Second Album" not in user
    everything = AgentPrompts.from_config(AgentConfig()).messages(HISTORY, ["Recalled"])[1]["content"]
    assert all(title in everything for title in HISTORY)  # the default shows them all

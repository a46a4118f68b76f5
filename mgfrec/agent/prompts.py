"""Moved to :mod:`mgfrec.text.prompts` (docs/architecture.md); this path keeps working."""

from mgfrec.text.prompts import (
    KINDS,
    AgentPrompts,
    Template,
    build_messages,
    encode_prompt,
    inline_list,
    load_template,
    numbered,
    user_agent_prompt,
)

__all__ = [
    "KINDS",
    "AgentPrompts",
    "Template",
    "build_messages",
    "encode_prompt",
    "inline_list",
    "load_template",
    "numbered",
    "user_agent_prompt",
]

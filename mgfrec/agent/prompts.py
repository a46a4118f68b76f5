"""Moved to :mod:`mgfrec.text.prompts` (docs/architecture.md); this path keeps working."""

from mgfrec.text.prompts import (
    KINDS,
    PROMPT_FIELDS,
    RUN_PROMPTS,
    AgentPrompts,
    Template,
    build_messages,
    encode_prompt,
    inline_list,
    keep_prompts,
    load_template,
    numbered,
    prompts_of_run,
    same_prompt,
    user_agent_prompt,
)

__all__ = [
    "KINDS",
    "PROMPT_FIELDS",
    "RUN_PROMPTS",
    "AgentPrompts",
    "Template",
    "build_messages",
    "encode_prompt",
    "inline_list",
    "keep_prompts",
    "load_template",
    "numbered",
    "prompts_of_run",
    "same_prompt",
    "user_agent_prompt",
]

"""The user agent's prompt: the paper's Table 1 (or ``user_agent.prompt``) filled with one request.

The template and its rendering belong to :mod:`mgfrec.text.prompts`, which owns every prompt of the
framework (versioned files, placeholder checks, neutralised titles); this module only binds a loaded
template to :class:`FeedbackRequest`. A custom file uses the placeholders ``{history}``,
``{grounded_title}`` and ``{item_list}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mgfrec.text.prompts import load_template, user_agent_prompt
from mgfrec.user_agents.base import FeedbackRequest

PromptFn = Callable[[FeedbackRequest], str]


def prompt_builder(path: str | None, reserved: Iterable[str] = ()) -> PromptFn:
    """The function turning a request into the prompt text: Table 1, or the template file at ``path``.

    The file is loaded and checked here, once, so a bad ``user_agent.prompt`` fails when the agent is built.
    ``reserved``: strings the consuming model's tokenizer treats as special tokens (a local model), which
    titles must not spell.
    """
    template = load_template("user_agent", path, field="user_agent.prompt")
    reserved = tuple(reserved)

    def build(request: FeedbackRequest) -> str:
        return user_agent_prompt(
            request.history_titles, request.grounded_title, request.item_titles, template=template, reserved=reserved
        )

    return build

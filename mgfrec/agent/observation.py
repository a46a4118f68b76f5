"""What the environment appends after a ``<ground>`` turn: the grounded items and the user agent's feedback.

The observation text is (``\\n`` are newlines)::

    \\n<item_list>\\n1. title\\n2. title\\n...\\n</item_list>\\n<feedback>\\nfeedback text\\n</feedback>\\n

The leading newline separates it from the policy's ``</ground>``; the trailing one leaves the policy at
the start of a line for its next ``<think>``. The ``<feedback>`` block is left out when there is no
feedback: ``feedback=None``, or text that is empty once stripped (what the ``none`` user agent returns,
the paper's w/o-feedback ablation). Titles are neutralized on one line each and the feedback
keeps its line breaks, so neither can close a block early or fake a tag (:mod:`mgfrec.text.neutralize`).

The layout is code, not a template: the parser's :func:`~mgfrec.agent.parser.parse_transcript` and the
docs depend on it. This module builds text only; :mod:`mgfrec.agent.environment` tokenizes it, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mgfrec.agent.parser import FEEDBACK_CLOSE, FEEDBACK_OPEN, ITEM_LIST_CLOSE, ITEM_LIST_OPEN
from mgfrec.text.neutralize import neutralize
from mgfrec.text.prompts import numbered


def render_observation(item_titles: Sequence[Any], feedback: str | None = None, *, reserved: Iterable[str] = ()) -> str:
    """The observation text for one grounding; no (or blank) ``feedback`` omits the ``<feedback>`` block."""
    reserved = tuple(reserved)
    text = f"\n{ITEM_LIST_OPEN}\n{numbered(item_titles, reserved)}\n{ITEM_LIST_CLOSE}\n"
    shown = shown_feedback(feedback, reserved)
    if shown is not None:
        text += f"{FEEDBACK_OPEN}\n{shown}\n{FEEDBACK_CLOSE}\n"
    return text


def shown_feedback(feedback: str | None, reserved: Iterable[str] = ()) -> str | None:
    """The feedback as the observation shows it (neutralized, stripped), or None when there is no block."""
    if feedback is None:
        return None
    shown = neutralize(feedback, reserved=reserved).strip()
    return shown or None

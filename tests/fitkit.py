"""The ``--set`` arguments that keep a test's ``mgfrec fit`` tiny. (A uniquely named module, not ``conftest``, so
that any test folder can import it.)"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def tiny_fit_sets(template: Path, recall_size: int = 5, more: Mapping[str, object] | None = None) -> list[str]:
    """``--set`` pairs for a fit that finishes in seconds: ``template`` as the system prompt (a short one keeps the
    context small), 16-token turns within 32 tokens, 2 prompts a step, ``recall_size`` recalled items, then
    ``more``."""
    fields: dict[str, object] = {
        "agent.template": template,
        "agent.max_new_tokens_per_turn": 16,
        "agent.max_new_tokens_total": 32,
        "trainer.global_batch_size": 2,
        "retriever.recall_size": recall_size,
        **(more or {}),
    }
    return [arg for key, value in fields.items() for arg in ("--set", f"{key}={value}")]

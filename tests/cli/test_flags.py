"""mgfrec.cli.flags: what a ``--set`` gives a field, the piece every flag/--set clash check reads."""

from __future__ import annotations

import pytest

from mgfrec.cli.flags import ABSENT, RESET, given_by_set


@pytest.mark.parametrize(
    ("override", "dotted", "expected"),
    [
        ("trainer.max_steps=5", "trainer.max_steps", 5),
        ("trainer={max_steps: 5, lr: 0.1}", "trainer.max_steps", 5),  # a section given whole: the field inside it
        ("trainer={lr: 0.1}", "trainer.max_steps", ABSENT),  # the section given whole without the field
        ("trainer.max_steps_x=5", "trainer.max_steps", ABSENT),  # a longer name is another field
        ("policy.model=preset:tiny", "trainer.max_steps", ABSENT),
        ("data={}", "data.source", RESET),  # an empty mapping puts the field back to its default
        ("user_agent.options={}", "user_agent.options.model", RESET),
    ],
)
def test_what_a_set_gives_a_field(override, dotted, expected):
    assert given_by_set(override, dotted) is expected or given_by_set(override, dotted) == expected

"""The state machine: grounding and token limits, every end reason, and misuse by the loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgfrec.agent.parser import parse_turn
from mgfrec.agent.state import END_REASONS, AgentState
from mgfrec.config.schema import AgentConfig

GROUND = parse_turn("<think>t</think><ground>Abbey Road</ground>")
ANSWER = parse_turn("<think>t</think><answer>Abbey Road</answer>")
UNFINISHED = parse_turn("<think>still thinking")
BROKEN = parse_turn("<think>t</think><item_list>")


def run(state: AgentState, turns) -> list[str]:
    out = []
    for turn, tokens in turns:
        out.append(state.on_turn(turn, tokens))
        if out[-1] == "ground":
            state.on_observation()
    return out


def test_answer_after_groundings_is_answered():
    state = AgentState(AgentConfig(max_groundings=2))
    assert run(state, [(GROUND, 5), (GROUND, 5), (ANSWER, 5)]) == ["ground", "ground", "end"]
    assert (state.end_reason, state.format_ok, state.groundings, state.turn_tokens) == ("answered", True, 2, [5, 5, 5])


@pytest.mark.parametrize("limit", [0, 1, 6])
def test_grounding_beyond_the_limit_is_a_format_error(limit):
    state = AgentState(AgentConfig(max_groundings=limit, max_new_tokens_total=1000))
    steps = run(state, [(GROUND, 1)] * (limit + 1))
    assert steps == ["ground"] * limit + ["end"]
    assert state.end_reason == "grounding_limit" and not state.format_ok and state.groundings == limit
    assert "max_groundings" in state.error


def test_budgets_follow_the_per_turn_and_total_caps():
    state = AgentState(AgentConfig(max_new_tokens_per_turn=10, max_new_tokens_total=25))
    assert state.next_budget() == 10
    state.on_turn(GROUND, 10)
    assert state.next_budget() == 0  # an observation is owed first
    state.on_observation()
    state.on_turn(GROUND, 8)
    state.on_observation()
    assert state.next_budget() == 7  # 25 - 18 left, under the per-turn cap
    with pytest.raises(ValueError, match="exceeds its budget of 7"):
        state.on_turn(ANSWER, 8)
    assert state.on_turn(ANSWER, 7) == "end" and state.end_reason == "answered"
    assert state.next_budget() == 0


def test_an_unfinished_turn_at_its_budget_is_a_length_limit_and_below_it_a_format_error():
    state = AgentState(AgentConfig(max_new_tokens_per_turn=10))
    state.on_turn(UNFINISHED, 10)
    assert state.end_reason == "length_limit" and not state.format_ok
    state = AgentState(AgentConfig(max_new_tokens_per_turn=10))
    state.on_turn(UNFINISHED, 9)  # the model stopped (eos) before its action
    assert state.end_reason == "format_error"
    state = AgentState(AgentConfig(max_new_tokens_per_turn=10))
    state.on_turn(BROKEN, 10)  # broken, not merely unfinished: the cap does not excuse it
    assert state.end_reason == "format_error" and "<item_list>" in state.error
    state = AgentState(AgentConfig(max_new_tokens_per_turn=10))
    state.on_turn(UNFINISHED, 10, stopped=True)  # an eos as the last token allowed: the model stopped (review s41)
    assert state.end_reason == "format_error"


def test_a_grounding_that_spends_the_total_budget_ends_with_length_limit():
    state = AgentState(AgentConfig(max_new_tokens_per_turn=10, max_new_tokens_total=10))
    assert state.on_turn(GROUND, 10) == "end"
    assert state.end_reason == "length_limit" and state.groundings == 0


def test_loop_misuse_raises():
    state = AgentState()
    with pytest.raises(RuntimeError, match="no grounding was asked for"):
        state.on_observation()
    state.on_turn(GROUND, 3)
    with pytest.raises(RuntimeError, match="observation is owed"):
        state.on_turn(ANSWER, 3)
    state.on_observation()
    state.on_turn(ANSWER, 3)
    with pytest.raises(RuntimeError, match="already ended"):
        state.on_turn(ANSWER, 3)


def test_stop_from_outside():
    state = AgentState()
    state.on_turn(GROUND, 3)
    state.stop("length_limit", "context full")
    assert (state.done, state.end_reason, state.error, state.next_budget()) == (True, "length_limit", "context full", 0)
    state.stop("format_error")  # an ended trajectory keeps its first end reason
    assert state.end_reason == "length_limit"
    with pytest.raises(ValueError, match="only from an <answer>"):
        AgentState().stop("answered")
    with pytest.raises(ValueError, match="must be one of"):
        AgentState().stop("tired")


TURNS = [GROUND, ANSWER, UNFINISHED, BROKEN]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 4),
    st.integers(1, 8),
    st.integers(1, 30),
    st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1)), min_size=12, max_size=12),
)
def test_any_policy_ends_classified_within_the_limits(max_groundings, per_turn, total, script):
    state = AgentState(
        AgentConfig(max_groundings=max_groundings, max_new_tokens_per_turn=per_turn, max_new_tokens_total=total)
    )
    for turns, (which, share) in enumerate(script, 1):  # noqa: B007 (the count is checked after the loop)
        budget = state.next_budget()
        assert budget >= 1
        if state.on_turn(TURNS[which], round(share * budget)) == "end":
            break
        state.on_observation()
    assert state.done and state.end_reason in END_REASONS
    assert turns <= max_groundings + 1 and state.groundings <= max_groundings
    assert state.total_tokens <= total and max(state.turn_tokens) <= per_turn
    assert state.format_ok == (state.end_reason == "answered") == (TURNS[which] is ANSWER)

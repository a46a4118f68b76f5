"""The tag parser: the format rule case by case, and fuzzed against an independent statement of the rule."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgfrec.agent.observation import render_observation
from mgfrec.agent.parser import Turn, parse_transcript, parse_turn
from mgfrec.models.policy import TAG_TOKENS

VALID = [
    ("<think>likes jazz</think><ground>Kind of Blue</ground>", "ground", "likes jazz", "Kind of Blue"),
    (" \n<think> a < b, <3 </think>\n\n<answer>  Abbey Road </answer>\n ", "answer", "a < b, <3", "Abbey Road"),
    ("<think>x</think><answer>Songs ‹3›</answer>", "answer", "x", "Songs ‹3›"),
    ("<think>multi\nline</think> <ground>A\nB</ground>", "ground", "multi\nline", "A\nB"),
]


@pytest.mark.parametrize(("text", "kind", "think", "title"), VALID)
def test_well_formed_turns(text, kind, think, title):
    turn = parse_turn(text)
    assert (turn.kind, turn.think, turn.title, turn.error) == (kind, think, title, None)
    assert turn.ok and turn.text == text


ERRORS = [
    ("<think>x</think><answer>t</answer> done", "after the action's closing tag", False),
    ("So: <think>x</think><answer>t</answer>", "before <think>", False),
    ("<think>x</think>and<answer>t</answer>", "between </think> and the action", False),
    ("<think>  </think><answer>t</answer>", "empty <think>", False),
    ("<think>x</think><ground> </ground>", "empty <ground> title", False),
    # a zero-width space or a BOM shows nothing: grounded, it named an arbitrary catalogue item (review s40)
    ("<think>x</think><ground>\u200b</ground>", "empty <ground> title", False),
    ("<think>x</think><answer>\ufeff \u200b</answer>", "empty <answer> title", False),
    # a variation selector, the grapheme joiner, a lone accent: the embedding model reads them as "" (review s41)
    ("<think>x</think><ground>\ufe0f</ground>", "empty <ground> title", False),
    ("<think>x</think><answer>\u034f \u0301</answer>", "empty <answer> title", False),
    ("<think>x</think><answer>t</ground>", "unexpected </ground>", False),
    ("<think>x<think>y</think><answer>t</answer>", "unexpected <think>", False),
    ("<think>x</think><think>y</think><answer>t</answer>", "unexpected <think>", False),
    ("<think>x</think><ground>a<answer>b</answer></ground>", "unexpected <answer>", False),
    ("<answer>t</answer>", "unexpected <answer>", False),
    ("<think>x</think><answer>t</answer><answer>u</answer>", "unexpected <answer>", False),
    ("<think>x</think><item_list>1. a</item_list><answer>t</answer>", "environment's tag <item_list>", False),
    ("<think>x</think><answer>t</answer></feedback>", "environment's tag </feedback>", False),
    ("<think>x <feedback>great</feedback></think><answer>t</answer>", "environment's tag <feedback>", False),
    ("<think>x</think><answer>t <b>bold</b></answer>", "unknown tag '<b>'", False),
    ("<think/><answer>t</answer>", "unknown tag '<think/>'", False),
    ("<think >x</think><answer>t</answer>", "unknown tag '<think >'", False),
    ("<THINK>x</THINK><answer>t</answer>", "unknown tag '<THINK>'", False),
    ("<think>x</think><answer>t</answer", "without the closing </answer>", True),
    ("<think>x</think><ground>Abbey", "without the closing </ground>", True),
    ("<think>x</think>  <gro", "without an action", True),
    ("<think>x</thi", "without </think>", True),
    ("  <thi", "without <think>", True),
    ("", "without <think>", True),
    ("<think>x</think> Abbey", "between </think> and the action", False),
    ("Abbey Road", "before <think>", False),
]


@pytest.mark.parametrize(("text", "message", "incomplete"), ERRORS)
def test_format_errors_say_what_is_wrong(text, message, incomplete):
    turn = parse_turn(text)
    assert turn.kind == "error" and turn.title is None
    assert message in turn.error
    assert turn.incomplete is incomplete


def test_non_strings_are_classified_not_raised():
    assert parse_turn(None).kind == "error"
    assert parse_turn(b"<think>".decode() + "x").incomplete


# --- fuzzing -----------------------------------------------------------------------------------------------

ALPHABET = [
    *TAG_TOKENS,
    "<",
    ">",
    "/",
    "</",
    "<thi",
    "nk>",
    "<b>",
    "<think/>",
    " ",
    "\n",
    "\t",
    "x",
    "Abbey Road",
    "a < b",
    "<3",
    "‹",
    "=",
    "",
]
tag_soup = st.lists(st.sampled_from(ALPHABET), max_size=14).map("".join)
gap = st.sampled_from(["", "", " ", "\n ", "\n", "x", "<b>"])
CONTENT = [
    "x",
    "Abbey Road",
    "a < b",
    "<3",
    " ",
    "\n",
    "‹",
    "<",
    ">",
    "/",
    "</",
    "<thi",
    "<item_list>",
    "</think>",
    "<answer>",
]
part = st.lists(st.sampled_from(CONTENT), min_size=1, max_size=3).map("".join)
swap = {"ground": "answer", "answer": "ground"}
# Turns built on the template's skeleton with fuzzed parts: a good share are well formed.
near_valid = st.builds(
    lambda g0, think, g1, act, title, mismatch, g2: (
        f"{g0}<think>{think}</think>{g1}<{act}>{title}</{swap[act] if mismatch else act}>{g2}"
    ),
    gap,
    part,
    gap,
    st.sampled_from(["ground", "answer"]),
    part,
    st.sampled_from([False, False, False, True]),
    gap,
)
any_text = st.one_of(st.text(max_size=60), tag_soup, near_valid, near_valid)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The rule restated independently: exactly the four tags in order, whitespace-only gaps, non-empty parts.
_VALID_RE = re.compile(r"\s*<think>(.*)</think>\s*<(ground|answer)>(.*)</\2>\s*", re.DOTALL)


def tags_in(text: str) -> list[str]:
    """Every tag-like span, by the rule written out by hand (not the parser's regex): ``<`` or ``</``, a
    letter or ``_``, name characters (letters, digits, ``_.:-``), then ``>``, ``/>``, or whitespace and
    anything without ``<``/``>`` up to ``>``."""
    found, i, n = [], 0, len(text)
    while i < n:
        j = i + 1 + (text[i + 1 : i + 2] == "/")
        if text[i] != "<" or j >= n or not (text[j].isalpha() or text[j] == "_"):
            i += 1
            continue
        j += 1
        while j < n and (text[j].isalnum() or text[j] in "_.:-"):
            j += 1
        end = None
        if text[j : j + 1] == ">":
            end = j + 1
        elif text[j : j + 2] == "/>":
            end = j + 2
        elif j < n and text[j].isspace():
            k = j + 1
            while k < n and text[k] not in "<>":
                k += 1
            end = k + 1 if k < n and text[k] == ">" else None
        if end is None:
            i += 1
            continue
        found.append(text[i:end])
        i = end
    return found


def test_the_hand_written_tag_rule_reads_known_cases():
    assert tags_in("a<think>b</think> <x y='1'/> <b/> <1> <> < a> <a\n>") == [
        "<think>",
        "</think>",
        "<x y='1'/>",
        "<b/>",
        "<a\n>",
    ]


def shows(part: str) -> bool:
    """Some character is neither whitespace, nor a format or control character (zero-width space, BOM, NUL), nor a
    mark with nothing to mark (a variation selector, a lone accent), nor one of the letters that show nothing (Hangul
    fillers, braille blank)."""
    hidden = "\u115f\u1160\u3164\uffa0\u2800"
    marks = ("Cf", "Cc", "Mn", "Me")
    return any(not c.isspace() and unicodedata.category(c) not in marks and c not in hidden for c in part)


def oracle(text: str) -> tuple[str, str, str] | None:
    tags = tags_in(text)
    if len(tags) != 4 or tags[:2] != ["<think>", "</think>"]:
        return None
    m = _VALID_RE.fullmatch(text)
    if m is None or not m.group(1).strip() or not shows(m.group(3)):  # a thought: not whitespace; a title: shows
        return None
    return m.group(2), m.group(1).strip(), m.group(3).strip()


@pytest.mark.reliability
@FUZZ
@given(any_text)
def test_every_string_is_classified_and_agrees_with_the_rule(text):
    turn = parse_turn(text)  # must not raise
    assert isinstance(turn, Turn) and turn.kind in ("ground", "answer", "error")
    expected = oracle(text)
    if expected is None:
        assert turn.kind == "error" and turn.error and turn.title is None
    else:
        assert (turn.kind, turn.think, turn.title) == expected and turn.error is None and not turn.incomplete


COMPLETIONS = [
    s[i:]
    for s in ("<think>x</think><answer>y</answer>", "<think>x</think><ground>y</ground>")
    for i in range(len(s) + 1)
]


@pytest.mark.reliability
@FUZZ
@given(any_text)
def test_incomplete_means_some_continuation_is_well_formed(text):
    turn = parse_turn(text)
    if turn.incomplete:
        assert any(parse_turn(text + c).ok for c in COMPLETIONS), text


@pytest.mark.reliability
@FUZZ
@given(st.text(min_size=1, max_size=20), st.sampled_from(["ground", "answer"]), st.text(min_size=1, max_size=20))
def test_every_prefix_of_a_valid_turn_is_valid_or_incomplete(think, action, title):
    text = f"<think>{think}</think>\n<{action}>{title}</{action}>"
    if parse_turn(text).ok:
        for cut in range(len(text)):
            prefix = parse_turn(text[:cut])
            assert prefix.ok or prefix.incomplete, (text[:cut], prefix.error)


@pytest.mark.reliability
@FUZZ
@given(st.lists(any_text, max_size=4), st.integers(0, 3))
def test_transcripts_never_raise_and_are_classified(turns, max_groundings):
    text = render_observation(["a"], "fb").join(turns)
    check = parse_transcript(text, max_groundings)
    assert check.end_reason in ("answered", "grounding_limit", "format_error")
    assert check.format_ok == (check.answer is not None)


# --- whole responses ---------------------------------------------------------------------------------------

GROUND = "<think>jazz</think><ground>Kind of Blue</ground>"
ANSWER = "<think>done</think><answer>Blue Train</answer>"


def test_transcript_with_observations_is_answered():
    obs = render_observation(["Kind of Blue", "Blue Train"], "I like it")
    check = parse_transcript(GROUND + obs + GROUND + render_observation(["x"], None) + ANSWER, max_groundings=2)
    assert (
        check.format_ok
        and check.answer == "Blue Train"
        and [t.kind for t in check.turns] == ["ground", "ground", "answer"]
    )


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        (
            GROUND + render_observation(["a"], "b") + GROUND + render_observation(["a"], "b") + ANSWER,
            "grounding_limit",
            "exceeds max_groundings=1",
        ),
        (GROUND, "format_error", "ends with a <ground>"),
        (ANSWER + render_observation(["a"], None) + ANSWER, "format_error", "an <answer> followed by an observation"),
        (
            GROUND + render_observation(["a"], "b") + "<think>x</think>",
            "format_error",
            "turn 2: the turn ended without",
        ),
        (GROUND + ANSWER, "format_error", "turn 1: unexpected <think>"),
    ],
)
def test_transcript_errors(text, reason, message):
    check = parse_transcript(text, max_groundings=1)
    assert check.end_reason == reason and not check.format_ok and check.answer is None
    assert message in check.error

"""``parse_transcript`` does linear work on any text: the observation splitter's scans are counted on a 1 MB
transcript (no timing), and the splitter agrees with the regular expression it replaced on fuzzed texts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgfrec.agent import parser
from mgfrec.agent.parser import parse_transcript, split_observations

pytestmark = pytest.mark.reliability

# The splitter before it was made linear: the statement of what it must keep doing.
REFERENCE = re.compile(
    r"<item_list>.*?</item_list>(?:\s*<feedback>.*?</feedback>)?",
    re.DOTALL,
)


class CountingText(str):
    """A string that counts the characters its ``find`` and ``startswith`` calls can look at."""

    scanned = 0
    calls = 0

    def find(self, sub, start=None, end=None):  # type: ignore[override]
        begin = 0 if start is None else start
        found = str.find(self, sub, begin) if end is None else str.find(self, sub, begin, end)
        CountingText.calls += 1
        CountingText.scanned += (len(self) if found < 0 else found + len(sub)) - begin
        return found

    def startswith(self, prefix, start=None, end=None):  # type: ignore[override]
        CountingText.calls += 1
        CountingText.scanned += len(prefix)
        return str.startswith(self, prefix, start or 0) if end is None else str.startswith(self, prefix, start, end)


HOSTILE = {
    # the case found by the adversarial pass: every <item_list> left open
    "unclosed item lists": "<think>x</think><ground>a</ground><item_list>1. A\n" * 20_000,
    # every observation followed by a <feedback> that never closes
    "unclosed feedback": "<item_list>A</item_list> <feedback>f " * 30_000,
    # closed observations, then a long run of open ones
    "mixed": "<item_list>A</item_list><feedback>ok</feedback>" * 5_000 + "<item_list><feedback>" * 30_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_megabyte_transcript_is_split_with_linear_work(name, monkeypatch):
    text = (HOSTILE[name] * (1_000_000 // len(HOSTILE[name]) + 1))[:1_000_000]
    counted = CountingText(text)
    CountingText.scanned = CountingText.calls = 0
    turned: list[int] = []
    real_parse_turn = parser.parse_turn
    monkeypatch.setattr(parser, "parse_turn", lambda piece: turned.append(len(piece)) or real_parse_turn(piece))
    check = parse_transcript(counted)
    assert not check.format_ok  # none of these is a valid response; the verdict arrives
    # every scan of the text goes through the counted methods, and together they read it a few times at most
    assert CountingText.calls > 0, "the observation splitter must read the text through str.find/startswith"
    assert CountingText.scanned <= 4 * len(text), f"{CountingText.scanned:,} characters scanned for {len(text):,}"
    assert sum(turned) <= len(text)  # each piece of policy text is parsed once


pieces = st.lists(
    st.sampled_from(
        ["<item_list>", "</item_list>", "<feedback>", "</feedback>", " ", "\n", "x", "<think>", "</ground>", "<"]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(pieces)
def test_the_splitter_cuts_exactly_where_the_old_expression_did(text):
    assert split_observations(text) == REFERENCE.split(text)


def test_a_transcript_with_observations_still_parses():
    text = (
        "<think>a</think><ground>Blue</ground><item_list>1. Blue Train</item_list>\n<feedback>close</feedback>"
        "<think>b</think><answer>Blue Train</answer>"
    )
    check = parse_transcript(text)
    assert check.format_ok and check.answer == "Blue Train" and len(check.turns) == 2

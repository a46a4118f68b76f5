"""The tag parser: what one policy turn says, and whether a whole response follows the template.

The format rule (paper Table 2; the ``format`` reward, eq. 8, reads its verdict)
================================================================================

The policy writes one *turn* per generation call; generation stops at ``</ground>`` or ``</answer>``.

1. **A turn** is ``<think>`` reasoning ``</think>`` followed by exactly one action, ``<ground>`` title
   ``</ground>`` or ``<answer>`` title ``</answer>``. Whitespace is allowed before ``<think>``, between
   ``</think>`` and the action, and after the action's closing tag; nothing else is. The reasoning must be
   non-empty once stripped of surrounding whitespace; the title must show something: not empty once stripped, and
   not only characters that show nothing (a zero-width space, a BOM: :func:`mgfrec.validation.is_blank`), which
   were grounded to an arbitrary catalogue item. (A thought of those harms nothing, and the constrained grammar's
   masks, and so the documented seeded runs, stay as they were.)
2. **Tags.** A tag-like sequence is ``<`` or ``</``, a name (a letter or ``_``, then letters, digits,
   ``_ - . :``), optional attributes, optional ``/``, then ``>``. Only the six exact tags ``<think>``
   ``</think>`` ``<ground>`` ``</ground>`` ``<answer>`` ``</answer>`` may appear, each once, in that order.
   Any other tag-like sequence is a format error: the environment's ``<item_list>`` ``</item_list>``
   ``<feedback>`` ``</feedback>`` (only the environment writes those), unknown tags (``<b>``, ``<think/>``,
   ``<think >``, ``<Think>``), nested or repeated tags, and a closing tag that does not match its action.
   Text such as ``a < b`` or ``<3`` is not tag-like and is plain text.
3. **A trajectory** is format-correct when every turn is well formed, every turn but the last is a
   ``<ground>``, the last is an ``<answer>``, and it grounds at most ``agent.max_groundings`` times (6).
4. **End reasons.** Every trajectory ends with exactly one of:

   * ``answered``: a well-formed ``<answer>`` turn. The only format-correct ending.
   * ``grounding_limit``: a well-formed ``<ground>`` turn when ``max_groundings`` groundings were already
     done. A format error: the response breaks rule 3 and has no answer.
   * ``length_limit``: a turn used its whole token budget (``agent.max_new_tokens_per_turn``, or what is
     left of ``agent.max_new_tokens_total``) and is an unfinished but so far valid turn, or a ``<ground>``
     turn used up the total budget, leaving no room for an answer. A format error: there is no answer.
   * ``format_error``: any other malformed turn (a broken rule 1 or 2, or a turn that stopped early
     without its action).

:func:`parse_turn` classifies any string (it never raises); :class:`mgfrec.agent.state.AgentState` applies
rules 3-4 turn by turn during rollouts; :func:`parse_transcript` applies all of it to a whole response
text (demonstrations, logs). This module reads text only; it never sees token ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mgfrec.validation import is_blank

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
GROUND_OPEN, GROUND_CLOSE = "<ground>", "</ground>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
ITEM_LIST_OPEN, ITEM_LIST_CLOSE = "<item_list>", "</item_list>"
FEEDBACK_OPEN, FEEDBACK_CLOSE = "<feedback>", "</feedback>"
POLICY_TAGS = frozenset({THINK_OPEN, THINK_CLOSE, GROUND_OPEN, GROUND_CLOSE, ANSWER_OPEN, ANSWER_CLOSE})
ENVIRONMENT_TAGS = frozenset({ITEM_LIST_OPEN, ITEM_LIST_CLOSE, FEEDBACK_OPEN, FEEDBACK_CLOSE})
STOP_STRINGS = (GROUND_CLOSE, ANSWER_CLOSE)  # where the engine stops each generation call

TAG_RE = re.compile(r"</?[A-Za-z_][\w.:-]*(?:\s[^<>]*)?/?>")
_CLOSE_FOR = {GROUND_OPEN: GROUND_CLOSE, ANSWER_OPEN: ANSWER_CLOSE}
_ACTIONS = {GROUND_OPEN: "ground", ANSWER_OPEN: "answer"}

TurnKind = Literal["ground", "answer", "error"]


@dataclass(frozen=True)
class Turn:
    """One parsed policy turn.

    ``kind`` is ``ground`` or ``answer`` for a well-formed turn (``title`` and ``think`` set, stripped) and
    ``error`` otherwise (``error`` says what is wrong and where). ``incomplete`` marks an error turn that is
    an unfinished prefix of a well-formed turn: more tokens could still have made it valid.
    """

    kind: TurnKind
    text: str
    think: str | None = None
    title: str | None = None
    error: str | None = None
    incomplete: bool = False

    @property
    def ok(self) -> bool:
        return self.kind != "error"


def parse_turn(text: str) -> Turn:
    """Classify one turn's text by rules 1-2 of the format rule. Never raises, whatever the string."""
    if not isinstance(text, str):
        return Turn("error", str(text), error=f"turn text must be a string, got {type(text).__name__}")
    pos, stage, think, action, title = 0, 0, None, None, None
    # stage: 0 before <think>, 1 in think, 2 before the action, 3 in the title, 4 after the closing tag
    for match in TAG_RE.finditer(text):
        tag, between = match.group(0), text[pos : match.start()]
        where = f"at character {match.start()}"
        if stage in (0, 2, 4) and between.strip():
            return _error(text, _stray_text(stage, between, pos))
        if tag not in POLICY_TAGS:
            if tag in ENVIRONMENT_TAGS:
                return _error(
                    text,
                    f"the policy wrote the environment's tag {tag} {where}; "
                    "only the environment writes <item_list> and <feedback>",
                )
            return _error(
                text, f"unknown tag {tag!r} {where}; allowed: <think>, <ground>, <answer> and their closing tags"
            )
        expected = _expected(stage, action)
        if tag not in expected:
            return _error(
                text, f"unexpected {tag} {where}; expected {' or '.join(expected) or 'nothing after the action'}"
            )
        if stage == 1 and not between.strip():
            return _error(text, f"empty <think> {where}")
        if stage == 3 and is_blank(between):  # a zero-width space alone was grounded to an arbitrary item (s40)
            return _error(text, f"empty {action} title {where}")
        if stage == 1:
            think = between.strip()
        elif stage == 2:
            action = tag
        elif stage == 3:
            title = between.strip()
        stage, pos = stage + 1, match.end()
    tail = text[pos:]
    if stage == 4:
        if tail.strip():
            return _error(text, _stray_text(4, tail, pos))
        return Turn(_ACTIONS[action], text, think=think, title=title)
    return _unfinished(text, stage, action, tail, pos)


def _expected(stage: int, action: str | None) -> tuple[str, ...]:
    if stage == 0:
        return (THINK_OPEN,)
    if stage == 1:
        return (THINK_CLOSE,)
    if stage == 2:
        return (GROUND_OPEN, ANSWER_OPEN)
    if stage == 3:
        return (_CLOSE_FOR[action],)
    return ()


def _unfinished(text: str, stage: int, action: str | None, tail: str, pos: int) -> Turn:
    """The input ended before the action closed: incomplete if the tail can still become the next tag."""
    if stage in (0, 2):
        rest = tail.lstrip()
        if rest and not any(tag.startswith(rest) for tag in _expected(stage, action)):
            return _error(text, _stray_text(stage, tail, pos))
    missing = {0: "<think>", 1: "</think>", 2: "an action (<ground> or <answer>)"}.get(stage)
    missing = missing or f"the closing {_CLOSE_FOR[action]}"
    return Turn("error", text, error=f"the turn ended without {missing}", incomplete=True)


def _stray_text(stage: int, text: str, pos: int) -> str:
    place = {0: "before <think>", 2: "between </think> and the action", 4: "after the action's closing tag"}[stage]
    offset = pos + len(text) - len(text.lstrip())
    return f"text {text.strip()[:40]!r} {place} at character {offset}; only whitespace is allowed there"


def _error(text: str, message: str) -> Turn:
    return Turn("error", text, error=message)


# --- whole responses --------------------------------------------------------------------------------------


def split_observations(text: str) -> list[str]:
    """``text`` cut around its observations: each ``<item_list>...</item_list>`` block, with an optional
    ``<feedback>...</feedback>`` block after it (whitespace between them allowed), is removed and the policy
    text between them is returned, in order (the first and last pieces may be empty).

    Linear in ``len(text)``: every search starts where the previous one of its kind ended, so no character
    is scanned more than a few times, whatever the text (a regular expression with ``.*?`` rescanned the
    rest of the text at every unclosed ``<item_list>``: 2 minutes at 220K characters). Only ``str.find`` and
    ``str.startswith`` read the text, which lets a test count the work.
    """
    pieces: list[str] = []
    piece_start = 0  # where the current piece of policy text began
    search = 0  # where to look for the next <item_list>
    feedback_close = 0  # the next </feedback> at or after the current observation (-1: there is none)
    while True:
        start = text.find(ITEM_LIST_OPEN, search)
        if start < 0:
            break
        close = text.find(ITEM_LIST_CLOSE, start + len(ITEM_LIST_OPEN))
        if close < 0:  # no </item_list> after this <item_list>, so none after any later one either
            break
        end = close + len(ITEM_LIST_CLOSE)
        after = end
        while after < len(text) and text[after].isspace():
            after += 1
        if text.startswith(FEEDBACK_OPEN, after):
            body = after + len(FEEDBACK_OPEN)
            if 0 <= feedback_close < body:
                feedback_close = text.find(FEEDBACK_CLOSE, body)
            if feedback_close >= 0:
                end = feedback_close + len(FEEDBACK_CLOSE)
        pieces.append(text[piece_start:start])
        piece_start = search = end
    pieces.append(text[piece_start:])
    return pieces


@dataclass(frozen=True)
class TranscriptCheck:
    """The verdict on a whole response text: its turns, the answer, the end reason and ``format_ok``."""

    turns: list[Turn] = field(default_factory=list)
    end_reason: str = "format_error"
    answer: str | None = None
    error: str | None = None

    @property
    def format_ok(self) -> bool:
        return self.end_reason == "answered"


def parse_transcript(text: str, max_groundings: int = 6) -> TranscriptCheck:
    """Apply the whole format rule to a response (policy turns with observations between them).

    For texts whose token segments are unknown: demonstrations, logs, another system's transcripts. Each
    ``<item_list>...</item_list>`` block (with an optional ``<feedback>`` block after it) is taken as an
    observation, so a policy that writes those tags itself is only caught by the token-level
    :class:`~mgfrec.agent.trajectory.Trajectory`, which knows who wrote each token. Text cannot show a
    length limit: an unfinished last turn is a ``format_error`` here. Never raises.
    """
    if not isinstance(text, str):
        return TranscriptCheck(error=f"response must be a string, got {type(text).__name__}")
    turns: list[Turn] = []
    pieces = split_observations(text)
    for n, piece in enumerate(pieces):
        turn = parse_turn(piece)
        turns.append(turn)
        last = n == len(pieces) - 1
        if not turn.ok:
            return TranscriptCheck(turns, "format_error", error=f"turn {n + 1}: {turn.error}")
        if turn.kind == "ground":
            if n >= max_groundings:
                return TranscriptCheck(
                    turns,
                    "grounding_limit",
                    error=f"turn {n + 1}: grounding {n + 1} exceeds max_groundings={max_groundings}",
                )
            if last:
                return TranscriptCheck(
                    turns,
                    "format_error",
                    error=f"turn {n + 1}: the response ends with a <ground> and no observation or answer",
                )
        elif not last:
            return TranscriptCheck(turns, "format_error", error=f"turn {n + 1}: an <answer> followed by an observation")
    return TranscriptCheck(turns, "answered", answer=turns[-1].title)

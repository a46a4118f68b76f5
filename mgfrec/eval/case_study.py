"""Fig. 4's case study: one recommendation trajectory as literal markdown text.

:func:`trajectory_markdown` turns a ``Recommendation.to_dict`` output (``mgfrec recommend --json``, a demo's
case study) into a page with the history, the recall list, every think/ground/answer turn with its grounded
items and feedback, and the final top items. Catalogue titles and policy text are untrusted: every one is
written as literal text, so a title holding ``|``, ``<answer>`` or a list marker cannot change the page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mgfrec.text.terminal import terminal_safe

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|#~])")
_BLOCK_START = re.compile(r"^(\d+)([.)])|^([-+=>])")


def _md(text: Any) -> str:
    """``text`` as literal markdown on one line: ``&``, ``<``, ``>`` as entities (a title like ``<answer>x</answer>``
    is not hidden as HTML), markdown punctuation (``|`` included: a table cell stays one cell) backslash-escaped,
    a start that would open a list or quote escaped, whitespace runs (newlines too) one space, and the characters
    a terminal acts on (``cat case.md``: ESC, BEL, bidi overrides) written as their escapes."""
    value = terminal_safe(" ".join(str(text).split())).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _MARKDOWN_PUNCTUATION.sub(r"\\\1", value)
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", value)


def _code(text: Any) -> str:
    """``text`` as inline code, fenced by more backticks than it holds in a row (terminal controls escaped)."""
    value = terminal_safe(" ".join(str(text).split()))
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}".replace("|", "\\|")


MARK = "<!-- a case study written by mgfrec (trajectory_markdown) -->"
"""The last line of every page :func:`trajectory_markdown` writes (hidden when the markdown is rendered): what
lets ``recommend --markdown`` replace an earlier case study, and nothing else."""


def trajectory_markdown(trajectory: Mapping[str, Any], title: str = "Case study") -> str:
    """Fig. 4: a trajectory (``Recommendation.to_dict`` output) as markdown: history, each think/ground/
    answer turn with the grounded items and the user agent's feedback, then the final top items. Every title,
    thought and feedback is written as literal text (see :func:`_md`), whatever characters it holds."""
    lines = [f"# {_md(title)}", "", "## History", ""]
    lines += [f"{n}. {_md(h['title'])}" for n, h in enumerate(trajectory.get("history", []), 1)] or ["(none)"]
    if trajectory.get("recall"):
        lines += ["", "## Recall list", ""] + [f"- {_md(r['title'])}" for r in trajectory["recall"]]
    lines += ["", "## Trajectory", ""]
    for n, turn in enumerate(trajectory.get("turns", []), 1):
        lines.append(f"### Turn {n}: {_md(turn.get('kind'))}")
        if turn.get("think"):
            lines += [""] + ["> " + _md(line) for line in str(turn["think"]).splitlines() if line.strip()]
        if turn.get("title") is not None:
            lines += ["", f"**{_md(turn['kind'])}:** {_md(turn['title'])}"]
        if turn.get("items"):
            lines += ["", "Grounded items:"] + [f"- {_md(i['title'])} ({_code(i['item_id'])})" for i in turn["items"]]
        if turn.get("feedback"):
            lines += ["", f"**Feedback:** {_md(turn['feedback'])}"]
        if turn.get("error"):
            lines += ["", f"**Error:** {_md(turn['error'])}"]
        lines.append("")
    if trajectory.get("kind") == "baseline":  # no agent: "Answer: None / End: None; format valid: None"
        lines += ["A baseline run: ranked by its scorer, no trajectory.", ""]
    else:
        end = (
            f"**End:** {_md(trajectory.get('end_reason'))}; format valid: {trajectory.get('format_ok')}; "
            f"groundings: {trajectory.get('groundings')}"
        )
        lines += [f"**Answer:** {_md(trajectory.get('answer'))}  ", end, ""]
    target = trajectory.get("target")
    if isinstance(target, Mapping):  # a split sample: the terminal and --json said where it landed, the page did not
        lines += [
            f"**Target:** {_md(target.get('title'))} ({_code(target.get('item_id'))}), at place "
            f"{target.get('rank')} of every item (sample {target.get('sample_id')})",
            "",
        ]
    if trajectory.get("top"):
        lines += [
            "## Top recommendations",
            "",
            "| rank | title | item | score |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {_md(t['title'])} | {_code(t['item_id'])} | {t['score']:.4f} |"
            for n, t in enumerate(trajectory["top"], 1)
        ]
    return "\n".join([*lines, "", MARK]) + "\n"


def write_trajectory_markdown(trajectory: Mapping[str, Any], path: str | Path, title: str = "Case study") -> Path:
    """Write :func:`trajectory_markdown` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trajectory_markdown(trajectory, title), encoding="utf-8")
    return path


def is_case_study(path: str | Path) -> bool:
    """Whether ``path`` is a page :func:`trajectory_markdown` wrote, so that writing another case study over it
    loses nothing of anyone's: one ending in :data:`MARK`, or (written before the mark) one with every section
    and line such a page has, in order, and nothing after its end. Only a regular file is read (a pipe or a
    terminal would wait for input)."""
    if not Path(path).is_file():
        return False
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if text.endswith(MARK + "\n"):
        return True
    order = ["# ", "\n\n## History\n\n", "\n\n## Trajectory\n\n", "\n**Answer:** ", "\n**End:** ", "; format valid: "]
    at = 0
    for piece in order:
        at = text.find(piece, at)
        if at < 0 or (piece == "# " and at != 0):
            return False
    tail = text[at:].split("\n## Top recommendations\n", 1)[-1]
    return all(line.startswith("|") or not line.strip() for line in tail.splitlines()[1:])

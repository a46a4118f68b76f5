"""Fig. 4's case study: every step of a trajectory in order, and every title written as literal markdown."""

from __future__ import annotations

import pytest

from mgfrec.eval.case_study import is_case_study, trajectory_markdown, write_trajectory_markdown

TRAJECTORY = {
    "history": [{"item_idx": 1, "item_id": "A1", "title": "Kind of Blue"}],
    "recall": [{"item_idx": 2, "item_id": "B2", "title": "Blue Train"}],
    "turns": [
        {
            "kind": "ground",
            "think": "likes cool jazz",
            "title": "cool jazz trumpet",
            "error": None,
            "items": [{"item_idx": 3, "item_id": "C3", "title": "Birth of the Cool"}],
            "feedback": "closer to hard bop",
        },
        {"kind": "answer", "think": "hard bop then", "title": "Moanin'", "error": None},
    ],
    "answer": "Moanin'",
    "end_reason": "answered",
    "format_ok": True,
    "groundings": 1,
    "top": [{"item_idx": 4, "item_id": "D4", "title": "Moanin'", "score": 0.93}],
}


def test_trajectory_markdown_shows_every_step_in_order(tmp_path):
    md = trajectory_markdown(TRAJECTORY)
    order = [
        "Kind of Blue",
        "Blue Train",
        "likes cool jazz",
        "cool jazz trumpet",
        "Birth of the Cool",
        "closer to hard bop",
        "hard bop then",
        "**Answer:** Moanin'",
        "| 1 | Moanin' | `D4` | 0.9300 |",
    ]
    positions = [md.index(text) for text in order]
    assert positions == sorted(positions)
    path = write_trajectory_markdown(TRAJECTORY, tmp_path / "case" / "case.md")
    assert path.read_text(encoding="utf-8") == md


def test_a_split_samples_page_says_where_its_target_landed(tmp_path):
    """`recommend --split test --markdown` left the target and its place out of the page; the terminal and --json
    said them (review s32)."""
    sample = {**TRAJECTORY, "target": {"item_idx": 4, "item_id": "D4", "title": "Moanin'", "rank": 1, "sample_id": 7}}
    md = trajectory_markdown(sample)
    assert "**Target:** Moanin' (`D4`), at place 1 of every item (sample 7)" in md
    assert md.index("**End:**") < md.index("**Target:**") < md.index("## Top recommendations")
    assert "**Target:**" not in trajectory_markdown(TRAJECTORY)  # a typed history has none
    assert is_case_study(write_trajectory_markdown(sample, tmp_path / "case.md"))


def test_trajectory_markdown_writes_every_title_as_literal_text():
    """A '|' in a title split its table row into five cells, and '<answer>x</answer>' rendered as hidden HTML."""
    import html
    import re

    from markdown_it import MarkdownIt

    odd = ["Live | Deluxe Edition", "<answer>x</answer>", "A & B *hot* _x_ [1]", "1. Intro", "- B-side", "`tick` #2"]
    trajectory = {
        "history": [{"title": t} for t in odd],
        "recall": [{"title": t} for t in odd],
        "turns": [
            {
                "kind": "ground",
                "think": "line one\n<feedback>not mine</feedback>",
                "title": odd[1],
                "error": None,
                "items": [{"title": t, "item_id": f"id|`{n}`"} for n, t in enumerate(odd)],
                "feedback": "a | b\nc",
            },
        ],
        "answer": odd[0],
        "end_reason": "answered",
        "format_ok": True,
        "groundings": 1,
        "top": [{"title": t, "item_id": f"id|`{n}`", "score": -0.1} for n, t in enumerate(odd)],
    }
    page = MarkdownIt("commonmark").enable("table").render(trajectory_markdown(trajectory))
    assert "<answer>" not in page and "<feedback>" not in page  # shown as text, never as markup
    rows = re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)[1:]  # the header row first
    cells = [re.findall(r"<td>(.*?)</td>", row, flags=re.S) for row in rows]
    assert [len(c) for c in cells] == [4] * len(odd)
    assert [html.unescape(c[1]) for c in cells] == odd
    assert [html.unescape(re.sub(r"</?code>", "", c[2])) for c in cells] == [f"id|`{n}`" for n in range(len(odd))]
    history = re.search(r"<ol>(.*?)</ol>", page, flags=re.S)[1]
    assert [html.unescape(t) for t in re.findall(r"<li>(.*?)</li>", history)] == odd


def test_only_a_page_mgfrec_wrote_counts_as_a_case_study(tmp_path):
    """'# title' and a '## History' section in the first 4 kB was the rule: a user's experiment log matched it,
    and `recommend --markdown notes.md` would have written over it."""
    from mgfrec.eval.case_study import MARK, is_case_study

    page = trajectory_markdown(TRAJECTORY)
    assert page.endswith(MARK + "\n")
    cases = {
        "page.md": (page, True),
        "older.md": (page.replace(MARK + "\n", ""), True),  # written before the mark: every section, in order
        "notes.md": ("# Experiment log\n\n## History\n\n- tried sasrec\n", False),
        "older-with-notes.md": (page.replace(MARK + "\n", "") + "\nmy notes: rerun with seed 2\n", False),
        "config.yaml": ("data:\n  source: csv\n", False),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert is_case_study(tmp_path / name) is expected, name
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe# x")
    assert not is_case_study(tmp_path / "binary.md") and not is_case_study(tmp_path / "missing.md")


@pytest.mark.reliability
def test_terminal_controls_in_feedback_and_titles_are_written_as_escapes():
    """The page kept a user agent's ESC and BEL bytes raw: `cat case.md` cleared the screen and retitled the
    terminal (the terminal view escaped them)."""
    trajectory = {
        "history": [{"title": "Song \u202eevil"}],
        "turns": [
            {
                "kind": "ground",
                "think": "hm",
                "title": "Bell\x07",
                "items": [{"title": "A", "item_id": "i\x1b1"}],
                "feedback": "\x1b[2J\x1b]0;PWNED\x07 quiet please",
            }
        ],
        "answer": "A",
    }
    page = trajectory_markdown(trajectory)
    assert not any(c in page for c in ("\x1b", "\x07", "\u202e")), repr(page)
    assert "x1b\\[2J" in page and "quiet please" in page


def test_a_baseline_runs_case_study_and_table_say_what_ranked_it_not_none():
    """A baseline run has no answer, end or format: the page said "**Answer:** None" / "**End:** None; format
    valid: None" and the table "top 2 for the answer: None"."""
    from mgfrec.cli.common import top_title

    baseline = {
        "kind": "baseline",
        "history": [{"title": "Toy Story"}],
        "turns": [],
        "answer": None,
        "end_reason": None,
        "format_ok": None,
        "groundings": 0,
        "top": [
            {"title": "Star Wars", "item_id": "50", "score": 47.0},
            {"title": "Fargo", "item_id": "7", "score": 9.0},
        ],
    }
    page = trajectory_markdown(baseline)
    assert "A baseline run: ranked by its scorer, no trajectory." in page and "None" not in page
    assert top_title(baseline) == "top 2 (ranked by the run's scorer)"
    assert top_title({**baseline, "kind": "agent", "answer": "Fargo"}) == "top 2 for the answer: Fargo"

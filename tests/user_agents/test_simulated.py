"""The ``simulated`` backend: what it says, that it is deterministic, batched, and blind to the target."""

from __future__ import annotations

import dataclasses
import re

import pytest
from uakit import ToyEmbed

from mgfrec.user_agents.base import FeedbackRequest, UserAgentContext, UserAgentError
from mgfrec.user_agents.simulated import SimulatedOptions, SimulatedUserAgent

JAZZ_FAN = FeedbackRequest(
    history_titles=["Blue Note Jazz Classics", "Metal Mayhem Live", "Jazz at the Vanguard", "Late Night Jazz Piano"],
    grounded_title="Thrash Metal Anthology",
    item_titles=["Heavy Metal Thunder", "Smooth Jazz Evening", "Country Roads Collection", "Metal Fury"],
)


def agent(embed, **options) -> SimulatedUserAgent:
    return SimulatedUserAgent(None, SimulatedOptions(**options), UserAgentContext(embed=embed))


def sentence(text: str, marker: str) -> str:
    return next(s for s in re.split(r"(?<=\.)\s", text) if marker in s)


def test_names_the_listed_item_that_fits_the_history_and_the_one_that_does_not(toy_embed):
    text = agent(toy_embed).feedback([JAZZ_FAN])[0]
    assert "Blue Note Jazz Classics" in sentence(text, "I mostly like")  # the interest summary
    assert '"Thrash Metal Anthology" is not really what I am looking for.' in text
    best = sentence(text, "me best")
    assert '"Smooth Jazz Evening"' in best and "Metal" not in best and "Country" not in best
    assert '"Country Roads Collection" is far from my taste.' in text
    assert re.search(r'Try something closer to "[^"]*Jazz[^"]*" and away from "Country Roads Collection"\.', text)


def test_a_grounding_that_fits_is_affirmed(toy_embed):
    fits = dataclasses.replace(
        JAZZ_FAN, grounded_title="Jazz Piano Trio", item_titles=["Smooth Jazz Evening", "Jazz Live"]
    )
    text = agent(toy_embed).feedback([fits])[0]
    assert '"Jazz Piano Trio" fits my taste well.' in text
    assert "Keep looking in this direction." in text


def test_same_input_same_text_across_instances_and_batches(toy_embed):
    other = dataclasses.replace(JAZZ_FAN, grounded_title="Jazz Piano Trio")
    alone = agent(ToyEmbed()).feedback([JAZZ_FAN])
    batched = agent(toy_embed).feedback([other, JAZZ_FAN, other])
    assert batched[1] == alone[0]
    assert batched[0] == batched[2]


def test_one_embed_call_per_batch_with_only_the_requests_titles(toy_embed):
    target = "The Held-Out Target Album"  # what the user will really pick next: never part of a request
    assert {f.name for f in dataclasses.fields(FeedbackRequest)} == {"history_titles", "grounded_title", "item_titles"}
    with pytest.raises(TypeError):
        FeedbackRequest(history_titles=[], grounded_title="x", item_titles=[], target=target)  # type: ignore[call-arg]
    batch = [JAZZ_FAN, dataclasses.replace(JAZZ_FAN, grounded_title="Jazz Piano Trio")]
    agent(toy_embed).feedback(batch)
    assert len(toy_embed.calls) == 1
    seen = set(toy_embed.calls[0])
    assert target not in seen
    assert seen == {t for r in batch for t in (*r.history_titles, r.grounded_title, *r.item_titles)}


def test_edge_cases_still_give_feedback(toy_embed):
    ua = agent(toy_embed)
    no_items, one_item_history, no_history = ua.feedback(
        [
            dataclasses.replace(JAZZ_FAN, item_titles=[]),
            FeedbackRequest(["Kind of Blue Jazz"], "Jazz Piano", ["Smooth Jazz Evening", "Metal Fury"]),
            FeedbackRequest([], "Jazz Piano", ["Smooth Jazz Evening"]),
        ]
    )
    assert "The search found nothing for it." in no_items
    assert '"Smooth Jazz Evening"' in one_item_history
    assert "I have not interacted with anything yet" in no_history
    assert ua.feedback([]) == []
    assert ua.stats()["calls"] == 3


def test_needs_an_embed_function_and_a_row_per_title():
    with pytest.raises(UserAgentError, match="UserAgentContext\\(embed=...\\)"):
        SimulatedUserAgent(None, None, UserAgentContext())
    bad = agent(lambda titles: ToyEmbed()(titles)[:1])
    with pytest.raises(UserAgentError, match="one row per title"):
        bad.feedback([JAZZ_FAN])


@pytest.mark.slow
def test_with_real_minilm_embeddings_the_jazz_item_fits_a_jazz_history(minilm):
    history = [
        "Essential Jazz Piano Classics",
        "Late Night Jazz Saxophone Ballads",
        "The Best of Cool Jazz",
        "Jazz Trumpet Legends",
    ]
    items = [
        "Heavy Metal Guitar Anthems",
        "Modern Jazz Quartet Favourites",
        "Country Music Hits of the 90s",
        "Children's Nursery Rhymes",
    ]
    text = agent(minilm.encode).feedback([FeedbackRequest(history, "Smooth Jazz Saxophone Collection", items)])[0]
    best = sentence(text, "me best")
    assert '"Modern Jazz Quartet Favourites"' in best
    assert not any(other in best for other in (items[0], items[2], items[3]))


def test_a_title_with_a_line_break_is_quoted_on_one_line(toy_embed):
    """Titles are on one line wherever a model is shown them; the simulated user quoted them as written (s39)."""
    broken = dataclasses.replace(JAZZ_FAN, history_titles=["Late Night\nJazz Piano", *JAZZ_FAN.history_titles[1:]])
    text = agent(toy_embed).feedback([broken])[0]
    assert "\n" not in text and '"Late Night Jazz Piano"' in text

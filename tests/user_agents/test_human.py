"""The ``human`` user agent: a person's feedback through a callback, clean timeouts and cancellation, and its
refusal wherever no person can answer (training, SFT, evaluation)."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from mgfrec.cli.main import app
from mgfrec.config.schema import UserAgentConfig
from mgfrec.registry import registry
from mgfrec.user_agents.base import (
    FeedbackRequest,
    UserAgentContext,
    UserAgentError,
    load_user_agent,
    require_automatic,
)
from mgfrec.user_agents.human import ANSWER_NOW, FeedbackCancelled, FeedbackTimeout, HumanUserAgent

REQ = FeedbackRequest(("Kind of Blue", "A Love Supreme"), "Blue Train", ("Blue Train", "Giant Steps"))


class Echo:
    """An automatic fallback user agent that names the grounded title."""

    def feedback(self, requests):
        return [f"machine on {r.grounded_title}" for r in requests]


def person(agent_box: list, answers: list):
    """An ``ask`` callback that answers from another thread, as a page or a terminal would."""

    def ask(request: FeedbackRequest) -> None:
        assert request == REQ
        action = answers.pop(0)
        threading.Thread(target=lambda: action(agent_box[0])).start()

    return ask


def build(answers: list, timeout_s: float = 30.0, fallback=None) -> HumanUserAgent:
    box: list = []
    agent = load_user_agent(
        UserAgentConfig(backend="human", options={"timeout_s": timeout_s}),
        UserAgentContext(ask=person(box, answers), fallback=fallback),
    )
    box.append(agent)
    return agent


def test_built_through_the_registry_and_answers_with_what_the_person_typed():
    assert registry().load("user_agent", "human") is HumanUserAgent
    agent = build(
        [lambda a: a.reply("  too loud  "), lambda a: a.reply(None), lambda a: a.answer_now()], fallback=Echo()
    )
    assert agent.feedback([REQ, REQ, REQ]) == ["too loud", "machine on Blue Train", ANSWER_NOW]
    assert agent.stats()["calls"] == 3 and agent.waiting is None


def test_feedback_that_shows_nothing_is_left_to_the_run_user_agent():
    """A zero-width space alone (or a BOM, or NUL) reached the agent as feedback, where a history refused it as
    blank (review s36): it is Enter, the run's user agent answers."""
    agent = build([lambda a: a.reply("\u200b"), lambda a: a.reply("\ufeff \x00")], fallback=Echo())
    assert agent.feedback([REQ, REQ]) == ["machine on Blue Train", "machine on Blue Train"]


class Down:
    """The run's own user agent with its server down: every request fails after its retries."""

    def feedback(self, requests):
        raise UserAgentError("user agent backend 'openai' at http://127.0.0.1:9/v1 (model m): HTTP status 500")


def enter_then_type(fallback, typed: str) -> tuple[HumanUserAgent, list]:
    """A person who presses Enter (the run's user agent, ``fallback``, answers), then types ``typed``; the notes
    they were shown before each reply."""
    notes: list = []
    box: list = []
    answers = [lambda a: a.reply(None), lambda a: a.reply(typed)]

    def ask(request):
        notes.append(box[0].take_note())
        person(box, answers)(request)

    agent = load_user_agent(
        UserAgentConfig(backend="human", options={"timeout_s": 30}), UserAgentContext(ask=ask, fallback=fallback)
    )
    box.append(agent)
    assert agent.feedback([REQ]) == [typed]
    return agent, notes


def test_a_failing_fallback_asks_the_person_again_and_says_why():
    """Enter (the automatic user) with the run's user agent failing ended the whole conversation (chat: exit 1);
    the person is now asked again about the same grounding, told that the automatic feedback failed."""
    agent, notes = enter_then_type(Down(), "fine, I will type it")
    assert notes[0] is None and "the automatic feedback failed" in notes[1] and "HTTP status 500" in notes[1]
    assert agent.take_note() is None  # said once


@pytest.mark.reliability
def test_the_note_of_a_failing_fallback_shows_no_key_the_environment_holds(monkeypatch):
    """A plugin backend's error quoting its token reached chat's screen (and serve's log) whole in the note, where
    every other error line the CLI prints is scrubbed (review s35)."""
    monkeypatch.setenv("ACME_API_TOKEN", "tok-VERYSECRET-0123456789")

    class Leaky:
        def feedback(self, requests):
            raise UserAgentError("plugin at https://bob:pw123456@api.example: rejected tok-VERYSECRET-0123456789")

    _, notes = enter_then_type(Leaky(), "typed")
    assert "rejected <redacted>" in notes[1]
    assert "VERYSECRET" not in notes[1] and "pw123456" not in notes[1]


def test_enter_without_a_fallback_gives_no_feedback_and_long_text_is_refused():
    agent = build([lambda a: a.reply("   ")])
    assert agent.feedback([REQ]) == [""]
    with pytest.raises(ValueError, match="at most 2000"):
        agent.reply("x" * 2001)
    with pytest.raises(ValueError, match=r"feedback: not valid UTF-8 text \(character 4\)"):
        agent.reply("caf\udce9")  # bytes a Latin-1 terminal sent: the tokenizer failed on them


def test_one_reply_per_grounding():
    errors = []

    def twice(request):  # runs while the first grounding is asked, before the agent reads the reply
        agent.reply("first")
        try:
            agent.reply("second, a double click")
        except LookupError as exc:
            errors.append(str(exc))

    agent = load_user_agent(UserAgentConfig(backend="human"), UserAgentContext(ask=twice))
    assert agent.feedback([REQ]) == ["first"]
    assert len(errors) == 1 and "no grounding is waiting" in errors[0]  # the double click was refused
    with pytest.raises(LookupError):
        agent.answer_now()  # nothing is asked now


def test_nobody_answering_times_out_and_cancel_releases_a_waiting_rollout():
    agent = build([lambda a: None], timeout_s=0.2)
    with pytest.raises(FeedbackTimeout, match="no feedback within 0.2 s"):
        agent.feedback([REQ])
    assert agent.waiting is None and agent.stats()["errors"] == 1
    agent = build([lambda a: a.cancel("the page was closed")])
    with pytest.raises(FeedbackCancelled, match="the page was closed"):
        agent.feedback([REQ])
    with pytest.raises(FeedbackCancelled):  # and it stays cancelled
        agent.feedback([REQ])
    # feedback sent after the end is told so: it was "none was asked, or it was answered" (review s32)
    with pytest.raises(LookupError, match=r"^no grounding is waiting for feedback: the conversation ended \(the page"):
        agent.reply("too late")


def test_without_a_person_it_cannot_be_built_or_chosen_for_training():
    with pytest.raises(UserAgentError, match="needs a person"):
        load_user_agent(UserAgentConfig(backend="human"))
    with pytest.raises(ValueError, match="user_agent.backend 'human'.*cannot be used for GRPO training"):
        require_automatic(UserAgentConfig(backend="human"), "GRPO training")
    require_automatic(UserAgentConfig(backend="simulated"), "GRPO training")  # automatic backends pass


@pytest.mark.parametrize("command", [["fit", "--user-agent", "human"], ["sft", "--set", "user_agent.backend=human"]])
def test_fit_and_sft_refuse_it_with_one_line(command, tmp_path):
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    ds = prepare(
        DataConfig(source="synthetic", options={"n_users": 20, "n_items": 30, "n_artists": 10}), tmp_path / "d"
    )
    result = CliRunner().invoke(app, [command[0], "--data", str(ds.root), "--out", str(tmp_path / "out"), *command[1:]])
    assert result.exit_code == 2, result.output
    assert "user_agent.backend 'human' needs a person" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "recall").exists()  # refused before any work


def test_a_feedback_timeout_beyond_a_week_is_refused_and_the_message_names_the_flag():
    """--feedback-timeout inf was accepted, and every wait then failed ("timestamp out of range for platform
    time_t"); the timeout message named user_agent.options.timeout_s, which no config accepts."""
    from pydantic import ValidationError

    from mgfrec.user_agents.human import MAX_TIMEOUT_S, HumanOptions

    for bad in (float("inf"), 1e12, MAX_TIMEOUT_S + 1):
        with pytest.raises(ValidationError):
            HumanOptions(timeout_s=bad)
    assert HumanOptions(timeout_s=MAX_TIMEOUT_S).timeout_s == MAX_TIMEOUT_S
    agent = build([lambda a: None], timeout_s=0.1)
    with pytest.raises(FeedbackTimeout, match=r"\(--feedback-timeout\)"):
        agent.feedback([REQ])
    for command in (["serve", "RUN"], ["chat", "RUN", "--user", "u"]):
        result = CliRunner().invoke(app, [*command, "--feedback-timeout", "inf"])
        assert result.exit_code == 2 and "--feedback-timeout" in result.output, result.output

"""The environment step over a real grounding engine (MiniLM), and the final ranking that feeds the reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CATALOGUE

from mgfrec.agent.environment import Environment
from mgfrec.agent.final_ranking import FinalRanking, answer_ranks, reward_inputs
from mgfrec.agent.trajectory import Trajectory
from mgfrec.config.schema import AgentConfig
from mgfrec.ranking.metrics import history_mask, target_ranks
from mgfrec.rewards.compose import build_reward
from mgfrec.user_agents.none import NoFeedbackAgent

pytestmark = pytest.mark.slow  # loads the embedding model once per session

HISTORY = ("Abbey Road", "Let It Be")


def turn(tokenizer, text):
    """A sampled turn as the engine would return it (ids, log-probs, text)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids, [-0.5] * len(ids), text


def new_traj(tokenizer, history=HISTORY, **limits):
    prompt = tokenizer.encode("prompt", add_special_tokens=False)
    return Trajectory(prompt, history, AgentConfig(**limits))


class Counting:
    """Wraps the real engine and counts its ground() calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def ground(self, titles, k=None):
        self.calls.append(list(titles))
        return self.inner.ground(titles, k)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_one_batched_grounding_and_one_feedback_call_per_step(grounding, tokenizer, spy_agent):
    engine = Counting(grounding)
    env = Environment(engine, tokenizer, spy_agent)
    trajs = [new_traj(tokenizer), new_traj(tokenizer, ("Thriller",)), new_traj(tokenizer)]
    trajs[0].add_turn(*turn(tokenizer, "<think>jazz</think><ground>Kind of Blue</ground>"))
    trajs[1].add_turn(*turn(tokenizer, "<think>xmas</think><ground>christmas songs</ground>"))
    trajs[2].add_turn(*turn(tokenizer, "<think>done</think><answer>Rumours</answer>"))
    served = env.step(trajs)
    assert served == trajs[:2]
    assert engine.calls == [["Kind of Blue", "christmas songs"]]
    assert len(spy_agent.batches) == 1
    (req0, req1) = spy_agent.batches[0]
    expected = grounding.ground(["Kind of Blue", "christmas songs"])
    assert req0.history_titles == HISTORY and req0.grounded_title == "Kind of Blue"
    assert list(req0.item_titles) == grounding.item_titles(expected[0])
    assert req1.history_titles == ("Thriller",) and "Christmas with the Rat Pack" in req1.item_titles
    step = trajs[0].steps[0]
    assert list(step.item_indices) == expected[0] and step.item_indices[0] == CATALOGUE.index("Kind of Blue")
    assert step.feedback == "I like Kind of Blue."
    obs = trajs[0].segments[-1]
    listed = "\n".join(f"{n}. {t}" for n, t in enumerate(step.item_titles, 1))
    assert obs.text == f"\n<item_list>\n{listed}\n</item_list>\n<feedback>\nI like Kind of Blue.\n</feedback>\n"
    assert list(obs.token_ids) == tokenizer.encode(obs.text, add_special_tokens=False)
    assert trajs[0].num_groundings == 1 and trajs[0].next_budget() > 0
    assert env.step(trajs) == []  # nothing pending: no calls at all
    assert len(engine.calls) == 1 and len(spy_agent.batches) == 1


@pytest.mark.parametrize("agent", [None, NoFeedbackAgent()])
def test_without_feedback_the_block_is_left_out(grounding, tokenizer, agent):
    traj = new_traj(tokenizer)
    traj.add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
    Environment(grounding, tokenizer, agent).step([traj])
    text = traj.segments[-1].text
    assert "<item_list>\n1. Rumours\n" in text and "<feedback>" not in text and text.endswith("</item_list>\n")


def test_a_user_agent_that_answers_wrongly_is_named(grounding, tokenizer):
    class Short:
        def feedback(self, requests):
            return []

    traj = new_traj(tokenizer)
    traj.add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
    with pytest.raises(ValueError, match="Short.feedback returned 0 answers for 1 requests"):
        Environment(grounding, tokenizer, Short()).step([traj])
    from mgfrec.registry import Registry, use_registry

    reg = Registry.discover()
    reg.add("user_agent", "u-short", Short)
    traj = new_traj(tokenizer)
    traj.add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
    chosen = r"^user_agent 'u-short' \(.*Short, from python:.*\): feedback returned 0 answers"  # as it was chosen
    with use_registry(reg), pytest.raises(ValueError, match=chosen):
        Environment(grounding, tokenizer, Short()).step([traj])

    class Nones:  # a TypeError (a traceback in the CLI) where the short answer above was one line
        def feedback(self, requests):
            return [None for _ in requests]

    class NoArgs:  # the wrong signature: a TypeError at mgfrec's call, with no frame of the plugin
        def feedback(self):
            return []

    import threading

    from mgfrec.recommend import Locked

    locked = Locked(Nones(), threading.RLock(), ["feedback"])  # recommend's wrapper was named, not the plugin
    cases = ((Nones(), "Nones.feedback answer 0"), (NoArgs(), "NoArgs.feedback cannot be"), (locked, "Nones.feed"))
    for agent, words in cases:
        traj = new_traj(tokenizer)
        traj.add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
        with pytest.raises(ValueError, match=words):
            Environment(grounding, tokenizer, agent).step([traj])


def test_scripted_rollout_to_rewards(grounding, tokenizer, spy_agent):
    """The loop as the rollout runs it, with scripted turns in place of a model, down to eq. 8 rewards."""
    scripts = [
        ["<think>a</think><ground>jazz classics</ground>", "<think>b</think><answer>Kind of Blue</answer>"],
        [
            "<think>a</think><ground>x</ground>",
            "<think>b</think><ground>y</ground>",
            "<think>c</think><ground>z</ground>",
        ],
        ["<think>a</think><item_list>fake</item_list>"],
        ["<think>a</think><answer>Abbey Road</answer>"],
    ]
    trajs = [new_traj(tokenizer, max_groundings=2) for _ in scripts]
    env = Environment(grounding, tokenizer, spy_agent)
    for step in range(4):
        for traj, script in zip(trajs, scripts, strict=False):
            if not traj.done:
                traj.add_turn(*turn(tokenizer, script[step]))
        env.step(trajs)
        if all(t.done for t in trajs):
            break
    assert [t.end_reason for t in trajs] == ["answered", "grounding_limit", "format_error", "answered"]
    assert [len(b) for b in spy_agent.batches] == [2, 1]  # one call per step, only for pending groundings

    kind_of_blue, abbey_road = CATALOGUE.index("Kind of Blue"), CATALOGUE.index("Abbey Road")
    histories = [[0, 1]] * 4
    targets = [kind_of_blue, 3, 3, abbey_road]
    ranks = answer_ranks(trajs, grounding, targets, histories)
    assert ranks[0] == 1 and ranks[1] is None and ranks[2] is None
    # The evaluator's rule, computed directly: full scores, history (never the target) excluded.
    scores = grounding.full_scores(["Abbey Road"])
    direct = target_ranks(scores, torch.tensor([abbey_road]), history_mask([np.array([0, 1])], len(CATALOGUE)))
    assert ranks[3] == int(direct[0]) == 1
    second = grounding.ground(["Abbey Road"], k=2)[0][1]  # the item nearest "Abbey Road" after itself
    others = [kind_of_blue, 3, 3, second]
    assert answer_ranks(trajs, grounding, others, [[]] * 4, exclude_history=False)[3] == 2
    assert answer_ranks(trajs, grounding, others, [[abbey_road]] * 4)[3] == 1  # the history item left out
    assert answer_ranks(trajs, grounding, others, [[abbey_road]] * 4, exclude_history=False)[3] == 2

    inputs = reward_inputs(trajs, grounding, targets, histories)
    assert [i.format_ok for i in inputs] == [True, False, False, True]
    assert [i.groundings for i in inputs] == [1, 2, 0, 0]
    assert [i.end_reason for i in inputs] == ["answered", "grounding_limit", "format_error", "answered"]
    assert inputs[0].num_items == len(CATALOGUE) and inputs[0].extras["answer"] == "Kind of Blue"
    reward = build_reward(["ndcg", "format"])
    assert [reward(i) for i in inputs] == [1.0, -0.5, -0.5, 1.0]
    # The paper's rule given as the run's final ranking reads the same ranks; one over another engine is refused.
    paper = FinalRanking("l2", grounding)
    assert [i.target_rank for i in reward_inputs(trajs, grounding, others, histories, final=paper)] == [
        i.target_rank for i in reward_inputs(trajs, grounding, others, histories)
    ]
    with pytest.raises(ValueError, match="built over another grounding"):
        reward_inputs(trajs, grounding, targets, histories, final=FinalRanking("l2", Counting(grounding)))


def test_rewards_need_finished_trajectories(grounding, tokenizer):
    traj = new_traj(tokenizer)
    traj.add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
    with pytest.raises(ValueError, match="still running"):
        reward_inputs([traj], grounding, [0], [[1]])
    with pytest.raises(ValueError, match="1 trajectories, 2 targets"):
        answer_ranks([traj], grounding, [0, 1], [[1]])


@pytest.mark.reliability
def test_feedback_far_past_its_limit_is_cut_where_the_policy_reads_it(grounding, tokenizer):
    """A user agent that wrote far past its own max_tokens (a server that ignores it, a chatty plugin) filled the
    policy's context: the trajectory ended without an answer. Feedback is cut to agent.max_feedback_tokens."""

    class Chatty:
        def feedback(self, requests):
            return ["Ünïcode rocks " * 4000 if r.grounded_title == "Rumours" else "Short and sweet." for r in requests]

    trajs = [new_traj(tokenizer), new_traj(tokenizer)]
    trajs[0].add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
    trajs[1].add_turn(*turn(tokenizer, "<think>x</think><ground>Abbey Road</ground>"))
    Environment(grounding, tokenizer, Chatty(), max_feedback_tokens=30).step(trajs)
    cut, short = trajs[0].steps[0].feedback, trajs[1].steps[0].feedback
    assert cut.endswith(" [...]") and cut.startswith("Ünïcode rocks") and "\ufffd" not in cut
    assert len(tokenizer.encode(cut.removesuffix(" [...]"), add_special_tokens=False)) <= 30
    assert f"<feedback>\n{cut}\n</feedback>" in trajs[0].segments[-1].text  # what the policy read
    assert len(trajs[0].segments[-1].token_ids) < 120
    assert short == "Short and sweet."  # under the limit: as it was

    from mgfrec.agent.environment import build_environment
    from mgfrec.config.load import load_config

    cfg = load_config(None, ("user_agent.backend=none",))
    assert cfg.agent.max_feedback_tokens == 512  # on by default
    assert build_environment(grounding, tokenizer, cfg).max_feedback_tokens == 512
    uncut = load_config(None, ("user_agent.backend=none", "agent.max_feedback_tokens=null"))
    assert build_environment(grounding, tokenizer, uncut).max_feedback_tokens is None


@pytest.mark.reliability
@pytest.mark.parametrize("reply", ["<b>bold</b> " * 400, "<" * 5000, "\x01\x02" * 2000 + "the end of it all " * 50])
def test_feedback_is_cut_as_the_policy_is_shown_it(grounding, tokenizer, reply):
    """The raw reply was cut, then neutralized: "<" became several byte tokens of "‹", so the block held 206 tokens
    for a limit of 100; and control characters the cut kept were dropped after it, leaving " [...]" alone (s39)."""
    from mgfrec.agent.observation import shown_feedback

    class Fixed:
        def feedback(self, requests):
            return [reply for _ in requests]

    traj = new_traj(tokenizer)
    traj.add_turn(*turn(tokenizer, "<think>x</think><ground>Rumours</ground>"))
    Environment(grounding, tokenizer, Fixed(), max_feedback_tokens=100).step([traj])
    block = traj.segments[-1].text.split("<feedback>\n", 1)[1].rsplit("\n</feedback>", 1)[0]
    assert block.endswith(" [...]")
    assert len(tokenizer.encode(block.removesuffix(" [...]"), add_special_tokens=False)) <= 100
    assert len(block.removesuffix(" [...]").strip()) > 0  # something of the reply is shown
    assert shown_feedback(traj.steps[0].feedback) == block  # the record is what the policy read


def test_a_reply_of_megabytes_is_cut_without_tokenizing_it_whole(grounding, tokenizer):
    """A server ignoring max_tokens answered 5 MB per request, and each answer was tokenized whole before the cut:
    a 1-step fit took 155 s instead of 12. Only a window the limit can reach is read now, with the same cut."""

    class Recording:
        def __init__(self, inner):
            self.inner, self.seen = inner, []

        def encode(self, text, **kw):
            self.seen.append(len(text))
            return self.inner.encode(text, **kw)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    huge = "Too much jazz, not enough blues. " * 150_000  # about 5 MB
    assert Environment(grounding, tokenizer, None, max_feedback_tokens=30).cut_feedback(huge) == whole_cut(
        tokenizer, huge, 30
    )
    env = Environment(grounding, tokenizer, None, max_feedback_tokens=30)
    recording = Recording(tokenizer)
    env.tokenizer = recording
    cut = env.cut_feedback(huge)
    assert max(recording.seen) <= 30 * 64  # never the whole reply
    ids = tokenizer.encode(huge[:100_000], add_special_tokens=False)
    assert cut == tokenizer.decode(ids[:30], skip_special_tokens=False).rstrip() + " [...]"  # as cutting it whole


def whole_cut(tokenizer, text: str, limit: int) -> str:
    """The cut as it was made before the window: from the whole reply's tokens."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= limit:
        return text
    return tokenizer.decode(ids[:limit], skip_special_tokens=False).rstrip("\ufffd").rstrip() + " [...]"


def test_the_window_cuts_a_reply_where_the_whole_reply_would_be_cut():
    """With WordPiece (`preset:tiny-minilm`: blank lines make no token) a reply of exactly 512 tokens whose window
    ended inside a word was cut although it fit, and a longer one was cut mid-word: the window is trusted only
    when it holds well more tokens than the limit."""
    from mgfrec.models.policy import build_minilm_tokenizer

    wordpiece = build_minilm_tokenizer()
    body = "I liked the jazz picks but wanted something more upbeat. " * 46 + "so " * 5
    run = "\n" * (512 * 64 - len(body) - 6)  # the window ends inside the next word
    texts = [body + run + "recommendations", body + run + "recommendations were fine, thanks", "音楽 " * 20_000]
    for text in texts:
        env = Environment(None, wordpiece, None, max_feedback_tokens=512)
        assert env.cut_feedback(text) == whole_cut(wordpiece, text, 512)

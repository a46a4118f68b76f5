"""The multi-turn loop over a real grounding engine (MiniLM) and a real user agent.

A scripted engine exercises grounding, feedback, answering and every end reason deterministically; the hf
engine on the tiny random policy checks that what it samples lands in the trajectories token for token.
"""

from __future__ import annotations

import re

import pytest
import torch

from mgfrec.agent.environment import Environment
from mgfrec.agent.loop import RolloutSample, first_prompts, rollout
from mgfrec.agent.trajectory import EnvironmentSegment, PolicySegment
from mgfrec.config.schema import AgentConfig
from mgfrec.grounding.engine import Grounding
from mgfrec.grounding.exact import ExactGrounder
from mgfrec.rollout.hf_engine import HFEngine
from mgfrec.rollout.logprobs import sequence_logprobs
from mgfrec.rollout.scripted_engine import ScriptedEngine
from mgfrec.user_agents.base import UserAgentContext
from mgfrec.user_agents.simulated import SimulatedUserAgent

pytestmark = pytest.mark.slow  # loads the embedding model once per session

SAMPLES = [
    RolloutSample(("Kind of Blue", "Blue Train"), ("A Love Supreme", "Thriller"), sample_id="jazz"),
    RolloutSample(("Nevermind",), None, sample_id="rock"),
]


@pytest.fixture(scope="module")
def grounding(minilm, catalogue):
    vectors = minilm.encode(catalogue)
    return Grounding(minilm, ExactGrounder(vectors), catalogue, vectors, top_k=3)


@pytest.fixture(scope="module")
def environment(grounding, tiny_policy, minilm):
    user = SimulatedUserAgent(None, None, UserAgentContext(embed=lambda titles: minilm.encode(list(titles))))
    return Environment(grounding, tiny_policy[1], user)


# Per sample index j of the group: the turns it plays, one per turn (a turn's index is the number of
# observations already in its context). Text after a stop is never "sampled": the engine cuts it.
PLANS = {
    0: ["<think>jazz</think><ground>Blue Train</ground> IGNORED", "<think>yes</think><answer>A Love Supreme</answer>"],
    1: [
        "<think>a</think><ground>Thriller</ground>",
        "<think>b</think><ground>Rumours</ground>",
        "<think>c</think><ground>Pet Sounds</ground>",
    ],
    2: ["no tags at all"],
    3: ["<think>" + " and".join(["long"] * 40) + "</think><answer>x</answer>"],
}


def play(context: str, j: int) -> str:
    response = context.split("<|im_start|>assistant\n", 1)[1]  # the system prompt names the tags too
    if "<think>a</think>" in response:  # later turns continue their own trajectory, seen with n=1
        j = 1
    elif "<think>jazz</think>" in response:
        j = 0
    plan = PLANS[j]
    return plan[min(response.count("</item_list>"), len(plan) - 1)]


def _check_token_exact(traj):
    ids, mask, lps = traj.token_ids(), traj.action_mask(), traj.logprobs()
    assert ids[: len(traj.prompt_ids)] == list(traj.prompt_ids)
    assert not any(mask[: len(traj.prompt_ids)])
    pos = len(traj.prompt_ids)
    for seg in traj.segments:
        n = len(seg.token_ids)
        assert ids[pos : pos + n] == list(seg.token_ids)
        expected = 1 if isinstance(seg, PolicySegment) else 0
        assert mask[pos : pos + n] == [expected] * n
        if isinstance(seg, PolicySegment):
            assert lps[pos : pos + n] == list(seg.logprobs)
        pos += n
    assert pos == len(ids) == len(mask) == len(lps)
    assert sum(mask) == traj.response_length


def test_scripted_rollout_grounds_gets_feedback_and_answers(environment, tiny_policy):
    tokenizer = tiny_policy[1]
    engine = ScriptedEngine(tokenizer, play, logprob=-0.25)
    agent = AgentConfig(max_groundings=2, max_new_tokens_per_turn=48, max_new_tokens_total=200, decoding="free")
    result = rollout(engine, environment, SAMPLES, group_size=4, agent=agent, seed=1)
    groups = result.groups()
    assert [len(g) for g in groups] == [4, 4]
    assert [t.sample_id for t in result.trajectories] == ["jazz"] * 4 + ["rock"] * 4
    prompts = first_prompts(SAMPLES, tokenizer)
    for i, group in enumerate(groups):
        for j, traj in enumerate(group):
            assert list(traj.prompt_ids) == prompts[i]
            _check_token_exact(traj)
            assert traj.num_groundings <= agent.max_groundings and traj.end_reason is not None
            assert traj.extras == {"sample_index": i, "group_index": j}
        assert [t.end_reason for t in group] == ["answered", "grounding_limit", "format_error", "length_limit"]
    answered = groups[0][0]
    assert answered.answer == "A Love Supreme" and answered.num_groundings == 1
    first, obs = answered.segments[0], answered.segments[1]
    assert first.text.endswith("</ground>") and "IGNORED" not in answered.response_text()
    assert isinstance(obs, EnvironmentSegment)
    assert answered.steps[0].item_titles[0] == "Blue Train"  # the exact title grounds to itself
    assert "<feedback>" in obs.text and "1. Blue Train" in obs.text
    assert (
        tokenizer.decode(answered.token_ids()) == tokenizer.decode(list(answered.prompt_ids)) + answered.response_text()
    )
    assert groups[0][3].response_length == 48  # the per-turn cap cut the long turn
    # one engine call per turn: the first asks group_size samples per prompt, later ones continue each trajectory
    assert engine.calls[0]["prompts"] == 2 and engine.calls[0]["n"] == 4
    assert [c["prompts"] for c in engine.calls[1:]] == result.stats.live_per_turn[1:] == [4, 2]
    assert result.stats.groundings == sum(t.num_groundings for t in result.trajectories) == 2 * 3
    assert dict(result.stats.end_reasons) == {"answered": 2, "grounding_limit": 2, "format_error": 2, "length_limit": 2}


def test_a_turn_is_cut_to_what_is_left_of_the_total_budget(environment, tiny_policy):
    tokenizer = tiny_policy[1]
    first = tokenizer.encode(PLANS[1][0], add_special_tokens=False)
    agent = AgentConfig(
        max_groundings=4, max_new_tokens_per_turn=48, max_new_tokens_total=len(first) + 3, decoding="free"
    )
    result = rollout(ScriptedEngine(tokenizer, play), environment, SAMPLES[:1], group_size=2, agent=agent)
    traj = result.trajectories[1]
    assert traj.end_reason == "length_limit" and traj.response_length == agent.max_new_tokens_total
    assert traj.segments[-1].token_ids == tuple(tokenizer.encode(PLANS[1][1], add_special_tokens=False)[:3])


def test_recall_titles_reach_the_prompt_only_when_given(tiny_policy):
    tokenizer = tiny_policy[1]
    with_recall, without = (tokenizer.decode(p) for p in first_prompts(SAMPLES, tokenizer))
    assert "A Love Supreme" in with_recall and "Nevermind" in without
    assert re.search(r"recall", without, re.IGNORECASE) is None
    assert with_recall.endswith("<|im_start|>assistant\n")


def test_hf_rollout_records_what_the_policy_sampled(environment, tiny_policy):
    model, tokenizer = tiny_policy
    agent = AgentConfig(max_groundings=2, max_new_tokens_per_turn=12, max_new_tokens_total=30, decoding="free")
    result = rollout(
        HFEngine(model, tokenizer), environment, SAMPLES, group_size=3, agent=agent, temperature=1.0, seed=4
    )
    assert len(result.trajectories) == 6
    for traj in result.trajectories:
        _check_token_exact(traj)
        assert traj.end_reason is not None and traj.num_groundings <= 2
        ids = torch.tensor([traj.token_ids()])
        with torch.no_grad():
            expected = sequence_logprobs(model, ids)[0]
        mask = torch.tensor(traj.action_mask(), dtype=torch.bool)
        assert torch.allclose(torch.tensor(traj.logprobs())[mask], expected[mask], atol=1e-4)
    again = rollout(
        HFEngine(model, tokenizer), environment, SAMPLES, group_size=3, agent=agent, temperature=1.0, seed=4
    )
    assert [t.token_ids() for t in again.trajectories] == [t.token_ids() for t in result.trajectories]
    stats = result.stats
    assert stats.generation_s > 0 and stats.total_s >= stats.generation_s + stats.environment_s
    assert stats.generated_tokens == sum(t.response_length for t in result.trajectories)


def test_context_limit_ends_trajectories_before_they_overflow(environment, tiny_policy):
    model, tokenizer = tiny_policy
    longest = max(len(p) for p in first_prompts(SAMPLES, tokenizer))
    result = rollout(HFEngine(model, tokenizer), environment, SAMPLES, agent=AgentConfig(), max_context=longest + 8)
    assert all(t.end_reason == "length_limit" and t.response_length == 0 for t in result.trajectories)


class GroundFirst:
    """Scripted first turn (a valid <ground>), then the hf engine: hf samples after real observations."""

    def __init__(self, model, tokenizer):
        self.tokenizer = tokenizer
        self.scripted = ScriptedEngine(
            tokenizer, lambda context, j: f"<think>try {j}</think><ground>Kind of Blue</ground>"
        )
        self.hf = HFEngine(model, tokenizer)
        self.calls = 0

    def generate(self, prompts, **kw):
        self.calls += 1
        return (self.scripted if self.calls == 1 else self.hf).generate(prompts, **kw)

    def load_weights(self, state_dict):
        self.hf.load_weights(state_dict)


def test_hf_samples_after_observations_are_recorded_exactly(environment, tiny_policy):
    model, tokenizer = tiny_policy
    agent = AgentConfig(max_groundings=2, max_new_tokens_per_turn=24, max_new_tokens_total=60, decoding="free")
    result = rollout(GroundFirst(model, tokenizer), environment, SAMPLES, group_size=2, agent=agent, seed=9)
    for traj in result.trajectories:
        _check_token_exact(traj)
        assert traj.num_groundings == 1 and len(traj.turns) == 2 and traj.end_reason in ("format_error", "length_limit")
        sampled = traj.segments[2]  # prompt, scripted turn, observation, then the hf turn
        assert isinstance(sampled, PolicySegment) and isinstance(traj.segments[1], EnvironmentSegment)
        ids = torch.tensor([traj.token_ids()])
        with torch.no_grad():
            expected = sequence_logprobs(model, ids)[0, -len(sampled.token_ids) :]
        assert torch.allclose(torch.tensor(sampled.logprobs), expected, atol=1e-4)


def test_a_prompt_too_long_for_the_context_ends_alone(environment, tiny_policy):
    model, tokenizer = tiny_policy
    short, long = sorted(len(p) for p in first_prompts(SAMPLES, tokenizer))
    agent = AgentConfig(max_new_tokens_per_turn=8, max_new_tokens_total=8)
    result = rollout(HFEngine(model, tokenizer), environment, SAMPLES, group_size=2, agent=agent, max_context=short + 8)
    by_length = {len(t.prompt_ids): t for t in result.trajectories}
    assert by_length[long].response_length == 0 and by_length[long].end_reason == "length_limit"
    assert by_length[short].response_length > 0
    assert all(t.end_reason is not None for t in result.trajectories)
    # trained within the context too: the prompt that ended alone was collated whole, past it (review s27)
    from mgfrec.agent.batching import collate
    from mgfrec.models.logprobs import vocab_width

    batch = collate(result.trajectories, tokenizer.pad_token_id, vocab_size=vocab_width(model))
    assert batch.input_ids.shape[1] <= short + 8 and int(batch.action_mask.sum()) == sum(
        t.response_length for t in result.trajectories
    )


def test_a_trajectory_stopped_for_context_is_trained_within_it(environment, tiny_policy):
    """The loop checks each turn's budget against max_context, not the observation after the last turn, which
    stayed in the trajectory training scored: past the model's positions (an index error where positions are
    learned) (review s27). collate leaves out what follows the last policy token, which carries no loss."""
    from mgfrec.agent.batching import collate

    model, tokenizer = tiny_policy
    samples = [RolloutSample(("Nevermind",), ("Thriller", "Rumours"), sample_id="rock")]
    prompt = len(first_prompts(samples, tokenizer)[0])
    turn = "<think>" + " ".join(["Kind"] * 25) + "</think><ground>Thriller</ground>"
    engine = ScriptedEngine(tokenizer, lambda context, j: turn, split_at=("<think>", "</think>", "<ground>"))
    agent = AgentConfig(decoding="free", max_groundings=6, max_new_tokens_per_turn=64, max_new_tokens_total=512)
    result = rollout(engine, environment, samples, agent=agent, max_context=prompt + 64)
    [traj] = result.trajectories
    assert traj.end_reason == "length_limit" and len(traj) > prompt + 64  # its last observation goes past
    batch = collate([traj], tokenizer.pad_token_id)
    last = max(i for i, m in enumerate(traj.action_mask()) if m) + 1
    assert batch.lengths.tolist() == [last] and batch.input_ids.shape[1] == last <= prompt + 64
    assert batch.action_mask[0].sum() == sum(traj.action_mask())  # no policy token left out


def test_an_engine_returning_another_number_of_generations_is_named(environment, tiny_policy):
    """A plugin engine returning one generation where n=2 were asked for was a RuntimeError through Lightning that
    named no engine (review s27)."""
    _, tokenizer = tiny_policy

    class OneShot(ScriptedEngine):
        def generate(self, prompts, **kwargs):
            return [row[:1] for row in super().generate(prompts, **kwargs)]

    engine = OneShot(tokenizer, play)
    said = r"OneShot: generate returned 2 rows of \[1\] generations for 2 prompts with n=2"
    with pytest.raises(ValueError, match=said):
        rollout(engine, environment, SAMPLES, group_size=2, agent=AgentConfig(decoding="free"))


def test_an_engine_whose_generate_takes_other_arguments_is_named(environment, tiny_policy):
    """A plugin engine whose ``generate`` has no ``seed`` failed with a TypeError traceback whose innermost frame
    was mgfrec's, after the recall model was fitted (review s34); docs/plugins.md promises one line naming it."""
    _, tokenizer = tiny_policy

    class NoSeed(ScriptedEngine):
        def generate(self, prompts, *, max_new_tokens, n, temperature, top_p, stop):
            return super().generate(prompts, max_new_tokens=max_new_tokens, n=n)

    with pytest.raises(ValueError, match=r"NoSeed.generate cannot be called as mgfrec calls it \(.*'seed'"):
        rollout(NoSeed(tokenizer, play), environment, SAMPLES, group_size=2, agent=AgentConfig(decoding="free"))


def test_no_row_is_decoded_past_the_context_when_turn_budgets_differ(environment, tiny_policy):
    """One engine call took every row to the largest budget: a trajectory with less room left was decoded past
    max_context (an IndexError in a learned-position model's embedding), only cut back afterwards (review s39)."""
    _, tokenizer = tiny_policy
    turns = {
        0: [
            "<think>" + " word" * 15 + "</think><ground>Thriller</ground>",
            "<think>x</think><answer>Thriller</answer>",
        ],
        1: ["<think>x</think><ground>Thriller</ground>", "<think>x</think><answer>Thriller</answer>"],
    }

    def script(context: str, j: int) -> str:
        response = context.split("<|im_start|>assistant\n", 1)[1]  # later turns are seen with n=1 (j = 0)
        if "</item_list>" in response:
            return turns[0 if " word word" in response else 1][1]
        return turns[j][0]

    scripted = ScriptedEngine(tokenizer, script)
    samples = [RolloutSample(("Kind of Blue",), ("Thriller",), sample_id="a")]
    agent = AgentConfig(decoding="free", max_new_tokens_per_turn=64, max_new_tokens_total=80)

    class Recording:  # the scripted engine, each call's widest row recorded
        tokenizer = scripted.tokenizer
        widest: list[int] = []

        def generate(self, prompts, max_new_tokens, **kw):
            self.widest.append(max(len(p) for p in prompts) + max_new_tokens)
            return scripted.generate(prompts, max_new_tokens=max_new_tokens, **kw)

    first = rollout(Recording(), environment, samples, group_size=2, agent=agent, max_context=4096)
    long = first.trajectories[0]
    room = len(long.prompt_ids) + len(long.segments[0].token_ids) + len(long.segments[1].token_ids)
    budget = 80 - len(long.segments[0].token_ids)
    assert budget < 64  # the two rows' second turns have different budgets
    engine = Recording()
    engine.widest = []
    result = rollout(engine, environment, samples, group_size=2, agent=agent, max_context=room + budget)
    assert max(engine.widest) <= room + budget, engine.widest
    assert [t.end_reason for t in result.trajectories] == ["answered", "answered"]


def test_the_context_limit_is_the_smaller_of_the_models_and_the_engines():
    """vLLM's rollout.options.max_model_len below the model's positions was not the loop's limit: a trajectory that
    grew past it failed the whole fit mid-rollout as a prompt too long "before any turn" (review s39)."""
    from types import SimpleNamespace

    from mgfrec.rollout.base import context_limit

    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=32768))
    assert context_limit(SimpleNamespace(max_context=4096), model) == 4096
    assert context_limit(SimpleNamespace(), model) == 32768  # the hf engine: the model's
    assert context_limit(SimpleNamespace(max_context=None), SimpleNamespace()) is None
    assert context_limit(SimpleNamespace(max_context=65536), model) == 32768

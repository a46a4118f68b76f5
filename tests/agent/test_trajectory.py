"""Token-exact trajectories with a real tokenizer: masks, log-probs, no re-tokenization, padded batches."""

from __future__ import annotations

import math

import pytest
import torch

from mgfrec.agent.batching import collate
from mgfrec.agent.observation import render_observation
from mgfrec.agent.trajectory import EnvironmentSegment, GroundingStep, PolicySegment, Trajectory
from mgfrec.config.schema import AgentConfig
from mgfrec.text.prompts import build_messages, encode_prompt

TURN_1 = "<think>The user likes jazz.</think>\n<ground>Kind of Blue</ground>"
TURN_2 = "<think>Coltrane fits.</think>\n<answer>Blue Train</answer>"


def char_level_ids(tokenizer, text: str) -> list[int]:
    """A valid but non-canonical tokenization (one piece per character), as a sampler may produce."""
    return [i for ch in text for i in tokenizer.encode(ch, add_special_tokens=False)]


def fake_logprobs(n: int, offset: float) -> list[float]:
    return [-(offset + 0.01 * k) for k in range(n)]


@pytest.fixture
def built(tokenizer):
    """A two-turn trajectory: a non-canonically sampled <ground> turn, an observation, a canonical answer + eos."""
    prompt = encode_prompt(tokenizer, build_messages(["Abbey Road", "A Love Supreme"], ["Kind of Blue", "Rumours"]))
    traj = Trajectory(
        prompt, ("Abbey Road", "A Love Supreme"), AgentConfig(max_new_tokens_per_turn=200, max_new_tokens_total=400)
    )
    t1 = char_level_ids(tokenizer, TURN_1)
    lp1 = fake_logprobs(len(t1), 1.0)
    assert traj.add_turn(t1, lp1, tokenizer.decode(t1, skip_special_tokens=True)) == "ground"
    obs_text = render_observation(["Kind of Blue", "Blue Train"], "Close, but I prefer Coltrane.")
    obs = tokenizer.encode(obs_text, add_special_tokens=False)
    traj.add_observation(
        GroundingStep("Kind of Blue", (2, 3), ("Kind of Blue", "Blue Train"), "Close, but I prefer Coltrane."),
        obs,
        obs_text,
    )
    t2 = tokenizer.encode(TURN_2, add_special_tokens=False) + [tokenizer.eos_token_id]
    lp2 = fake_logprobs(len(t2), 2.0)
    assert traj.add_turn(t2, lp2, tokenizer.decode(t2, skip_special_tokens=True)) == "end"
    return traj, prompt, t1, lp1, obs, t2, lp2


def test_ids_are_the_pieces_concatenated_and_never_retokenized(built, tokenizer):
    traj, prompt, t1, _, obs, t2, _ = built
    assert traj.token_ids() == prompt + t1 + obs + t2
    assert len(traj) == len(traj.token_ids())
    # The sampled split survives: encoding the decoded text would have given other ids.
    assert tokenizer.encode(tokenizer.decode(t1), add_special_tokens=False) != t1
    start = len(prompt)
    assert traj.token_ids()[start : start + len(t1)] == t1
    assert tokenizer.decode(traj.token_ids()[start:], skip_special_tokens=True) == traj.response_text()


def test_action_mask_is_one_exactly_on_policy_tokens(built):
    traj, prompt, t1, _, obs, t2, _ = built
    assert traj.action_mask() == [0] * len(prompt) + [1] * len(t1) + [0] * len(obs) + [1] * len(t2)
    assert sum(traj.action_mask()) == traj.response_length == len(t1) + len(t2)
    sampled = [i for seg in traj.segments if isinstance(seg, PolicySegment) for i in seg.token_ids]
    assert [i for i, m in zip(traj.token_ids(), traj.action_mask(), strict=False) if m] == sampled


def test_observation_tags_are_masked(built, tokenizer):
    traj, *_ = built
    for tag in ("<item_list>", "</item_list>", "<feedback>", "</feedback>"):
        tag_id = tokenizer.convert_tokens_to_ids(tag)
        positions = [i for i, t in enumerate(traj.token_ids()) if t == tag_id]
        assert positions and all(traj.action_mask()[i] == 0 for i in positions)


def test_logprobs_align_with_tokens_and_are_zero_off_policy(built):
    traj, prompt, _, lp1, obs, _, lp2 = built
    assert traj.logprobs() == [0.0] * len(prompt) + lp1 + [0.0] * len(obs) + lp2
    assert all(math.isfinite(x) for x in traj.logprobs())


def test_turns_steps_and_outcome(built):
    traj, *_ = built
    assert [t.kind for t in traj.turns] == ["ground", "answer"]
    assert traj.answer == "Blue Train" and traj.end_reason == "answered" and traj.format_ok
    assert traj.num_groundings == 1 and traj.steps[0].item_titles == ("Kind of Blue", "Blue Train")
    assert [type(s) for s in traj.segments] == [PolicySegment, EnvironmentSegment, PolicySegment]
    assert traj.pending_title is None and traj.done


def test_bad_engine_output_is_refused_before_it_is_stored(tokenizer):
    traj = Trajectory([1, 2, 3])
    with pytest.raises(ValueError, match="3 sampled tokens but 2 log-probs"):
        traj.add_turn([5, 6, 7], [-1.0, -1.0], "x")
    with pytest.raises(ValueError, match="log-probs must be <= 0"):
        traj.add_turn([5], [0.5], "x")
    with pytest.raises(RuntimeError, match="no grounding is pending"):
        traj.add_observation(GroundingStep("t", (), (), None), [9], "obs")
    assert traj.segments == [] and traj.token_ids() == [1, 2, 3]


def test_an_unanswered_trajectory_has_no_answer():
    traj = Trajectory([1], config=AgentConfig(max_groundings=0))
    traj.add_turn([4, 5], [-0.1, -0.2], "<think>x</think><ground>Abbey Road</ground>")
    assert (traj.end_reason, traj.format_ok, traj.answer, traj.pending_title) == ("grounding_limit", False, None, None)


def test_collate_pads_right_and_keeps_alignment(built):
    long, prompt, *_ = built
    short = Trajectory([7, 8], config=AgentConfig())
    short.add_turn([9, 10, 11], [-0.5, -0.25, -0.125], "<think>x</think><answer>Rumours</answer>")
    batch = collate([long, short], pad_token_id=0, pad_to_multiple_of=8)
    width = batch.input_ids.shape[1]
    assert width % 8 == 0 and width >= len(long)
    for b, traj in enumerate([long, short]):
        n = len(traj)
        assert batch.input_ids[b, :n].tolist() == traj.token_ids()
        assert batch.input_ids[b, n:].eq(0).all()
        assert batch.attention_mask[b].tolist() == [1] * n + [0] * (width - n)
        assert batch.action_mask[b].tolist() == [bool(m) for m in traj.action_mask()] + [False] * (width - n)
        assert torch.allclose(batch.old_logprobs[b, :n], torch.tensor(traj.logprobs()))
        assert batch.old_logprobs[b, n:].eq(0).all()
    assert batch.prompt_lengths.tolist() == [len(prompt), 2]
    assert batch.lengths.tolist() == [len(long), 5]
    assert batch.action_mask.dtype == torch.bool and batch.old_logprobs.dtype == torch.float32
    assert batch.to("cpu").input_ids.equal(batch.input_ids)
    with pytest.raises(ValueError, match="trajectory 0 has .* tokens, more than max_length=10"):
        collate([long, short], pad_token_id=0, max_length=10)
    with pytest.raises(ValueError, match="at least one"):
        collate([], pad_token_id=0)

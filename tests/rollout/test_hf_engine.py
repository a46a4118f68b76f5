"""The hf engine: log-probs equal a teacher-forced pass, exact stops, padding and batching invariance."""

from __future__ import annotations

import copy

import pytest
import torch

from mgfrec.config.schema import PolicyConfig, RolloutConfig
from mgfrec.models.policy import load_policy
from mgfrec.registry import KINDS, Registry
from mgfrec.rollout.base import RolloutEngine, build_engine
from mgfrec.rollout.hf_engine import HFEngine

from .rolloutkit import sample_prompts, teacher_forced


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)])
def test_logprobs_equal_a_teacher_forced_forward_pass(tiny_policy, temperature, top_p):
    model, tokenizer = tiny_policy
    prompts = sample_prompts(tokenizer)
    out = HFEngine(model, tokenizer).generate(
        prompts, max_new_tokens=12, n=2, temperature=temperature, top_p=top_p, seed=3
    )
    for prompt, samples in zip(prompts, out, strict=False):
        for g in samples:
            expected = teacher_forced(model, prompt, g.token_ids, temperature)
            assert torch.allclose(torch.tensor(g.logprobs), expected, atol=1e-4)


def test_stops_exactly_after_the_ground_tag(tiny_policy, boost):
    model, tokenizer = tiny_policy
    engine = HFEngine(boost(model, tokenizer, "</ground>"), tokenizer)
    stop_id = tokenizer.convert_tokens_to_ids("</ground>")
    prompts = sample_prompts(tokenizer)
    out = engine.generate(prompts, max_new_tokens=40, n=6, stop=["</ground>", "</answer>"], seed=0)
    gens = [g for row in out for g in row]
    # rows left the batch (and the KV cache) at different steps; the others' log-probs must not notice
    for prompt, row in zip(prompts, out, strict=False):
        for g in row:
            assert torch.allclose(
                torch.tensor(g.logprobs), teacher_forced(engine.model, prompt, g.token_ids, 1.0), atol=1e-4
            )
    assert any(g.stop == "</ground>" for g in gens)
    for g in gens:
        assert stop_id not in g.token_ids[:-1]  # nothing sampled after the first stop
        if g.stop == "</ground>":
            assert g.finish_reason == "stop" and g.token_ids[-1] == stop_id and g.text.endswith("</ground>")
        elif g.finish_reason == "stop":  # the random policy may also end its turn with eos
            assert g.token_ids[-1] == tokenizer.eos_token_id
        else:
            assert len(g.token_ids) == 40 and g.stop is None


def test_eos_always_stops(tiny_policy, boost):
    model, tokenizer = tiny_policy
    engine = HFEngine(boost(model, tokenizer, tokenizer.eos_token, amount=8.0), tokenizer)
    gens = [g for row in engine.generate(sample_prompts(tokenizer), max_new_tokens=30, n=4, seed=1) for g in row]
    stopped = [g for g in gens if g.finish_reason == "stop"]
    assert stopped
    for g in stopped:
        assert g.token_ids[-1] == tokenizer.eos_token_id and g.stop == tokenizer.eos_token
        assert g.text == tokenizer.decode(g.token_ids) and g.text.endswith(tokenizer.eos_token)


def test_multi_token_stop_strings_stop_where_the_string_completes(tiny_policy):
    model, tokenizer = tiny_policy
    engine = HFEngine(model, tokenizer)
    prompt = sample_prompts(tokenizer)[:1]
    free = engine.generate(prompt, max_new_tokens=16, temperature=0.0)[0][0]
    # a stop string straddling tokens 4..6 of the free-running greedy output
    stop = tokenizer.decode(free.token_ids[:7])[len(tokenizer.decode(free.token_ids[:4])) - 1 :]
    assert len(tokenizer.encode(stop, add_special_tokens=False)) > 1
    first = next(k for k in range(1, 17) if stop in tokenizer.decode(free.token_ids[:k]))
    got = engine.generate(prompt, max_new_tokens=16, temperature=0.0, stop=[stop])[0][0]
    assert got.finish_reason == "stop" and got.stop == stop
    assert got.token_ids == free.token_ids[:first]


def test_padding_does_not_change_a_row(tiny_policy):
    model, tokenizer = tiny_policy
    engine = HFEngine(model, tokenizer)
    short, long = sample_prompts(tokenizer)
    for temperature in (0.0, 1.0):
        alone = engine.generate([short], max_new_tokens=16, n=2, temperature=temperature, seed=5)[0]
        batched = engine.generate([short, long], max_new_tokens=16, n=2, temperature=temperature, seed=5)[0]
        for a, b in zip(alone, batched, strict=False):
            assert a.token_ids == b.token_ids
            assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4)


def test_n_samples_per_prompt_are_seeded(tiny_policy):
    model, tokenizer = tiny_policy
    engine = HFEngine(model, tokenizer)
    prompts = sample_prompts(tokenizer)
    out = engine.generate(prompts, max_new_tokens=10, n=3, seed=11)
    assert [len(row) for row in out] == [3, 3]
    assert len({tuple(g.token_ids) for g in out[0]}) == 3  # independent samples differ
    again = engine.generate(prompts, max_new_tokens=10, n=3, seed=11)
    other = engine.generate(prompts, max_new_tokens=10, n=3, seed=12)

    def flat(o):
        return [g.token_ids for row in o for g in row]

    assert flat(again) == flat(out) and flat(other) != flat(out)


def test_length_cap_gives_finish_reason_length(tiny_policy):
    model, tokenizer = tiny_policy
    out = HFEngine(model, tokenizer).generate(sample_prompts(tokenizer), max_new_tokens=5, n=2)
    for g in (g for row in out for g in row):
        assert g.finish_reason == "length" and g.stop is None and len(g.token_ids) == 5 == len(g.logprobs)
        assert g.text == tokenizer.decode(g.token_ids, skip_special_tokens=False)


def test_small_batches_give_the_same_samples(tiny_policy):
    model, tokenizer = tiny_policy
    prompts = sample_prompts(tokenizer)
    whole = HFEngine(model, tokenizer).generate(prompts, max_new_tokens=8, n=3, seed=2)
    chunked = HFEngine(model, tokenizer, HFEngine.Options(max_batch_size=2)).generate(
        prompts, max_new_tokens=8, n=3, seed=2
    )
    assert [[g.token_ids for g in r] for r in whole] == [[g.token_ids for g in r] for r in chunked]


def test_load_weights_replaces_the_engines_copy(tiny_policy, catalogue):
    model, tokenizer = tiny_policy
    other, _ = load_policy(PolicyConfig(), catalogue, seed=1)
    before = copy.deepcopy(model.state_dict())
    engine = HFEngine(model, tokenizer, HFEngine.Options(copy_model=True))
    prompts = sample_prompts(tokenizer)
    own = engine.generate(prompts, max_new_tokens=8, temperature=0.0)
    engine.load_weights(other.state_dict())
    loaded = engine.generate(prompts, max_new_tokens=8, temperature=0.0)
    reference = HFEngine(other, tokenizer).generate(prompts, max_new_tokens=8, temperature=0.0)
    assert [r[0].token_ids for r in loaded] == [r[0].token_ids for r in reference] != [r[0].token_ids for r in own]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the trainer's model is untouched
    with pytest.raises(RuntimeError):
        engine.load_weights({"not.a.weight": torch.zeros(1)})


def test_built_through_the_registry_with_options(tiny_policy):
    model, tokenizer = tiny_policy
    reg = Registry({k: {} for k in KINDS})
    reg.add("rollout_engine", "hf", HFEngine)
    engine = build_engine(RolloutConfig(options={"max_batch_size": 3}), model, tokenizer, reg)
    assert isinstance(engine, RolloutEngine) and engine.options.max_batch_size == 3
    with pytest.raises(ValueError, match="rollout.options.max_batch_size"):
        build_engine(RolloutConfig(options={"max_batch_size": 0}), model, tokenizer, reg)


def test_bad_arguments_are_refused(tiny_policy):
    model, tokenizer = tiny_policy
    engine = HFEngine(model, tokenizer)
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([[]], max_new_tokens=4)
    with pytest.raises(ValueError, match="top_p"):
        engine.generate([[1]], max_new_tokens=4, top_p=0.0)


def test_the_top_level_gpu_memory_share_reaches_an_engine_that_takes_it(tiny_policy):
    from pydantic import BaseModel, ConfigDict

    class ShareEngine:  # the shape of the vllm engine's options, without vLLM
        class Options(BaseModel):
            model_config = ConfigDict(extra="forbid", frozen=True)
            gpu_memory_utilization: float = 0.5

        def __init__(self, model, tokenizer, options):
            self.options = options

    model, tokenizer = tiny_policy
    reg = Registry({k: {} for k in KINDS})
    reg.add("rollout_engine", "share", ShareEngine)
    reg.add("rollout_engine", "hf", HFEngine)
    built = build_engine(RolloutConfig(engine="share", gpu_memory_utilization=0.2), model, tokenizer, reg)
    assert built.options.gpu_memory_utilization == 0.2
    explicit = RolloutConfig(engine="share", gpu_memory_utilization=0.2, options={"gpu_memory_utilization": 0.7})
    assert build_engine(explicit, model, tokenizer, reg).options.gpu_memory_utilization == 0.7  # options win
    assert isinstance(build_engine(RolloutConfig(engine="hf"), model, tokenizer, reg), HFEngine)  # hf has no such field

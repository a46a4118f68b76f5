"""The hf engine's prefix reuse across turns: a prompt that extends what the last call fed is prefilled
from the kept KV cache, and samples exactly what a full prefill would."""

from __future__ import annotations

import torch

from mgfrec.rollout.hf_engine import HFEngine


def _two_calls(engine: HFEngine, prompts: list[list[int]], extra: list[int]):
    first = engine.generate(prompts, max_new_tokens=6, n=2, seed=3, temperature=1.0)
    # the next turn of each row: its prompt, what it sampled, and an "observation" of a few tokens
    second_prompts = [p + g.token_ids + extra for p, row in zip(prompts, first, strict=False) for g in row]
    second = engine.generate(second_prompts, max_new_tokens=6, n=1, seed=4, temperature=1.0)
    return first, second


def test_second_turn_from_the_kept_prefix_equals_a_full_prefill(tiny_policy):
    model, tokenizer = tiny_policy
    prompts = [tokenizer.encode("Kind of Blue Rumours Thriller"), tokenizer.encode("Nevermind")]
    extra = tokenizer.encode(" Pet Sounds OK Computer")
    reuse = HFEngine(model, tokenizer)
    fresh = HFEngine(model, tokenizer, HFEngine.Options(reuse_prefix=False))
    a1, a2 = _two_calls(reuse, prompts, extra)
    b1, b2 = _two_calls(fresh, prompts, extra)
    assert reuse.timings["reused_tokens"] > 0 and fresh.timings["reused_tokens"] == 0
    assert reuse.timings["prefill_tokens"] < fresh.timings["prefill_tokens"]
    for x, y in zip([g for r in a1 + a2 for g in r], [g for r in b1 + b2 for g in r], strict=True):
        assert x.token_ids == y.token_ids
        assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5)


def test_kept_prefixes_live_one_call_and_die_with_new_weights(tiny_policy):
    model, tokenizer = tiny_policy
    engine = HFEngine(model, tokenizer)
    prompt = tokenizer.encode("Kind of Blue")
    out = engine.generate([prompt], max_new_tokens=4, n=1, seed=0)
    assert engine._kept  # the finished row's cache is kept for the next call
    engine.generate([tokenizer.encode("Rumours")], max_new_tokens=4, n=1, seed=0)  # does not extend it
    assert all(len(k) != len(prompt) + len(out[0][0].token_ids) - 1 for k in engine._kept)  # the old one is gone
    engine.load_weights(model.state_dict())
    assert not engine._kept


def test_a_sliding_window_model_is_sampled_without_prefix_reuse(tiny_policy):
    # its cache keeps only the last W positions, which a kept prefix cannot be cut from: the second turn of a
    # Gemma-3-style model (window 6) raised "IndexError: The shape of the mask [13] ... does not match"
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config

    from mgfrec.rollout.hf_engine import has_sliding_window

    _, tokenizer = tiny_policy
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=6, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    model = Gemma3ForCausalLM(config).eval()
    prompts = [tokenizer.encode("Kind of Blue Rumours Thriller A Love Supreme"), tokenizer.encode("Nevermind")]
    extra = tokenizer.encode(" Back in Black Blue Train")
    reuse = HFEngine(model, tokenizer)  # reuse_prefix: on, as by default
    fresh = HFEngine(model, tokenizer, HFEngine.Options(reuse_prefix=False))
    a1, a2 = _two_calls(reuse, prompts, extra)
    b1, b2 = _two_calls(fresh, prompts, extra)
    assert reuse.timings["reused_tokens"] == 0
    for x, y in zip([g for r in a1 + a2 for g in r], [g for r in b1 + b2 for g in r], strict=True):
        assert x.token_ids == y.token_ids
    assert has_sliding_window(config) and has_sliding_window(Qwen2Config(use_sliding_window=True, sliding_window=6))
    assert not has_sliding_window(Qwen2Config(use_sliding_window=False)) and not has_sliding_window(None)

"""The scripted engine stops and caps exactly as a sampling engine does."""

from __future__ import annotations

from mgfrec.rollout.base import RolloutEngine
from mgfrec.rollout.scripted_engine import ScriptedEngine


def test_cut_after_the_first_stop_and_at_the_cap(tiny_policy):
    tokenizer = tiny_policy[1]
    turns = [
        "<think>x</think><ground>Rumours</ground> then more <answer>y</answer>",
        "<think>a long unfinished thought",
    ]
    engine = ScriptedEngine(tokenizer, lambda context, j: turns[j], logprob=-0.5)
    assert isinstance(engine, RolloutEngine)
    ((first, second),) = engine.generate([[1, 2]], max_new_tokens=4, n=2, stop=["</ground>", "</answer>"])
    assert first.finish_reason == "length" and len(first.token_ids) == 4  # the cap comes before the stop
    ((first, second),) = engine.generate([[1, 2]], max_new_tokens=40, n=2, stop=["</ground>", "</answer>"])
    assert first.finish_reason == "stop" and first.stop == "</ground>"
    assert first.text == "<think>x</think><ground>Rumours</ground>"
    assert first.token_ids == tokenizer.encode(first.text, add_special_tokens=False)
    assert first.logprobs == [-0.5] * len(first.token_ids)
    assert second.finish_reason == "length" and second.text == turns[1]


def test_script_sees_the_decoded_context(tiny_policy):
    tokenizer = tiny_policy[1]
    seen = []
    engine = ScriptedEngine(tokenizer, lambda context, j: seen.append((context, j)) or "ok")
    prompt = tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n", add_special_tokens=False)
    engine.generate([prompt], max_new_tokens=4, n=2)
    assert seen == [("<|im_start|>user\nhi<|im_end|>\n", 0), ("<|im_start|>user\nhi<|im_end|>\n", 1)]

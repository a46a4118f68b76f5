"""The scripted engine stops and caps exactly as a sampling engine does."""

from __future__ import annotations

import pytest

from mgfrec.rollout.base import RolloutEngine
from mgfrec.rollout.scripted_engine import ScriptedEngine, encode_split


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


def test_the_shared_argument_rules_hold_for_the_scripted_engine_too(tiny_policy):
    engine = ScriptedEngine(tiny_policy[1], lambda context, j: "<think>x</think>")
    with pytest.raises(ValueError, match="3 constraints for 2 rows"):
        engine.generate([[1, 2]], max_new_tokens=4, n=2, constraints=[None, None, None])
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([[]], max_new_tokens=4)
    with pytest.raises(ValueError, match="must be >= 1"):
        engine.generate([[1]], max_new_tokens=0)
    assert not engine.calls  # refused before the script ran
    assert len(engine.generate([[1, 2]], max_new_tokens=4, n=2, constraints=[None, None])[0]) == 2


def test_script_sees_the_decoded_context(tiny_policy):
    tokenizer = tiny_policy[1]
    seen = []
    engine = ScriptedEngine(tokenizer, lambda context, j: seen.append((context, j)) or "ok")
    prompt = tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n", add_special_tokens=False)
    engine.generate([prompt], max_new_tokens=4, n=2)
    assert seen == [("<|im_start|>user\nhi<|im_end|>\n", 0), ("<|im_start|>user\nhi<|im_end|>\n", 1)]


def hub_style_tokenizer():
    """A byte-level BPE with no tag tokens, trained so it merges ``><`` (as SmolLM2's tokenizer does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["<think>we like jazz</think><ground>Kind of Blue</ground><answer>Blue Train</answer>"] * 50
    tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_split_at_tokenizes_a_turn_tag_by_tag_so_a_constrained_turn_holds_it():
    from mgfrec.agent.constraints import TurnConstraint, TurnGrammar
    from mgfrec.rl.sft_data import TURN_TAGS

    tokenizer = hub_style_tokenizer()
    turn = "<think>we like jazz</think><ground>Kind of Blue</ground>"
    merged = [tokenizer.decode([i]) for i in tokenizer.encode(turn, add_special_tokens=False)]
    assert "><" in merged  # the tokenizer merges across the tag boundary: what broke SFT with SmolLM2
    grammar = TurnGrammar(tokenizer)
    shown = ["Kind of Blue", "Blue Train"]

    def constraint():
        return TurnConstraint(grammar, grammar.trie(shown), grammar.trie(shown), budget=64, max_think_tokens=8)

    whole = ScriptedEngine(tokenizer, lambda context, j: turn)
    with pytest.raises(ValueError, match="breaks the constrained turn grammar"):
        whole.generate([[0]], max_new_tokens=64, stop=["</ground>"], constraints=[constraint()])
    split = ScriptedEngine(tokenizer, lambda context, j: turn, split_at=TURN_TAGS)
    ((gen,),) = split.generate([[0]], max_new_tokens=64, stop=["</ground>"], constraints=[constraint()])
    assert gen.text == turn and gen.finish_reason == "stop"
    assert gen.token_ids == encode_split(tokenizer, turn, TURN_TAGS)
    assert "><" not in [tokenizer.decode([i]) for i in gen.token_ids]

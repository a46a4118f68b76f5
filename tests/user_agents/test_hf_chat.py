"""The ``hf`` backend with a tiny random Qwen2 and a BPE tokenizer trained here: gibberish out, real plumbing."""

from __future__ import annotations

from pathlib import Path

import pytest
from rngkit import assert_caller_rng_kept
from uakit import make_request

from mgfrec.config.schema import UserAgentConfig
from mgfrec.user_agents.base import UserAgentError, load_user_agent
from mgfrec.user_agents.cache import CachedUserAgent
from mgfrec.user_agents.hf_chat import HFChatAgent

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """A hidden-64 model gains nothing from threads, and on a busy 2-core machine they thrash (100x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    """A saved folder with a 2-layer, hidden-64 Qwen2 (random weights) and a chat tokenizer trained on the fly."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from mgfrec.user_agents.prompt import prompt_builder

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [prompt_builder(None)(make_request(n)) for n in range(20)] + ["user assistant system"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE
    )
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    folder = tmp_path_factory.mktemp("tiny-qwen2-chat")
    model = Qwen2ForCausalLM(config)
    # the (tied) rows of the special and blank tokens zeroed: the random logits of the others win, so replies hold
    # text (an empty reply is an error); the random model's greedy reply was a run of newlines
    blank = [i for i in range(len(fast)) if not fast.decode([i], skip_special_tokens=True).strip()]
    with torch.no_grad():
        model.model.embed_tokens.weight[blank] = 0
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_generates_one_reply_per_request_deterministically_in_batches(tiny_chat_model, fresh_registry, tmp_path):
    fresh_registry.add("user_agent", "hf", HFChatAgent)
    cfg = UserAgentConfig(backend="hf", model=str(tiny_chat_model), options={"max_new_tokens": 6, "batch_size": 2})
    requests = [make_request(n) for n in range(3)]  # 3 requests in batches of 2: one batch is padded
    agent = load_user_agent(cfg, reg=fresh_registry)
    first = agent.feedback(requests)
    assert len(first) == 3 and all(isinstance(r, str) and r for r in first)
    assert agent.feedback(requests) == first  # greedy decoding
    stats = agent.stats()
    assert stats["calls"] == 6 and stats["prompt_tokens"] > 6 * 100  # the whole Table 1 prompt went in
    assert 0 < stats["completion_tokens"] <= 6 * 6

    msgs = agent.messages(requests[0])
    assert msgs[0]["role"] == "user" and msgs[0]["content"].startswith("Act as a user agent.")
    assert "Kind of Blue" in msgs[0]["content"]
    agent.close()

    cached = load_user_agent(cfg.model_copy(update={"cache_path": str(tmp_path / "hf.sqlite")}), reg=fresh_registry)
    assert isinstance(cached, CachedUserAgent)
    assert cached.feedback(requests) == first
    assert cached.feedback(requests) == first and cached.stats()["cache_hits"] == 3
    cached.close()


def test_sampled_replies_repeat_and_leave_the_callers_generators_alone(tiny_chat_model, fresh_registry):
    """Each sampled batch is seeded by ``options.seed``; that seeding reseeded the caller's global torch generator
    (review s35): now in a fork, put back after the batch."""
    fresh_registry.add("user_agent", "hf", HFChatAgent)
    options = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.5, "seed": 3}
    agent = load_user_agent(
        UserAgentConfig(backend="hf", model=str(tiny_chat_model), options=options), reg=fresh_registry
    )
    requests = [make_request(n) for n in range(2)]
    first = assert_caller_rng_kept(lambda: agent.feedback(requests))
    assert agent.feedback(requests) == first  # the same seed, the same replies
    agent.close()


def test_a_model_is_required_and_a_bad_path_is_a_clear_error(tmp_path):
    """A missing folder was "Repo id must be in the form 'repo_name' or 'namespace/repo_name'" seconds into
    loading (after fit's recall fit); a folder that holds no model, a five-line transformers message. Both are one
    line before any work now (check_user_agent), and a model that fails to load is one line too."""
    from mgfrec.user_agents.base import check_user_agent

    with pytest.raises(UserAgentError, match="user_agent.model is required"):
        HFChatAgent(UserAgentConfig(backend="hf"), None, None)
    absent = UserAgentConfig(backend="hf", model=str(tmp_path / "absent"))
    for check in (lambda: check_user_agent(absent, "GRPO training"), lambda: HFChatAgent(absent, None, None)):
        with pytest.raises(UserAgentError, match=r"^user_agent.model .*absent: no such folder, and not a hub id"):
            check()
    (tmp_path / "notes").mkdir()
    with pytest.raises(UserAgentError, match=r"^user_agent.model .*notes: holds no config.json"):
        check_user_agent(UserAgentConfig(backend="hf", model=str(tmp_path / "notes")), "GRPO training")
    (tmp_path / "adapter").mkdir()  # a PEFT adapter's folder: transformers loads it when peft is installed
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    check_user_agent(UserAgentConfig(backend="hf", model=str(tmp_path / "adapter")), "GRPO training")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "qwen2"}')  # no tokenizer files
    agent = HFChatAgent(UserAgentConfig(backend="hf", model=str(tmp_path / "broken")), None, None)
    with pytest.raises(UserAgentError, match="tokenizer") as info:
        agent.feedback([make_request()])
    assert "\n" not in str(info.value)  # one line, whatever transformers said
    check_user_agent(UserAgentConfig(backend="hf", model="Qwen/Qwen2.5-1.5B-Instruct"), "GRPO training")  # a hub id


def resaved(source, folder, change):
    """``source``'s model and tokenizer saved to ``folder`` after ``change(model)``, as a retrained judge is."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    if Path(source) != Path(folder):
        shutil.copytree(source, folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        change(model)
    model.save_pretrained(folder)
    return folder


@pytest.mark.reliability
def test_a_judge_resaved_in_place_is_not_answered_from_the_old_weights_cache(tiny_chat_model, fresh_registry, tmp_path):
    """The key held the folder's path alone: a judge retrained into the same folder answered from the cache of its
    old weights (review s30), as the embedder's cache no longer does (its folder fingerprint)."""
    import torch

    fresh_registry.add("user_agent", "hf", HFChatAgent)
    judge = resaved(tiny_chat_model, tmp_path / "judge", lambda m: None)
    cfg = UserAgentConfig(
        backend="hf", model=str(judge), cache_path=str(tmp_path / "c.sqlite"), options={"max_new_tokens": 8}
    )
    requests = [make_request(n) for n in range(2)]
    old = load_user_agent(cfg, reg=fresh_registry)
    before = old.feedback(requests)
    old.close()

    def retrain(model):
        torch.manual_seed(1)
        for name, p in model.named_parameters():
            if "embed_tokens" not in name:  # the special tokens keep their zero rows
                p.add_(torch.randn_like(p))

    resaved(judge, judge, retrain)
    plain = load_user_agent(cfg.model_copy(update={"cache_path": False}), reg=fresh_registry)
    now = plain.feedback(requests)
    plain.close()
    assert now != before  # the new weights answer otherwise
    cached = load_user_agent(cfg, reg=fresh_registry)
    assert cached.feedback(requests) == now and cached.stats()["cache_hits"] == 0
    assert cached.feedback(requests) == now and cached.stats()["cache_hits"] == 2  # and are cached in turn
    cached.close()


@pytest.mark.reliability
def test_a_judge_that_answers_no_text_is_an_error_not_empty_feedback(tiny_chat_model, fresh_registry, tmp_path):
    """An empty reply left the ``<feedback>`` block out, silently turning the run into the no-feedback ablation, and
    was cached; the remote backends refuse the same case (review s30). Here the final norm is zeroed: every logit is
    0, greedy decoding picks token 0, the pad token, and the decoded reply is empty."""
    fresh_registry.add("user_agent", "hf", HFChatAgent)
    mute = resaved(tiny_chat_model, tmp_path / "mute", lambda m: m.model.norm.weight.zero_())
    cfg = UserAgentConfig(
        backend="hf", model=str(mute), cache_path=str(tmp_path / "c.sqlite"), options={"max_new_tokens": 3}
    )
    agent = load_user_agent(cfg, reg=fresh_registry)
    with pytest.raises(UserAgentError) as err:
        agent.feedback([make_request(0), make_request(1)])
    text = str(err.value)
    assert "answered 2 of 2 request(s) with no text" in text and "max_new_tokens=3" in text and "\n" not in text
    assert agent.stats()["errors"] == 2
    agent.close()
    again = load_user_agent(cfg, reg=fresh_registry)  # nothing was cached
    with pytest.raises(UserAgentError):
        again.feedback([make_request(0)])
    assert again.stats()["cache_hits"] == 0
    again.close()

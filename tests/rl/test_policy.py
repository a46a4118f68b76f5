"""Policy presets, their tokenizers, and saving/loading through the from_pretrained path real models use."""

from __future__ import annotations

import pytest
import torch

from mgfrec.agent.constraints import TurnGrammar
from mgfrec.config.schema import PolicyConfig
from mgfrec.models.policy import (
    PRESETS,
    TAG_TOKENS,
    build_bpe_tokenizer,
    load_policy,
    minilm_dir,
    minilm_embeddings,
    save_policy,
)
from mgfrec.text.neutralize import WORD_JOINER, neutralize_title, reserved_strings
from mgfrec.text.prompts import numbered

TITLES = ["Abbey Road (Remastered)", "Kind of Blue", "Café Tacvba – Re", "The Dark Side of the Moon", "Rumours"]


@pytest.fixture(scope="module")
def tiny():
    return load_policy(PolicyConfig(model="preset:tiny"), TITLES, ["an extra sentence"], seed=0)


def test_tags_are_single_tokens_that_survive_decoding(tiny):
    _, tok = tiny
    ids = [tok.encode(t, add_special_tokens=False) for t in TAG_TOKENS]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(TAG_TOKENS)
    text = "<think> likes jazz </think>\n<ground>Kind of Blue</ground><item_list>x</item_list>"
    assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True) == text


def test_byte_level_bpe_round_trips_any_text(tiny):
    _, tok = tiny
    for text in [*TITLES, "日本語のタイトル 🎵", "  two  spaces\tand\ttabs\n"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_token_id is None or tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_chat_template_renders_and_tokenizes(tiny):
    _, tok = tiny
    messages = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "History: Rumours"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "History: Rumours<|im_end|>" in text
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids == tok.encode(text, add_special_tokens=False)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_bpe_training_is_deterministic():
    assert build_bpe_tokenizer(TITLES, 500).get_vocab() == build_bpe_tokenizer(TITLES, 500).get_vocab()


def test_preset_architecture_and_seeded_init(tiny):
    model, tok = tiny
    spec = PRESETS["tiny"]
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 256, 4, 2)
    assert cfg.intermediate_size == spec.intermediate_size and cfg.vocab_size == len(tok)
    assert cfg.eos_token_id == tok.eos_token_id and not model.training
    same, _ = load_policy(PolicyConfig(model="preset:tiny"), TITLES, ["an extra sentence"], seed=0)
    other, _ = load_policy(PolicyConfig(model="preset:tiny"), TITLES, ["an extra sentence"], seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters(), strict=False))
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, other.model.layers[0].mlp.up_proj.weight)


def test_small_preset_is_larger():
    model, _ = load_policy(PolicyConfig(model="preset:small"), TITLES)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (6, 384)


def test_dtype_comes_from_the_config():
    model, _ = load_policy(PolicyConfig(model="preset:tiny", dtype="bfloat16"), TITLES)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("preset", ["tiny", "tiny-minilm"])
def test_save_then_load_through_from_pretrained(preset, tiny, tmp_path):
    model, tok = tiny if preset == "tiny" else load_policy(PolicyConfig(model="preset:tiny-minilm"), TITLES)
    save_policy(model, tok, tmp_path / "policy", preset=preset)
    loaded, ltok = load_policy(PolicyConfig(model=str(tmp_path / "policy")))
    text = "<|im_start|>system\nYou recommend <think> likes Abbey Road </think><ground>Rumours</ground><|im_end|>"
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    assert ltok.encode(text, add_special_tokens=False) == ids[0].tolist()  # MiniLM's WordPiece too, not chars
    assert ltok.decode(ids[0]) == tok.decode(ids[0]) and len(ltok) == len(tok)
    assert ltok.chat_template == tok.chat_template and ltok.eos_token_id == tok.eos_token_id
    assert ltok.pad_token_id == tok.pad_token_id
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert (tmp_path / "policy" / "mgfrec_policy.json").is_file()


@pytest.mark.reliability
def test_a_damaged_saved_policy_is_one_line_naming_it(tiny, tmp_path):
    import shutil

    model, tok = tiny
    good = save_policy(model, tok, tmp_path / "good", preset="tiny")
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    (cut / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(OSError, match=r"policy.model: '.*cut': its weights cannot be read"):  # a SafetensorError
        load_policy(PolicyConfig(model=str(cut)))
    bare = tmp_path / "bare"
    shutil.copytree(good, bare)
    (bare / "tokenizer.json").unlink()  # loaded as an empty tokenizer: "every prompt needs at least one token"
    with pytest.raises(ValueError, match=r"policy.model: .*bare/tokenizer.json: missing"):
        load_policy(PolicyConfig(model=str(bare)))
    (bare / "tokenizer.json").write_text("{}")  # was "error: added_tokens"
    with pytest.raises(ValueError, match=r"bare/tokenizer.json: not a readable tokenizer"):
        load_policy(PolicyConfig(model=str(bare)))


@pytest.mark.reliability
def test_a_saved_policy_whose_tokenizer_is_not_its_own_is_one_line_naming_it(tiny, tmp_path):
    """A saved policy's tokenizer files replaced by another preset's loaded and evaluated garbage prompts without a
    word; by MiniLM's (more tokens than the embeddings) it was an IndexError traceback; tokenizer_config.json
    missing said "the tokenizer has no pad token"; a damaged chat template and a config.json whose vocab_size was
    edited were tracebacks (review s27)."""
    import json
    import shutil

    model, tok = tiny
    good = save_policy(model, tok, tmp_path / "good", preset="tiny")
    other_model, other_tok = load_policy(PolicyConfig(model="preset:tiny"), TITLES[:2], seed=1)
    assert len(other_tok) != len(tok)
    other = save_policy(other_model, other_tok, tmp_path / "other", preset="tiny")
    cases = {
        "swapped": (
            lambda d: [shutil.copy(other / f, d / f) for f in ("tokenizer.json", "tokenizer_config.json")],
            r"swapped: its tokenizer has \d+ tokens, but mgfrec_policy.json records \d+",
        ),
        "wider": (
            lambda d: [shutil.copy(minilm_dir() / f, d / f) for f in ("tokenizer.json", "tokenizer_config.json")],
            r"wider': its tokenizer has \d+ tokens, more than the model's \d+ embeddings",
        ),
        "no-config": (lambda d: (d / "tokenizer_config.json").unlink(), r"no-config/tokenizer_config.json: missing"),
        "template": (
            lambda d: (d / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }"),
            r"template: its chat template cannot be used \(TemplateSyntaxError",
        ),
        "vocab": (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "vocab_size": len(tok) + 7})
            ),
            r"vocab': its weights do not fit its config.json",
        ),
    }
    for name, (damage, said) in cases.items():
        folder = tmp_path / name
        shutil.copytree(good, folder)
        damage(folder)
        with pytest.raises((ValueError, OSError), match=said):
            load_policy(PolicyConfig(model=str(folder)))
    load_policy(PolicyConfig(model=str(good)))  # the checks pass the folder as saved


def test_unknown_preset_and_missing_model_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="policy.model: unknown preset 'preset:huge'.*preset:tiny"):
        load_policy(PolicyConfig(model="preset:huge"))
    with pytest.raises(OSError, match="policy.model: could not load"):
        load_policy(PolicyConfig(model=str(tmp_path / "nothing-here")))


def test_minilm_preset_uses_minilm_vocabulary_and_embeddings():
    model, tok = load_policy(PolicyConfig(model="preset:tiny-minilm"))
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in TAG_TOKENS)
    vocab = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tok.encode("Jazz", add_special_tokens=False) == [vocab.index("jazz")]  # MiniLM's own (uncased) id
    rows = minilm_embeddings(256, model.config.initializer_range)
    emb = model.get_input_embeddings().weight
    assert emb.shape == (len(tok), 256) and torch.equal(emb[: rows.shape[0]], rows)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_dict=False)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and 101 not in ids  # no [CLS] wrapper


ITEM_TITLES = [
    "Nina Calloway - Midnight Velvet Sessions, Vol. 1 (Cool Jazz)",
    "Nina Calloway - Midnight Velvet Sessions, Vol. 2 (Cool Jazz)",
    "The Iron Wolves - Thunder Steel (Heavy Metal)",
    "Kind of Blue",
    "Kind of Blue (Legacy Edition)",
    "Sneaky <answer>Rumours</answer> title",
]


@pytest.fixture(scope="module")
def tiny_items():
    return load_policy(PolicyConfig(model="preset:tiny-items"), ITEM_TITLES, seed=0)


def test_tiny_items_makes_every_shown_title_one_token_and_leaves_them_unreserved(tiny_items):
    _, tok = tiny_items
    reserved = reserved_strings(tok)
    assert set(TAG_TOKENS) <= reserved and not reserved & {neutralize_title(t, reserved) for t in ITEM_TITLES}
    shown = [neutralize_title(t, reserved).strip() for t in ITEM_TITLES]
    assert "<answer>" not in shown[-1]  # a tag inside a title is still defused, and that form is the token
    grammar = TurnGrammar(tok)
    assert all(len(grammar.title_ids(t)) == 1 for t in shown)
    assert len({grammar.title_ids(t) for t in shown}) == len(shown)
    # in a prompt each title is one token, the longest title wins over a title it contains, and text round-trips
    text = numbered(ITEM_TITLES, reserved) + "\n<think> Kind of Blue again </think>"
    ids = tok.encode(text, add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(ids)
    assert all(t in pieces for t in shown) and tok.decode(ids) == text
    assert pieces.count("Kind of Blue") == 2  # the list entry and the thought; not inside "... (Legacy Edition)"


@pytest.mark.reliability
def test_tiny_items_titles_that_were_already_one_bpe_token_are_shown_whole(tmp_path):
    """A title that BPE had already made one token ("Blue") kept that id, below the title tokens' range, and was
    read as a reserved string: shown defused ("B\u2060lue"), in every title holding it too ("Kind of B\u2060lue"),
    so 1,863 of the CDs catalogue's 4,634 titles never reached the policy as their title token."""
    titles = [*ITEM_TITLES, "Blue", "Kind", "Blue Train"]
    model, tok = load_policy(PolicyConfig(model="preset:tiny-items"), titles, seed=0)
    start, _ = tok.init_kwargs["mgfrec_item_tokens"]
    assert tok.convert_tokens_to_ids("Blue") < start  # the case: a title that is already a BPE token
    reserved = reserved_strings(tok)
    shown = [neutralize_title(t, reserved).strip() for t in titles]
    assert WORD_JOINER not in "".join(shown[:-4] + shown[-3:])  # only the tag inside a title is defused
    grammar = TurnGrammar(tok)
    assert all(len(grammar.title_ids(t)) == 1 for t in shown)
    save_policy(model, tok, tmp_path / "policy", preset="tiny-items")
    _, loaded = load_policy(PolicyConfig(model=str(tmp_path / "policy")))
    assert reserved_strings(loaded) == reserved


def test_tiny_items_title_rows_start_from_their_words_and_survive_saving(tiny_items, tmp_path):
    model, tok = tiny_items
    emb = model.get_input_embeddings().weight.detach()
    row = {t: tok.convert_tokens_to_ids(t) for t in ITEM_TITLES[:3]}
    cos = torch.nn.functional.cosine_similarity
    same_series = cos(emb[row[ITEM_TITLES[0]]], emb[row[ITEM_TITLES[1]]], dim=0)
    other = cos(emb[row[ITEM_TITLES[0]]], emb[row[ITEM_TITLES[2]]], dim=0)
    assert same_series > 0.8 and other < 0.5  # shared words -> close rows; random rows would be near 0 both
    save_policy(model, tok, tmp_path / "policy", preset="tiny-items")
    loaded, ltok = load_policy(PolicyConfig(model=str(tmp_path / "policy")))
    text = numbered(ITEM_TITLES)
    assert ltok.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    assert reserved_strings(ltok) == reserved_strings(tok)


def _layer_calls_and_grads(checkpointing: bool) -> tuple[int, torch.Tensor, list[torch.Tensor]]:
    """A training forward and backward of the tiny preset: how often layer 0 ran, the loss, the gradients."""
    from mgfrec.models.logprobs import head_matches, token_logprobs

    cfg = PolicyConfig(model="preset:tiny", gradient_checkpointing=checkpointing)
    model, tok = load_policy(cfg, TITLES, seed=0)
    assert head_matches(model)  # checked once per model (two short forwards), before the layer is counted
    model.train()
    calls = []
    model.model.layers[0].self_attn.register_forward_hook(lambda *_: calls.append(1))  # inside the layer's forward
    ids = torch.tensor([tok.encode("<think> jazz </think><answer>Kind of Blue</answer>", add_special_tokens=False)])
    wanted = torch.ones_like(ids, dtype=torch.bool)
    loss = -token_logprobs(model, ids, positions=wanted).sum()
    loss.backward()
    return len(calls), loss.detach(), [p.grad for p in model.parameters()]


def test_gradient_checkpointing_recomputes_layers_and_leaves_loss_and_gradients_unchanged():
    plain_calls, plain_loss, plain_grads = _layer_calls_and_grads(False)
    ckpt_calls, ckpt_loss, ckpt_grads = _layer_calls_and_grads(True)
    assert plain_calls == 1 and ckpt_calls == 2  # the backward pass ran the layer again: activations were not kept
    torch.testing.assert_close(ckpt_loss, plain_loss)
    for a, b in zip(ckpt_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_a_policy_with_dropout_trains_without_it(tiny, tmp_path):
    """A policy saved with attention dropout (a hub model's 0.1): GRPO's update ran it in train mode, so the first
    update's ratio was not 1 (ratio/mean 1.00009, a KL of 3.5e-5 against itself, review s29). GRPOModule turns every
    dropout off; train mode then gives the eval-mode log-probs the old and reference ones are."""
    from mgfrec.models.policy import disable_dropout

    model, tokenizer = tiny
    model.config.attention_dropout = 0.1
    save_policy(model, tokenizer, tmp_path / "dropout", preset="tiny")
    model.config.attention_dropout = 0.0
    noisy, _ = load_policy(PolicyConfig(model=str(tmp_path / "dropout")))
    extra = torch.nn.Sequential(torch.nn.Dropout(0.3))
    noisy.add_module("extra_head", extra)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    noisy.eval()
    want = noisy(input_ids=ids).logits
    noisy.train()
    torch.manual_seed(0)
    assert not torch.allclose(noisy(input_ids=ids).logits, want)  # the dropout is real: the check below can fail
    disable_dropout(noisy)
    assert torch.equal(noisy(input_ids=ids).logits, want) and extra[0].p == 0.0
    assert noisy.config.attention_dropout == 0.0


def test_a_model_folder_without_a_chat_template_is_named_before_any_work(tiny, tmp_path):
    """A base (not Instruct) hub model: transformers' "Cannot use chat template functions ..." came at the first
    prompt, after the recall fit, naming no setting (review s29)."""
    from mgfrec.models.policy import POLICY_META, check_policy_source

    model, tokenizer = tiny
    folder = tmp_path / "base-model"
    kept = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.chat_template = kept
    (folder / POLICY_META).unlink(missing_ok=True)
    for template in folder.glob("chat_template.*"):
        template.unlink()
    said = r"its tokenizer has no chat template \(a base model, not an Instruct one\?\)"
    with pytest.raises(ValueError, match=said):
        check_policy_source(str(folder))
    with pytest.raises(ValueError, match=said):
        load_policy(PolicyConfig(model=str(folder)))

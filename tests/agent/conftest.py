"""Fixtures for the agent tests: a real BPE tokenizer trained here, a tiny real grounding engine, a spy user agent."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mgfrec.grounding.engine import Grounding
from mgfrec.grounding.exact import ExactGrounder
from mgfrec.models.policy import TAG_TOKENS
from mgfrec.text.prompts import load_template
from mgfrec.user_agents.base import FeedbackRequest

CATALOGUE = [
    "Abbey Road",
    "Let It Be",
    "Kind of Blue",
    "Blue Train",
    "A Love Supreme",
    "The Dark Side of the Moon",
    "Wish You Were Here",
    "Christmas with the Rat Pack",
    "Rumours",
    "Nevermind",
    "OK Computer",
    "Thriller",
]
TAGS = list(TAG_TOKENS)  # the agent's tags, as every preset tokenizer holds them
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[INST]"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the catalogue and the templates; tags are single added tokens, as in the
    policy presets, and ``[INST]`` is a special token that does not use angle brackets."""
    corpus = CATALOGUE + [load_template(k).text for k in ("recommendation_agent", "first_prompt", "user_agent")]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus * 3, trainer)
    tok.add_tokens([AddedToken(t, normalized=False) for t in TAGS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=["[INST]"]
    )
    wrapped.chat_template = CHATML
    return wrapped


@pytest.fixture(scope="session")
def catalogue_vectors(minilm) -> np.ndarray:
    return minilm.encode(CATALOGUE)


@pytest.fixture
def grounding(minilm, catalogue_vectors) -> Grounding:
    """The real engine over the tiny catalogue (top 3), with MiniLM vectors."""
    return Grounding(minilm, ExactGrounder(catalogue_vectors), CATALOGUE, catalogue_vectors, top_k=3)


class SpyUserAgent:
    """Answers every request with a fixed text naming the grounded title, and records each batch it gets."""

    def __init__(self, reply: str = "I like {title}."):
        self.reply, self.batches = reply, []

    def feedback(self, requests: list[FeedbackRequest]) -> list[str]:
        self.batches.append(list(requests))
        return [self.reply.format(title=r.grounded_title) for r in requests]

    def stats(self) -> dict:
        return {"calls": sum(len(b) for b in self.batches)}

    def close(self) -> None:
        pass


@pytest.fixture
def spy_agent() -> SpyUserAgent:
    return SpyUserAgent()

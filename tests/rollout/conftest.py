"""A tiny policy over a tiny catalogue, built once for the rollout tests."""

from __future__ import annotations

import copy

import pytest
import torch

from mgfrec.config.schema import PolicyConfig
from mgfrec.models.policy import load_policy

CATALOGUE = [
    "Abbey Road (Remastered)",
    "Kind of Blue",
    "The Dark Side of the Moon",
    "Rumours",
    "Blue Train",
    "A Love Supreme",
    "Thriller",
    "Back in Black",
    "Pet Sounds",
    "Nevermind",
    "OK Computer",
    "Led Zeppelin IV",
]


@pytest.fixture(scope="session")
def catalogue() -> list[str]:
    return list(CATALOGUE)


@pytest.fixture(scope="session")
def tiny_policy(catalogue):
    """(model, tokenizer) of ``preset:tiny`` trained on the catalogue; tests must not modify it in place."""
    return load_policy(PolicyConfig(model="preset:tiny"), catalogue, seed=0)


def boosted(model: torch.nn.Module, tokenizer, token: str, amount: float = 4.0) -> torch.nn.Module:
    """A copy of ``model`` that emits ``token`` often (about 1 step in 10 for the tiny preset).

    A random policy almost never writes a tag; pushing the token's output row towards the mean final
    hidden state raises its logit by about ``amount`` everywhere, so stop handling can be tested.
    """
    model = copy.deepcopy(model)
    token_id = tokenizer.convert_tokens_to_ids(token)
    ids = torch.tensor([tokenizer.encode(" ".join(CATALOGUE), add_special_tokens=False)])
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0].mean(0)
        model.get_output_embeddings().weight[token_id] += amount * hidden / hidden.norm() ** 2
    return model


@pytest.fixture(scope="session")
def boost():
    """:func:`boosted`, as a fixture so test modules need not import conftest."""
    return boosted

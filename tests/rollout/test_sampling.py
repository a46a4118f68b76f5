"""One sampling step: the distribution sampled from, top-p, greedy, seeding."""

from __future__ import annotations

import torch

from mgfrec.rollout.sampling import draw_uniforms, row_generator, sample_next

LOGITS = torch.tensor([[0.5, 1.0, -1.0, 2.0, 0.0]])


def _draw(n: int, **kw) -> torch.Tensor:
    gen = row_generator(7, 0, 0)
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    tokens, _ = sample_next(LOGITS.expand(n, -1), u, **kw)
    return tokens


def test_frequencies_follow_the_tempered_softmax():
    n = 20000
    for temperature in (1.0, 0.5):
        freq = torch.bincount(_draw(n, temperature=temperature, top_p=1.0), minlength=5).double() / n
        expected = torch.softmax(LOGITS[0].double() / temperature, -1)
        assert (freq - expected).abs().max() < 0.015, (temperature, freq, expected)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.softmax(LOGITS[0], -1)  # order by mass: 3 (0.53), 1 (0.19), 0 (0.12), 4, 2
    top_two = float(probs[3] + probs[1])
    tokens = _draw(5000, temperature=1.0, top_p=top_two - 1e-3)
    assert set(tokens.tolist()) == {3, 1}
    assert set(_draw(2000, temperature=1.0, top_p=0.05).tolist()) == {3}  # the top token always stays


def test_logprob_is_of_the_untruncated_tempered_distribution():
    u = torch.tensor([0.3], dtype=torch.float64)
    token, logp = sample_next(LOGITS, u, temperature=0.7, top_p=0.5)
    assert torch.allclose(logp, torch.log_softmax(LOGITS / 0.7, -1)[0, token])


def test_a_uniform_of_one_never_picks_a_zero_probability_token():
    """A draw near 1 became exactly 1.0 in the default dtype (float32; bfloat16 under ``bf16-true``) and the last
    vocabulary id was sampled at probability 0: a forbidden token under the turn grammar stopped a fit, and a
    padded id entered a free trajectory (review s40)."""
    logits = torch.tensor([[0.5, 1.0, float("-inf"), 2.0, float("-inf")]])
    for u in (1.0, 1.0 - 2**-53, 0.99999999):
        token, logp = sample_next(logits, torch.tensor([u], dtype=torch.float64), temperature=1.0, top_p=1.0)
        assert token.item() == 3 and torch.isfinite(logp).all()
        token, _ = sample_next(logits, torch.tensor([u], dtype=torch.float64), temperature=1.0, top_p=0.9)
        assert token.item() in (0, 1, 3)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # what Lightning's bf16-true sets around training_step
    try:
        drawn = draw_uniforms([row_generator(3, 0, r) for r in range(4)], torch.device("cpu"))
    finally:
        torch.set_default_dtype(previous)
    exact = [torch.rand((), generator=row_generator(3, 0, r), dtype=torch.float64).item() for r in range(4)]
    assert drawn.dtype == torch.float64 and drawn.tolist() == exact  # the row's draw itself, not a rounding of it


def test_greedy_is_argmax_at_temperature_one():
    token, logp = sample_next(LOGITS, torch.tensor([0.99], dtype=torch.float64), temperature=0.0, top_p=1.0)
    assert token.item() == 3
    assert torch.allclose(logp, torch.log_softmax(LOGITS, -1)[0, 3])


def test_row_generators_are_seeded_per_row():
    a = draw_uniforms([row_generator(1, 0, 0), row_generator(1, 0, 1)], torch.device("cpu"))
    b = draw_uniforms([row_generator(1, 0, 0), row_generator(1, 0, 1)], torch.device("cpu"))
    c = draw_uniforms([row_generator(2, 0, 0)], torch.device("cpu"))
    assert torch.equal(a, b)
    assert a[0] != a[1] and a[0] != c[0]


def test_vllm_request_seeds_differ_across_calls():
    # seed * 2**20 + row, taken mod 2**31 by vLLM, kept 11 bits of the turn seed: seeds 2,048 apart collided
    from mgfrec.rollout.vllm_engine import request_seed_base

    bases = [request_seed_base(seed) for seed in range(10_000)]
    assert request_seed_base(5) != request_seed_base(5 + 2048) and request_seed_base(7) == request_seed_base(7)
    assert len(set(bases)) == len(bases)
    assert all(0 <= b < (1 << 31) - (1 << 24) for b in bases)  # a call's rows stay 31-bit
    assert request_seed_base(2**40 + 3) != request_seed_base(3)  # every bit of a 64-bit seed counts

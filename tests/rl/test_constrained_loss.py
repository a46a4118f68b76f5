"""Exact GRPO under constrained decoding: restricted log-probs, the loss and its gradient against a plain
float64 reference written here from the definitions (softmax renormalised over each position's allowed set;
eq. 3 with the k3 KL), independent of mgfrec.rl's own code paths."""

from __future__ import annotations

import math

import torch

from mgfrec.agent.constraints import AllowedSet, allowed_masks
from mgfrec.models.logprobs import logprobs_from_logits, token_entropy
from mgfrec.rl.grpo import grpo_loss

B, T, V = 3, 7, 11


def _case(seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    ids = torch.randint(0, V, (B, T), generator=g)
    sets = [
        AllowedSet(True, frozenset({1, 4, 6})),
        AllowedSet(False, frozenset({0, 2})),
        AllowedSet(True, frozenset({3})),
    ]
    index = torch.full((B, T), -1, dtype=torch.long)
    for b in range(B):
        for t in range(1, T):
            k = (b + t) % 4
            if k < 3:  # some positions unconstrained (index -1)
                index[b, t] = k
                pool = sorted(sets[k].ids) if sets[k].only else [i for i in range(V) if i not in sets[k].ids]
                ids[b, t] = pool[int(torch.randint(len(pool), (1,), generator=g))]  # the sampled token is allowed
    return logits, ids, index, sets


def _reference_logprobs(logits: torch.Tensor, ids: torch.Tensor, index: torch.Tensor, sets) -> torch.Tensor:
    """Per token: log of exp(z_tok) / sum over allowed exp(z), by explicit loops over python lists."""
    out = torch.zeros(B, T, dtype=torch.float64)
    rows = []
    for b in range(B):
        row = [logits.new_zeros(())]
        for t in range(1, T):
            z = logits[b, t - 1]
            k = int(index[b, t])
            allowed = range(V) if k < 0 else [i for i in range(V) if sets[k].allows(i)]
            denom = sum(torch.exp(z[i]) for i in allowed)
            row.append(z[int(ids[b, t])] - torch.log(denom))
        rows.append(torch.stack(row))
    out = torch.stack(rows)
    return out


def test_restricted_logprobs_match_the_definition():
    logits, ids, index, sets = _case(0)
    table = allowed_masks(sets, V)
    got = logprobs_from_logits(logits, ids, 1.0, (index, table))
    want = _reference_logprobs(logits, ids, index, sets)
    assert torch.allclose(got, want, atol=1e-12)
    plain = logprobs_from_logits(logits, ids)
    constrained = index[:, 1:] >= 0
    assert (got[:, 1:][constrained] > plain[:, 1:][constrained] + 1e-6).all()  # the test can tell the difference
    # an allowed set of one token is certain: log-prob 0
    assert torch.allclose(got[index == 2], torch.zeros(int((index == 2).sum()), dtype=torch.float64))
    ent = token_entropy(logits, 1.0, (index, table))
    assert torch.isfinite(ent).all() and torch.allclose(ent[index == 2], torch.zeros_like(ent[index == 2]))


def test_grpo_loss_and_gradient_under_constraints_match_the_reference():
    logits, ids, index, sets = _case(1)
    table = allowed_masks(sets, V)
    g = torch.Generator().manual_seed(7)
    old_logits = logits + 0.3 * torch.randn(logits.shape, generator=g, dtype=torch.float64)
    ref_logits = logits + 0.2 * torch.randn(logits.shape, generator=g, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, 2:] = True
    eps, beta = 0.2, 0.04

    theta = logits.clone().requires_grad_(True)
    logp = logprobs_from_logits(theta, ids, 1.0, (index, table))
    with torch.no_grad():
        old = logprobs_from_logits(old_logits, ids, 1.0, (index, table))
        ref = logprobs_from_logits(ref_logits, ids, 1.0, (index, table))
    loss, _ = grpo_loss(logp, old, ref, adv, mask, clip_epsilon=eps, kl_beta=beta)
    loss.backward()

    theta2 = logits.clone().requires_grad_(True)
    lp = _reference_logprobs(theta2, ids, index, sets)
    old2 = _reference_logprobs(old_logits, ids, index, sets)
    ref2 = _reference_logprobs(ref_logits, ids, index, sets)
    terms = []
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            ratio = torch.exp(lp[b, t] - old2[b, t])
            clipped = torch.clamp(ratio, 1 - eps, 1 + eps)
            surrogate = torch.minimum(ratio * adv[b], clipped * adv[b])
            kl = torch.exp(ref2[b, t] - lp[b, t]) - (ref2[b, t] - lp[b, t]) - 1  # k3
            terms.append(-(surrogate - beta * kl))
    want = torch.stack(terms).sum() / len(terms)  # token-mean over the masked tokens
    want.backward()
    assert math.isclose(float(loss.detach()), float(want.detach()), rel_tol=0, abs_tol=1e-12)
    assert torch.allclose(theta.grad, theta2.grad, atol=1e-12)
    # disallowed logits get no gradient at constrained positions: they are not part of the distribution
    k = index[0, 3]
    if k >= 0 and sets[k].only:
        banned = [i for i in range(V) if not sets[k].allows(i)]
        assert torch.count_nonzero(theta.grad[0, 2, banned]) == 0
    assert torch.count_nonzero(theta.grad) > 0


def test_logprobs_at_the_policys_positions_only_equal_the_full_computation_and_its_gradient():
    """token_logprobs(..., positions=action_mask) runs the output layer on the marked positions alone; the
    values, the entropy and the gradient there are those of the full [B, T, V] computation, 0 elsewhere."""
    from mgfrec.models.logprobs import token_logprobs, token_logprobs_and_entropy
    from mgfrec.models.policy import build_preset

    model, tok = build_preset("tiny", ["Kind of Blue", "Abbey Road", "Rumours"], seed=0)
    model = model.double()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, vocab, (3, 12), generator=g)
    attention = torch.ones_like(ids)
    attention[0, :3] = 0  # left padding
    action = torch.zeros_like(ids, dtype=torch.bool)
    action[:, 6:9] = True
    action[1, 10:] = True
    sets = [AllowedSet(True, frozenset({1, 4, 6, 9})), AllowedSet(False, frozenset({0, 2}))]
    index = torch.full_like(ids, -1)
    index[action] = torch.arange(int(action.sum())) % 2
    table = allowed_masks(sets, vocab)
    for b, t in action.nonzero().tolist():  # each policy token is allowed by its set
        if index[b, t] == 0:
            ids[b, t] = sorted(sets[0].ids)[t % 4]
        elif int(ids[b, t]) in sets[1].ids:
            ids[b, t] = 5
    for constraints in (None, (index, table)):
        for temperature in (1.0, 0.7):
            full, full_ent = token_logprobs_and_entropy(model, ids, attention, temperature, constraints)
            part, part_ent = token_logprobs_and_entropy(model, ids, attention, temperature, constraints, action)
            assert torch.allclose(part[action], full[action], atol=1e-10)
            assert torch.allclose(part_ent[action], full_ent[action], atol=1e-10)
            assert (part[~action] == 0).all() and (part_ent[~action] == 0).all()
            assert not torch.allclose(full[~action], torch.zeros_like(full[~action]))  # the test can tell
            model.zero_grad()
            (full[action] * torch.linspace(0.5, 2.0, int(action.sum()), dtype=torch.float64)).sum().backward()
            want = [p.grad.clone() for p in model.parameters()]
            model.zero_grad()
            once = token_logprobs(model, ids, attention, temperature, constraints, action)
            (once[action] * torch.linspace(0.5, 2.0, int(action.sum()), dtype=torch.float64)).sum().backward()
            for p, w in zip(model.parameters(), want, strict=True):
                assert torch.allclose(p.grad, w, atol=1e-10)


def test_a_prior_on_the_allowed_tokens_is_added_before_the_temperature_and_matches_the_definition():
    """``agent.recall_prior``: a biased set's offsets join the logits, then the temperature divides both (the hf
    engine's order); values and gradients against the definition written out here."""
    logits, ids, index, sets = _case(1)
    prior = {1: 0.6, 4: 0.3, 6: 0.1}
    sets[0] = AllowedSet(True, frozenset(prior), tuple((k, math.log(w)) for k, w in sorted(prior.items())))
    table = allowed_masks(sets, V)
    assert table.dtype == torch.float32  # offsets, not a bool mask, once a set carries a prior
    temperature = 0.7
    logits.requires_grad_(True)
    got = logprobs_from_logits(logits, ids, temperature, (index, table))
    want = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(1, T):
            k = int(index[b, t])
            z = logits[b, t - 1].detach()
            allowed = range(V) if k < 0 else [i for i in range(V) if sets[k].allows(i)]
            bias = {i: (math.log(prior[i]) if k == 0 else 0.0) for i in allowed}
            scores = {i: (z[i] + bias[i]) / temperature for i in allowed}
            denom = sum(torch.exp(s) for s in scores.values())
            want[b, t] = scores[int(ids[b, t])] - torch.log(denom)
    assert torch.allclose(got, want, atol=1e-6)
    # the gradient of one prior-biased log-prob: (onehot - restricted softmax) / T over the allowed tokens
    b, t = next((b, t) for b in range(B) for t in range(1, T) if int(index[b, t]) == 0)
    got[b, t].backward()
    z = logits[b, t - 1].detach()
    allowed = sorted(prior)
    p = torch.softmax(torch.stack([(z[i] + math.log(prior[i])) / temperature for i in allowed]), 0)
    want_grad = torch.zeros(V, dtype=torch.float64)
    for i, pi in zip(allowed, p, strict=True):
        want_grad[i] = ((1.0 if i == int(ids[b, t]) else 0.0) - pi) / temperature
    assert torch.allclose(logits.grad[b, t - 1], want_grad, atol=1e-6)

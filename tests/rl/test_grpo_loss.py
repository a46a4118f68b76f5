"""The GRPO loss and the token log-probs it is built on, checked against two independent references.

(a) ``reference_loss`` below is written from the paper's equations (eq. 3/6 with the k3 KL, masked as in
    section 4.4.2) with explicit Python loops over sequences and tokens, sharing no code with mgfrec. In
    float64 mgfrec's loss and its gradients w.r.t. every model parameter must match it to 1e-9 relative.
(b) TRL 1.16's ``GRPOTrainer._compute_loss`` (skipped when ``trl`` is not installed; it is no dependency of
    mgfrec), called on a trainer object holding only the attributes that method reads, with
    ``completion_mask * tool_mask`` marking the environment tokens. Two checks: with TRL's own log-probs
    (its fused LM head accumulates in float32, so 1e-5 relative), and with mgfrec's log-probs handed to
    TRL's loss code (1e-9 relative: the loss formula itself is equal).

The batch is a tiny random Qwen2 (hidden 32, 2 layers, vocab 50) over 2 prompts x 3 responses of different
lengths, each with ``<item_list>``-like environment blocks in the middle, and old log-probs perturbed so the
clip is active on both sides.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections import defaultdict
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mgfrec.models.logprobs import (
    logprobs_from_logits,
    token_entropy,
    token_logprobs,
    token_logprobs_and_entropy,
)
from mgfrec.rl.grpo import grpo_loss

EPS = 0.2
BETA = 0.04
PROMPT_LEN = 5
GROUP = 3
# Each response as (who, length) segments: "p" policy tokens, "e" an environment block (<item_list>/<feedback>).
LAYOUTS = [
    [("p", 4), ("e", 3), ("p", 3), ("e", 2), ("p", 2)],
    [("p", 6)],
    [("p", 2), ("e", 4), ("p", 5)],
    [("p", 3), ("e", 3), ("p", 1)],
    [("p", 9), ("e", 2), ("p", 3), ("e", 2), ("p", 1)],
    [("p", 1), ("e", 5), ("p", 2)],
]
REWARDS = [1.0, 0.2, -0.5, 0.63, -0.5, 0.1]
RTOL_EXACT = 1e-9  # float64, same maths in another order: only rounding differs
RTOL_TRL_LOGPROBS = 1e-5  # TRL's fused LM head accumulates log-probs in float32


def tiny_qwen2(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    # sdpa, the default: eager attention in float64 turns left-padded rows into NaN (transformers 5.24)
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config).to(torch.float64).train()


@pytest.fixture(scope="module")
def model() -> Qwen2ForCausalLM:
    return tiny_qwen2()


@pytest.fixture(scope="module")
def batch(model):
    """Right-padded tensors as :func:`mgfrec.agent.batching.collate` makes them, plus old/ref log-probs."""
    gen = torch.Generator().manual_seed(1)
    lengths = [PROMPT_LEN + sum(n for _, n in layout) for layout in LAYOUTS]
    width = max(lengths)
    input_ids = torch.zeros(len(LAYOUTS), width, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    action = torch.zeros(len(LAYOUTS), width, dtype=torch.bool)
    for b, layout in enumerate(LAYOUTS):
        input_ids[b, : lengths[b]] = torch.randint(1, 50, (lengths[b],), generator=gen)
        attention[b, : lengths[b]] = 1
        t = PROMPT_LEN
        for who, n in layout:
            action[b, t : t + n] = who == "p"
            t += n
    with torch.no_grad():
        current = token_logprobs(model, input_ids, attention)
    # Shifted enough that some ratios leave [1 - eps, 1 + eps] on both sides; 0.0 off the mask, as collate stores.
    old = torch.where(action, current + 0.35 * torch.randn(current.shape, generator=gen, dtype=torch.float64), 0.0)
    ref = torch.where(action, current + 0.25 * torch.randn(current.shape, generator=gen, dtype=torch.float64), 0.0)
    return SimpleNamespace(
        input_ids=input_ids,
        attention_mask=attention,
        action_mask=action,
        old=old,
        ref=ref,
        advantages=torch.tensor(reference_advantages(REWARDS, GROUP), dtype=torch.float64),
        lengths=lengths,
    )


# ---------------------------------------------------------------- reference (a): the paper, in loops


def reference_advantages(rewards: list[float], group: int) -> list[float]:
    """Eq. 2 with the sample std (``statistics.stdev``) and eps 1e-4 outside the root."""
    out = []
    for start in range(0, len(rewards), group):
        g = rewards[start : start + group]
        mean, std = statistics.mean(g), statistics.stdev(g)
        out += [(r - mean) / (std + 1e-4) for r in g]
    return out


def reference_loss(model, batch, *, beta: float, aggregation: str) -> tuple[torch.Tensor, dict[str, int]]:
    """``-J`` of eq. 6 for this batch, token by token; also counts the tokens where the clip binds."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    ids, mask = batch.input_ids.tolist(), batch.action_mask.tolist()
    old, ref, adv = batch.old.tolist(), batch.ref.tolist(), batch.advantages.tolist()
    per_sequence, all_terms, clipped = [], [], {"low": 0, "high": 0, "tokens": 0}
    for i in range(len(ids)):
        terms = []
        for t in range(1, batch.lengths[i]):
            if not mask[i][t]:
                continue  # prompt and <item_list>/<feedback> tokens: not generated by the policy
            logp = torch.log_softmax(logits[i, t - 1], dim=-1)[ids[i][t]]  # logits at t-1 predict token t
            ratio = torch.exp(logp - old[i][t])
            clip = torch.clamp(ratio, 1 - EPS, 1 + EPS)
            term = torch.minimum(ratio * adv[i], clip * adv[i])
            if beta:
                gap = ref[i][t] - logp
                term = term - beta * (torch.exp(gap) - gap - 1)
            terms.append(term)
            clipped["tokens"] += 1
            clipped["low"] += int(ratio.item() < 1 - EPS and adv[i] < 0)
            clipped["high"] += int(ratio.item() > 1 + EPS and adv[i] > 0)
        per_sequence.append(sum(terms) / len(terms))  # 1/|y_i| sum_t
        all_terms += terms
    if aggregation == "sequence-mean":
        objective = sum(per_sequence) / len(per_sequence)  # 1/G sum_i
    else:
        objective = sum(all_terms) / len(all_terms)
    return -objective, clipped


# ---------------------------------------------------------------- helpers


def grads_of(model, loss_fn) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
    """Loss, gradients by parameter name and extras of ``loss_fn(model_copy)`` on a fresh copy."""
    m = copy.deepcopy(model)
    loss, extra = loss_fn(m)
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in m.named_parameters()}, extra


def assert_grads_close(got: dict, want: dict, rtol: float) -> None:
    assert got.keys() == want.keys()
    scale = max(g.abs().max().item() for g in want.values())
    assert scale > 0, "the reference gradient is zero: the test would prove nothing"
    for name, expected in want.items():
        torch.testing.assert_close(got[name], expected, rtol=rtol, atol=rtol * scale, msg=lambda m, n=name: f"{n}: {m}")


def batch_loss(logprobs, batch, *, beta: float = BETA, **kw):
    """mgfrec's loss of ``logprobs`` against ``batch``'s old/ref log-probs, advantages and mask (no reference
    when ``beta`` is 0)."""
    return grpo_loss(
        logprobs,
        batch.old,
        batch.ref if beta else None,
        batch.advantages,
        batch.action_mask,
        clip_epsilon=EPS,
        kl_beta=beta,
        **kw,
    )


def mgfrec_loss(batch, *, beta: float, aggregation: str, **kw):
    def run(m):
        logprobs = token_logprobs(m, batch.input_ids, batch.attention_mask)
        return batch_loss(logprobs, batch, beta=beta, aggregation=aggregation, **kw)

    return run


# ---------------------------------------------------------------- (a) against the paper's equations


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean"])
@pytest.mark.parametrize("beta", [0.0, BETA])
def test_loss_and_parameter_gradients_match_the_paper_written_out(model, batch, aggregation, beta):
    want_loss, want_grads, counts = grads_of(
        model, lambda m: reference_loss(m, batch, beta=beta, aggregation=aggregation)
    )
    got_loss, got_grads, metrics = grads_of(model, mgfrec_loss(batch, beta=beta, aggregation=aggregation))

    assert counts["low"] > 0 and counts["high"] > 0, "the clip must bind on both sides for this test to mean much"
    torch.testing.assert_close(got_loss, want_loss, rtol=RTOL_EXACT, atol=0.0)
    assert_grads_close(got_grads, want_grads, RTOL_EXACT)
    assert metrics["tokens"].item() == counts["tokens"] == int(batch.action_mask.sum())
    assert metrics["clip_fraction/low"].item() == pytest.approx(counts["low"] / counts["tokens"])
    assert metrics["clip_fraction/high"].item() == pytest.approx(counts["high"] / counts["tokens"])
    assert metrics["clip_fraction/total"].item() == pytest.approx((counts["low"] + counts["high"]) / counts["tokens"])
    assert ("kl" in metrics) == bool(beta)


def test_the_two_aggregations_differ_when_lengths_differ(model, batch):
    seq, _, _ = grads_of(model, mgfrec_loss(batch, beta=0.0, aggregation="sequence-mean"))
    tok, _, _ = grads_of(model, mgfrec_loss(batch, beta=0.0, aggregation="token-mean"))
    assert abs(seq.item() - tok.item()) > 1e-3


# ---------------------------------------------------------------- masks: environment tokens are inert


class PerturbedLogits(torch.nn.Module):
    """``inner`` with a constant added to its logits wherever they predict a token outside ``action_mask``."""

    def __init__(self, inner: torch.nn.Module, action_mask: torch.Tensor, scale: float):
        super().__init__()
        self.inner = inner
        predicts_masked = torch.ones_like(action_mask)
        predicts_masked[:, :-1] = ~action_mask[:, 1:]  # position t predicts token t + 1; the last predicts none
        gen = torch.Generator().manual_seed(7)
        noise = scale * torch.randn(*action_mask.shape, inner.config.vocab_size, generator=gen, dtype=torch.float64)
        self.register_buffer("noise", noise * predicts_masked[..., None])

    def forward(self, **kwargs):
        return SimpleNamespace(logits=self.inner(**kwargs).logits + self.noise)


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean"])
def test_logits_at_masked_positions_change_neither_loss_nor_gradients(model, batch, aggregation):
    def run(wrap: bool):
        m = copy.deepcopy(model)
        scored = PerturbedLogits(m, batch.action_mask, 50.0) if wrap else m
        logprobs = token_logprobs(scored, batch.input_ids, batch.attention_mask)
        loss, _ = batch_loss(logprobs, batch, aggregation=aggregation)
        loss.backward()
        return logprobs.detach(), loss.detach(), [p.grad for p in m.parameters()]

    plain_lp, plain_loss, plain_grads = run(False)
    noisy_lp, noisy_loss, noisy_grads = run(True)
    env = ~batch.action_mask & batch.attention_mask.bool()
    env[:, 0] = False
    assert (plain_lp[env] - noisy_lp[env]).abs().min() > 1e-3  # the perturbation did reach the masked log-probs
    assert torch.equal(plain_loss, noisy_loss)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, noisy_grads, strict=True))


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean"])
def test_garbage_off_the_mask_is_inert_even_nan(batch, aggregation):
    """Stale, huge or NaN values on masked tokens (engines may leave them) change nothing, gradients included."""
    off = ~batch.action_mask
    base = torch.where(batch.action_mask, batch.old + 0.1, 0.0)

    def run(fill: float):
        logprobs = torch.where(off, torch.full_like(base, fill), base).requires_grad_()
        old = torch.where(off, torch.full_like(base, fill), batch.old)
        ref = torch.where(off, torch.full_like(base, -fill), batch.ref)
        adv = batch.advantages[:, None].expand_as(base).clone()
        adv[off] = fill  # per-token advantages, undefined off the mask
        loss, metrics = grpo_loss(
            logprobs, old, ref, adv, batch.action_mask, clip_epsilon=EPS, kl_beta=BETA, aggregation=aggregation
        )
        loss.backward()
        return loss, logprobs.grad, metrics

    clean_loss, clean_grad, clean_metrics = run(0.0)
    for fill in (1e4, -1e4, math.nan):
        loss, grad, metrics = run(fill)
        assert torch.equal(loss, clean_loss) and torch.equal(grad, clean_grad)
        assert all(torch.equal(metrics[k], clean_metrics[k]) for k in clean_metrics)
        assert torch.all(grad[off] == 0)


# ---------------------------------------------------------------- behaviour the trainer relies on


def test_on_policy_without_kl_is_the_plain_policy_gradient(batch):
    """Ratio 1: loss = -mean(A) over tokens, and d loss / d logp = -A / N on each masked token."""
    logprobs = torch.where(batch.action_mask, batch.old, 0.0).requires_grad_()
    loss, metrics = grpo_loss(
        logprobs, batch.old, None, batch.advantages, batch.action_mask, clip_epsilon=EPS, kl_beta=0.0
    )
    loss.backward()
    n = batch.action_mask.sum()
    per_token_adv = batch.advantages[:, None].expand_as(logprobs)
    torch.testing.assert_close(loss, -(per_token_adv * batch.action_mask).sum() / n)
    torch.testing.assert_close(logprobs.grad, torch.where(batch.action_mask, -per_token_adv / n, 0.0))
    assert metrics["ratio/mean"].item() == 1.0 and metrics["clip_fraction/total"].item() == 0.0
    assert metrics["approx_kl_old"].item() == 0.0


def test_zero_advantages_and_no_kl_give_zero_loss_and_gradient(batch):
    logprobs = batch.old.clone().requires_grad_()
    loss, _ = grpo_loss(
        logprobs,
        batch.old + 0.3,
        None,
        torch.zeros(6, dtype=torch.float64),
        batch.action_mask,
        clip_epsilon=EPS,
        kl_beta=0.0,
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logprobs.grad) == 0


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean"])
def test_micro_batches_with_the_global_normalizer_add_up_to_the_full_batch(batch, aggregation):
    gen = torch.Generator().manual_seed(11)
    logprobs = (batch.old + 0.1 * torch.randn(batch.old.shape, generator=gen, dtype=torch.float64)).requires_grad_()
    kw = {"clip_epsilon": EPS, "kl_beta": BETA, "aggregation": aggregation}
    full, _ = grpo_loss(logprobs, batch.old, batch.ref, batch.advantages, batch.action_mask, **kw)
    (full_grad,) = torch.autograd.grad(full, logprobs)
    norm = batch.action_mask.sum() if aggregation == "token-mean" else len(LAYOUTS)
    parts = [
        grpo_loss(
            logprobs[s], batch.old[s], batch.ref[s], batch.advantages[s], batch.action_mask[s], normalizer=norm, **kw
        )[0]
        for s in (slice(0, 2), slice(2, 6))
    ]
    (part_grad,) = torch.autograd.grad(sum(parts), logprobs)
    torch.testing.assert_close(sum(parts), full, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(part_grad, full_grad, rtol=1e-12, atol=1e-15)


def test_aggregations_agree_when_every_response_has_the_same_token_count():
    gen = torch.Generator().manual_seed(3)
    logprobs, old, ref = (-torch.rand(4, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[0, 1, 1, 0, 1, 0], [0, 1, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0]]).bool()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5], dtype=torch.float64)
    kw = {"clip_epsilon": EPS, "kl_beta": BETA}
    seq, _ = grpo_loss(logprobs, old, ref, adv, mask, aggregation="sequence-mean", **kw)
    tok, _ = grpo_loss(logprobs, old, ref, adv, mask, aggregation="token-mean", **kw)
    torch.testing.assert_close(seq, tok, rtol=1e-12, atol=0.0)


def test_kl_importance_correction_keeps_the_value_on_policy_but_not_the_gradient(batch):
    def run(correct: bool):
        logprobs = batch.old.clone().requires_grad_()
        loss, metrics = batch_loss(logprobs, batch, kl_importance_correction=correct)
        loss.backward()
        return loss, logprobs.grad, metrics["kl"]

    plain, corrected = run(False), run(True)
    torch.testing.assert_close(corrected[0], plain[0], rtol=1e-12, atol=0.0)
    torch.testing.assert_close(corrected[2], plain[2], rtol=1e-12, atol=0.0)
    assert (corrected[1] - plain[1]).abs().max() > 1e-6
    assert plain[2] > 0  # k3 is non-negative and here not 0


def test_a_response_without_policy_tokens_counts_but_adds_nothing():
    logprobs = torch.tensor([[0.0, -1.0, -2.0], [0.0, -0.5, -0.5]], dtype=torch.float64)
    mask = torch.tensor([[False, True, True], [False, False, False]])
    adv = torch.tensor([1.0, 5.0], dtype=torch.float64)
    kw = {"clip_epsilon": EPS, "kl_beta": 0.0}
    loss, metrics = grpo_loss(logprobs, logprobs, None, adv, mask, aggregation="sequence-mean", **kw)
    assert loss.item() == pytest.approx(-0.5)  # (-1 + 0) / 2 sequences, as TRL's "grpo"
    empty, _ = grpo_loss(logprobs, logprobs, None, adv, mask & False, clip_epsilon=EPS, kl_beta=0.0)
    assert empty.item() == 0.0 and metrics["tokens"].item() == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aggregation": "sum"}, "grpo.loss_aggregation"),
        ({"kl_beta": 0.1, "ref": None}, "ref_logprobs"),
        ({"clip_epsilon": 0.0}, "clip_epsilon"),
        ({"advantages": torch.zeros(3)}, "advantages"),
        ({"mask": torch.ones(2, 5, dtype=torch.bool)}, "action_mask"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    lp = torch.zeros(2, 4)
    args = {"ref": lp, "advantages": torch.zeros(2), "mask": torch.ones(2, 4, dtype=torch.bool)}
    args |= {"clip_epsilon": EPS, "kl_beta": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        grpo_loss(lp, lp, args.pop("ref"), args.pop("advantages"), args.pop("mask"), **args)


# ---------------------------------------------------------------- token log-probs and entropy


def test_logprob_at_t_is_the_next_token_probability_given_the_prefix(model, batch):
    row = batch.input_ids[4, : batch.lengths[4]]
    with torch.no_grad():
        got = token_logprobs(model, row[None])[0]
        for t in range(1, len(row)):
            prefix_logits = model(input_ids=row[None, :t]).logits[0, -1]
            want = torch.log_softmax(prefix_logits, -1)[row[t]]
            # Qwen2RMSNorm normalises in float32 even in a float64 model, so forwards of different lengths
            # agree to float32 rounding only; a misaligned shift would be off by whole nats.
            torch.testing.assert_close(got[t], want, rtol=1e-6, atol=1e-7)
    assert got[0].item() == 0.0


def test_padding_on_either_side_leaves_the_values(model):
    ids = torch.tensor([[5, 9, 13, 2, 44, 7]])
    with torch.no_grad():
        plain = token_logprobs(model, ids)
        right = token_logprobs(
            model, torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1), torch.tensor([[1] * 6 + [0] * 3])
        )
        left = token_logprobs(
            model, torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1), torch.tensor([[0] * 3 + [1] * 6])
        )
    torch.testing.assert_close(right[:, :6], plain, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(left[:, 4:], plain[:, 1:], rtol=1e-10, atol=1e-12)


def test_the_rollout_definition_matches_each_row_run_alone(batch):
    """``sequence_logprobs`` (what the engines are tested against, and what the loss's ``token_logprobs``
    serves) on the padded batch equals ``log_softmax(logits / T)`` of each row run alone, unpadded, through
    the model's own forward; a greedy rollout (temperature 0) is scored at T = 1."""
    from mgfrec.rollout.logprobs import sequence_logprobs

    m = tiny_qwen2().float()
    for temperature, scored_at in ((0.7, 0.7), (0.0, 1.0)):
        with torch.no_grad():
            got = sequence_logprobs(m, batch.input_ids, batch.attention_mask, temperature=temperature)
            for row in range(batch.input_ids.shape[0]):
                real = batch.attention_mask[row].bool()
                ids = batch.input_ids[row][real]
                logits = m(input_ids=ids[None]).logits[0].float() / scored_at
                want = torch.log_softmax(logits[:-1], -1).gather(-1, ids[1:, None]).squeeze(-1)
                torch.testing.assert_close(got[row][real][1:], want, rtol=1e-5, atol=1e-5)
                assert got[row][real][0] == 0


def test_temperature_divides_the_logits_and_entropy_is_shannon():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 7, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 7, (2, 4), generator=gen)
    lp = logprobs_from_logits(logits, ids, temperature=2.0)
    want = torch.log_softmax(logits[:, :-1] / 2.0, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(lp[:, 1:], want)
    ent = token_entropy(logits, temperature=2.0)
    p = torch.softmax(logits[:, :-1] / 2.0, -1)
    torch.testing.assert_close(ent[:, 1:], -(p * p.log()).sum(-1))
    assert torch.all(lp[:, 0] == 0) and torch.all(ent[:, 0] == 0)
    uniform = token_entropy(torch.zeros(1, 3, 7))
    torch.testing.assert_close(uniform[:, 1:], torch.full((1, 2), math.log(7)))
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, ids, temperature=0.0)


def test_one_forward_gives_both_and_only_logprobs_carry_gradient(model, batch):
    lp, ent = token_logprobs_and_entropy(model, batch.input_ids, batch.attention_mask)
    assert lp.requires_grad and not ent.requires_grad and lp.shape == ent.shape == batch.input_ids.shape
    torch.testing.assert_close(lp.detach(), token_logprobs(model, batch.input_ids, batch.attention_mask).detach())


# ---------------------------------------------------------------- (b) against TRL's GRPOTrainer._compute_loss

TRL_LOSS_TYPES = {"sequence-mean": ["grpo"], "token-mean": ["bnpo", "dapo"]}


class _SingleProcess:
    """What ``_compute_loss`` asks of ``accelerate.Accelerator`` in a one-process run."""

    num_processes = 1
    is_main_process = True

    def autocast(self):
        return nullcontext()

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x


def trl_compute_loss(model, batch, *, loss_type: str, beta: float, bias_correction: bool, tmp_path, logprobs=None):
    """TRL's ``_compute_loss`` on ``batch``; ``logprobs`` replaces TRL's own per-token log-probs when given.

    Only ``_compute_loss`` and TRL's fused LM head run; the trainer's constructor (datasets, generation,
    reward functions) is skipped by setting the attributes ``_compute_loss`` reads, each as ``__init__``
    sets it from a real ``GRPOConfig``.
    """
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    args = GRPOConfig(
        output_dir=str(tmp_path),
        loss_type=loss_type,
        beta=beta,
        epsilon=EPS,
        use_cpu=True,
        bf16=False,
        use_bias_correction_kl=bias_correction,
        report_to=[],
    )
    trainer = GRPOTrainer.__new__(GRPOTrainer)
    trainer.args, trainer.model, trainer.accelerator = args, model, _SingleProcess()
    trainer.loss_type, trainer.beta = args.loss_type, args.beta
    trainer.epsilon_low, trainer.epsilon_high = args.epsilon, args.epsilon
    trainer.importance_sampling_level = args.importance_sampling_level
    trainer.off_policy_mask_threshold = args.off_policy_mask_threshold
    trainer.top_entropy_quantile = args.top_entropy_quantile
    trainer._entropy_bonus_enabled, trainer.aux_loss_enabled, trainer.use_vllm = False, False, False
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer.current_gradient_accumulation_steps = 1
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
    p = PROMPT_LEN
    if logprobs is not None:
        completion = logprobs[:, p:]
        trainer._get_per_token_logps_and_entropies = lambda *a, **k: (completion, torch.zeros_like(completion), None)
    real = batch.attention_mask[:, p:]
    inputs = {
        "prompt_ids": batch.input_ids[:, :p],
        "prompt_mask": batch.attention_mask[:, :p],
        "completion_ids": batch.input_ids[:, p:],
        "completion_mask": real,
        # TRL's tool_mask: 0 on tool/environment tokens, 1 elsewhere (padding too); the loss uses the product.
        "tool_mask": (batch.action_mask[:, p:] | (real == 0)).long(),
        "advantages": batch.advantages,
        "old_per_token_logps": batch.old[:, p:],
        "ref_per_token_logps": batch.ref[:, p:],
        "num_items_in_batch": batch.action_mask.sum().to(torch.float64),  # "dapo": tokens of the whole batch
    }
    return trainer._compute_loss(model, inputs), trainer._metrics["train"]


TRL_CASES = [
    (agg, lt, beta, corr)
    for agg, lts in TRL_LOSS_TYPES.items()
    for lt in lts
    for beta, corr in [(0.0, False), (BETA, False), (BETA, True)]
]


@pytest.mark.parametrize(("aggregation", "loss_type", "beta", "correction"), TRL_CASES)
def test_loss_formula_equals_trl(model, batch, tmp_path, aggregation, loss_type, beta, correction):
    """Same log-probs into both loss functions: equal to float64 rounding (loss and model gradients)."""
    pytest.importorskip("trl", reason="trl is an optional reference, not an mgfrec dependency")

    def trl_side(m):
        lp = token_logprobs(m, batch.input_ids, batch.attention_mask)
        return trl_compute_loss(
            m, batch, loss_type=loss_type, beta=beta, bias_correction=correction, tmp_path=tmp_path, logprobs=lp
        )

    want_loss, want_grads, trl_metrics = grads_of(model, trl_side)
    got_loss, got_grads, metrics = grads_of(
        model, mgfrec_loss(batch, beta=beta, aggregation=aggregation, kl_importance_correction=correction)
    )
    torch.testing.assert_close(got_loss, want_loss, rtol=RTOL_EXACT, atol=0.0)
    assert_grads_close(got_grads, want_grads, RTOL_EXACT)
    for ours, theirs in [
        ("clip_fraction/low", "low_mean"),
        ("clip_fraction/high", "high_mean"),
        ("clip_fraction/total", "region_mean"),
    ]:
        assert metrics[ours].item() == pytest.approx(trl_metrics[f"clip_ratio/{theirs}"][0], rel=1e-6)
    assert metrics["clip_fraction/low"] > 0 and metrics["clip_fraction/high"] > 0
    if beta:
        assert metrics["kl"].item() == pytest.approx(trl_metrics["kl"][0], rel=1e-9)


@pytest.mark.parametrize(
    ("aggregation", "loss_type", "beta", "correction"),
    [("sequence-mean", "grpo", BETA, False), ("token-mean", "dapo", BETA, True)],
)
def test_whole_loss_equals_trl_with_trls_own_logprobs(model, batch, tmp_path, aggregation, loss_type, beta, correction):
    """TRL scores the tokens itself (its fused LM head, float32 accumulation) and computes the loss."""
    pytest.importorskip("trl", reason="trl is an optional reference, not an mgfrec dependency")

    def trl_side(m):
        return trl_compute_loss(m, batch, loss_type=loss_type, beta=beta, bias_correction=correction, tmp_path=tmp_path)

    want_loss, want_grads, trl_metrics = grads_of(model, trl_side)

    def ours(m):
        lp, entropy = token_logprobs_and_entropy(m, batch.input_ids, batch.attention_mask)
        loss, metrics = grpo_loss(
            lp,
            batch.old,
            batch.ref,
            batch.advantages,
            batch.action_mask,
            clip_epsilon=EPS,
            kl_beta=beta,
            aggregation=aggregation,
            kl_importance_correction=correction,
        )
        metrics["entropy"] = entropy[batch.action_mask].mean()
        return loss, metrics

    got_loss, got_grads, metrics = grads_of(model, ours)
    torch.testing.assert_close(got_loss, want_loss, rtol=RTOL_TRL_LOGPROBS, atol=0.0)
    assert_grads_close(got_grads, want_grads, RTOL_TRL_LOGPROBS)
    assert metrics["entropy"].item() == pytest.approx(trl_metrics["entropy"][0], rel=RTOL_TRL_LOGPROBS)


def _post_processing_models():
    """Tiny models whose forward post-processes the output layer's logits, and one that does it in a way
    head_logits does not know."""
    from transformers import (
        CohereConfig,
        CohereForCausalLM,
        Gemma2Config,
        Gemma2ForCausalLM,
        GraniteConfig,
        GraniteForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    small = {"vocab_size": 40, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    heads = {"num_attention_heads": 2, "num_key_value_heads": 1}

    class Tripled(LlamaForCausalLM):  # an unknown post-processing: the full forward must be used
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3
            return out

    torch.manual_seed(0)
    models = {
        "gemma2 softcap": Gemma2ForCausalLM(Gemma2Config(**small, **heads, head_dim=8, final_logit_softcapping=2.0)),
        "granite scaling": GraniteForCausalLM(GraniteConfig(**small, **heads, logits_scaling=8.0)),
        "cohere scale": CohereForCausalLM(CohereConfig(**small, **heads, logit_scale=0.25)),
        "unknown": Tripled(LlamaConfig(**small, **heads)),
    }
    for model in models.values():
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(40.0)  # logits of a trained model's size, not ~0
    return models


def test_selected_positions_give_the_models_own_logprobs_whatever_its_logit_post_processing():
    # the output layer alone skipped Gemma's soft-capping and Granite's scaling: -18.6 against -6.0 nats
    from mgfrec.models.logprobs import head_matches, token_logprobs, token_logprobs_and_entropy

    ids = torch.tensor([[3, 7, 11, 5, 2, 9, 14, 1], [4, 4, 8, 12, 6, 3, 10, 2]])
    wanted = torch.zeros_like(ids, dtype=torch.bool)
    wanted[:, 3:] = True
    for name, model in _post_processing_models().items():
        model.eval()
        full = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        expected = torch.nn.functional.pad(full, (1, 0)) * wanted
        assert head_matches(model) == (name != "unknown"), name
        got = token_logprobs(model, ids, positions=wanted)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=name)
        torch.testing.assert_close(token_logprobs_and_entropy(model, ids, positions=wanted)[0] * wanted, expected)

"""Constrained turns (agent.decoding: constrained) with the tiny preset: the grammar, the title trie, the hf
engine sampling under it, and log-probs that the training forward pass reproduces exactly."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mgfrec.agent.batching import collate
from mgfrec.agent.constraints import TokenTrie, TurnConstraint, TurnGrammar
from mgfrec.agent.environment import Environment
from mgfrec.agent.loop import RolloutSample, rollout
from mgfrec.agent.parser import parse_turn
from mgfrec.config.schema import AgentConfig
from mgfrec.grounding.engine import Grounding
from mgfrec.grounding.exact import ExactGrounder
from mgfrec.models.logprobs import token_logprobs, vocab_width
from mgfrec.rollout.hf_engine import HFEngine
from mgfrec.rollout.scripted_engine import ScriptedEngine

SHOWN = ["Kind of Blue", "Blue Train", "A Love Supreme"]


@pytest.fixture(scope="module")
def grammar(tiny_policy):
    model, tokenizer = tiny_policy
    return TurnGrammar(tokenizer, model.config.vocab_size)


def walk(constraint: TurnConstraint, rng: random.Random, vocab: int) -> list[int]:
    """Random tokens, each drawn uniformly from what the constraint allows, until it is done."""
    out = []
    while not constraint.done:
        allowed = constraint.allowed()
        ids = sorted(allowed.ids) if allowed.only else [i for i in range(vocab) if i not in allowed.ids]
        assert ids, "the grammar must always allow a token before it is done"
        tok = rng.choice(ids)
        constraint.advance(tok)
        out.append(tok)
        assert len(out) < 200
    return out


@pytest.mark.parametrize("seed", range(25))
def test_every_walk_is_a_well_formed_turn_naming_a_shown_title(grammar, tiny_policy, seed):
    _, tokenizer = tiny_policy
    rng = random.Random(seed)
    history = ["Thriller"]
    c = TurnConstraint(grammar, grammar.trie(SHOWN), grammar.trie(SHOWN + history), budget=64, max_think_tokens=6)
    ids = walk(c, rng, grammar.vocab_size)
    turn = parse_turn(tokenizer.decode(ids, skip_special_tokens=False))
    assert turn.kind in ("ground", "answer"), turn.error
    assert turn.title in (SHOWN if turn.kind == "answer" else SHOWN + history)
    # the thought is cut at max_think_tokens: think open + <= 6 tokens + close + action
    assert ids.index(grammar.think_close[0]) <= 1 + 6


def test_no_grounding_left_means_the_turn_answers(grammar, tiny_policy):
    _, tokenizer = tiny_policy
    for seed in range(10):
        c = TurnConstraint(grammar, grammar.trie(SHOWN), grammar.trie(SHOWN), can_ground=False, max_think_tokens=3)
        turn = parse_turn(tokenizer.decode(walk(c, random.Random(seed), grammar.vocab_size)))
        assert turn.kind == "answer" and turn.title in SHOWN


def test_free_grounding_is_plain_text_without_tags(grammar, tiny_policy):
    _, tokenizer = tiny_policy
    kinds = set()
    for seed in range(30):
        c = TurnConstraint(grammar, grammar.trie(SHOWN), None, max_think_tokens=3, max_free_title_tokens=5)
        text = tokenizer.decode(walk(c, random.Random(seed), grammar.vocab_size))
        turn = parse_turn(text)
        assert turn.kind in ("ground", "answer"), (text, turn.error)
        kinds.add(turn.kind)
        if turn.kind == "ground":
            assert "<" not in turn.title and ">" not in turn.title
    assert kinds == {"ground", "answer"}  # both actions happen: the test can tell a stuck grammar


def test_the_trie_ends_titles_that_are_prefixes_of_others(grammar):
    trie = grammar.trie(["Blue", "Blue Train"])
    node = trie
    for tok in grammar.title_ids("Blue"):
        node = node.children[tok]
    assert node.terminal and node.children  # "Blue" may end here or go on to "Blue Train"
    assert TokenTrie([[1, 2], [1]]).depth == 2


def test_replay_gives_the_sets_the_sampler_saw(grammar):
    rng = random.Random(3)
    live = TurnConstraint(grammar, grammar.trie(SHOWN), grammar.trie(SHOWN), max_think_tokens=4)
    seen, ids = [], []
    while not live.done:
        seen.append(live.allowed())
        allowed = seen[-1]
        pool = sorted(allowed.ids) if allowed.only else [i for i in range(grammar.vocab_size) if i not in allowed.ids]
        ids.append(rng.choice(pool))
        live.advance(ids[-1])
    again = TurnConstraint(grammar, grammar.trie(SHOWN), grammar.trie(SHOWN), max_think_tokens=4)
    assert again.replay(ids) == seen
    with pytest.raises(ValueError, match="not allowed"):
        TurnConstraint(grammar, grammar.trie(SHOWN)).advance(grammar.answer_open[0])  # must open a thought first


@pytest.fixture(scope="module")
def environment(minilm, catalogue, tiny_policy):
    vectors = minilm.encode(catalogue)
    return Environment(Grounding(minilm, ExactGrounder(vectors), catalogue, vectors, top_k=3), tiny_policy[1])


SAMPLES = [
    RolloutSample(("Kind of Blue", "Blue Train"), ("A Love Supreme", "Thriller", "Rumours"), sample_id="a"),
    RolloutSample(("Nevermind",), ("OK Computer", "Pet Sounds"), sample_id="b"),
]


@pytest.mark.slow
def test_untrained_policy_always_answers_a_shown_title_and_logprobs_are_exact(environment, tiny_policy):
    model, tokenizer = tiny_policy
    agent = AgentConfig(max_groundings=2, max_new_tokens_per_turn=48, max_new_tokens_total=200, max_think_tokens=8)
    result = rollout(HFEngine(model, tokenizer), environment, SAMPLES, group_size=4, agent=agent, seed=5)
    grounded = 0
    for traj in result.trajectories:
        assert traj.end_reason == "answered", traj.state.why
        shown = set(SAMPLES[traj.extras["sample_index"]].recall_titles) | set(traj.shown_titles())
        assert traj.answer in shown
        grounded += traj.num_groundings
    assert grounded > 0  # some trajectories ground: the environment's item lists then feed the answer trie
    # the training forward pass, restricted by what travelled with the trajectories, gives the sampled log-probs
    batch = collate(result.trajectories, tokenizer.pad_token_id, vocab_size=vocab_width(model))
    with torch.no_grad():
        restricted = token_logprobs(model, batch.input_ids, batch.attention_mask, 1.0, batch.constraints)
        plain = token_logprobs(model, batch.input_ids, batch.attention_mask, 1.0)
    mask = batch.action_mask
    assert torch.allclose(restricted[mask], batch.old_logprobs[mask], atol=1e-4)
    assert (plain[mask] < restricted[mask] - 1e-3).float().mean() > 0.5  # the restriction really renormalises


@pytest.mark.slow
def test_engines_without_constraint_support_are_refused(environment, tiny_policy):
    class Plain(ScriptedEngine):
        supports_constraints = False

    engine = Plain(tiny_policy[1], lambda ctx, j: "<think>a</think><answer>Rumours</answer>")
    with pytest.raises(ValueError, match="does not support agent.decoding: constrained"):
        rollout(engine, environment, SAMPLES, agent=AgentConfig())
    out = rollout(engine, environment, SAMPLES, agent=AgentConfig(decoding="free"))
    assert all(t.end_reason == "answered" for t in out.trajectories)


@pytest.mark.slow
def test_a_scripted_turn_that_breaks_the_grammar_is_an_error(environment, tiny_policy):
    engine = ScriptedEngine(tiny_policy[1], lambda ctx, j: "<think>a</think><answer>Not Shown</answer>")
    with pytest.raises(ValueError, match="breaks the constrained turn grammar"):
        rollout(engine, environment, SAMPLES, agent=AgentConfig())


@pytest.mark.slow
def test_titles_too_long_for_the_turn_are_not_offered(environment, tiny_policy):
    model, tokenizer = tiny_policy
    long_title = " ".join(["Kind of Blue"] * 12)
    samples = [RolloutSample(("Nevermind",), (long_title, "Rumours"), sample_id="long")]
    agent = AgentConfig(max_groundings=0, max_new_tokens_per_turn=16, max_new_tokens_total=16, max_think_tokens=4)
    result = rollout(HFEngine(model, tokenizer), environment, samples, group_size=6, agent=agent, seed=2)
    assert len(tokenizer.encode(long_title)) > 16
    assert all(t.end_reason == "answered" and t.answer == "Rumours" for t in result.trajectories)


def test_a_weighted_trie_factors_the_prior_over_whole_titles(grammar):
    """Multiplying the per-step priors along a title's tokens (and its close) gives its weight's share, for
    titles that share prefixes and a title that is a prefix of another."""
    titles = ["Blue", "Blue Train", "Kind of Blue", "A Love Supreme", "Blue Train"]  # a repeat keeps its best
    weights = [0.2, 1.0, 0.5, 0.25, 0.1]
    trie = grammar.trie(titles, weights)
    close = grammar.answer_close[0]
    best = {"Blue": 0.2, "Blue Train": 1.0, "Kind of Blue": 0.5, "A Love Supreme": 0.25}
    total = 0.0
    for title, w in best.items():
        node, logp = trie, 0.0
        for tok in (*grammar.title_ids(title), close):
            step = dict(node.log_prior(close))
            assert math.isclose(sum(math.exp(v) for v in step.values()), 1.0, rel_tol=1e-9)
            logp += step[tok]
            node = node.children.get(tok)
        assert math.isclose(math.exp(logp), w / sum(best.values()), rel_tol=1e-9)
        total += math.exp(logp)
    assert math.isclose(total, 1.0, rel_tol=1e-9)
    assert grammar.trie(titles).log_prior(close) == ()  # unweighted: no prior


@pytest.mark.slow
def test_a_strong_recall_prior_answers_the_recall_lists_first_title_with_exact_logprobs(environment, tiny_policy):
    model, tokenizer = tiny_policy
    agent = AgentConfig(max_groundings=0, max_new_tokens_per_turn=48, max_new_tokens_total=96, max_think_tokens=4)
    plain = rollout(HFEngine(model, tokenizer), environment, SAMPLES, group_size=8, agent=agent, seed=4)
    strong = agent.model_copy(update={"recall_prior": 12.0})
    result = rollout(HFEngine(model, tokenizer), environment, SAMPLES, group_size=8, agent=strong, seed=4)

    def firsts(trajectories):
        return sum(t.answer == SAMPLES[t.extras["sample_index"]].recall_titles[0] for t in trajectories)

    assert firsts(result.trajectories) >= 15  # of 16: rank 2 weighs 2**-12 of rank 1
    assert firsts(plain.trajectories) < firsts(result.trajectories)  # the untrained policy alone spreads out
    batch = collate(result.trajectories, tokenizer.pad_token_id, vocab_size=vocab_width(model))
    assert batch.constraints[1].dtype == torch.float32
    with torch.no_grad():
        restricted = token_logprobs(model, batch.input_ids, batch.attention_mask, 1.0, batch.constraints)
    mask = batch.action_mask
    assert torch.allclose(restricted[mask], batch.old_logprobs[mask], atol=1e-4)


@pytest.mark.parametrize("space", ["\u00a0", "\u3000", "\u2003"])
def test_a_thought_of_whitespace_bytes_is_not_a_turn(grammar, tiny_policy, space):
    """Each byte of a multi-byte whitespace character decodes alone to U+FFFD, so the "first thought token is not
    whitespace" rule let them through: `<think>NBSP</think><answer>...` passed the grammar and was an empty thought
    to the parser, a format error (-0.5) under constrained turns (review s27). The thought may close only once
    something in it shows; a thought that starts with one byte of a visible character ("É") is still written."""
    _, tokenizer = tiny_policy
    ids = tokenizer.encode(space, add_special_tokens=False)
    assert len(ids) > 1 and all("\ufffd" in tokenizer.decode([i]) for i in ids)  # bytes, as the review found
    turn = [*grammar.think_open, *ids, *grammar.think_close, *grammar.answer_open]
    turn += [*grammar.title_ids("Kind of Blue"), *grammar.answer_close]
    assert parse_turn(tokenizer.decode(turn, skip_special_tokens=False)).error  # what the grammar must rule out
    c = TurnConstraint(grammar, grammar.trie(SHOWN), grammar.trie(SHOWN), can_ground=False, budget=64)
    with pytest.raises(ValueError, match="not allowed"):
        c.replay(turn)
    later = [*grammar.think_open, *tokenizer.encode("x", add_special_tokens=False), *ids, *grammar.think_close]
    c.fresh().replay([*later, *grammar.answer_open, *grammar.title_ids("Kind of Blue"), *grammar.answer_close])
    accented = tokenizer.encode("Édith", add_special_tokens=False)
    assert "\ufffd" in tokenizer.decode(accented[:1])  # its first token is one byte of "É"
    opening = [*grammar.think_open, *accented, *grammar.think_close]
    c.fresh().replay([*opening, *grammar.answer_open, *grammar.title_ids("Kind of Blue"), *grammar.answer_close])


@pytest.mark.reliability
@pytest.mark.parametrize("hidden", ["\u200b", "\ufeff"])
def test_a_free_title_of_characters_that_show_nothing_is_not_a_turn(grammar, tiny_policy, hidden):
    """The parser finds a title of zero-width spaces empty (one was grounded to an arbitrary item, review s40); the
    grammar must not let one close, or a constrained turn would be a format error (-0.5) the grammar allowed. A
    thought of them is a thought, as before: the grammar and the parser agree, and its masks did not change."""
    _, tokenizer = tiny_policy
    ids = tokenizer.encode(hidden, add_special_tokens=False)
    turn = [*grammar.think_open, *ids, *grammar.think_close, *grammar.answer_open]
    turn += [*grammar.title_ids("Kind of Blue"), *grammar.answer_close]
    assert parse_turn(tokenizer.decode(turn, skip_special_tokens=False)).error is None
    c = TurnConstraint(grammar, grammar.trie(SHOWN), grammar.trie(SHOWN), can_ground=False, budget=64)
    c.replay(turn)
    assert grammar.plain(True) == grammar.plain(True, title=False) and grammar.plain(True, title=True) != grammar.plain(
        True
    )
    free = TurnConstraint(grammar, grammar.trie([]), None, can_ground=False, budget=64)
    opening = [*grammar.think_open, *tokenizer.encode("x", add_special_tokens=False), *grammar.think_close]
    with pytest.raises(ValueError, match="not allowed"):
        free.replay([*opening, *grammar.answer_open, *ids, *grammar.answer_close])
    # a catalogue title of nothing visible is not a path to offer
    assert grammar.trie([hidden, "Rumours"]).children.keys() == grammar.trie(["Rumours"]).children.keys()


@pytest.mark.reliability
def test_a_thought_or_title_of_nothing_visible_at_its_cap_gets_one_visible_token_not_its_close(grammar, tiny_policy):
    """At max_think_tokens (or the turn's budget) the close was forced whether or not anything showed: a thought of
    NBSP bytes closed there and the parser found it empty, a format error the grammar allowed; a free answer title
    too (review s39). One token that shows on its own comes first, then the close."""
    _, tokenizer = tiny_policy
    nbsp = tokenizer.encode("\u00a0", add_special_tokens=False)
    x = tokenizer.encode("x", add_special_tokens=False)
    answer = [*grammar.answer_open, *grammar.title_ids("Rumours"), *grammar.answer_close]
    c = TurnConstraint(grammar, grammar.trie(["Rumours"]), None, can_ground=False, budget=64, max_think_tokens=2)
    with pytest.raises(ValueError, match="not allowed"):  # the close, forced with nothing shown
        c.replay([*grammar.think_open, *nbsp, *grammar.think_close, *answer])
    turn = [*grammar.think_open, *nbsp, *x, *grammar.think_close, *answer]
    c.fresh().replay(turn)  # one visible token past the cap, then the close
    assert parse_turn(tokenizer.decode(turn, skip_special_tokens=False)).error is None
    with pytest.raises(ValueError, match="not allowed"):  # at the cap: a byte or a blank is no way out
        c.fresh().replay([*grammar.think_open, *nbsp, *nbsp])
    # a free answer title (an empty trie) cut by the turn's budget while nothing in it showed
    budget = len(grammar.think_open) + 1 + len(grammar.think_close) + len(grammar.answer_open) + 3
    budget += len(grammar.answer_close)
    free = TurnConstraint(grammar, grammar.trie([]), None, can_ground=False, budget=budget)
    opening = [*grammar.think_open, *x, *grammar.think_close, *grammar.answer_open]
    with pytest.raises(ValueError, match="not allowed"):
        free.replay([*opening, *nbsp, *grammar.answer_close])
    titled = [*opening, *nbsp, *x, *grammar.answer_close]
    free.fresh().replay(titled)
    assert parse_turn(tokenizer.decode(titled, skip_special_tokens=False)).error is None
    # a turn with room for one thought token: that token must show on its own, or the forced visible token after
    # it would not fit, and the engine's cap would cut the answer's closing tag (review s39, of the fix above)
    tight = len(grammar.think_open) + 1 + len(grammar.think_close) + len(answer)
    c = TurnConstraint(grammar, grammar.trie(["Rumours"]), None, can_ground=False, budget=tight)
    with pytest.raises(ValueError, match="not allowed"):
        c.replay([*grammar.think_open, nbsp[0]])
    fits = [*grammar.think_open, *x, *grammar.think_close, *answer]
    c.fresh().replay(fits)
    assert len(fits) == tight


def test_the_grammar_of_an_engine_without_a_model_bans_a_padded_vocabularys_ids(tiny_policy):
    """The vllm engine holds no model, so its grammar was as wide as the tokenizer: the ids of a padded vocabulary
    (Qwen2.5's logits are wider than its tokenizer) were allowed in thoughts there and banned by the hf engine
    (review s27). An engine's own vocab_size now decides."""
    from types import SimpleNamespace

    from mgfrec.agent.loop import grammar_for

    _, tokenizer = tiny_policy
    padded = len(tokenizer) + 64
    grammar = grammar_for(SimpleNamespace(tokenizer=tokenizer, vocab_size=padded))
    assert grammar.vocab_size == padded and set(range(len(tokenizer), padded)) <= grammar.unsafe
    assert padded - 1 not in grammar.plain(first=False).offsets(padded).isfinite().nonzero().flatten().tolist()


def test_recall_prior_needs_constrained_decoding():
    with pytest.raises(ValueError, match="recall_prior needs decoding: constrained"):
        AgentConfig(decoding="free", recall_prior=1.0)


@pytest.mark.parametrize("budget", [20, 24, 28])
def test_a_free_title_stops_where_the_turns_budget_ends(grammar, budget):
    """A free title (ground_titles: free) was capped only at max_free_title_tokens (24), so a turn could run past
    its budget and be cut (length_limit) though every token obeyed the grammar."""
    for seed in range(10):
        c = TurnConstraint(grammar, grammar.trie(["Rumours"]), None, budget=budget, max_think_tokens=16)
        rng = random.Random(seed)
        ids = []
        while not c.done:
            allowed = c.allowed()
            if allowed.only:
                ids.append(min(allowed.ids) if grammar.ground_open[0] not in allowed.ids else grammar.ground_open[0])
            else:  # plain text whenever it may: the longest thought and title the grammar lets through
                ids.append(rng.choice([i for i in range(grammar.vocab_size) if i not in allowed.ids]))
            c.advance(ids[-1])
        assert len(ids) <= budget, (budget, len(ids))


@pytest.mark.slow
def test_an_answer_stays_among_shown_titles_even_when_none_fits_the_turn(environment, tiny_policy):
    """Every shown title longer than the turn's room emptied the answer trie, and the answer became free text:
    a title never shown was accepted and ranked. It now stays among the shown titles and overruns the budget."""
    model, tokenizer = tiny_policy
    long_titles = (" ".join(["Kind of Blue"] * 6), " ".join(["Blue Train"] * 6))
    samples = [RolloutSample(("Nevermind",), long_titles, sample_id="long")]
    agent = AgentConfig(max_groundings=0, max_new_tokens_per_turn=16, max_new_tokens_total=16, max_think_tokens=2)
    engine = ScriptedEngine(tokenizer, lambda ctx, j: "<think>a</think><answer>Thriller</answer>")
    with pytest.raises(ValueError, match="breaks the constrained turn grammar"):
        rollout(engine, environment, samples, agent=agent)
    result = rollout(HFEngine(model, tokenizer), environment, samples, group_size=4, agent=agent, seed=1)
    assert all(t.end_reason == "length_limit" for t in result.trajectories)  # a budget error, never a free answer


@pytest.mark.slow
def test_history_titles_the_prompt_hides_cannot_be_grounded(environment, tiny_policy):
    _, tokenizer = tiny_policy
    sample = RolloutSample(("Thriller", "Nevermind"), ("Rumours", "Kind of Blue"), sample_id="s")
    turns = {"<think>a</think><ground>Nevermind</ground>", "<think>a</think><ground>Thriller</ground>"}
    for ground in sorted(turns):
        script = iter([ground, "<think>b</think><answer>Rumours</answer>"])
        engine = ScriptedEngine(tokenizer, lambda ctx, j, s=script: next(s), split_at=TAG_SPLIT)
        agent = AgentConfig(prompt_history=1, max_groundings=1)
        if "Thriller" in ground:  # agent.prompt_history=1 shows only "Nevermind"
            with pytest.raises(ValueError, match="breaks the constrained turn grammar"):
                rollout(engine, environment, [sample], agent=agent)
        else:
            assert rollout(engine, environment, [sample], agent=agent).trajectories[0].end_reason == "answered"


TAG_SPLIT = ("<think>", "</think>", "<ground>", "</ground>", "<answer>", "</answer>")


@pytest.mark.reliability
def test_a_grounding_is_allowed_when_the_turns_written_tokens_leave_room_for_an_answer(environment, tiny_policy):
    """Whether ``<ground>`` was allowed was decided as the turn began, as if it would use its whole per-turn
    budget: with 64 per turn and 80 in all, a second grounding was never allowed though the first turn left 70
    tokens (docs/gpu.md's 48 / 96 with two groundings could never ground twice; review s31). It is now counted
    from what the turn writes; a grounding that would leave no room for an answer is still refused."""
    turns = ["<think>a</think><ground>Rumours</ground>", "<think>b</think><ground>Thriller</ground>"]
    calls: list[str] = []

    def script(context: str, j: int) -> str:  # one trajectory: its n-th call is its n-th turn
        calls.append(context)
        n = sum(1 for c in calls if c in context)  # the calls of this trajectory so far (its earlier contexts)
        return turns[n - 1] if n <= len(turns) else "<think>c</think><answer>Rumours</answer>"

    engine = ScriptedEngine(tiny_policy[1], script)
    agent = AgentConfig(max_groundings=2, max_new_tokens_per_turn=64, max_new_tokens_total=80, max_think_tokens=4)
    result = rollout(engine, environment, SAMPLES[:1], group_size=1, agent=agent)
    (traj,) = result.trajectories
    assert (traj.end_reason, traj.num_groundings) == ("answered", 2), traj.state.why
    first = next(s for s in traj.segments if hasattr(s, "allowed"))
    assert 80 - len(first.token_ids) - 64 < 29  # what the old rule asked for an answer after a second grounding
    assert traj.state.total_tokens < 80
    # a total that the second grounding would leave too little of: the script's second <ground> breaks the grammar
    tight = agent.model_copy(update={"max_new_tokens_total": traj.state.total_tokens - 10})
    calls.clear()
    with pytest.raises(ValueError, match="breaks the constrained turn grammar"):
        rollout(engine, environment, SAMPLES[:1], group_size=1, agent=tight)


@pytest.mark.reliability
def test_a_large_recall_prior_does_not_underflow(grammar, environment, tiny_policy):
    """``rank ** -b`` underflowed to 0.0 for a large ``b`` (16 titles at b = 300), and the weighted trie refused
    it in the first training step, after the fit had retired the run in its --out (review s31). The prior is held
    as logs now; above 1000 the config refuses it."""
    titles = [f"Title {n}" for n in range(16)]
    trie = grammar.trie(titles, log_weights=[-300 * math.log(r) for r in range(1, 17)])
    close = grammar.answer_close[0]
    node, logp = trie, 0.0
    for tok in (*grammar.title_ids(titles[0]), close):
        step = dict(node.log_prior(close))
        assert all(math.isfinite(v) for v in step.values())
        assert math.isclose(sum(math.exp(v) for v in step.values()), 1.0, rel_tol=1e-9)
        logp += step[tok]
        node = node.children.get(tok)
    assert logp > -1e-12  # the first title, all but surely
    engine = ScriptedEngine(tiny_policy[1], lambda ctx, j: "<think>a</think><answer>A Love Supreme</answer>")
    agent = AgentConfig(max_groundings=0, recall_prior=300.0)
    (traj,) = rollout(engine, environment, SAMPLES[:1], group_size=1, agent=agent).trajectories
    assert traj.answer == "A Love Supreme" and traj.end_reason == "answered"
    with pytest.raises(ValueError, match="recall_prior"):
        AgentConfig(recall_prior=1001.0)
    with pytest.raises(ValueError, match="positive and finite"):
        grammar.trie(titles[:2], [1.0, 0.0])


def test_an_eos_as_the_last_token_of_a_turns_budget_is_a_format_error(environment, tiny_policy):
    """The engine stopped the turn (an eos inside a thought) with its last allowed token: labelled `length_limit`, as
    if more tokens could have finished it (review s41). A turn the budget cut stays a `length_limit`."""
    _, tokenizer = tiny_policy
    sample = RolloutSample(("Nevermind",), ("Thriller", "Rumours"), sample_id="s")
    text = "<think>abc" + tokenizer.eos_token
    budget = len(tokenizer.encode(text, add_special_tokens=False))
    agent = AgentConfig(decoding="free", max_new_tokens_per_turn=budget, max_new_tokens_total=4 * budget)
    stopped = rollout(ScriptedEngine(tokenizer, lambda ctx, j: text), environment, [sample], agent=agent)
    assert [t.end_reason for t in stopped.trajectories] == ["format_error"]
    cut = rollout(ScriptedEngine(tokenizer, lambda ctx, j: "<think>abc def ghi"), environment, [sample], agent=agent)
    assert [t.end_reason for t in cut.trajectories] == ["length_limit"]

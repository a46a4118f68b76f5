"""Every shipped config validates, components named in it exist, and bad configs are refused by path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mgfrec.config.load import ConfigError, load_config, parse_override, read_yaml, write_resolved
from mgfrec.config.schema import MGFRecConfig
from mgfrec.registry import component_options, registry

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


def test_configs_exist():
    names = {p.relative_to(CONFIG_DIR).as_posix() for p in CONFIGS}
    assert {"default.yaml", "paper/cds.yaml", "paper/movies.yaml", "paper/books.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_shipped_config_validates(path):
    cfg = load_config(path)
    reg = registry()
    named = [
        ("data_source", cfg.data.source, cfg.data.options, "data.options"),
        ("embedder", cfg.embedding.embedder, cfg.embedding.options, "embedding.options"),
        ("grounder", cfg.grounding.grounder, cfg.grounding.options, "grounding.options"),
        ("retriever", cfg.retriever.model, cfg.retriever.options, "retriever.options"),
        ("user_agent", cfg.user_agent.backend, cfg.user_agent.options, "user_agent.options"),
    ] + [("reward", r.name, r.options, f"grpo.rewards.{r.name}.options") for r in cfg.grpo.rewards]
    for kind, name, options, where in named:
        component_options(reg.load(kind, name), options, where)


def test_paper_settings():
    cfg = load_config(CONFIG_DIR / "paper" / "cds.yaml")
    assert cfg.policy.model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert cfg.embedding.model == "Alibaba-NLP/gte-Qwen2-1.5B-instruct"
    assert (cfg.trainer.lr, cfg.trainer.global_batch_size, cfg.trainer.epochs) == (1e-6, 128, 1)
    assert cfg.trainer.max_steps is None  # one epoch: the CPU default's 30 steps applied, short of it on every set
    assert (cfg.grpo.group_size, cfg.agent.max_groundings, cfg.grounding.top_k, cfg.retriever.recall_size) == (
        6,
        6,
        10,
        30,
    )
    assert cfg.data.options["category"] == "CDs_and_Vinyl"


@pytest.mark.reliability
def test_unknown_key_is_refused_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  max_grondings: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and "agent.max_grondings" in str(err.value)


def test_a_components_option_given_to_its_section_says_where_it_goes():
    """`--set retriever.collaborative_run=RUN` (the hybrid's option, docs/baselines.md) said only "Extra inputs are not
    permitted" (review s34); a section without options (agent) gets no such hint."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["retriever.collaborative_run=runs/sasrec"])
    assert "retriever.collaborative_run: Extra inputs are not permitted (if it is an option of the chosen " in (
        str(err.value)
    ) and "--set retriever.options.collaborative_run=VALUE, or under `options:` in a config file)" in str(err.value)
    # a typo of the section's own field is named, not sent to options (review s34), and one of a section
    # without options gets no options hint
    for typo, meant in (("retriever.max_epoch=5", "retriever.max_epochs"), ("grounding.topk=5", "grounding.top_k")):
        with pytest.raises(ConfigError) as err:
            load_config(None, [typo])
        assert f"(did you mean {meant}?)" in str(err.value) and "options" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["agent.zzz=3"])
    assert "options" not in str(err.value) and "did you mean" not in str(err.value)


def test_wrong_type_is_refused_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grounding:\n  top_k: ten\n")
    with pytest.raises(ConfigError, match=r"grounding.top_k.*'ten'"):
        load_config(bad)


def test_each_misspelt_key_of_several_gets_its_own_hint():
    """With several unknown keys one hint ended the line, after another key's error: "agent.foo: Extra inputs are
    not permitted (did you mean grounding.top_k?)" (review s40)."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["grounding.top_kk=3", "agent.max_grondings=2", "agent.foo=1"])
    said = str(err.value)
    assert "(grounding.top_kk: did you mean grounding.top_k?)" in said
    assert "(agent.max_grondings: did you mean agent.max_groundings?)" in said


def test_a_section_left_empty_is_named_not_a_pydantic_class(tmp_path):
    """`agent:` with its fields commented out said "Input should be a valid dictionary or instance of AgentConfig
    (got None)" (review s40)."""
    path = tmp_path / "c.yaml"
    path.write_text("agent:\n  # max_groundings: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "agent: the section is given no value" in str(err.value) and "AgentConfig" not in str(err.value)
    path.write_text("agent: {}\n", encoding="utf-8")
    assert load_config(path).agent == load_config(None).agent


def test_devices_refuse_a_switch_and_read_a_quoted_count_as_a_number():
    """`trainer.devices=true` was 1 device; `"3"` stayed text, which fit's early batch-split check skipped (s40)."""
    with pytest.raises(ConfigError, match=r"trainer.devices: .*not true/false"):
        load_config(None, ["trainer.devices=true"])
    assert load_config(None, ['trainer.devices="3"']).trainer.devices == 3
    assert load_config(None, ["trainer.devices=0,1"]).trainer.devices == "0,1"


def test_a_name_of_digits_read_as_a_number_says_to_quote_it():
    """`--set data.path=2024` said "Input should be a valid string (got 2024)" and no more (review s40)."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.path=2024"])
    assert "YAML reads digits as a number: quote them ('2024'; on a command line --set \"data.path='2024'\")" in str(
        err.value
    )
    assert load_config(None, ["data.path='2024'"]).data.path == "2024"


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  max_groundings: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        read_yaml(bad)
    # a control character: PyYAML's reader error was two lines ('in "<unicode string>", position 26') with no line
    bad.write_text('agent:\n  max_groundings: 3\n  template: "a\x01b"\n')
    with pytest.raises(ConfigError) as err:
        read_yaml(bad)
    assert str(err.value).endswith("bad.yaml:3: not valid YAML: special characters are not allowed (U+0001); remove it")


def test_overrides_and_values_apply_in_order():
    cfg = load_config(
        None, ["agent.max_groundings=3", "grpo.rewards=[ndcg]"], {"agent.max_groundings": 1, "grounding.top_k": 5}
    )
    assert cfg.agent.max_groundings == 3  # --set wins over typed flags
    assert cfg.grounding.top_k == 5
    assert cfg.grpo.reward_names == ["ndcg"]
    with pytest.raises(ConfigError, match="override 'agent' must look like"):
        load_config(None, ["agent"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("|", "|"), ("\t", "\t"), ("#", "#"), ("-", "-"), ("?", "?"), (">", ">"), ("!", "!"), (" ", " ")],
)
def test_an_override_yaml_reads_as_nothing_keeps_the_text_given(value, expected):
    # -o 'delimiter=|' reached the field as '' and a tab as None: YAML reads them as a block scalar or nothing
    assert parse_override(f"data.options.delimiter={value}") == {"data": {"options": {"delimiter": expected}}}


@pytest.mark.parametrize(("value", "expected"), [("", None), ("null", None), ("~", None), ("{}", {}), ("3", 3)])
def test_an_override_still_reads_yaml(value, expected):
    assert parse_override(f"a.b={value}") == {"a": {"b": expected}}


def test_split_ratios_must_sum_to_one():
    with pytest.raises(ConfigError, match="split_ratios"):
        load_config(None, ["data.split_ratios=[0.5,0.2,0.2]"])


def test_configs_are_frozen():
    cfg = load_config(None)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.agent.max_groundings = 2  # type: ignore[misc]


@pytest.mark.reliability
def test_resolved_config_has_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    cfg = load_config(None, ["user_agent.api_key_env=OPENAI_API_KEY", "user_agent.options={api_key: sk-inline-secret}"])
    text = write_resolved(cfg, tmp_path).read_text()
    assert "sk-test-secret-value" not in text and "sk-inline-secret" not in text
    assert yaml.safe_load(text)["user_agent"]["api_key_env"] == "OPENAI_API_KEY"
    with pytest.raises(ConfigError, match="names an environment variable"):
        load_config(None, ["user_agent.api_key_env=sk-abc"])


@pytest.mark.reliability
@pytest.mark.parametrize(
    "key",
    [
        "sk-ant-api03-TAILSECRET1234567890abcdef",
        "AIzaSyTAILSECRET1234567890abcdefghijk",
        "sk-or-v1-" + "a8f3b2c9d0e1f4a5" * 4,  # OpenRouter's: hexadecimal after the prefix
        "gsk_TAILSECRET123",
        "Qx7Lm2Pz9Rt4TAILSECRETb6Hd1Fg5Js0Ta",  # no provider's prefix (Mistral's, Cohere's keys): review s36
        "abcdef0123456789abcdef0123456789",  # 32 hex digits (an Azure OpenAI key)
    ],
)
def test_a_key_put_where_a_variable_name_goes_is_refused_without_echoing_it(key):
    """Outside the CLI too: the validation error names the field, never the value (pydantic echoes inputs)."""
    from pydantic import ValidationError

    from mgfrec.config.schema import UserAgentConfig

    with pytest.raises(ValidationError) as err:
        UserAgentConfig(backend="openai", api_key_env=key)
    assert "names an environment variable" in str(err.value) and key not in str(err.value)
    with pytest.raises(ValidationError) as err:
        UserAgentConfig(backend="openai", api_key_env="MY-KEY.VAR")  # not a variable name either
    assert "MY-KEY.VAR" not in str(err.value)
    for name in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "MISTRAL_API_KEY_2", "my_key", "HF_TOKEN", "KEY"):
        assert UserAgentConfig(backend="openai", api_key_env=name).api_key_env == name


def test_every_key_like_option_is_redacted(tmp_path):
    secrets = {
        "access_key": "s1",
        "private-key": "s2",
        "hf_token": "s3",
        "aws_secret_access_key": "s4",
        "auth": "s5",
        "Password": "s6",
        "client_credentials": "s7",
        "key": "s8",
    }
    plain = {"path": "p1", "max_new_tokens": 7, "keep": "p2", "monkey_bars": "p3"}
    cfg = load_config(
        None, [f"user_agent.options={yaml.safe_dump({**secrets, **plain}, default_flow_style=True).strip()}"]
    )
    written = yaml.safe_load(write_resolved(cfg, tmp_path).read_text())["user_agent"]["options"]
    assert {k: written[k] for k in secrets} == dict.fromkeys(secrets, "<redacted>")
    assert {k: written[k] for k in plain} == plain


def test_default_yaml_is_the_schema_default():
    # `mgfrec` commands without --config use the schema defaults; configs/default.yaml must say the same.
    assert load_config(CONFIG_DIR / "default.yaml") == load_config(None)


def test_a_deprecated_key_is_one_plain_warning_line_on_the_command_line(tmp_path):
    """``grpo.reward_options`` still works and says, in one line naming the config, how to write it now."""
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgfrec.cli.main",
            "index",
            "build",
            str(tmp_path / "none"),
            "--set",
            "grpo.reward_options={format: {penalty: -1.0}}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2  # the missing data folder, after the config was read
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("warning: the default config with flags or --set: grpo.reward_options is deprecated")
    assert "grpo.rewards: [ndcg, {name: hit-at-k, options: {k: 5}}, format]" in lines[0]
    assert "Traceback" not in proc.stderr and "pydantic" not in proc.stderr


@pytest.mark.reliability
@pytest.mark.parametrize(
    "override", ["user_agent.api_key=sk-proj-SECRET123", "openai_api_key=sk-proj-SECRET123", "agent.key=AIzaSECRET123"]
)
def test_a_key_in_the_wrong_field_is_named_not_echoed(override):
    # Before, the "Extra inputs are not permitted" line ended with (got 'sk-proj-SECRET123').
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert "SECRET123" not in str(err.value) and override.split("=")[0] in str(err.value)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("policy.model=Xk3J9dLq8ZmP2vRt7YwB4nHs6FgC1aEu", None),  # a key with no provider prefix (Mistral's)
        ("embedding.model=Xk3J9dLq8ZmP2vRt7YwB4nHs6FgC1aEu", None),
        ("user_agent.options.extra_body.api_key: sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "user_agent.options.extra_body"),
        ("sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "override '<redacted>'"),  # a --set of the key alone
    ],
)
def test_a_key_given_where_a_name_or_an_override_goes_is_not_echoed(override, shown):
    """`--policy KEY` printed "(not shown)" then "(got 'KEY')" for a key without a provider prefix; an override
    without '=' was echoed whole, key included (review s40)."""
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert "Xk3J9dLq8ZmP2vRt7YwB4nHs6FgC1aEu" not in str(err.value) and "Ab3dEf6hIj9kLm2nOp5qRs8t" not in str(err.value)
    assert shown is None or shown in str(err.value), str(err.value)


@pytest.mark.parametrize(("value", "expected"), [("''", ""), ('""', ""), (" '' ", ""), ("'x'", "x")])
def test_a_quoted_empty_override_is_the_empty_string(value, expected):
    """`--set "embedding.query_instruction=''"` set the two characters '' (recorded as '\'\'\'\''), where the same
    value in a YAML file is empty (review s40)."""
    assert parse_override(f"embedding.query_instruction={value}") == {"embedding": {"query_instruction": expected}}


def test_a_wrong_value_elsewhere_is_still_shown():
    with pytest.raises(ConfigError, match=r"agent.max_groundings: .*\(got 'many'\)"):
        load_config(None, ["agent.max_groundings=many"])


@pytest.mark.reliability
def test_a_key_written_twice_in_a_yaml_mapping_is_refused_with_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("agent:\n  max_groundings: 2\ngrounding:\n  top_k: 3\nagent:\n  use_recall: false\n")
    with pytest.raises(ConfigError, match=r"twice.yaml:5: .*'agent' is written twice .*first on line 1"):
        read_yaml(path)
    merged = tmp_path / "merge.yaml"  # a YAML merge key, then an override of one merged key, is fine
    merged.write_text("x: &base\n  max_groundings: 2\nagent:\n  <<: *base\n  max_groundings: 3\n")
    assert read_yaml(merged)["agent"] == {"max_groundings": 3}
    flow = tmp_path / "flow.yaml"  # on one line: "first on line 1" equalled its own line, and the last value won
    flow.write_text("policy: {model: preset:tiny-items, model: preset:small}\n")
    with pytest.raises(ConfigError, match=r"flow.yaml:1: .*'model' is written twice .*first on line 1"):
        read_yaml(flow)


@pytest.mark.parametrize("clear", ["grounding.options={}", "grounding.options=null"])
def test_an_empty_or_null_options_mapping_replaces_the_files(tmp_path, clear):
    path = tmp_path / "hnsw.yaml"
    path.write_text("grounding:\n  grounder: hnswlib\n  options: {ef: 100}\n")
    cfg = load_config(path, [clear], {"grounding.grounder": "exact"})
    assert cfg.grounding.grounder == "exact" and cfg.grounding.options == {}
    kept = load_config(path, ["grounding.options.m=8"])  # a non-empty mapping still merges key by key
    assert kept.grounding.options == {"ef": 100, "m": 8}
    child = tmp_path / "child.yaml"
    child.write_text("base: hnsw.yaml\ngrounding:\n  grounder: exact\n  options: {}\n")
    assert load_config(child).grounding.options == {}


def test_a_switched_components_leftover_options_get_a_hint(tmp_path):
    from mgfrec.config.components import check_components
    from mgfrec.config.load import config_source

    path = tmp_path / "hnsw.yaml"
    path.write_text("grounding:\n  grounder: hnswlib\n  options: {ef: 100}\n")
    values = {"grounding.grounder": "exact", "grounding.top_k": None}
    cfg = load_config(path, [], values)
    with pytest.raises(ValueError) as err:
        check_components(cfg, source=config_source(path, [], values))
    assert "hnsw.yaml with flags or --set: grounding.options" in str(err.value)
    assert "--set grounding.options={} clears" in str(err.value)
    assert config_source(path, [], {"grounding.top_k": None}) == str(path)  # unset flags are no override


@pytest.mark.reliability
def test_reward_options_of_the_wrong_type_are_refused_not_dropped():
    with pytest.raises(ConfigError, match=r"grpo.reward_options: expected a mapping"):
        load_config(None, ["grpo.reward_options=[{format: {penalty: -1}}]"])


@pytest.mark.reliability
def test_a_reward_listed_twice_is_refused():
    from mgfrec.rewards.compose import build_reward

    with pytest.raises(ConfigError, match=r"'ndcg' is listed twice"):
        load_config(None, ["grpo.rewards=[ndcg, ndcg, format]"])
    with pytest.raises(ValueError, match=r"ndcg listed twice"):
        build_reward(["ndcg", "ndcg"])
    # a part named as the summary's own columns replaced reward/mean, or vanished under the total (review s32)
    for name in ("mean", "std", "total"):
        with pytest.raises(ConfigError, match=rf"'{name}' names a column of the reward's own summary"):
            load_config(None, [f"grpo.rewards=[ndcg, {name}]"])


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("override", "words"),
    [
        # it passed, cleared OUT, then overflowed a C integer in the step loader (a traceback)
        ("trainer.max_steps=99999999999999999999", "trainer.max_steps: Input should be less than or equal to"),
        # the title part's squared distances overflowed float32: every score -inf, "answered" and "no answer" at once
        ("agent.joint_title_weight=1e20", "agent.joint_title_weight: Input should be less than or equal to"),
        # every advantage 0: a fit that trained nothing; every request an OverflowError naming no field (s40)
        ("grpo.advantage_epsilon=1e300", "grpo.advantage_epsilon: Input should be less than or equal to 1"),
        ("user_agent.timeout_s=1e10", "user_agent.timeout_s: Input should be less than or equal to 604800"),
    ],
)
def test_settings_that_cannot_train_are_refused_when_the_config_loads(override, words):
    from mgfrec.config.load import ConfigError, load_config

    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


def test_a_group_of_one_is_refused_by_fit_but_a_runs_config_with_it_still_loads(tmp_path):
    """One rollout per prompt: every advantage is 0, and a fit spent its budget training nothing. The schema's
    first bound made every existing run whose config said 1 unloadable by evaluate, recommend and derive."""
    from mgfrec.rl.fit import run_fit

    cfg = load_config(None, ["grpo.group_size=1"])  # loads
    with pytest.raises(ValueError, match=r"grpo.group_size \(--group-size\) 1: GRPO compares .* give at least 2"):
        run_fit(tmp_path / "no-data", tmp_path / "out", cfg)
    # greedy rollouts are G copies of one trajectory: the same (review s29: a whole budget of zero advantages)
    with pytest.raises(ValueError, match=r"rollout.temperature 0: a group of greedy rollouts .* trains nothing"):
        run_fit(tmp_path / "no-data", tmp_path / "out", load_config(None, ["rollout.temperature=0"]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.reliability
def test_a_run_config_written_before_a_field_existed_reads_its_value_of_before(tmp_path):
    """agent.max_feedback_tokens came later with default 512: a run written before it never cut feedback, and
    evaluating or resuming it must not start to."""
    import yaml

    from mgfrec.config.load import WRITTEN_BEFORE, write_resolved

    write_resolved(load_config(None), tmp_path)
    assert load_config(tmp_path / "config.yaml").agent.max_feedback_tokens == 512  # written with the field
    old = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    del old["agent"]["max_feedback_tokens"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old), encoding="utf-8")
    assert WRITTEN_BEFORE == {"agent.max_feedback_tokens": None}
    assert load_config(tmp_path / "config.yaml").agent.max_feedback_tokens is None
    user = tmp_path / "mine.yaml"  # a user's own file (not every section): the new default
    user.write_text("agent:\n  max_groundings: 2\n", encoding="utf-8")
    assert load_config(user).agent.max_feedback_tokens == 512


@pytest.mark.reliability
def test_a_users_config_naming_every_section_is_neither_read_nor_replaced_as_a_runs_own(tmp_path):
    """A copy of configs/default.yaml names every section, as a run's resolved config does: without
    agent.max_feedback_tokens it read null (feedback never cut) instead of the default, and given as the run
    folder's config.yaml it was replaced by the resolved config without a word, its comments lost."""
    import warnings

    from mgfrec.config.load import ConfigKeptWarning, resolved_by, write_resolved

    default = (Path(__file__).resolve().parents[2] / "configs" / "default.yaml").read_text(encoding="utf-8")
    mine = tmp_path / "mine.yaml"
    mine.write_text("\n".join(x for x in default.splitlines() if "max_feedback_tokens" not in x), encoding="utf-8")
    assert resolved_by(mine) is None and load_config(mine).agent.max_feedback_tokens == 512
    sections = "".join(f"{name}: {{}}\n" for name in MGFRecConfig.model_fields)  # every section, each empty
    (tmp_path / "empty.yaml").write_text(sections, encoding="utf-8")
    assert load_config(tmp_path / "empty.yaml").agent.max_feedback_tokens == 512
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(default.replace("max_groundings: 6", "max_groundings: 3  # MY NOTE"))
    with pytest.warns(ConfigKeptWarning):
        write_resolved(load_config(run / "config.yaml"), run)
    assert "MY NOTE" in (run / "config.user.yaml").read_text(encoding="utf-8")
    assert resolved_by(run / "config.yaml") == "mgfrec"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigKeptWarning)  # the run's own config: replaced without a word
        write_resolved(load_config(run / "config.yaml"), run)


def test_a_components_check_config_may_return_a_string_or_fail(monkeypatch):
    from mgfrec.config.components import check_components
    from mgfrec.rollout.vllm_engine import VLLMEngine

    cfg = load_config(None, ("rollout.engine=vllm", "rollout.options.seed=1"))
    monkeypatch.setattr(VLLMEngine, "check_config", classmethod(lambda cls, o, c: "one problem"), raising=False)
    with pytest.raises(ValueError, match=r"<t>: one problem$"):
        check_components(cfg, source="<t>")

    def broken(cls, options, config):
        raise KeyError("agent")

    monkeypatch.setattr(VLLMEngine, "check_config", classmethod(broken), raising=False)
    with pytest.raises(ValueError, match=r"rollout_engine 'vllm' .*check_config failed: KeyError: 'agent' \(a bug"):
        check_components(cfg, source="<t>")
    # True for "fine": "'bool' object is not iterable", a traceback (review s37)
    monkeypatch.setattr(VLLMEngine, "check_config", classmethod(lambda cls, o, c: True), raising=False)
    with pytest.raises(ValueError, match=r"rollout_engine 'vllm' .*check_config returned bool, not None or a list"):
        check_components(cfg, source="<t>")
    monkeypatch.setattr(VLLMEngine, "check_config", classmethod(lambda cls, o, c: ()), raising=False)
    check_components(cfg, source="<t>")


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("agent:\n  max_groundings: 010\n", "agent.max_groundings", 10),  # YAML 1.1: octal 8
        ("agent:\n  max_groundings: 0o10\n", "agent.max_groundings", 8),
        ("trainer:\n  lr: 1e-3\n", "trainer.lr", 0.001),  # YAML 1.1: the text '1e-3'
        ("trainer:\n  max_steps: 1:30\n", "trainer.max_steps", "valid integer"),  # YAML 1.1: base 60, 90
        ("agent:\n  use_recall: yes\n", "agent.use_recall", "write true or false"),  # YAML 1.1: true
        ("agent:\n  use_recall: 1\n", "agent.use_recall", "write true or false"),  # lax pydantic: true
        ("agent:\n  max_groundings: true\n", "agent.max_groundings", "a number, not true or false"),  # lax: 1
        ("trainer:\n  lr: false\n", "trainer.lr", "a number, not true or false"),  # lax: 0.0
    ],
)
def test_a_value_is_read_as_written_never_reinterpreted(tmp_path, text, field, expected):
    """PyYAML's YAML 1.1 and pydantic's lax mode rewrote values without a word (010 -> 8, 1:30 -> 90, yes -> true,
    true -> 1); a config file and --set read plain scalars as YAML 1.2 does, and a switch and a number are not
    taken for each other. Wrong values are named by field."""
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    section, _, name = field.partition(".")
    override = f"{field}={text.split(': ', 1)[1].strip()}"
    for load in (lambda: load_config(path), lambda: load_config(None, [override])):
        if isinstance(expected, str):
            with pytest.raises(ConfigError, match=rf"{field}: .*{expected}"):
                load()
        else:
            value = getattr(getattr(load(), section), name)
            assert value == expected and type(value) is type(expected)


@pytest.mark.reliability
def test_a_grid_reads_values_as_a_config_does_and_refuses_a_field_written_twice(tmp_path):
    """`--grid agent.max_groundings=010` swept 8; a grid file with a field written twice silently dropped the first
    list of values (the sweep ran fewer cells)."""
    from mgfrec.experiments.grid import build_grid, parse_grid_flag

    assert parse_grid_flag("agent.max_groundings=010,0x3,2") == ("agent.max_groundings", [10, 3, 2])
    assert parse_grid_flag("trainer.lr=1e-3,2e-3")[1] == [0.001, 0.002]
    twice = tmp_path / "grid.yaml"
    twice.write_text("agent.max_groundings: [1, 2]\ntrainer.lr: [1e-3]\nagent.max_groundings: [3]\n")
    with pytest.raises(ConfigError, match=r"grid.yaml:3: .*'agent.max_groundings' is written twice .*line 1"):
        build_grid((), twice)


@pytest.mark.reliability
def test_a_components_switch_or_number_option_is_not_taken_for_the_other():
    """`--set grounding.options.nlist=true` built a faiss index of 1 list."""
    from mgfrec.config.components import check_components

    for sets, words in (
        (["grounding.grounder=faiss", "grounding.options={nlist: true}"], "grounding.options.nlist: a number"),
        (["grounding.grounder=exact", "retriever.options={progress_bar: 1}"], "retriever.options.progress_bar"),
    ):
        with pytest.raises(ValueError, match=words):
            check_components(load_config(None, sets), source="<test>")


@pytest.mark.reliability
def test_a_set_value_with_a_hash_or_a_colon_is_the_text_given(tmp_path):
    """`--set 'data.path=/tmp/a #b'` was cut to /tmp/a (a YAML comment), and `--set
    'embedding.query_instruction=Query: x'` became a mapping refused as "Input should be a valid string"."""
    cfg = load_config(None, ["data.path=/tmp/a #b", "embedding.query_instruction=Query: x"])
    assert cfg.data.path == "/tmp/a #b" and cfg.embedding.query_instruction == "Query: x"
    with pytest.raises(ConfigError, match=r"agent.max_groundings: Input should be a valid integer"):
        load_config(None, ["agent.max_groundings=3 # three"])  # was 3, the rest dropped
    assert load_config(None, ["grounding.options={nlist: 4}"]).grounding.options == {"nlist": 4}  # still a mapping


@pytest.mark.reliability
def test_a_base_that_is_not_one_path_is_named_so(tmp_path):
    """`base: [a, b]` was refused as "cannot read config .../['a', 'b']: No such file or directory"."""
    path = tmp_path / "c.yaml"
    path.write_text("base: [a.yaml, b.yaml]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml: base must be the path of one parent config file, got list"):
        load_config(path)
    # a missing parent named neither this file nor its line; an empty one was "...: Is a directory"
    path.write_text("base: nope.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml: base 'nope.yaml': no such file \(.*nope.yaml\); give the path"):
        load_config(path)
    path.write_text('base: ""\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml: base is empty; give the path of the parent config"):
        load_config(path)


@pytest.mark.reliability
def test_grid_values_split_at_commas_outside_brackets():
    """`--grid 'grpo.rewards=[ndcg,format],[ndcg]'` gave the values '[ndcg', 'format]' and ['ndcg']."""
    from mgfrec.experiments.grid import parse_grid_flag

    assert parse_grid_flag("grpo.rewards=[ndcg,format],[ndcg]") == ("grpo.rewards", [["ndcg", "format"], ["ndcg"]])
    assert parse_grid_flag("grounding.options={nlist: 4, index: ivf},{}")[1] == [{"nlist": 4, "index": "ivf"}, {}]
    assert parse_grid_flag("user_agent.model='a,b',c")[1] == ["a,b", "c"]
    assert parse_grid_flag("user_agent.model=O'Neil-7b,gpt-4o")[1] == ["O'Neil-7b", "gpt-4o"]  # an apostrophe is text


@pytest.mark.reliability
def test_a_count_without_a_bound_of_its_own_is_held_to_32_bits():
    """`agent.max_groundings: 100000000000000000000000000000` was accepted and written back into config.yaml."""
    with pytest.raises(ConfigError, match=r"agent.max_groundings: Value error, at most 2,147,483,647"):
        load_config(None, ["agent.max_groundings=100000000000000000000000000000"])
    assert load_config(None, ["agent.max_groundings=2147483647"]).agent.max_groundings == 2**31 - 1
    assert load_config(None, ["data.seed=4294967295"]).data.seed == 2**32 - 1  # a field's own bound decides


@pytest.mark.reliability
def test_a_written_config_reads_back_as_written(tmp_path):
    """config.yaml was written by YAML 1.1's dumper and read by YAML 1.2's rules: a string such as "08", "1e5" or
    "0o17" was written plain and read back as a number, and the run could no longer be evaluated or resumed."""
    from mgfrec.config.load import write_resolved

    for text in ("08", "0189", "1e5", "1.0e5", "0o17", "0x1F", "yes", "off", "1:30", "1_000"):
        cfg = load_config(None, [f'embedding.query_instruction="{text}"'])
        write_resolved(cfg, tmp_path)
        again = load_config(tmp_path / "config.yaml")
        assert (
            again.embedding.query_instruction == text
            and yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))["embedding"]["query_instruction"]
            == text
        ), text


@pytest.mark.reliability
def test_a_switch_word_given_to_a_path_or_switch_field_is_refused():
    """`user_agent.cache_path: off` turned the cache off under YAML 1.1; read as text it named a cache file "off"."""
    with pytest.raises(ConfigError, match=r"user_agent.cache_path: .*'off' is a switch word: write false"):
        load_config(None, ["user_agent.cache_path=off"])
    assert load_config(None, ["user_agent.cache_path=false"]).user_agent.cache_path is False
    assert load_config(None, ["user_agent.cache_path=./off"]).user_agent.cache_path == "./off"


@pytest.mark.reliability
def test_an_older_run_config_with_a_hash_line_in_a_long_value_is_still_a_run_config(tmp_path):
    """Told apart by "no comment line", an older run's config.yaml whose multi-line value (a prompt) has a line
    starting with '#' was taken for a user's file: renamed config.user.yaml on a rerun, read without the values of
    before."""
    from mgfrec.config.load import resolved_by, write_resolved

    write_resolved(load_config(None, ['embedding.query_instruction="line one\\n# heading\\nline three"']), tmp_path)
    old = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    del old["agent"]["max_feedback_tokens"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False), encoding="utf-8")  # as it was written
    lines = (tmp_path / "config.yaml").read_text(encoding="utf-8").splitlines()
    assert any(line.lstrip().startswith("# heading") for line in lines), lines  # the case: a line that looks a comment
    assert resolved_by(tmp_path / "config.yaml") == "old"
    assert load_config(tmp_path / "config.yaml").agent.max_feedback_tokens is None


def test_a_repeated_k_is_refused():
    """eval.ks=[10,10] gave two H@10 / N@10 columns in the report and repeated metric names in its JSON."""
    with pytest.raises(ConfigError, match=r"eval.ks.*give each K once; 10 is repeated"):
        load_config(None, ["eval.ks=[5,10,10]"])
    assert load_config(None, ["eval.ks=[10,5]"]).eval.ks == (10, 5)


def test_a_config_whose_aliases_expand_without_bound_is_refused(tmp_path):
    """Six nested levels of ten aliases in 436 bytes made a 22 MB config.yaml and took 40 s ("billion laughs")."""
    lines = ["user_agent:", "  options:", "    extra_body:", "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bomb.yaml: not valid YAML: it expands to more than 100,000 values"):
        read_yaml(bomb)
    shared = tmp_path / "shared.yaml"  # an alias or two, as configs use them, still reads
    shared.write_text("retriever: &r {model: pop}\ngrounding: {top_k: 5}\n")
    assert read_yaml(shared)["retriever"] == {"model": "pop"}


def test_a_set_mapping_with_a_key_twice_is_named_for_it():
    """In a file a key written twice is refused as such; in --set the mapping was kept as text and refused as
    "Input should be a valid dictionary", the reason lost. Text that merely starts with '{' stays text."""
    with pytest.raises(
        ConfigError, match=r"--set retriever: its mapping is not valid YAML: the key 'model' is written"
    ):
        load_config(None, ["retriever={model: pop, model: sasrec}"])
    assert parse_override("agent.system_prompt={history} first") == {"agent": {"system_prompt": "{history} first"}}


@pytest.mark.reliability
@pytest.mark.parametrize("key", ["sk-TAILSECRET0123456789abcdef", "Zq8TAILSECRETx7Lp2Vn4Rt6Wy9Bc3Df5Gh1"])
def test_a_key_put_where_a_backend_or_model_name_goes_is_never_echoed(key):
    """``--user-agent sk-...`` printed "unknown user_agent 'sk-...'", and ``--set user_agent.model=sk-...`` was
    written in clear to a derived run's run.json and config.yaml (review s26)."""
    from pydantic import ValidationError

    from mgfrec.config.schema import UserAgentConfig
    from mgfrec.registry import registry

    for field in ("backend", "model"):
        with pytest.raises(ValidationError) as err:
            UserAgentConfig(**{"backend": "openai", field: key})
        assert f"{field} looks like an API key" in str(err.value) and "TAILSECRET" not in str(err.value)
    with pytest.raises(Exception) as err:  # the registry's own "unknown name" line
        registry().get("user_agent", key)
    assert "looks like an API key" in str(err.value) and "TAILSECRET" not in str(err.value)


def test_names_that_look_like_keys():
    """What is not echoed: keys of providers and long random tokens; not a model, file, plugin or commit name (the
    first rule refused real model names: review s26)."""
    from mgfrec.validation import looks_like_key

    keys = (
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-ant-api03-Zq8xZq8xZq8xZq8xZq8x",
        "hf_Zq8xZq8xZq8xZq8xZq8xZq8xZq8xZq8x",
        "AIzaSyTAILSECRET1234567890abcdefghijk",
        "Zq8x" * 8,
    )
    for key in keys:
        assert looks_like_key(key), key
    names = (
        "openai",
        "gpt-4.1-nano-2025-04-14",
        "gpt-4o-search-preview-2025-03-11",
        "gemini-2.0-flash-thinking-exp-01-21",
        "Meta-Llama-3.1-70B-Instruct-Turbo",
        "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        "123e4567-e89b-12d3-a456-426614174000",
        "amazon2023_Video_Games_5core.parquet",
        "hf_inference",
        "hf_ckpt_3f9a2b1c4d5e",  # a short hexadecimal run after a prefix: a name
        "xai-chat",
        "sk-local",
        "a" * 40,
        "0123456789abcdef" * 3,
        "org/model-32-characters-long-name1",
    )
    for name in names:
        assert not looks_like_key(name), name


@pytest.mark.reliability
def test_a_field_given_inside_what_a_file_holds_as_a_value_is_refused(tmp_path):
    """`embedding: some/model` in a file (a section written as one value) was refused alone, but with a flag or a
    `--set embedding.device=cpu` beside it the value was replaced and the section read as its defaults: the model
    the user named silently became MiniLM (review s36). The same from a base file, and for a nested key on a
    number."""
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("embedding: Alibaba-NLP/gte-Qwen2-1.5B-instruct\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"scalar.yaml with flags or --set: embedding: holds a value \(str\)"):
        load_config(scalar, ["embedding.device=cpu"])
    with pytest.raises(ConfigError, match=r"scalar.yaml with flags or --set: embedding: holds a value"):
        load_config(scalar, values={"embedding.device": "cpu"})
    (tmp_path / "parent.yaml").write_text("data: [1, 2]\n", encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text("base: parent.yaml\ndata: {history_length: 4}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"child.yaml over its base parent.yaml: data: holds a value \(list\)"):
        load_config(child)
    ks = tmp_path / "ks.yaml"  # a list: given whole, not "written as a mapping" (review s40)
    ks.write_text("eval:\n  ks: [5, 10]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"eval.ks.1 was given inside it; give it whole \(--set 'eval.ks=\[...\]'\)$"):
        load_config(ks, ["eval.ks.1=20"])
    # without a file listing it, the default list was "Input should be a valid tuple", no way on (review s40)
    with pytest.raises(
        ConfigError, match=r"eval.ks: Input should be a valid tuple \(a list is given whole, not item by"
    ):
        load_config(None, ["eval.ks.1=20"])
    with pytest.raises(ConfigError, match=r"data.history_length: holds a value \(int\)"):
        load_config(None, ["data.history_length=5", "data.history_length.x=3"])
    nulled = tmp_path / "nulled.yaml"
    nulled.write_text("embedding:\n", encoding="utf-8")  # an empty section is no value: the fields fill it
    assert load_config(nulled, ["embedding.device=cpu"]).embedding.device == "cpu"


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("eval.ks=[true, 5]", "eval.ks: Value error, item 1: a number, not true or false"),  # it was (1, 5)
        ("data.split_ratios=[true, 0, 0]", "data.split_ratios: Value error, item 1: a number, not true or false"),
        ("eval.ks=[5, 3000000000]", "eval.ks: Value error, item 2: at most 2,147,483,647"),
    ],
)
def test_the_items_of_a_list_of_numbers_are_checked_as_a_number_field_is(override, said):
    """docs/configs.md says a number never takes true or false and a count above 2**31 - 1 is refused: a list's items
    were converted and taken (review s36)."""
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_config(None, [override])
    assert load_config(None, ["eval.ks=[5, 10]"]).eval.ks == (5, 10)


def test_a_whole_number_precision_is_read_as_lightning_writes_it():
    """`trainer.precision: 16`, as Lightning's own configs write it, was "Input should be a valid string" (s36)."""
    assert load_config(None, ["trainer.precision=16"]).trainer.precision == "16"
    with pytest.raises(ConfigError, match="trainer.precision"):
        load_config(None, ["trainer.precision=true"])


def test_a_bad_field_a_base_file_set_is_named_with_that_base(tmp_path):
    """The error named the child file alone, where the misspelt field is not (review s36)."""
    (tmp_path / "typo.yaml").write_text("data: {history_lenght: 5}\n", encoding="utf-8")
    (tmp_path / "middle.yaml").write_text("base: typo.yaml\n", encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text("base: middle.yaml\nagent: {max_groundings: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"child.yaml \(over its base middle.yaml over typo.yaml\): .*history_lenght"):
        load_config(child)


@pytest.mark.reliability
@pytest.mark.parametrize("field", ["policy.model", "embedding.model"])
def test_a_key_given_as_a_model_is_refused_without_being_shown(field, tmp_path):
    """`policy.model` and `embedding.model` took `sk-proj-...` and wrote it into the run's config.yaml, where
    `user_agent.model` refused it (review s36). A hub id or a path (they hold a `/`) is never taken for a key."""
    key = "sk-proj-TAILSECRET0123456789abcdefgh"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{field}={key}"])
    assert f"{field}: Value error, looks like an API key" in str(err.value) and "TAILSECRET" not in str(err.value)
    for model in ("Qwen/Qwen2.5-1.5B-Instruct", "runs/x/policy", "all-MiniLM-L6-v2", "preset:tiny-items"):
        assert load_config(None, [f"{field}={model}"]).model_dump()[field.split(".")[0]]["model"] == model


def test_an_unknown_option_names_the_component_and_the_options_it_takes(tmp_path):
    """``user_agent.options.foo: Extra inputs are not permitted`` named only the path (review s42): the line names
    the component and its options, and the command that describes them; a reward's too, which takes no clearing hint
    (rewards are named in their path); one that takes no options is named."""
    from mgfrec.config.components import check_components

    def said(overrides: list[str], values: dict | None = None) -> str:
        with pytest.raises(ValueError) as err:
            check_components(load_config(None, overrides, values or {}))
        return str(err.value)

    line = said(["user_agent.options.foo=1"])
    assert (
        "user_agent.options.foo: Extra inputs are not permitted (user agent 'simulated' takes good_items, "
        "recency_decay, recent, summary_size, tolerance: mgfrec plugins show user_agent simulated; --set "
        "user_agent.options={} clears options set for another one)"
    ) in line, line
    line = said(["grpo.rewards.format.options.foo=1"])
    assert line.endswith("(reward 'format' takes penalty: mgfrec plugins show reward format)"), line
    line = said(["user_agent.options.foo=1"], {"user_agent.backend": "none"})
    assert "takes no options, got ['foo'] (user agent 'none'; --set user_agent.options={} clears" in line, line

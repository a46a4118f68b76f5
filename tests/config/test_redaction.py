"""config.yaml keeps every setting a run needs to resume and none of its secrets: values are redacted by
what the field holds (a key, a secret, a password, a token), never because a name merely contains "token"."""

from __future__ import annotations

import pytest
import yaml

from mgfrec.config.load import load_config, write_resolved
from mgfrec.config.redaction import is_secret_field
from mgfrec.config.schema import MGFRecConfig

pytestmark = pytest.mark.reliability

SECRET_FIELDS = [
    "pwd",  # these three were written out as given (a URL's ?sig= of an Azure SAS link among them)
    "sig",
    "signature",
    "api_key",
    "openai_api_key",
    "OPENAI_API_KEY",
    "access_key",
    "aws_secret_access_key",
    "secret",
    "client_secret",
    "password",
    "db_password",
    "authorization",
    "Authorization",
    "x-api-key",
    "token",
    "hf_token",
    "auth_token",
    "accessToken",
    "apiKey",
    "private_key",
    "key",
    "bearer",
    "api_keys",
    "subscription_key",
    "client_secrets",
    "passwords",
]
PLAIN_FIELDS = [
    "max_tokens",
    "max_token",
    "total_tokens",
    "max_new_tokens",
    "max_new_tokens_total",
    "max_new_tokens_per_turn",
    "n_tokens",
    "api_key_env",
    "key_header",
    "token_file",
    "tokenizer",
    "sort_key",
    "cache_key",
    "keys",
    "monkey",
    "cache_path",
    "temperature",
]


@pytest.mark.parametrize("name", SECRET_FIELDS)
def test_secret_fields_are_recognised(name):
    assert is_secret_field(name)


@pytest.mark.parametrize("name", PLAIN_FIELDS)
def test_counts_and_names_are_not_secrets(name):
    assert not is_secret_field(name)


def test_every_field_survives_a_config_yaml_round_trip(tmp_path):
    # every section set away from its default, with options whose names contain "token" and "key"
    sets = [
        "data.source=csv",
        "data.path=/data/x",
        "data.history_length=7",
        "data.seed=3",
        "data.skip_bad=true",
        "embedding.batch_size=9",
        "embedding.device=cuda:1",
        "embedding.normalize=true",
        "grounding.grounder=faiss",
        "grounding.top_k=4",
        "retriever.model=pop",
        "retriever.recall_size=11",
        "agent.max_groundings=2",
        "agent.max_new_tokens_per_turn=33",
        "agent.max_new_tokens_total=99",
        "user_agent.backend=openai",
        "user_agent.model=m",
        "user_agent.api_key_env=MY_KEY_VAR",
        "user_agent.cache_path=false",
        "user_agent.options.max_tokens=77",
        "user_agent.options.temperature=0.5",
        "rollout.engine=vllm",
        "rollout.temperature=0.7",
        "policy.model=preset:small",
        "grpo.group_size=3",
        "grpo.rewards=[ndcg]",
        "grpo.reward_options={ndcg: {k: 5}}",
        "trainer.lr=0.01",
        "trainer.max_steps=5",
        "eval.ks=[1,2]",
        "eval.split=valid",
    ]
    cfg = load_config(None, sets)
    written = write_resolved(cfg, tmp_path)
    assert "<redacted>" not in written.read_text(encoding="utf-8")
    assert load_config(written) == cfg
    assert load_config(written).user_agent.options["max_tokens"] == 77


def test_a_secret_in_options_is_redacted_and_nothing_else(tmp_path):
    cfg = MGFRecConfig.model_validate(
        {"user_agent": {"backend": "openai", "options": {"max_tokens": 5, "extra_body": {"api_key": "sk-xyz"}}}}
    )
    text = write_resolved(cfg, tmp_path).read_text(encoding="utf-8")
    assert "sk-xyz" not in text
    options = yaml.safe_load(text)["user_agent"]["options"]
    assert options == {"max_tokens": 5, "extra_body": {"api_key": "<redacted>"}}


def test_every_shipped_config_passes_the_component_check():
    from pathlib import Path

    from mgfrec.config.components import check_components

    shipped = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))
    assert shipped
    for path in shipped:
        check_components(load_config(path), source=str(path))


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["user_agent.options.temprature=0.5"], ["user_agent.options.temprature"]),
        (["grpo.rewards=[ndcg,nope]"], ["grpo.rewards", "unknown reward 'nope'"]),
        (["grpo.reward_options={format: {x: 1}}", "grpo.rewards=[ndcg]"], ["grpo.reward_options", "format"]),
        (["retriever.device=quantum"], ["retriever.device", "'quantum'"]),
        (["embedding.device=gpu0"], ["embedding.device"]),
        (["trainer.accelerator=abacus"], ["trainer.accelerator"]),
        (["grounding.grounder=hnsw"], ["grounding.grounder", "Did you mean 'hnswlib'"]),
        (["rollout.engine=nope", "data.source=nope"], ["rollout.engine", "data.source"]),
    ],
)
def test_the_component_check_names_each_wrong_field(sets, words):
    from mgfrec.config.components import check_components

    with pytest.raises(ValueError) as info:
        check_components(load_config(None, sets))
    for word in words:
        assert word in str(info.value)


def test_a_password_inside_a_url_is_redacted(tmp_path):
    cfg = load_config(None, ["user_agent.base_url=https://alice:S3cretPw@proxy.example/v1"])
    text = write_resolved(cfg, tmp_path).read_text()
    assert "S3cretPw" not in text and "https://alice:<redacted>@proxy.example/v1" in text
    plain = load_config(None, ["user_agent.base_url=http://127.0.0.1:8000/v1"])
    assert "http://127.0.0.1:8000/v1" in write_resolved(plain, tmp_path).read_text()


def test_a_users_config_in_the_run_folder_is_kept_under_another_name(tmp_path):
    """write_resolved replaced a user's own config.yaml (comments, any key it held) with the resolved one."""
    import warnings

    from mgfrec.config.load import ConfigKeptWarning, is_user_config

    cfg = load_config(None)
    mine = "# mine\ndata:\n  seed: 3\n"
    (tmp_path / "config.yaml").write_text(mine)
    with pytest.warns(ConfigKeptWarning, match="kept as config.user.yaml"):
        write_resolved(cfg, tmp_path)
    assert (tmp_path / "config.user.yaml").read_text() == mine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_resolved(cfg, tmp_path)  # its own resolved config: replaced silently
    (tmp_path / "config.yaml").write_text("not: [yaml")
    with pytest.warns(ConfigKeptWarning, match="config.user.1.yaml"):
        write_resolved(cfg, tmp_path)
    assert (tmp_path / "config.user.1.yaml").read_text() == "not: [yaml"
    assert (tmp_path / "config.user.yaml").read_text() == mine
    assert is_user_config("config.user.yaml") and is_user_config("config.user.12.yaml")
    assert not is_user_config("config.yaml") and not is_user_config("config.user.yaml.tmp")


def test_a_token_as_a_urls_user_name_and_secret_query_values_are_not_written():
    """Only ``user:password@`` was redacted: ``https://sk-TOKEN@host`` and ``?api_key=...`` reached config.yaml."""
    from mgfrec.config.redaction import redacted

    cfg = load_config(
        None,
        [
            "user_agent.backend=openai",
            "user_agent.base_url=http://sk-USERTOKEN-1234@127.0.0.1:9/v1?api_key=QUERYKEY-99&model=m",
        ],
    )
    url = redacted(cfg)["user_agent"]["base_url"]
    assert url == "http://<redacted>@127.0.0.1:9/v1?api_key=<redacted>&model=m"


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("user_agent.api_key=sk-live-123", "user_agent.api_key=<redacted>"),
        (
            "user_agent.options={api_key: sk-live, model: m}",
            'user_agent.options={"api_key": "<redacted>", "model": "m"}',
        ),
        (
            "user_agent.options.headers={Authorization: Bearer abc}",
            'user_agent.options.headers={"Authorization": "<redacted>"}',
        ),
        (
            "user_agent.base_url=https://u:pw@h/v1?token=t0k3n",
            "user_agent.base_url=https://u:<redacted>@h/v1?token=<redacted>",
        ),
        ("agent.max_groundings=3", "agent.max_groundings=3"),
        ("user_agent.max_tokens=64", "user_agent.max_tokens=64"),
        # a mapping YAML keeps as text (' #' in it, a syntax error): shown whole before (review s40)
        (
            "user_agent.options.extra_body={note: 'a # b', password: hunter2hunter}",
            "user_agent.options.extra_body=<redacted>",
        ),
        (
            "user_agent.options.extra_headers={Authorization: Bearer sekrit: x}",
            "user_agent.options.extra_headers=<redacted>",
        ),
        (
            "user_agent.options.extra_body={note: 'a # b', model: m}",
            "user_agent.options.extra_body={note: 'a # b', model: m}",
        ),
        ("user_agent.options.auth=Bearer Zq8xZq8xZq8xZq8xZq8xZq8x", "user_agent.options.auth=<redacted>"),
    ],
)
def test_an_override_is_recorded_with_its_secrets_redacted(override, shown):
    """`derive --set` recorded overrides in run.json and --json as given; a mapping given whole kept its key."""
    from mgfrec.config.load import redacted_override

    assert redacted_override(override) == shown


def test_a_setting_read_back_redacted_is_refused_naming_it_not_sent_to_the_server(tmp_path, monkeypatch):
    """A run trained with credentials in a URL or a secret option recorded them as ``<redacted>``; evaluating or
    resuming it from its config.yaml sent that placeholder to the server (a 401 that named nothing). Now the
    setting is named, with how to give it again."""
    from mgfrec.config.components import check_components
    from mgfrec.user_agents.base import check_user_agent, load_user_agent

    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    sets = ["user_agent.backend=openai", "user_agent.model=m"]
    url = load_config(None, [*sets, "user_agent.base_url=http://bob:hunter2@127.0.0.1:9/v1"])
    back = load_config(write_resolved(url, tmp_path / "a"))
    for check in (lambda: check_user_agent(back.user_agent, "evaluation"), lambda: load_user_agent(back.user_agent)):
        with pytest.raises(ValueError, match=r"user_agent\.base_url holds <redacted>.*--set user_agent\.base_url="):
            check()
    check_user_agent(url.user_agent, "evaluation")  # as given, with its password: fine
    for backend in ("none", "simulated"):  # they never read base_url: `--set user_agent.backend=simulated` works
        other = back.user_agent.model_copy(update={"backend": backend, "options": {}})
        check_user_agent(other, "evaluation")
        if backend == "none":
            load_user_agent(other).close()
    option = load_config(None, [*sets, "user_agent.options={extra_body: {api_key: sk-xyz}}"])
    back = load_config(write_resolved(option, tmp_path / "b"))
    with pytest.raises(ValueError, match=r"user_agent\.options\.extra_body\.api_key holds <redacted>"):
        check_components(back)
    check_components(option)


def test_secrets_are_given_back_only_to_the_setting_they_were_given_for(tmp_path):
    # matched leaf by leaf, a redacted key went to whatever redacted leaf sat at the same place: another grounder's
    # api_key, or the other reward's of two listed in another order
    from mgfrec.config.load import load_config, write_resolved
    from mgfrec.config.redaction import with_secrets_of

    url = "http://alice:PW1@127.0.0.1:1/v1"
    trained = load_config(
        None, ["grounding.grounder=faiss", "grounding.options={api_key: K1}", f"user_agent.base_url={url}"]
    )
    write_resolved(trained, tmp_path)
    read_back = load_config(tmp_path / "config.yaml")
    assert "PW1" not in read_back.user_agent.base_url and read_back.grounding.options["api_key"] == "<redacted>"
    back = with_secrets_of(read_back, trained)
    assert back.user_agent.base_url == url and back.grounding.options["api_key"] == "K1"
    other = load_config(
        None, ["grounding.grounder=hnswlib", "grounding.options={api_key: K2}", f"user_agent.base_url={url}"]
    )
    mixed = with_secrets_of(read_back, other)
    assert mixed.grounding.grounder == "faiss" and mixed.grounding.options["api_key"] == "<redacted>"  # not K2
    assert mixed.user_agent.base_url == url  # its own section is the same setting


def test_a_secret_given_again_with_another_setting_is_named_not_asked_for_again(tmp_path):
    """--set user_agent.base_url=<another host's URL> for a run that recorded its URL redacted kept the placeholder,
    and the refusal asked for the value again: the one just given (note s32)."""
    from mgfrec.config.load import load_config, write_resolved
    from mgfrec.config.redaction import check_secret_sets

    url = "http://alice:PW1@127.0.0.1:1/v1"
    write_resolved(load_config(None, [f"user_agent.base_url={url}"]), tmp_path)
    recorded = load_config(tmp_path / "config.yaml")
    same = [f"user_agent.base_url={url}"]
    check_secret_sets(recorded, load_config(tmp_path / "config.yaml", same), same, "RUN")  # the secret alone: taken
    other = [f"user_agent.base_url={url.replace('127.0.0.1', 'localhost')}"]
    with pytest.raises(ValueError) as info:
        check_secret_sets(recorded, load_config(tmp_path / "config.yaml", other), other, "RUN")
    assert str(info.value).startswith(
        "--set user_agent.base_url=http://alice:<redacted>@localhost:1/v1: RUN recorded user_agent.base_url as "
        "http://alice:<redacted>@127.0.0.1:1/v1; "
    )
    assert "PW1" not in str(info.value) and "mgfrec derive RUN OUT --set user_agent.base_url=...)" in str(info.value)


def test_a_signed_urls_signature_is_redacted():
    from mgfrec.config.redaction import scrub_urls

    shown = scrub_urls("https://acct.blob.core.windows.net/c/items.csv?sv=2022&sig=LEAKSIG&se=2030")
    assert "LEAKSIG" not in shown and "sv=2022" in shown, shown


@pytest.mark.reliability
def test_credential_query_parameters_a_field_name_would_not_mark_are_not_written(tmp_path):
    """``?code=`` (an Azure Functions key), ``?jwt=``, ``?hmac=`` and ``?session=`` in user_agent.base_url went in clear
    into a run's config.yaml and run.json (review s26); ``?api-version=`` stays readable."""
    from mgfrec.config.load import load_config, write_resolved

    url = "http://127.0.0.1:9/v1?code=LEAK1&jwt=LEAK2&hmac=LEAK3&session=LEAK4&api-version=2024-02-01"
    cfg = load_config(None, ["user_agent.backend=openai", "user_agent.model=m", f"user_agent.base_url={url}"])
    text = write_resolved(cfg, tmp_path).read_text()
    assert "LEAK" not in text and "api-version=2024-02-01" in text, text


@pytest.mark.reliability
def test_keys_the_environment_holds_are_scrubbed_from_printed_errors(monkeypatch, tmp_path):
    """A plugin's error quoting $OPENAI_API_KEY was printed as it was (review s26): every printed error now has the
    values of secret-named variables replaced; the working folder ($PWD) and placeholders are left alone."""
    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.config.redaction import scrub_env_secrets

    monkeypatch.setenv("OPENAI_API_KEY", "sk-TAILSECRET0123456789")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-TAILSECRET-2")
    monkeypatch.setenv("LOCAL_KEY", "EMPTY")
    monkeypatch.setenv("PWD", str(tmp_path))
    text = f"failed in {tmp_path}: key sk-TAILSECRET0123456789, token tok-TAILSECRET-2, EMPTY"
    assert scrub_env_secrets(text) == f"failed in {tmp_path}: key <redacted>, token <redacted>, EMPTY"
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "sk-TAILSECRET0123456789")])
    assert result.exit_code == 2 and "TAILSECRET" not in result.output and "<redacted>" in result.output


def test_a_key_under_a_name_that_does_not_say_so_is_not_recorded(tmp_path):
    """`--set user_agent.options.extra_body.provider_key=sk-or-v1-<hex>` was written to config.yaml: the field's name
    is not secret-looking and OpenRouter's keys are hexadecimal after their prefix (review s40)."""
    from mgfrec.config.load import redacted_override
    from mgfrec.config.redaction import scrubbed

    key = "sk-or-v1-a8f3b2c9d0e1f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1"
    cfg = load_config(None, ["user_agent.backend=openai", f"user_agent.options.extra_body.provider_key={key}"])
    write_resolved(cfg, tmp_path)
    assert (
        key not in (tmp_path / "config.yaml").read_text()
        and "provider_key: <redacted>" in (tmp_path / "config.yaml").read_text()
    )
    assert redacted_override(f"user_agent.options.extra_body.provider_key={key}").endswith("=<redacted>")
    kept = {
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "model": "Qwen/Qwen2.5-1.5B-Instruct",
        # names and paths that look random but carry no provider's prefix: redacted, a run read back held the
        # literal <redacted> as its cache file (review s40, of this fix)
        "cache_path": "feedbackcache20240501run.sqlite",
        "user": "org-AbCdEfGh1234567890IjKlMnOp",
        "checkpoint": "hf_ckpt_3f9a2b1c4d5e",
    }
    assert scrubbed(kept) == kept

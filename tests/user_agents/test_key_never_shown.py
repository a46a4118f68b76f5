"""The API key never reaches the screen, a log or a file, even when the server's error body quotes it.

A real HTTP server on 127.0.0.1 answers 401 with a body that echoes the Authorization and x-api-key headers.
The backend's error must carry no key, neither in its message nor in a chained exception; and the CLI,
run as a user runs it (a subprocess), must print one error line holding no key and write none to disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from ua_servers import FakeServer, serve
from uakit import KEY_ENV, SECRET, api_config, build, make_request

from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent
from mgfrec.user_agents.base import UserAgentError
from mgfrec.user_agents.openai_chat import OpenAIChatAgent

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
def test_an_echoed_key_is_in_no_message_and_no_chained_exception(api_key, cls):
    wire = "openai" if cls is OpenAIChatAgent else "anthropic"
    model = {} if cls is OpenAIChatAgent else {"model": "claude-test"}
    with serve(FakeServer(wire, default="echo401")) as server:
        with build(cls, api_config(server.url, **model)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request(0), make_request(1)])
    assert server.count >= 1 and SECRET in str(server.received[0].headers)  # the key did travel, and came back
    printed = "".join(traceback.format_exception(info.value))  # what an uncaught error would print
    assert "HTTP status 401" in printed and SECRET not in printed
    chain, seen = info.value, []
    while chain is not None:  # the chain a debugger or logger could walk, shown or not
        seen.append(chain)
        assert SECRET not in str(chain) and SECRET not in repr(chain.args)
        chain = chain.__cause__ or chain.__context__
    assert len(seen) == 1


@pytest.mark.parametrize("cls", [OpenAIChatAgent, AnthropicMessagesAgent], ids=["openai", "anthropic"])
def test_a_key_echoed_in_a_successful_reply_is_scrubbed_from_the_feedback(api_key, cls):
    """Only error messages were scrubbed: a 200 whose feedback quoted the Authorization header put the key into
    recommend's output, the --markdown case study, the response cache and (in fit) the policy's training text."""
    model = {} if cls is OpenAIChatAgent else {"model": "claude-test"}
    wire = "openai" if cls is OpenAIChatAgent else "anthropic"
    with serve(FakeServer(wire, default="echo200")) as server:
        with build(cls, api_config(server.url, **model)) as agent:
            replies = agent.feedback([make_request(0)])
    assert SECRET in str(server.received[0].headers)  # the key did travel
    assert replies[0].startswith("your key is") and "***" in replies[0] and SECRET not in replies[0], replies


def test_a_key_echoed_in_a_refusal_cut_to_200_characters_is_not_shown_in_part(api_key):
    """The refusal was cut to 200 characters before the message was scrubbed: the cut left the key's first part,
    which a whole-key replace did not find (review s32)."""
    with serve(FakeServer("openai", default="echorefusal")) as server:
        with build(OpenAIChatAgent, api_config(server.url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request(0)])
    assert SECRET in str(server.received[0].headers)  # the key did travel, and came back
    printed = "".join(traceback.format_exception(info.value))
    assert "the model refused to answer" in printed and SECRET[:8] not in printed, printed


@pytest.mark.parametrize(
    "url_of",
    [
        lambda u: u.replace("http://", "http://bob:hunter2-pw-9f3e@"),
        lambda u: u + "?api-key=hunter2-pw-9f3e",
        lambda u: u.replace("http://", "http://hunter2-pw-9f3e@"),  # a token as the user name: it was shown whole
    ],
)
def test_credentials_in_the_base_url_are_in_no_message(api_key, url_of):
    """A password or a key in user_agent.base_url was printed whole in every error (server log, CLI stderr)."""
    with serve(FakeServer("openai", default="500")) as server:
        with build(OpenAIChatAgent, api_config(url_of(server.url), max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request(0)])
    printed = "".join(traceback.format_exception(info.value))
    assert "HTTP status" in printed and "127.0.0.1" in printed and "***" in printed  # 404 with a query string
    assert "hunter2-pw-9f3e" not in printed


def test_a_key_with_a_trailing_newline_works_and_a_control_character_inside_is_named(monkeypatch):
    """A pasted key ending in a newline made httpx refuse the header, reported as 'Connection error'."""
    monkeypatch.setenv(KEY_ENV, SECRET + "\n")
    with serve(FakeServer("openai")) as server:
        with build(OpenAIChatAgent, api_config(server.url)) as agent:
            assert agent.feedback([make_request(0)])[0]
    assert f"Bearer {SECRET}" in str(server.received[0].headers)
    monkeypatch.setenv(KEY_ENV, SECRET[:8] + "\r" + SECRET[8:])
    with pytest.raises(UserAgentError, match=f"{KEY_ENV} holds a control character") as info:
        build(OpenAIChatAgent, api_config("http://127.0.0.1:9/v1"))
    assert SECRET[8:] not in str(info.value)


def test_a_key_with_a_character_outside_ascii_is_named_before_any_request(monkeypatch):
    """A key copied with a trailing "…" passed the check and failed at the first request with httpx's
    UnicodeEncodeError (naming the Authorization header, not the variable), after fit's long stages (review s30)."""
    from mgfrec.user_agents.anthropic_messages import AnthropicMessagesAgent

    for cls in (OpenAIChatAgent, AnthropicMessagesAgent):
        monkeypatch.setenv(KEY_ENV, SECRET[:20] + "\u2026" + SECRET[20:])
        with pytest.raises(UserAgentError) as info:
            cls.check_ready(api_config("http://127.0.0.1:9/v1", model="m"))
        text = str(info.value)
        assert f"{KEY_ENV} holds a character outside ASCII (position 21 of the key" in text and "\n" not in text, text
        assert SECRET[:20] not in text and SECRET[20:] not in text and "\u2026" not in text


def _all_text(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keyleak")
    options = {"n_users": 30, "n_items": 60, "n_artists": 8, "max_length": 6}
    prepare(DataConfig(source="synthetic", options=options), root / "data")
    return root / "data"


def run_cli(args: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra, "MGFREC_TEST_THREADS": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", *args], cwd=cwd, env=env, capture_output=True, timeout=900
    )


def sft_args(data: Path, out: Path, url: str) -> list[str]:
    # SFT synthesizes demonstrations through the environment, so every grounding asks the user agent
    return [
        "sft",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "0",
        "--max-train-samples",
        "3",
        "--valid-samples",
        "0",
        "--recall-model",
        "pop",
        "--no-progress",
        "--set",
        "user_agent.backend=openai",
        "--set",
        f"user_agent.base_url={url}",
        "--set",
        f"user_agent.api_key_env={KEY_ENV}",
        "--set",
        "user_agent.max_retries=1",
        "--set",
        "user_agent.options.backoff_s=0.01",
    ]


@pytest.mark.slow
def test_the_cli_prints_one_line_and_writes_no_key_when_the_server_echoes_it(prepared, tmp_path):
    with serve(FakeServer("openai", default="echo401")) as server:
        done = run_cli(sft_args(prepared, tmp_path / "run", server.url), {KEY_ENV: SECRET}, tmp_path)
    assert server.count >= 1, done.stderr.decode()
    assert done.returncode == 2, done.stderr.decode()
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP status 401" in errors[0] and KEY_ENV in errors[0]
    assert SECRET.encode() not in done.stdout + done.stderr
    written = _all_text(tmp_path)
    assert written, "the run wrote nothing: the test would prove nothing about files"
    leaked = [str(p) for p, data in written.items() if SECRET.encode() in data]
    assert leaked == []


@pytest.mark.slow
def test_an_unset_key_variable_is_one_line_naming_it(prepared, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", *sft_args(prepared, tmp_path / "run", "http://127.0.0.1:9/v1")],
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        timeout=900,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    assert f"environment variable {KEY_ENV}, which is not set" in " ".join(stderr.split())


@pytest.mark.slow
def test_training_caches_remote_feedback_in_the_run_folder_and_a_rerun_is_served_from_it(prepared, tmp_path):
    out = tmp_path / "run"
    with serve(FakeServer("openai")) as server:
        first = run_cli(sft_args(prepared, out, server.url), {KEY_ENV: SECRET}, tmp_path)
        assert first.returncode == 0, first.stderr.decode()
        sent = server.count
        again = run_cli(sft_args(prepared, out, server.url), {KEY_ENV: SECRET}, tmp_path)
        assert again.returncode == 0, again.stderr.decode()
    assert sent >= 1 and server.count == sent  # the identical second run asked the server nothing
    cache = out / "user_agent_cache.sqlite"
    assert cache.is_file()
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))["user_agent"]["cache_path"] == str(cache)
    import sqlite3

    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] >= 1


def test_a_url_password_echoed_back_as_basic_auth_is_in_no_message(api_key):
    """With user:password in base_url the HTTP client sends 'Authorization: Basic base64(user:password)'; a server
    echoing that header put the password, base64-encoded, in the error and the server's log."""
    import base64

    with serve(FakeServer("openai", default="echo401")) as server:
        url = server.url.replace("http://", "http://bob:hunter2-pw-9f3e@")
        with build(OpenAIChatAgent, api_config(url, max_retries=0)) as agent:
            with pytest.raises(UserAgentError) as info:
                agent.feedback([make_request(0)])
    encoded = base64.b64encode(b"bob:hunter2-pw-9f3e").decode()
    assert encoded in str(server.received[0].headers)  # it did travel, and the body echoed it
    printed = "".join(traceback.format_exception(info.value))
    assert "HTTP status 401" in printed and encoded not in printed and "hunter2-pw-9f3e" not in printed


def test_a_cached_reply_written_before_the_scrubbing_comes_back_scrubbed(api_key, tmp_path):
    """Replies are scrubbed now; a response cache written before held them as they came, and served them."""
    from mgfrec.user_agents.cache import CachedUserAgent, ResponseCache

    path = tmp_path / "responses.sqlite"
    with serve(FakeServer("openai", default="echo200")) as server:
        with build(OpenAIChatAgent, api_config(server.url)) as agent:
            request = make_request(0)
            old = ResponseCache(path)
            old.put_many([(agent.cache_key(request), f"your key is Bearer {SECRET}, as it came")])
            old.close()
            cached = CachedUserAgent(agent, path)
            replies = cached.feedback([request])
            cached.cache.close()
    assert server.count == 0  # answered from the cache
    assert replies == ["your key is Bearer ***, as it came"]


@pytest.mark.slow
def test_a_run_whose_url_holds_a_password_is_evaluated_and_reported_with_it_given_again(prepared, tmp_path):
    """The run's config.yaml records the URL's password as <redacted>: evaluate refused it and advised `mgfrec
    derive RUN OUT --set user_agent.base_url=...`, whose run recorded it redacted again, so the run could never be
    evaluated (review s30). evaluate and report now take that --set for the secret alone."""
    out = tmp_path / "run"
    with serve(FakeServer("openai")) as server:
        url = server.url.replace("http://", "http://bob:hunter2-pw-9f3e@")
        no_cache = ["--set", "user_agent.cache_path=false"]  # every evaluation asks the server
        made = run_cli([*sft_args(prepared, out, url), *no_cache], {KEY_ENV: SECRET}, tmp_path)
        assert made.returncode == 0, made.stderr.decode()
        refused = run_cli(["evaluate", str(out), "--limit", "2"], {KEY_ENV: SECRET}, tmp_path)
        text = " ".join(refused.stderr.decode().split())
        assert refused.returncode == 2 and "user_agent.base_url holds <redacted>" in text, text
        assert "--set user_agent.base_url=... to evaluate, report" in text and "derive" not in text, text
        given = ["--limit", "2", "--set", f"user_agent.base_url={url}"]
        done = run_cli(["evaluate", str(out), *given], {KEY_ENV: SECRET}, tmp_path)
        text = done.stderr.decode()
        assert done.returncode == 0 and "note: --set" not in text, text
        # another server's URL is not this run's: the password is not given to it, and the line says so where it
        # asked for the value again, the one just given (note s32)
        elsewhere = url.replace("127.0.0.1", "localhost")
        to_elsewhere = ["--limit", "2", "--set", f"user_agent.base_url={elsewhere}"]
        other = run_cli(["evaluate", str(out), *to_elsewhere], {KEY_ENV: SECRET}, tmp_path)
        text = " ".join(other.stderr.decode().split())
        shown = url.replace("hunter2-pw-9f3e", "<redacted>")
        assert other.returncode == 2 and f"recorded user_agent.base_url as {shown};" in text, text
        assert f"--set user_agent.base_url={shown.replace('127.0.0.1', 'localhost')}:" in text, text
        assert "mgfrec derive RUN OUT --set user_agent.base_url=...)" in text and "holds <redacted>" not in text, text
        (out / "eval_test.json").unlink()  # report evaluates it again, with the password given again
        reported = run_cli(["report", str(out), *given], {KEY_ENV: SECRET}, tmp_path)
        assert reported.returncode == 0 and "note: --set" not in reported.stderr.decode(), reported.stderr.decode()
    for each in (made, refused, done, other, reported):
        assert b"hunter2-pw-9f3e" not in each.stdout + each.stderr
    assert [str(p) for p, data in _all_text(out).items() if b"hunter2-pw-9f3e" in data] == []

"""The ``mgfrec`` entry point: DeepSpeed's stdout logging never reaches a ``--json`` stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("entry", ["mgfrec.cli.main", "mgfrec"])  # the tools and the Python API too
def test_deepspeed_records_go_to_stderr_and_the_no_gpu_warning_is_dropped(entry):
    code = (
        f"import logging, {entry}\n"
        "from deepspeed.utils.logging import logger\n"  # DeepSpeed's own logger with its stdout handler
        "logger.warning('accelerator: we were unable to detect it')\n"
        "logger.warning('a real DeepSpeed warning')\n"
        "import json; print(json.dumps({'ok': True}))\n"
    )
    pytest.importorskip("deepspeed", reason="deepspeed is in the dev extra")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True}  # stdout holds the JSON and nothing else
    assert "a real DeepSpeed warning" in result.stderr and "unable to detect" not in result.stderr + result.stdout


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "x", "--top-k", "0"], "error: Invalid value for '--top-k': "),
        (["recommend"], "error: Missing argument 'RUN'."),
        (["recommend", "x", "--bogus"], "error: No such option: --bogus"),
        (["nosuch"], "error: No such command 'nosuch'."),
    ],
)
def test_a_flag_click_refuses_is_one_error_line_too(args, message):
    """A value out of range, a missing argument or an unknown option was Typer's usage line, a hint and a boxed
    panel (four to six lines), unlike every other user error."""
    from mgfrec.cli.main import run_app

    errors: list[str] = []
    assert run_app(args, errors.append) == 2
    assert len(errors) == 1 and errors[0].startswith(message.removeprefix("error: ")), errors
    assert errors[0].endswith("--help')") and "\n" not in errors[0]
    result = subprocess.run(
        [sys.executable, "-c", "from mgfrec.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == "", result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "query", "d", "x", "--config", "a.yaml", "--config", "b.yaml"], "--config: given 2 times"),
        (["index", "query", "d", "x", "-k", "3", "--top-k=5"], "--top-k: given 2 times"),
        (["baseline", "fit", "--data", "d", "--out", "a", "--out=b"], "--out: given 2 times"),
        (["--verbose", "data", "prepare", "synthetic", "--out", "a", "--out", "b"], "--out: given 2 times"),
    ],
)
def test_an_option_of_one_value_given_twice_is_refused(tmp_path, monkeypatch, args, message):
    """Click kept the last without a word: a second --config dropped the whole first file, --out a --out b wrote only
    b (review s31). Options that take several values and flags are not counted."""
    from mgfrec.cli.main import run_app

    monkeypatch.chdir(tmp_path)
    errors: list[str] = []
    assert run_app(args, errors.append) == 2
    assert len(errors) == 1 and errors[0].startswith(message) and "give it once" in errors[0], errors
    assert list(tmp_path.iterdir()) == []
    several = ["index", "query", "d", "x", "--set", "grounding.top_k=3", "--set", "eval.seed=1", "--json", "--json"]
    fresh: list[str] = []
    assert run_app(several, fresh.append) == 2 and not fresh, fresh  # refused for the data set, by the command


def test_help_and_a_finished_command_keep_their_exit_codes():
    from mgfrec.cli.main import run_app

    assert run_app(["plugins", "list", "--json"], print) == 0
    assert run_app(["--help"], print) == 0
    assert run_app(["recommend", "/no/such/run", "--user", "u"], print) == 2  # a user error inside the command


def test_every_other_way_a_command_ends_keeps_typers_exit_code():
    """Catching an abort through an attribute Typer's vendored Click lacks turned every exception that was not a
    usage error (SystemExit(4), typer.Abort, EOF at a prompt, a broken pipe) into an AttributeError traceback."""
    import typer

    from mgfrec.cli.main import run_app

    cli = typer.Typer()

    @cli.command()
    def ends(how: str) -> None:
        if how == "exit4":
            raise SystemExit(4)
        if how == "typer-exit":
            raise typer.Exit(3)
        if how == "abort":
            raise typer.Abort()
        if how == "eof":
            raise EOFError
        if how == "interrupt":
            raise KeyboardInterrupt

    errors: list[str] = []
    with pytest.raises(SystemExit) as exited:
        run_app(["exit4"], errors.append, cli)
    assert exited.value.code == 4
    assert run_app(["typer-exit"], errors.append, cli) == 3
    assert run_app(["abort"], errors.append, cli) == 1
    assert run_app(["eof"], errors.append, cli) == 1
    assert run_app(["interrupt"], errors.append, cli) == 130
    assert run_app(["ok"], errors.append, cli) == 0 and errors == []


def test_saving_a_policy_from_the_library_writes_nothing_on_stdout(tmp_path):
    """``save_policy`` imports DeepSpeed (transformers unwraps the model through accelerate), whose no-GPU warning
    went to stdout in every tool and library use: tools/bench_serve.py's JSON lines began with it."""
    pytest.importorskip("deepspeed", reason="deepspeed is in the dev extra")
    code = (
        "from mgfrec.models.policy import build_preset, save_policy\n"
        "model, tokenizer = build_preset('tiny')\n"
        f"save_policy(model, tokenizer, {str(tmp_path / 'p')!r}, preset='tiny')\n"
        "import deepspeed, sys\nprint('deepspeed' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"  # DeepSpeed was imported, and stdout holds only what the program printed


def test_a_library_users_own_handler_on_deepspeeds_logger_still_gets_its_records():
    """The filter set on import swallowed every DeepSpeed record after writing it to stderr itself, so a handler a
    library user put on the logger received nothing; now only the no-GPU warning is dropped."""
    import io
    import logging

    import mgfrec  # noqa: F401 - the filter is set on import

    mine = io.StringIO()
    handler = logging.StreamHandler(mine)
    logger = logging.getLogger("DeepSpeed")
    logger.addHandler(handler)
    try:
        logger.warning("zero stage 2 config: overlap_comm=True")
        logger.warning("accelerator: we were unable to detect it")
    finally:
        logger.removeHandler(handler)
    assert mine.getvalue() == "zero stage 2 config: overlap_comm=True\n"


@pytest.mark.reliability
def test_an_unknown_mplbackend_is_a_note_not_a_traceback(tmp_path):
    """MPLBACKEND=nosuch made every command that imports Lightning (fit, sweep, demo...) a matplotlib traceback:
    matplotlib refuses the name at its first import. mgfrec draws into files only, so the name is set aside."""
    env = {**os.environ, "MPLBACKEND": "nosuch"}
    args = ["fit", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    result = subprocess.run(
        [sys.executable, "-c", "from mgfrec.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0] == "note: MPLBACKEND='nosuch' names no matplotlib backend; mgfrec sets it aside (figures use Agg)"
    assert lines[-1].startswith(f"error: {tmp_path / 'none'}: not a prepared data set"), lines


def test_a_known_or_empty_mplbackend_is_left_alone(monkeypatch):
    from mgfrec.cli.main import unknown_mpl_backend

    for name in ("Agg", "module://my.backend", ""):
        monkeypatch.setenv("MPLBACKEND", name)
        assert unknown_mpl_backend() is None and os.environ["MPLBACKEND"] == name
    monkeypatch.setenv("MPLBACKEND", "nosuch")
    assert "MPLBACKEND='nosuch' names no matplotlib backend" in unknown_mpl_backend()
    assert "MPLBACKEND" not in os.environ


def test_python_dash_m_mgfrec_is_the_command():
    """`python -m mgfrec` (an environment whose scripts folder is not on PATH) was "No module named
    mgfrec.__main__"; it is the `mgfrec` command, with its one-line errors (review s37)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "mgfrec", "--help"], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "Usage: mgfrec" in run.stdout, run.stderr
    bad = subprocess.run([sys.executable, "-m", "mgfrec", "fit", "--bogus"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: No such option: --bogus"), bad.stderr

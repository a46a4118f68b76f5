"""Every misuse found by the adversarial pass ends in exit code 2 and one line naming the file, line, field or
flag, never a traceback; and every component name and option is checked when the config is loaded, before
any work (no recall fit, no policy, no embedding)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgfrec.cli.common import user_errors
from mgfrec.cli.main import app
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare

pytestmark = pytest.mark.reliability


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # an uncaught error is what these tests exist to rule out
    return result.exit_code, " ".join(result.output.split())


def one_error(code: int, output: str, *words: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output and output.count("error:") == 1, output
    for word in words:
        assert word in output, (word, output)


def write(folder: Path, items: bytes, interactions: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_bytes(items)
    (folder / "interactions.csv").write_bytes(interactions)
    return folder


ITEMS = b"item_id,title\ni1,Alpha\ni2,Beta\ni3,Gamma\n"
LOG = b"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\nu1,i3,3\nu2,i2,4\nu2,i3,5\n"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clierrors")
    prepare(DataConfig(source="synthetic", options={"n_users": 30, "n_items": 60, "n_artists": 8}), root / "data")
    return root / "data"


# --- data prepare -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("skip_bad", [[], ["--skip-bad"]])
def test_a_huge_title_is_prepared(tmp_path, skip_bad):
    title = b"T" * 150_000
    raw = write(tmp_path / "raw", b"item_id,title\ni1,Alpha\ni2," + title + b"\n", LOG.replace(b"i3", b"i1"))
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out", *skip_bad)
    assert code == 0, output


def test_out_under_an_existing_file_is_one_line(tmp_path):
    raw = write(tmp_path / "raw", ITEMS, LOG)
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    errors: list[str] = []
    from mgfrec.cli.main import run_app

    assert run_app(["data", "prepare", str(raw), "--out", str(tmp_path / "afile" / "x")], errors.append) == 2
    assert len(errors) == 1 and f"{tmp_path / 'afile'} is a file; --out names a folder" in errors[0], errors


def test_an_unclosed_quote_with_skip_bad_is_refused_naming_the_line(tmp_path):
    rows = b"\n".join(b"i%d,Title %d" % (n, n) for n in range(1, 200))
    rows = rows.replace(b"i5,Title 5", b'i5,"Title 5').replace(b"i13,Title 13", b'i13,"Title, 13"')
    raw = write(tmp_path / "raw", b"item_id,title\n" + rows + b"\n", LOG)
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out", "--skip-bad")
    one_error(code, output, "items.csv:6:", "quote opened", "line 14")


@pytest.mark.parametrize("stamp", ["8_747_247_10", "1e300", "-1e300"])
def test_implausible_timestamps_are_refused_naming_file_line_field(tmp_path, stamp):
    raw = write(tmp_path / "raw", ITEMS, LOG + f"u2,i1,{stamp}\n".encode())
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out")
    one_error(code, output, "interactions.csv:7:", "field timestamp", stamp)


def test_a_nul_byte_in_a_title_is_refused(tmp_path):
    raw = write(tmp_path / "raw", ITEMS + b"i4,Del\x00ta\n", LOG)
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out")
    one_error(code, output, "items.csv:5:", "field title", "NUL")


@pytest.mark.parametrize(
    ("items", "log"),
    [
        (b"item_id,title\n", b"user_id,item_id,timestamp\n"),  # header only
        (ITEMS, b"user_id,item_id,timestamp\nu1,i1,1\nu2,i2,2\nu3,i3,3\n"),  # every user with one interaction
    ],
    ids=["header-only", "one-interaction-each"],
)
def test_an_empty_result_is_an_error_unless_allowed(tmp_path, items, log):
    raw = write(tmp_path / "raw", items, log)
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out")
    one_error(code, output, str(raw), "0 samples", "--allow-empty")
    assert not (tmp_path / "out").exists()
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out", "--allow-empty")
    assert code == 0, output


def test_all_rows_dropped_is_an_empty_result(tmp_path):
    raw = write(tmp_path / "raw", ITEMS, b"user_id,item_id,timestamp\nu1,i9,1\nu1,i8,2\n")
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out", "--skip-bad")
    # why: the rows --skip-bad dropped, shown only with --allow-empty --json before (review s30)
    one_error(code, output, "0 samples", "interactions.csv: read 2 = kept 0 + dropped 2 (unknown_item_id 2)")
    assert "items.csv" not in output  # a file that lost nothing is not listed


@pytest.mark.parametrize(
    ("header", "words"),
    [(b"item_id,title,item_idx", ["items.csv:1:", "item_idx"]), (b"item_id,title,title", ["items.csv:1:", "title"])],
)
def test_reserved_and_repeated_columns_name_the_file(tmp_path, header, words):
    raw = write(tmp_path / "raw", header + b"\ni1,Alpha,x\n", LOG)
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out")
    one_error(code, output, *words)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    raw = write(tmp_path / "raw", ITEMS, LOG)
    (tmp_path / "bad.yaml").write_bytes(b"data:\n  seed: 1 # caf\xe9\n")
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out", "--config", tmp_path / "bad.yaml")
    one_error(code, output, "bad.yaml", "not UTF-8")


# --- components and options checked at load, whatever the command ------------------------------------------


def test_an_option_no_component_takes_is_refused_by_any_command(prepared, tmp_path):
    code, output = invoke("index", "build", prepared, "--set", "user_agent.options.temprature=0.5")
    one_error(code, output, "user_agent.options.temprature")
    code, output = invoke("data", "prepare", "synthetic", "--out", tmp_path / "o", "--set", "grpo.rewards=[ndcg,nope]")
    one_error(code, output, "grpo.rewards", "'nope'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("device", "why"),
    [
        ("quantum", "use cpu, cuda, cuda:N, mps or auto"),
        ("cpu:1", "(only cuda takes an index)"),  # trained on the CPU, the index dropped without a word (review s40)
        ("xpu", "use cpu, cuda, cuda:N, mps or auto"),  # passed the check, then failed when the fit began
        ("cuda:\u0661", "use cpu, cuda, cuda:N, mps or auto"),  # an Arabic-Indic digit passed \\d (review s41)
    ],
)
def test_an_unknown_device_is_refused_before_training(prepared, tmp_path, device, why):
    code, output = invoke(
        "baseline", "fit", "--data", prepared, "--out", tmp_path / "b", "--model", "pop", "--device", device
    )
    one_error(code, output, "retriever.device", device, why)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("--grounder", "grounding.grounder"),
        ("--user-agent", "user_agent.backend"),
        ("--reward", "grpo.rewards"),
        ("--rollout-engine", "rollout.engine"),
        ("--strategy", "trainer.strategy"),
        ("--policy", "policy.model"),
    ],
)
def test_fit_refuses_an_unknown_component_before_any_work(prepared, tmp_path, flag, field):
    value = "nope:zzz" if flag == "--policy" else "nope"
    code, output = invoke("fit", "--data", prepared, "--out", tmp_path / "run", flag, value, "--no-progress")
    one_error(code, output, field, value)
    assert not (tmp_path / "run" / "recall").exists()  # the recall model was not fitted


@pytest.mark.parametrize("command", ["fit", "sft"])
@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["--policy", "mgfrec-tests/no-such-policy"], "policy.model (--policy): 'mgfrec-tests/no-such-policy'"),
        (["--set", "embedding.model=mgfrec-tests/no-such-embedder"], "embedding.model 'mgfrec-tests/no-such-embedder'"),
        (["--set", "embedding.device=cuda:3"], "embedding.device 'cuda:3'"),
    ],
)
def test_a_model_that_cannot_load_here_is_named_before_the_recall_fit(
    prepared, tmp_path, monkeypatch, command, sets, field
):
    """With the hub offline (HF_HUB_OFFLINE, as on a cluster node), a hub id the local cache lacks, and an embedding
    device this machine lacks, were found once the recall model had been fitted (minutes of SASRec; review s35)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, output = invoke(command, "--data", prepared, "--out", tmp_path / "run", *sets)
    one_error(code, output, field, "")
    assert not (tmp_path / "run" / "recall").exists()


def test_a_reward_that_cannot_be_built_is_named_before_the_recall_fit(prepared, tmp_path):
    """A reward whose constructor raised was found only after the recall model was fitted into OUT/recall."""
    from mgfrec.registry import Registry, use_registry

    class Exploding:
        gating = False

        def __init__(self):
            raise RuntimeError("reward init exploded")

    reg = Registry.discover()
    reg.add("reward", "exploding", Exploding)
    with use_registry(reg):
        code, output = invoke("fit", "--data", prepared, "--out", tmp_path / "run", "--reward", "exploding")
    one_error(code, output, "reward 'exploding'", "reward init exploded")
    assert not (tmp_path / "run" / "recall").exists()


@pytest.mark.parametrize("command", ["fit", "sft"])
def test_a_top_k_above_the_catalogue_is_refused_before_any_work(prepared, tmp_path, command):
    """It was found at the policy's first <ground>, after the recall fit (and, in fit, possibly hours of steps)."""
    code, output = invoke(command, "--data", prepared, "--out", tmp_path / "run", "--set", "grounding.top_k=61")
    one_error(
        code,
        output,
        "grounding.top_k 61 is above the catalogue's 60 items: an item list cannot hold more; give at most 60 "
        "(--set grounding.top_k=N; mgfrec fit: --items-per-grounding N)",
    )
    assert not (tmp_path / "run").exists()


def test_index_build_refuses_an_unknown_grounder_before_embedding(prepared):
    code, output = invoke("index", "build", prepared, "--grounder", "nope")
    one_error(code, output, "grounding.grounder", "'nope'", "hnswlib")
    assert not (prepared / "embeddings").exists()


def test_the_grounder_help_names_the_real_component():
    result = CliRunner().invoke(app, ["fit", "--help"], env={"COLUMNS": "300"})
    assert "hnswlib" in result.output and "hnsw," not in result.output


# --- the error handler itself --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (OSError("policy.model: could not load 'x'"), "policy.model: could not load 'x'"),
        (NotADirectoryError(20, "Not a directory", "/etc/passwd/x"), "/etc/passwd/x: Not a directory"),
        (PermissionError(13, "Permission denied", "/root/out"), "/root/out: Permission denied"),
    ],
)
def test_os_errors_are_one_line(exc, line, capsys):
    import typer

    with pytest.raises(typer.Exit) as info, user_errors():
        raise exc
    assert info.value.exit_code == 2
    printed = capsys.readouterr().err
    assert " ".join(printed.split()) == f"error: {line}"


def test_a_message_with_brackets_is_printed_as_is(capsys):
    import typer

    with pytest.raises(typer.Exit), user_errors():
        raise ValueError("grpo.rewards: [ndcg, nope] [bold]x[/bold]")
    assert "[ndcg, nope] [bold]x[/bold]" in capsys.readouterr().err


def test_a_missing_grounder_library_is_one_line_in_every_command(capsys):
    # MissingExtraError is an ImportError: only `mgfrec index` turned it into a line; recommend, evaluate, fit,
    # sft and chat showed a traceback.
    import typer

    from mgfrec.grounding.base import MissingExtraError

    with pytest.raises(typer.Exit) as info, user_errors():
        raise MissingExtraError("grounding.grounder 'hnswlib' needs the hnswlib library: pip install 'mgfrec[hnswlib]'")
    assert info.value.exit_code == 2
    assert "pip install 'mgfrec[hnswlib]'" in capsys.readouterr().err  # the extra's name is not eaten as markup


def test_command_output_consoles_print_markup_literally(capsys):
    from mgfrec.cli.common import console, out

    out.print("Thriller [explicit] and Back in Black [/live]")
    console.print("pip install 'mgfrec[serve]'")
    captured = capsys.readouterr()
    assert "Thriller [explicit] and Back in Black [/live]" in captured.out
    assert "mgfrec[serve]" in captured.err


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path, port):
    """A port beyond 0-65535 was a pydantic traceback (exit 1) from ServeOptions, built outside user_errors."""
    code, output = invoke("serve", tmp_path, "--port", port)
    assert code == 2 and "Traceback" not in output, output
    assert "Invalid value for '--port'" in output and ("65535" in output if port == "99999" else "0" in output), output


def test_chat_refuses_a_wrong_folder_before_asking_for_a_history(tmp_path):
    result = CliRunner().invoke(app, ["chat", str(tmp_path / "nosuch")], input="Abbey Road\n")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "not a run folder" in text and "history (titles" not in text, text


def test_figures_names_a_folder_that_does_not_exist(tmp_path):
    code, output = invoke("figures", tmp_path / "nosuch", "--out", tmp_path / "figs")
    one_error(code, output, "nosuch: no such folder")


def test_a_port_in_use_is_one_line_before_the_run_is_loaded(tmp_path):
    """It printed "serving ... at" and then uvicorn's bind error, exit 3, after loading the model."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = invoke("serve", tmp_path / "not-loaded", "--port", port)
    one_error(code, output, f"--host 127.0.0.1 --port {port}: cannot listen there")
    assert "serving" not in output


@pytest.mark.parametrize("args", [["fit", "--out", ""], ["demo", "--out="], ["sft", "--out", "  ", "--data", "d"]])
def test_an_empty_out_is_one_error_line_and_writes_nothing(tmp_path, args):
    """``--out ""`` (a script's unset variable) would be read as the current folder; it is refused instead."""
    code = "import sys; from mgfrec.cli.main import main; sys.argv = ['mgfrec', *sys.argv[1:]]; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --out: an empty path; name a folder ('.' for the current one)"
    assert list(tmp_path.iterdir()) == []


def test_empty_output_flag_reads_only_the_output_flag():
    from mgfrec.cli.main import empty_output_flag

    assert empty_output_flag(["fit", "--out", "runs/a", "--set", ""]) is None
    assert empty_output_flag(["fit", "--out", "."]) is None
    assert empty_output_flag(["fit", "--out"]) is None  # a missing value is the parser's error
    assert empty_output_flag(["recommend", "--", "--out", ""]) is None
    assert empty_output_flag(["fit", "--out=", "x"]) == "--out"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["fit", "--data", "", "--out", "o"], "error: --data: an empty path; name a data set folder"),
        (["fit", "--data", "d", "--out", "o", "--config", ""], "error: --config: an empty path; name a YAML file"),
        (["fit", "--data", "d", "--out", "o", "--policy="], "error: --policy: an empty value; name a model"),
        # `--source "$SRC"` unset fell back to detecting the source without a word (review s42)
        (["data", "prepare", "synthetic", "--out", "o", "--source", ""], "error: --source: an empty value; name a"),
    ],
)
def test_an_empty_path_flag_is_one_error_line(tmp_path, args, line):
    """`--data ""` was read as the current folder ("error: .: not a prepared data set"), `--config ""` silently
    meant the defaults (exit 0), `--policy ""` printed a blank where the model's name belongs."""
    code = "import sys; from mgfrec.cli.main import main; sys.argv = ['mgfrec', *sys.argv[1:]]; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 2 and result.stderr.strip().startswith(line), result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate", "report", "recommend"])
def test_an_unknown_split_names_the_flag_in_one_line(tmp_path, command):
    """evaluate and report named the config field, over two lines ("invalid config: eval.split: ...")."""
    code, output = invoke(
        command, str(tmp_path), "--split", "bogus", *(["--user", "u"] if command == "recommend" else [])
    )
    assert code == 2 and output.strip() == "error: --split bogus: unknown split; splits are train, valid, test", output


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--recall-prior", "inf"],  # was taken as given: the demo started with an infinite prior
        ["serve", "run", "--timeout", "inf"],
        ["sft", "--data", "d", "--out", "o", "--lr", "nan"],
        ["fit", "--data", "d", "--out", "o", "--kl-beta", "inf"],
        ["baseline", "fit", "--model", "pop", "--data", "d", "--out", "o", "--weight-decay", "inf"],
        # bounded flags: Click's range check came first and read nan as "less than or equal to 604800"
        ["chat", "run", "--feedback-timeout", "nan"],
        ["serve", "run", "--timeout", "nan"],
        ["fit", "--data", "d", "--out", "o", "--kl-beta", "nan"],
        ["demo", "--recall-prior", "nan"],  # "greater than or equal to 0" (review s31)
        ["demo", "--baseline-seconds", "nan"],
    ],
    ids=lambda a: f"{a[0]}{a[-2]}{a[-1]}",
)
def test_a_float_flag_that_is_not_finite_is_refused_naming_it(tmp_path, monkeypatch, args):
    from mgfrec.cli.main import run_app

    monkeypatch.chdir(tmp_path)  # the relative outputs ("o", the demo's runs/demo) would land here

    errors: list[str] = []
    assert run_app(args, errors.append) == 2
    assert len(errors) == 1 and f"Invalid value for '{args[-2]}'" in errors[0], errors
    assert f"{args[-1]}: give a finite number" in errors[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["chat", "run", "--feedback-timeout", "0"], "0.0: give a number >= 0.001"),
        (["serve", "run", "--feedback-timeout", "604801"], "604801.0: give a number <= 604800"),
        (["serve", "run", "--timeout", "-1"], "-1.0: give a number >= 0.001"),
        (["fit", "--data", "d", "--out", "o", "--kl-beta", "-0.5"], "-0.5: give a number >= 0"),
    ],
)
def test_a_bounded_float_flag_out_of_range_names_the_flag_and_the_bound(tmp_path, monkeypatch, args, words):
    from mgfrec.cli.main import run_app

    monkeypatch.chdir(tmp_path)
    errors: list[str] = []
    assert run_app(args, errors.append) == 2
    assert len(errors) == 1 and f"Invalid value for '{args[-2]}': {words}" in errors[0], errors
    assert list(tmp_path.iterdir()) == []


@pytest.mark.reliability
@pytest.mark.parametrize(
    "args",
    [
        ["data", "prepare", "synthetic"],
        ["data", "download", "amazon2023", "--category", "CDs_and_Vinyl"],
        ["baseline", "fit", "--model", "pop", "--data", "d"],
        ["sft", "--data", "d"],
        ["fit", "--data", "d"],
        ["sweep", "--data", "d", "--grid", "agent.max_groundings=1,2"],
        ["demo"],
        ["report", "run"],
        ["figures", "run"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_an_out_that_is_a_file_is_refused_naming_it_before_any_work(tmp_path, monkeypatch, args):
    """Every --out names a folder: a file there was "error: o/afile: File exists", after the whole input was read
    (data prepare), a whole download or an evaluation; under a file it was "Not a directory"."""
    from mgfrec.cli.main import run_app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "lnk").symlink_to("nowhere")  # a link to nothing: "lnk: File exists" (review s42)
    for out, blocked in (
        ("afile", "afile is a file"),
        ("afile/sub", "afile/sub: afile is a file"),
        ("lnk", "lnk is a link to nowhere, which leads nowhere (missing, or a loop of links)"),
        ("lnk/sub", "lnk/sub: lnk is a link to nowhere, which leads nowhere (missing, or a loop of links)"),
    ):
        errors: list[str] = []
        assert run_app([*args, "--out", out], errors.append) == 2
        assert errors == [
            f"Invalid value for '--out': {blocked}; --out names a folder (see 'mgfrec {args[0]}"
            + (f" {args[1]}" if args[0] in ("data", "baseline") else "")
            + " --help')"
        ], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "lnk"] and (tmp_path / "afile").read_text() == "mine"


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["index", "build", "d", "--batch-size", "0"], "--batch-size 0: input should be greater than or equal to 1"),
        (["data", "prepare", "synthetic", "--out", "o", "--history-length", "0"], "--history-length 0: input should"),
        (["baseline", "fit", "--data", "d", "--out", "o", "--embedding-dim", "0"], "--embedding-dim 0: input should"),
        (["baseline", "fit", "--data", "d", "--out", "o", "--lr", "-1"], "--lr -1.0: input should be greater than 0"),
        (["fit", "--data", "d", "--out", "o", "--lr", "-1"], "--lr -1.0: input should be greater than 0 (trainer.lr)"),
    ],
    ids=lambda a: a if isinstance(a, str) else "-".join(a[:2]),
)
def test_a_typed_flag_the_config_refuses_is_named_by_the_flag(tmp_path, monkeypatch, args, line):
    """It was "<defaults> with overrides: invalid config: embedding.batch_size: ...", naming the config field and
    not the flag the user typed."""
    monkeypatch.chdir(tmp_path)
    code, output = invoke(*args)
    one_error(code, output, f"error: {line}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["fit", "--data", "d", "--out", "o", "--init", "sft", "--policy", "preset:small"], "the fit starts from"),
        (  # the same as --set: ignored without a word, and recorded in config.yaml (review s39)
            ["fit", "--data", "d", "--out", "o", "--init", "sft", "--set", "policy.model=preset:small"],
            "--set policy.model=preset:small and --init sft: the fit starts from --init's policy",
        ),
        (
            ["fit", "--data", "d", "--out", "o", "--init", "sft", "--set", "policy={model: preset:small}"],
            "the fit starts from --init's policy",
        ),
        (
            ["sweep", "--data", "d", "--out", "o", "--init", "sft", "--grid", "policy.model=preset:tiny,preset:small"],
            "every cell starts from --init's policy",
        ),
    ],
    ids=["fit", "fit-set", "fit-set-section", "sweep"],
)
def test_a_policy_given_with_init_is_refused_not_ignored(tmp_path, monkeypatch, args, words):
    """--policy (and a grid over policy.model) with --init was recorded in config.yaml and never read: a sweep
    reported two "different" policies with identical numbers, both --init's."""
    monkeypatch.chdir(tmp_path)
    code, output = invoke(*args)
    one_error(code, output, words)
    assert list(tmp_path.iterdir()) == []


def test_derives_out_that_is_a_file_is_refused_naming_it(tmp_path):
    """derive's OUT is an argument, not --out: it was "error: afile: File exists" (and "Not a directory")."""
    from mgfrec.cli.main import run_app

    (tmp_path / "afile").write_text("mine")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        errors: list[str] = []
        assert run_app(["derive", str(tmp_path / "run"), str(out), "--ablation", "full"], errors.append) == 2
        assert len(errors) == 1 and f"{tmp_path / 'afile'} is a file; OUT names a folder" in errors[0], errors
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.reliability
@pytest.mark.parametrize("command", ["fit", "sft"])
def test_a_run_refused_half_way_leaves_no_empty_folder(tmp_path, command):
    """An unknown --recall-model (found once the data set was open and OUT made) left an empty run folder."""
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    prepare(DataConfig(source="synthetic", options={"n_users": 20, "n_items": 40, "n_artists": 8}), tmp_path / "d")
    out = tmp_path / "runs" / "new"
    code, output = invoke(command, "--data", tmp_path / "d", "--out", out, "--recall-model", "no-such-model")
    one_error(code, output, "no-such-model")
    assert not out.exists()


def test_an_out_under_a_folder_that_cannot_be_searched_is_one_line(monkeypatch):
    """Path.exists raises PermissionError on Python 3.11 for a path under a folder the user cannot search: the
    --out check let it escape as a traceback (a review found it)."""
    import pathlib

    from mgfrec.cli.main import run_app

    real = pathlib.Path.exists

    def exists(self, *args, **kwargs):
        if str(self).startswith("/locked/"):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "exists", exists)
    errors: list[str] = []
    assert run_app(["data", "prepare", "synthetic", "--out", "/locked/run"], errors.append) == 2
    assert errors and "/locked/run: Permission denied" in errors[0], errors


def test_a_flag_and_a_set_of_the_same_field_with_two_values_are_refused_before_any_work(tmp_path):
    """--set won silently: `baseline fit --model pop --set retriever.model=sasrec` trained SASRec (47 s where a
    popularity count was asked for), and flags such as --lr applied to the other model."""
    prepare(DataConfig(source="synthetic", options={"n_users": 30, "n_items": 50, "n_artists": 10}), tmp_path / "data")
    code, output = invoke(
        "baseline", "fit", "--data", tmp_path / "data", "--out", tmp_path / "run", "--model", "pop",
        "--set", "retriever.model=sasrec",
    )  # fmt: skip
    one_error(code, output, "--model pop and --set retriever.model=sasrec set retriever.model to two values")
    assert not (tmp_path / "run").exists()
    code, output = invoke(  # the same value twice is no conflict
        "baseline", "fit", "--data", tmp_path / "data", "--out", tmp_path / "run", "--model", "pop",
        "--set", "retriever.model=pop",
    )  # fmt: skip
    assert code == 0, output


def test_a_password_in_a_url_given_as_a_path_is_never_echoed(tmp_path):
    """`--set data.path=https://bob:hunter2@host/x` printed the password: the path, made a `Path`, shows the URL as
    `https:/bob:hunter2@host/x`, which the URL scrubber did not match. Every error line is scrubbed now."""
    from mgfrec.cli.common import print_error

    url = "https://bob:hunter2@example.com/x?token=s3cret&page=2"
    code, output = invoke("data", "prepare", "synthetic", "--out", str(tmp_path / "d"), "--set", f"data.path={url}")
    one_error(code, output, "reads no files", "bob:<redacted>@example.com")
    assert "hunter2" not in output and not (tmp_path / "d").exists()
    from io import StringIO

    from rich.console import Console

    import mgfrec.cli.common as common

    saved, common.console = common.console, Console(file=StringIO(), width=400)
    try:  # any line print_error prints, the URL whole or with its '//' made one '/'
        print_error(f"cannot read {url} (or https:/{url[8:]})")
        shown = common.console.file.getvalue()
    finally:
        common.console = saved
    assert "hunter2" not in shown and "s3cret" not in shown and "page=2" in shown, shown


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--policy", "preset:small", "--set", "policy.model=preset:tiny"], "--policy preset:small and --set"),
        (["--items-per-grounding", "3", "--set", "grounding.top_k=5"], "--items-per-grounding 3 and --set"),
        (["--no-recall", "--set", "agent.use_recall=true"], "--no-recall and --set agent.use_recall=true"),
        (["--user-agent", "none", "--set", "user_agent.backend=simulated"], "--user-agent none and --set"),
        (["--no-feedback", "--set", "user_agent.backend=simulated"], "--no-feedback and --set"),
        (["--rollout-engine", "hf", "--set", "rollout.engine=vllm"], "--rollout-engine hf and --set"),
        (["--reward", "ndcg", "--set", "grpo.rewards=[format]"], "--reward ndcg and --set grpo.rewards=[format]"),
        (["--max-steps", "2", "--set", "trainer={max_steps: 5}"], "--max-steps 2 and --set trainer={max_steps: 5}"),
        # an empty mapping replaces the section: the flag was dropped without a word (pop fitted as sasrec)
        (["--max-steps", "2", "--set", "trainer={}"], "(an empty mapping puts what it names back to its defaults)"),
        # a key inside a section given whole was printed in the error
        (
            ["--user-agent", "simulated", "--set", "user_agent={backend: openai, options: {api_key: sk-SECRET12}}"],
            '"api_key": "<redacted>"',
        ),
    ],
)
def test_a_flag_named_otherwise_than_its_field_and_a_set_of_it_are_refused_too(tmp_path, flags, said):
    """The clash was found only for a flag named as its field's last part (--max-steps, --lr): `--policy
    preset:small --set policy.model=preset:tiny` trained preset:tiny without a word, and a --set of the whole
    section (`trainer={max_steps: 5}`) was never compared."""
    code, output = invoke("fit", "--data", tmp_path / "none", "--out", tmp_path / "run", *flags)
    one_error(code, output, said, "to two values")
    assert "sk-SECRET12" not in output
    same = ["--lr", "0.001", "--set", "trainer.lr=1e-3"]  # one value written two ways (was refused as two)
    code, output = invoke("fit", "--data", tmp_path / "none", "--out", tmp_path / "run", *same)
    assert "two values" not in output and "not a prepared data set" in output, output


def test_evaluates_flags_and_a_set_of_their_fields_are_refused(tmp_path):
    """`evaluate --bootstrap 5 --set eval.bootstrap_samples=7` used 7 without a word; `report` too."""
    for command, flags in (
        ("evaluate", ["--bootstrap", "5", "--set", "eval.bootstrap_samples=7"]),
        ("evaluate", ["--no-exclude-history", "--set", "eval.exclude_history=true"]),
        ("report", ["--bootstrap", "5", "--set", "eval.bootstrap_samples=7"]),
    ):
        code, output = invoke(command, tmp_path / "none", *flags)
        one_error(code, output, f"{flags[0]}", "to two values")


def test_the_help_of_config_and_set_never_makes_them_a_fields_flag(tmp_path):
    """`demo --config configs/default.yaml --set retriever.patience=5` was refused as two values: --config's help
    names retriever.patience (the demo's budget), so --config was taken for that field's flag."""
    default = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    sets = ["--set", "retriever.patience=5", "--set", "retriever.no_such_field=1"]  # the second stops it there
    code, output = invoke("demo", "--out", tmp_path / "demo", "--config", default, *sets)
    one_error(code, output, "retriever.no_such_field")
    assert "two values" not in output, output


def test_an_ablation_and_a_flag_set_or_grid_giving_its_field_another_value_are_refused(tmp_path):
    """--ablation applies after the flags and --set: `--ablation no-recall --set agent.use_recall=true` trained
    without the recall list, and a sweep's grid over the preset's field trained one setting in every cell."""
    data, out = tmp_path / "none", tmp_path / "run"
    for flags, said in (
        (["--ablation", "no-recall", "--set", "agent.use_recall=true"], "--set agent.use_recall=true gives it"),
        (["--ablation", "no-multi-grounding", "--max-groundings", "4"], "--max-groundings 4 gives it"),
        (["--ablation", "no-feedback", "--user-agent", "simulated"], "--user-agent simulated gives it"),
    ):
        code, output = invoke("fit", "--data", data, "--out", out, *flags)
        one_error(code, output, f"--ablation {flags[1]} sets", said)
    code, output = invoke("fit", "--data", data, "--out", out, "--ablation", "no-feedback", "--no-feedback")
    assert "another value" not in output and "not a prepared data set" in output, output  # the same value
    grid = ["--grid", "agent.max_groundings=1,3", "--ablation", "no-multi-grounding"]
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "sweep", *grid)
    one_error(code, output, "sets agent.max_groundings=1 in every cell, so --grid agent.max_groundings would not vary")
    # a grid of the preset's own value was "gives it another value" too, naming the same value
    same = ["--grid", "user_agent.backend=none", "--ablation", "no-feedback"]
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "sweep", *same)
    one_error(code, output, "--grid user_agent.backend would not vary it")
    # the preset's field inside a section given whole: a no-recall sweep trained one cell with the list (review s40)
    whole = ["--grid", "agent={use_recall: true},{use_recall: false}", "--ablation", "no-recall"]
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "sweep", *whole)
    one_error(code, output, "--grid agent.use_recall would not vary it")


@pytest.mark.reliability
@pytest.mark.parametrize("command", ["recommend", "chat"])
def test_a_history_without_a_title_is_refused_before_the_run_loads(tmp_path, command):
    """`--history ';'` was refused only once the run had loaded (15-20 s): here the run does not even exist."""
    for history in (";", " ; ;"):
        code, output = invoke(command, tmp_path / "no-run", "--history", history)
        one_error(code, output, "--history: give at least one title, separated by ';'")


@pytest.mark.reliability
def test_no_feedback_drops_the_configs_user_agent_options(tmp_path):
    """A config with the simulated user's options and --no-feedback (or --ablation no-feedback) was refused: "none"
    takes no options. It now gets as far as the data."""
    config = tmp_path / "c.yaml"
    config.write_text("user_agent:\n  options:\n    summary_size: 5\n", encoding="utf-8")
    for flags in (["--no-feedback"], ["--ablation", "no-feedback"]):
        code, output = invoke("fit", "--data", tmp_path / "none", "--out", tmp_path / "o", "--config", config, *flags)
        one_error(code, output, "not a prepared data set")


def test_fields_a_command_never_reads_are_noted_and_a_grid_over_them_refused(tmp_path):
    """`sweep --grid data.history_length=5,10` "finished" two identical cells whose config.yaml claimed 5 and 10;
    `fit --set data.history_length=3` and `sft --set trainer.lr=0.5` changed nothing, without a word, and were
    recorded in the run's config.yaml as if used."""
    data, out = tmp_path / "none", tmp_path / "run"
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "s", "--grid", "data.history_length=5,10")
    one_error(code, output, "--grid data.history_length: the cells' fit does not read data.*")
    code, output = invoke("fit", "--data", data, "--out", out, "--set", "data.history_length=3")
    assert "note: --set data.history_length=3: mgfrec fit does not read data.*" in output, output
    sets = ["--set", "trainer.lr=0.5", "--set", "trainer.accelerator=cpu", "--set", "grpo.kl_beta=0.1"]
    code, output = invoke("sft", "--data", data, "--out", out, *sets)
    assert "note: --set trainer.lr=0.5 grpo.kl_beta=0.1: mgfrec sft does not read" in output, output
    code, output = invoke("sft", "--data", data, "--out", out, "--set", "data.path=https://bob:hunter2@host/x")
    assert "note: --set data.path=https://bob:<redacted>@host/x" in output and "hunter2" not in output, output
    code, output = invoke("fit", "--data", data, "--out", out, "--set", "trainer.lr=0.5")
    assert "note:" not in output, output  # fit reads it
    # a sweep whose eval.ks holds no 10 summarised ndcg@10 as null in every row without a word (review s31)
    grid = ["--grid", "agent.max_groundings=1,2"]
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "s", *grid, "--set", "eval.ks=[5]")
    assert "note: eval.ks holds no 10, so the summary's ndcg@10 columns stay empty" in " ".join(output.split())
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "s", *grid)
    assert "eval.ks" not in output, output


def test_a_sweep_flag_whose_field_the_grid_sweeps_is_refused_or_noted(tmp_path):
    """`sweep --max-steps 3 --grid trainer.max_steps=1` trained each cell at the grid's value without a word, and
    --recall-model pop beside a grid over retriever.model was dropped the same way (review s33). --max-steps is
    refused; --recall-model is noted (a sweep made so records it, and its rerun must give it again)."""
    data = tmp_path / "none"
    flags = ["--max-steps", "3", "--grid", "trainer.max_steps=1,2"]
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "s", *flags)
    one_error(code, output, "--max-steps 3 and --grid trainer.max_steps set ")
    assert "give one of them" in " ".join(output.split()), output
    flags = ["--recall-model", "pop", "--grid", "retriever.model=sasrec"]
    code, output = invoke("sweep", "--data", data, "--out", tmp_path / "s", *flags)
    text = " ".join(output.split())
    assert "note: --recall-model pop is not read: each cell fits the recall model --grid retriever.model" in text
    assert not (tmp_path / "s").exists()


def test_a_missing_api_key_is_named_before_the_recall_model_is_fitted(tmp_path, monkeypatch):
    """`fit --user-agent openai` without its key fitted the recall model (a minute on CDs, longer on a real data
    set) and only then said the key was missing; `sft` the same."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    prepare(DataConfig(source="synthetic", options={"n_users": 30, "n_items": 50, "n_artists": 10}), tmp_path / "data")
    for command in ("fit", "sft"):
        out = tmp_path / command
        code, output = invoke(command, "--data", tmp_path / "data", "--out", out, "--set", "user_agent.backend=openai")
        one_error(code, output, "environment variable OPENAI_API_KEY, which is not set")
        assert not (out / "recall").exists(), command


@pytest.mark.parametrize("command", ["recommend", "serve", "chat"])
def test_a_set_the_trained_run_never_reads_is_noted(tmp_path, command):
    """``recommend --set data.history_length=3 --set trainer.lr=5`` exited 0 without a word: a run's data set and
    its training are used as they were made. Now one note names them; a field that is read (agent.*) is not."""
    args = ["--set", "data.history_length=3", "--set", "trainer.lr=5", "--set", "agent.max_groundings=2"]
    # the policy and the recall model are the run's own too: --set policy.model=... or retriever.model=pop answered
    # from them without a word (review s31); retriever.recall_size is read
    args += ["--set", "policy.model=/elsewhere", "--set", "retriever.model=pop", "--set", "retriever.recall_size=5"]
    code, output = invoke(command, tmp_path / "nosuch", *args, *(["--user", "u"] if command == "recommend" else []))
    text = " ".join(output.split())
    noted = "data.history_length=3 trainer.lr=5 policy.model=/elsewhere retriever.model=pop"
    assert f"note: --set {noted}: mgfrec {command}" in text, text
    assert "does not read data.*, trainer.*, grpo.*, policy.model, retriever.* (but retriever.recall_size)" in text
    assert "agent.max_groundings" not in text and "recall_size=5" not in text, text
    one_error(code, output, "nosuch")  # the run is still refused as before
    # a section given whole is judged field by field (review s31's diff: policy={model: x} went without a word,
    # and retriever={recall_size: 2}, which is read, was noted)
    whole = ["--set", "policy={model: /elsewhere}", "--set", "retriever={recall_size: 2}"]
    code, output = invoke(command, tmp_path / "nosuch", *whole, *(["--user", "u"] if command == "recommend" else []))
    text = " ".join(output.split())
    assert f"note: --set policy={{model: /elsewhere}}: mgfrec {command}" in text, text
    assert "recall_size: 2" not in text, text


@pytest.mark.reliability
def test_a_key_given_as_a_backend_is_one_line_that_never_shows_it(prepared, tmp_path):
    """``fit --user-agent sk-...`` printed the key in "unknown user_agent 'sk-...'", and the flag-clash and
    ``--no-feedback`` lines echoed it too (review s26)."""
    key = "sk-TAILSECRET0123456789abcdef"
    out = ["--data", prepared, "--out", tmp_path / "o"]
    for args, words in (
        ([*out, "--user-agent", key], ("backend looks like an API key",)),
        ([*out, "--user-agent", key, "--no-feedback"], ("--user-agent <redacted> contradict",)),
        ([*out, "--user-agent", "openai", "--set", f"user_agent.backend={key}"], ("user_agent.backend=<redacted>",)),
        ([*out, "--set", f"user_agent.model={key}"], ("model looks like an API key",)),
    ):
        code, output = invoke("fit", *args)
        one_error(code, output, *words)
        assert "TAILSECRET" not in output, output
    assert not (tmp_path / "o").exists()


def test_a_bad_row_met_by_the_demo_names_the_demos_way_to_skip_it(tmp_path):
    """The demo prepares its own data but has no --skip-bad: the hint named that flag only (review s26)."""
    raw = write(tmp_path / "raw", ITEMS, LOG + b"u2,i1,yesterday\n")
    code, output = invoke("demo", "--data", raw, "--out", tmp_path / "demo")
    one_error(code, output, "interactions.csv:7:", "--set data.skip_bad=true")
    code, output = invoke("data", "prepare", raw, "--out", tmp_path / "out")
    one_error(code, output, "interactions.csv:7:", "--skip-bad")


def test_a_value_with_a_newline_stays_on_the_error_line(tmp_path):
    """A value holding a newline (`--split $'te\\nst'`, a RUN argument) split the one-line error in two; the second
    line did not start with "error:" (review s42)."""
    code = "import sys; from mgfrec.cli.main import main; sys.argv = ['mgfrec', *sys.argv[1:]]; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "evaluate", "no\nrun"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: no\\nrun"), result.stderr

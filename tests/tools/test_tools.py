"""The analysis and benchmark scripts under tools/: their refusals, their inputs and what they measure against.

The scripts are not a package: each is loaded from its file (``load_tool``) and its ``main`` run in-process with
``sys.argv`` set, as ``python tools/NAME.py ...`` would run it. Inputs are built in ``tmp_path``; none needs
../shared or the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from csvkit import cyclic_dataset

from mgfrec.config.schema import MGFRecConfig
from mgfrec.grounding.exact import ExactGrounder
from mgfrec.registry import registry
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.runs import RunInfo, write_run_info

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"


def load_tool(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``tools/NAME.py`` as a fresh module (with tools/ on sys.path, as when the script runs: feedback_signal
    imports choice_headroom)."""
    monkeypatch.syspath_prepend(str(TOOLS))
    monkeypatch.delitem(sys.modules, "shared_data", raising=False)  # it reads MGFREC_SHARED_DATA when imported
    spec = importlib.util.spec_from_file_location(f"mgfrec_tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(module: types.ModuleType, argv: list, monkeypatch, capsys) -> tuple[int, str, str]:
    """``module.main()`` with ``argv``: (exit code, stdout, stderr); a SystemExit with a message counts as code 1 with
    the message on stderr, as Python does."""
    monkeypatch.setattr(sys, "argv", [module.__file__, *map(str, argv)])
    code, said = 0, ""
    try:
        code = module.main() or 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            code, said = 1, f"{exc.code}\n"
    captured = capsys.readouterr()
    return code, captured.out, captured.err + said


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------ paired_reward
COLUMNS = "sample_id,target,groundings,end_reason,rank,reward,answer\n"


def agent_run(folder: Path, rows: list[tuple], checksum: str = "c0ffee", split: str = "valid") -> Path:
    """An evaluated agent run: run.json and ``agent_<split>_samples.csv`` with one (sample_id, target, reward) a
    row."""
    write_run_info(folder, RunInfo(kind="agent", model="mgfrec", data=str(folder / "data"), data_checksum=checksum))
    lines = [f"{sid},{target},1,answered,3,{reward},T{target}\n" for sid, target, reward in rows]
    (folder / f"agent_{split}_samples.csv").write_text(COLUMNS + "".join(lines), encoding="utf-8")
    return folder


def rows_of(ids, shift: float = 0.0) -> list[tuple]:
    return [(i, 100 + i, round((i % 7) / 7 + shift, 4)) for i in ids]


@pytest.fixture
def paired(monkeypatch):
    return load_tool("paired_reward", monkeypatch)


def test_paired_reward_refuses_runs_whose_targets_differ(tmp_path, paired, monkeypatch, capsys):
    a = agent_run(tmp_path / "a", rows_of(range(20)))
    other = [(sid, target + (1 if sid == 4 else 0), reward) for sid, target, reward in rows_of(range(20))]
    b = agent_run(tmp_path / "b", other)
    code, out, err = run_main(paired, [a, b], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert "target" in one_error_line(err) and "sample 4" in err


def test_paired_reward_refuses_runs_on_different_data_sets(tmp_path, paired, monkeypatch, capsys):
    a = agent_run(tmp_path / "a", rows_of(range(20)), checksum="aaaa")
    b = agent_run(tmp_path / "b", rows_of(range(20)), checksum="bbbb")
    code, out, err = run_main(paired, [a, b], monkeypatch, capsys)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "aaaa" in line and "bbbb" in line


def test_paired_reward_compares_runs_of_one_data_set(tmp_path, paired, monkeypatch, capsys):
    a = agent_run(tmp_path / "a", rows_of(range(30), 0.2))
    b = agent_run(tmp_path / "b", rows_of(reversed(range(30))))  # another order: paired by sample id
    code, out, err = run_main(paired, [a, b, "--bootstrap", "200"], monkeypatch, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"] == 30 and result["diff"] == pytest.approx(0.2)
    assert result["format_valid"] == {"a": 1.0, "b": 1.0}


@pytest.mark.parametrize(
    "text, said",
    [
        (COLUMNS.replace(",end_reason", "") + "1,101,1,3,0.5,x\n", "end_reason"),  # KeyError
        ("", "empty"),  # EmptyDataError
        (COLUMNS + "1,101,1,answered,3,0.5,x\n2,102,1,answered,3,abc,x\n", "line 3"),  # ValueError
        (COLUMNS + "1,101,1,answered,3,0.5,x\n2,102,1,answered,3,,x\n", "line 3"),  # NaN statistics
        (COLUMNS + "1,101,1,answered,3,0.5,x\n2,102,1,answered,3,inf,x\n", "line 3"),
    ],
    ids=["no-end_reason", "empty", "text-reward", "blank-reward", "inf-reward"],
)
def test_paired_reward_refuses_a_bad_samples_file_in_one_line_naming_it(
    tmp_path, paired, monkeypatch, capsys, text, said
):
    a = agent_run(tmp_path / "a", rows_of([1, 2]))
    b = agent_run(tmp_path / "b", rows_of([1, 2]))
    (b / "agent_valid_samples.csv").write_text(text, encoding="utf-8")
    code, out, err = run_main(paired, [a, b], monkeypatch, capsys)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert str(b / "agent_valid_samples.csv") in line and said in line


def strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_paired_reward_prints_strict_json_without_a_bootstrap(tmp_path, paired, monkeypatch, capsys):
    a = agent_run(tmp_path / "a", rows_of(range(10), 0.1))
    b = agent_run(tmp_path / "b", rows_of(range(10)))
    code, out, err = run_main(paired, [a, b, "--bootstrap", "0"], monkeypatch, capsys)
    assert code == 0, err
    assert strict_json(out)["p_bootstrap"] is None  # was a bare NaN


def test_paired_reward_says_when_too_few_resamples_can_mark_nothing(tmp_path, paired, monkeypatch, capsys):
    a = agent_run(tmp_path / "a", rows_of(range(10), 0.1))
    b = agent_run(tmp_path / "b", rows_of(range(10)))
    code, out, err = run_main(paired, [a, b, "--bootstrap", "10"], monkeypatch, capsys)
    assert code == 0, err
    assert strict_json(out)["significant"] is False
    assert "no difference can be marked" in err and "at least 40" in err
    code, out, err = run_main(paired, [a, b, "--bootstrap", "100"], monkeypatch, capsys)
    assert code == 0 and "can be marked" not in err


def test_paired_reward_cuts_a_whole_split_to_the_other_runs_subsample(tmp_path, paired, monkeypatch, capsys):
    whole = agent_run(tmp_path / "whole", rows_of(range(40)))
    sub = agent_run(tmp_path / "sub", rows_of(range(0, 40, 4), 0.1))
    code, out, err = run_main(paired, [whole, sub, "--bootstrap", "100"], monkeypatch, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"] == 10 and result["diff"] == pytest.approx(-0.1)
    assert "note:" in err and "10" in err and "40" in err
    code, out, _ = run_main(paired, [sub, whole, "--bootstrap", "100"], monkeypatch, capsys)  # either order
    assert code == 0 and json.loads(out)["samples"] == 10


def test_paired_reward_gives_advice_that_works_for_overlapping_sample_sets(tmp_path, paired, monkeypatch, capsys):
    a = agent_run(tmp_path / "a", rows_of(range(0, 20)))
    b = agent_run(tmp_path / "b", rows_of(range(10, 30)))
    code, out, err = run_main(paired, [a, b], monkeypatch, capsys)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "mgfrec report --limit" not in line  # cuts nothing an agent run was rolled out on
    assert "mgfrec evaluate" in line and "--limit" in line


# ---------------------------------------------------------------------------------------- bench_grounding
class Farthest:
    """A "backend" that returns the k items farthest from each query: a recall of 0 against exact."""

    class Options:
        def __init__(self, **options):
            self.options = options

    def __init__(self, items: np.ndarray, options=None):
        self.items = items

    def search(self, queries: np.ndarray, k: int):
        d = ((queries[:, None, :] - self.items[None, :, :]) ** 2).sum(-1)
        order = np.argsort(-d, axis=1)[:, :k]
        return order, np.take_along_axis(d, order, 1)


def test_bench_grounding_measures_recall_against_exact_when_exact_is_not_timed(monkeypatch, capsys):
    bench = load_tool("bench_grounding", monkeypatch)
    monkeypatch.setattr(
        bench,
        "BACKENDS",
        {"exact": (ExactGrounder, {}), "farthest": (Farthest, {}), "exact-again": (ExactGrounder, {})},
    )
    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    rows = bench.bench_size("tiny", items, queries, 1, {"exact"})
    recall = {row["backend"]: row.get("recall@10") for row in rows}
    assert recall == {"exact": None, "farthest": 0.0, "exact-again": 1.0}  # was 1.0 and 0.0: vs "farthest"


# ------------------------------------------------------------------------------ the benchmarks' shared data
@pytest.mark.parametrize(
    "tool, argv",
    [("bench_grounding", ["--sizes", "5k"]), ("bench_embedding", []), ("bench_rollout", ["--engine-only"])],
)
def test_a_benchmark_without_the_shared_data_says_how_to_point_at_it(tmp_path, monkeypatch, capsys, tool, argv):
    monkeypatch.setenv("MGFREC_SHARED_DATA", str(tmp_path / "nowhere"))
    module = load_tool(tool, monkeypatch)
    code, out, err = run_main(module, argv, monkeypatch, capsys)
    assert code == 2
    line = one_error_line(err)
    assert str(tmp_path / "nowhere" / "amazon2023-cds" / "items.csv") in line and "MGFREC_SHARED_DATA" in line


def test_bench_grounding_needs_no_shared_data_for_synthetic_sizes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MGFREC_SHARED_DATA", str(tmp_path / "nowhere"))
    bench = load_tool("bench_grounding", monkeypatch)
    assert bench.missing_shared(["60k", "1m"]) == []
    shared = tmp_path / "nowhere"
    assert bench.missing_shared(["5k"]) == [shared / "amazon2023-cds" / "items.csv", shared / "ml-100k" / "items.csv"]


# -------------------------------------------------------------------------------------------- bench_prefix
def test_bench_prefix_recall_zero_is_an_empty_list_not_the_whole_history(monkeypatch, capsys):
    prefix = load_tool("bench_prefix", monkeypatch)
    titles = [f"T{i}" for i in range(10)]
    history = np.array([1, 2, 3, 4])
    assert prefix.recall_titles(titles, history, 2) == ("T3", "T4")
    assert prefix.recall_titles(titles, history, 0) == ()  # h[-0:] was the whole history
    code, _, err = run_main(prefix, ["no-such-data", "--recall", "-1"], monkeypatch, capsys)
    assert code == 2 and "--recall" in err


# ------------------------------------------------------------------------------------ recbole_reference
def test_recbole_reference_refuses_an_out_file_of_another_prepared_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "recbole", types.SimpleNamespace(__version__="fake"))
    monkeypatch.chdir(tmp_path)  # main() moves into --work
    ref = load_tool("recbole_reference", monkeypatch)
    metrics = {"hit@10": 0.1, "ndcg@10": 0.05}

    def run_one(args, model, seed, max_len, prepared):  # RecBole's training, stubbed
        test = {"test": metrics}
        return {
            **{"model": model, "seed": seed, "best_epoch": 0, "epochs_run": 1, "best_valid_ndcg10_recbole": 0.1},
            **{"mgfrec_convention": test, "recbole": test, "train_wall_s": 0.1},
        }

    monkeypatch.setattr(ref, "run_one", run_one)
    first = cyclic_dataset(tmp_path / "one", n_items=8, n_users=10).root
    second = cyclic_dataset(tmp_path / "two", n_items=9, n_users=10).root
    out = tmp_path / "results" / "ref.json"
    assert ref.main([str(first), "--name", "one", "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    before = out.read_text(encoding="utf-8")
    assert [r["model"] for r in json.loads(before)["runs"]] == ["SASRec"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["ref.json"]  # no temporary file left
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        ref.main([str(second), "--name", "two", "--work", str(tmp_path / "w"), "--out", str(out), "--models", "Caser"])
    assert exc.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(first.resolve()) in line and str(second.resolve()) in line
    assert out.read_text(encoding="utf-8") == before  # the first set's results are kept
    # the same prepared set appends
    again = [str(first), "--name", "one", "--work", str(tmp_path / "w"), "--out", str(out), "--models", "Caser"]
    assert ref.main(again) == 0
    assert [r["model"] for r in json.loads(out.read_text(encoding="utf-8"))["runs"]] == ["SASRec", "Caser"]


# ------------------------------------------------------------------------------------------------ gpu_smoke
def test_gpu_smoke_with_a_relative_out_writes_its_archive_there(tmp_path):
    """docs/gpu.md runs ``tools/gpu_smoke.sh runs/gpu-smoke``: tar ran after ``cd $WORK`` into a relative path."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "mgfrec").is_file() or shutil.which("timeout") is None:
        pytest.skip("needs the mgfrec command beside this Python and coreutils' timeout")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHON": sys.executable,
        "SMOKE_DEVICE": "cpu",
        "SMOKE_ONLY": "prepare",  # a 3-second stage: preparing the synthetic data set
        "SMOKE_WORK": str(tmp_path / "work"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(TOOLS / "gpu_smoke.sh"), "runs/gpu-smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = tmp_path / "runs" / "gpu-smoke"
    assert "prepare          rc=0" in (out / "summary.txt").read_text(), done.stdout + done.stderr
    assert (out / "smoke.tgz").is_file(), done.stderr
    with tarfile.open(out / "smoke.tgz") as archive:
        assert "./prepare.log" in archive.getnames()


# ----------------------------------------------------------------------- choice_headroom and feedback_signal
class HashEmbedder:
    """A cheap embedder a plugin might add: a seeded random vector per title; counts its calls."""

    calls = 0
    dim = 8

    def __init__(self, config):
        self.model_id, self.settings = "tools-test-hash", {}

    def encode(self, texts, *, query: bool = False, progress: bool = False) -> np.ndarray:
        HashEmbedder.calls += 1
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts]).astype(
            np.float32
        )


if "tools-test-hash" not in registry().names("embedder"):
    registry().add("embedder", "tools-test-hash", HashEmbedder)


@pytest.fixture(scope="module")
def pop_run(tmp_path_factory) -> Path:
    """A popularity run on a 12-item cyclic data set, made with the hash embedder, grounding top-3 and no user
    agent: none of them mgfrec's defaults."""
    root = tmp_path_factory.mktemp("pop")
    ds = cyclic_dataset(root, (0.6, 0.2, 0.2), n_items=12, n_users=40, seq_len=6, title="Title {}")
    config = MGFRecConfig.model_validate(
        {
            "retriever": {"model": "pop"},
            "embedding": {"embedder": "tools-test-hash"},
            "grounding": {"top_k": 3},
            "user_agent": {"backend": "none"},
        }
    )
    fit_baseline(ds, config, root / "pop")
    return root / "pop"


@pytest.fixture(scope="module")
def agent_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("agent")
    ds = cyclic_dataset(root, n_items=8, n_users=10)
    write_run_info(root / "run", RunInfo(kind="agent", model="mgfrec", data=str(ds.root), data_checksum=ds.checksum))
    return root / "run"


BAD_INPUT = {
    "missing-run": (["{missing}"], "not a run folder"),
    "agent-run": (["{agent}"], "agent run"),
    "split-foo": (["{pop}", "--split", "foo"], "unknown split 'foo'"),
    "samples-0": (["{missing}", "--samples", "0"], "--samples"),
    "cutoff-negative": (["{missing}", "--cutoff", "-1"], "--cutoff"),
}
HEADROOM_ONLY = {
    "k-0": (["{missing}", "--k", "5", "0"], "--k"),
    "joined-0": (["{missing}", "--joined", "0"], "--joined"),
}
CASES = [
    pytest.param("choice_headroom", *case, id=f"headroom-{name}") for name, case in (BAD_INPUT | HEADROOM_ONLY).items()
]
CASES += [pytest.param("feedback_signal", *case, id=f"feedback-{name}") for name, case in BAD_INPUT.items()]


@pytest.mark.parametrize("tool, argv, said", CASES)
def test_choice_tools_refuse_bad_input_in_one_line(
    tmp_path, pop_run, agent_folder, monkeypatch, capsys, tool, argv, said
):
    module = load_tool(tool, monkeypatch)
    places = {"missing": tmp_path / "no-such-run", "agent": agent_folder, "pop": pop_run}
    code, out, err = run_main(module, [a.format(**places) for a in argv], monkeypatch, capsys)
    assert code == 2
    assert said in one_error_line(err)


def test_choice_headroom_measures_a_run_with_its_own_embedder(pop_run, monkeypatch, capsys):
    module = load_tool("choice_headroom", monkeypatch)
    HashEmbedder.calls = 0
    argv = [pop_run, "--split", "test", "--k", "2", "3", "--tau", "1.0", "--joined", "2"]
    code, out, err = run_main(module, argv, monkeypatch, capsys)
    assert code == 0, err
    assert HashEmbedder.calls >= 2  # the catalogue (unless cached) and the joined answers; not MiniLM
    assert "embedder tools-test-hash" in out
    assert "answer = recall top-2 titles joined" in out


def test_feedback_signal_measures_a_run_with_its_own_config(pop_run, monkeypatch, capsys):
    module = load_tool("feedback_signal", monkeypatch)
    HashEmbedder.calls = 0
    code, out, err = run_main(module, [pop_run, "--split", "test"], monkeypatch, capsys)
    assert code == 0, err
    assert HashEmbedder.calls >= 1  # the grounded titles, at least
    assert "embedder tools-test-hash" in out and "user agent none" in out
    assert "returned list (3 items)" in out  # grounding.top_k of the run, not the default 10
    assert "feedback names a listed item as suiting: 0.000" in out  # "none" gives no feedback


# ------------------------------------------------------------------------------------------- bench_rollout
def test_bench_rollout_divides_the_fastest_repeats_own_tokens_by_its_time(monkeypatch):
    bench = load_tool("bench_rollout", monkeypatch)
    clock = iter([0.0, 1.0, 10.0, 12.0])  # repeat 0: 1 s; repeat 1: 2 s
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))

    class Engine:  # repeat 0 stops early at an end token: 10 tokens; repeat 1 makes 100
        def generate(self, prompts, *, max_new_tokens, n, temperature, seed):
            made = 10 if seed == 0 else 100
            return [[types.SimpleNamespace(token_ids=list(range(made)))]]

    args = types.SimpleNamespace(repeats=2, tokens=100, samples=1)
    assert bench.bench_engine(Engine(), [[1, 2]], args) == (1.0, 10)  # was (1.0, 100): 100 tokens/s for 10


# -------------------------------------------------------------------------------------------- bench_finish_topk
def test_bench_finish_topk_times_each_size(monkeypatch, capsys):
    bench = load_tool("bench_finish_topk", monkeypatch)
    monkeypatch.setattr("sys.argv", ["bench_finish_topk.py", "--items", "300", "--queries", "20", "-k", "3"])
    bench.main()
    out = capsys.readouterr().out
    assert re.fullmatch(r"\s+300 items: [0-9.]+ ms for 20 queries\n", out), out

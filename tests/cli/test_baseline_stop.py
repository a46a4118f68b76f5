"""Stopping ``mgfrec baseline fit`` with Ctrl-C (SIGINT) or SIGTERM: a real subprocess is signalled while
it trains, and must finish the run from its best checkpoint, marked as stopped by the user."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def data(tmp_path: Path) -> Path:
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    rows = [
        f"u{u},i{(s + k) % 50},{t + k}"
        for u, s, t in zip(range(200), rng.integers(0, 50, 200), rng.uniform(0, 100, 200), strict=False)
        for k in range(8)
    ]
    (raw / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},Item {i}\n" for i in range(50)))
    (raw / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    prepare(DataConfig(source="csv", path=str(raw), history_length=5), tmp_path / "prepared")
    return tmp_path / "prepared"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_fit_finishes_from_its_best_checkpoint(data, tmp_path, sig):
    from mgfrec.config.load import load_config
    from mgfrec.data.prepared import PreparedDataset
    from mgfrec.retrievers.fit import fit_baseline

    out = tmp_path / "run"
    # a finished earlier fit in OUT: the stopped refit keeps it for `baseline restore` (it was deleted; review s39)
    fit_baseline(PreparedDataset(data), load_config(None, ["retriever.model=pop"]), out)
    # An epoch limit the test never waits for: only the signal can end this fit.
    cmd = [
        sys.executable,
        "-m",
        "mgfrec.cli.main",
        "baseline",
        "fit",
        "--model",
        "sasrec",
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-epochs",
        "100000",
        "--patience",
        "100000",
        "--batch-size",
        "8",
    ]
    env = {
        **os.environ,
        "MGFREC_PROGRESS_SECONDS": "0",
        "COLUMNS": "80",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    try:
        # Progress lines arrive every batch; wait until one validation has run.
        for line in proc.stderr:
            seen.append(line)
            if "valid NDCG@10" in line:
                break
        else:
            pytest.fail("the fit ended before it was signalled:\n" + "".join(seen))
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, "".join(seen) + stderr
    info = json.loads((out / "run.json").read_text())
    assert info["extra"]["stopped"] == "user" and info["extra"]["best_epoch"] >= 0
    assert (out / "model.pt").is_file()
    # a SIGTERM is named as such (it said "stopped by the user", as for Ctrl-C)
    said = "stopped by the user" if sig == signal.SIGINT else "stopped by SIGTERM"
    assert said in " ".join(stderr.split()) and "valid NDCG@10" in stdout
    assert "Traceback" not in stderr
    assert f"'mgfrec baseline restore {out}' puts it back" in " ".join(stderr.split()), stderr
    assert json.loads((out / ".previous-fit" / "run.json").read_text())["model"] == "pop"


def test_a_second_ctrl_c_aborts_with_the_cli_line_and_leaves_no_finished_run(data, tmp_path, monkeypatch):
    """The second Ctrl-C aborts at once: Lightning turned it into a silent exit 1 and left SIGINT ignored for the
    rest of the process; now the CLI says it was stopped by the user (exit 130) and Ctrl-C works again."""
    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.retrievers import training

    batch_end, on_signal = training.Budget.on_train_batch_end, training.Budget._on_signal

    def first_press(self, trainer, module, *args):
        if self.stopped is None:
            os.kill(os.getpid(), signal.SIGINT)
        return batch_end(self, trainer, module, *args)

    def second_press(self, signum, frame):
        on_signal(self, signum, frame)
        os.kill(os.getpid(), signal.SIGINT)  # now handled as usual: KeyboardInterrupt inside the fit

    monkeypatch.setattr(training.Budget, "on_train_batch_end", first_press)
    monkeypatch.setattr(training.Budget, "_on_signal", second_press)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    try:
        result = CliRunner().invoke(
            app, ["baseline", "fit", "--model", "sasrec", "--data", str(data), "--out", str(out), "--max-epochs", "5"]
        )
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == 130, result.output
    assert "stopped by the user (Ctrl-C)" in result.output
    assert after is before  # not left at SIG_IGN
    assert not (out / "run.json").exists()  # aborted without saving: never mistaken for a finished fit


@pytest.mark.reliability
def test_a_second_sigterm_aborts_as_sigterm_and_leaves_no_finished_run(data, tmp_path):
    """The second SIGTERM aborts at once. It ended the process where it stood (no word, exit -15); then, once
    SIGTERM stopped commands as Ctrl-C does, Lightning's caught stop came out as "stopped by the user (Ctrl-C)",
    exit 130. A subprocess: on the code of before, the signal ends the process that gets it."""
    import textwrap

    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from mgfrec.cli.common import print_error
        from mgfrec.cli.main import run_app
        from mgfrec.retrievers import training

        batch_end, on_signal = training.Budget.on_train_batch_end, training.Budget._on_signal

        def first(self, trainer, module, *args):
            if self.stopped is None:
                os.kill(os.getpid(), signal.SIGTERM)
            return batch_end(self, trainer, module, *args)

        def second(self, signum, frame):
            on_signal(self, signum, frame)
            os.kill(os.getpid(), signal.SIGTERM)

        training.Budget.on_train_batch_end, training.Budget._on_signal = first, second
        args = ["baseline", "fit", "--model", "sasrec", "--data", {str(data)!r}, "--out", {str(out)!r}]
        sys.exit(run_app(args + ["--max-epochs", "5"], print_error))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-3000:])
    assert "stopped by SIGTERM" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not (out / "run.json").exists()

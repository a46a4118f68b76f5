"""The work budget of a sequential retriever's fit: the step cap, the time cap and early stopping with a
minimum gain each end the fit early, validate its last work and record why in ``run.json``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mgfrec import progress
from mgfrec.config.load import load_config
from mgfrec.retrievers.fit import fit_baseline

pytestmark = pytest.mark.slow


def fit(ds, out: Path, **values):
    values = {
        "retriever.model": "sasrec",
        "retriever.batch_size": 16,
        "retriever.options": {"layers": 1},
        **values,
    }
    return fit_baseline(ds, load_config(values=values), out)


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_step_cap_stops_mid_epoch_and_validates(chain_ds, tmp_path):
    # 1,050 train samples in batches of 16 is 66 steps an epoch: a cap of 5 stops inside the first epoch.
    result = fit(
        chain_ds,
        tmp_path / "run",
        **{"retriever.max_epochs": 50, "retriever.max_steps": 5},
    )
    log = rows(tmp_path / "run")
    # The stop still validated the work done.
    assert len(log) == 1 and log[0]["valid_ndcg@10"] != ""
    extra = json.loads((tmp_path / "run" / "run.json").read_text())["extra"]
    assert extra["stopped"] == "step cap" and extra["best_epoch"] == 0
    assert result.retriever.stopped == "step cap"


def test_time_cap_stops_after_the_first_batch_past_it(chain_ds, tmp_path):
    result = fit(
        chain_ds,
        tmp_path / "run",
        **{"retriever.max_epochs": 50, "retriever.max_seconds": 1e-6},
    )
    assert len(rows(tmp_path / "run")) == 1
    assert result.retriever.stopped == "time cap" and (tmp_path / "run" / "model.pt").is_file()


def test_min_delta_makes_early_stopping_stop_early(chain_ds, tmp_path):
    # No gain can reach 1.0 NDCG@10, so every epoch after the first counts as no improvement.
    result = fit(
        chain_ds, tmp_path / "run", **{"retriever.max_epochs": 50, "retriever.patience": 1, "retriever.min_delta": 1.0}
    )
    assert len(rows(tmp_path / "run")) == 2 and result.retriever.stopped == "early stopping"


def test_uncapped_fit_ends_at_the_epoch_limit(chain_ds, tmp_path):
    assert fit(chain_ds, tmp_path / "run", **{"retriever.max_epochs": 1}).retriever.stopped == "epoch limit"


def test_progress_lines_say_what_is_done_and_what_is_left(chain_ds, tmp_path):
    stream = io.StringIO()
    with progress.reporting(stream, interval=0.0, plain=True):
        fit(chain_ds, tmp_path / "run", **{"retriever.max_epochs": 2})
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("[sasrec] epoch ") for line in lines)
    assert any("epoch 2/2" in line and "left" in line for line in lines)
    assert "valid NDCG@10" in lines[-1] and "100%" in lines[-1]

"""A tiny agent run folder for tests that evaluate, derive or recommend from one: a synthetic data set, a
last-title recall run and an untrained ``preset:tiny`` policy. (A uniquely named module, not ``conftest``, so
that any test folder can import it.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgfrec.config.load import load_config, write_resolved
from mgfrec.config.schema import DataConfig
from mgfrec.data.prepared import prepare
from mgfrec.models.policy import build_preset, save_policy
from mgfrec.retrievers.fit import fit_baseline
from mgfrec.runs import RunInfo, write_run_info

SMALL = {"n_users": 40, "n_items": 80, "n_artists": 10, "max_length": 6}


def tiny_agent_run(
    root: Path, sets: list[str] = (), data: dict[str, int] | None = None, method: str = "mgfrec"
) -> tuple[Path, Any, Any]:
    """``root/run`` (the agent run, recall run ``root/last-title``), the data set and the fitted last-title
    retriever. ``sets``: config overrides after the embedding cache and ``retriever.model=last-title``;
    ``method``: the run's ``run.json`` method (``mgfrec``, ``mgfrec-sft``)."""
    ds = prepare(DataConfig(source="synthetic", options=data or SMALL), root / "data")
    cfg = load_config(None, [f"embedding.cache_dir={root / 'emb'}", "retriever.model=last-title", *sets])
    last_title = fit_baseline(ds, cfg, root / "last-title")
    model, tokenizer = build_preset("tiny", ds.titles)
    save_policy(model, tokenizer, root / "run" / "policy", preset="tiny")
    write_resolved(cfg, root / "run")
    extra = {"policy": "policy", "recall_run": str(root / "last-title")}
    write_run_info(root / "run", RunInfo("agent", method, str(ds.root), ds.checksum, extra=extra))
    return root / "run", ds, last_title.retriever


def over_sasrec(root: Path) -> Path:
    """``root/over-sasrec``: :func:`tiny_agent_run`'s run (made first, in ``root``) over a SASRec recall run
    (``root/sasrec``, one epoch), which has the item embeddings ``agent.final_ranking: l2_joint`` needs."""
    import json
    import shutil

    from mgfrec.data.prepared import PreparedDataset

    cfg = load_config(None, [f"embedding.cache_dir={root / 'emb'}", "retriever.model=sasrec", "retriever.max_epochs=1"])
    fit_baseline(PreparedDataset(root / "data"), cfg, root / "sasrec")
    shutil.copytree(root / "run", root / "over-sasrec")
    info = json.loads((root / "over-sasrec" / "run.json").read_text())
    info["extra"]["recall_run"] = str(root / "sasrec")
    if "relative_paths" in info["extra"]:  # read first when the folders move together: it must say the same
        info["extra"]["relative_paths"]["recall_run"] = "../sasrec"
    (root / "over-sasrec" / "run.json").write_text(json.dumps(info))
    return root / "over-sasrec"

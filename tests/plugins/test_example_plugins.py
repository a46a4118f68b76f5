"""The example third-party package: installed for real, found through entry points, selected by config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fitkit import tiny_fit_sets

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "mgfrec-example-plugins"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """pip-install the plugin package into a private folder (its own dist-info and entry points)."""
    target = tmp_path_factory.mktemp("plugin-site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("mgfrec_example_plugins-*.dist-info"))
    return target


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)


def test_plugins_list_finds_them(plugin_site):
    proc = _run(plugin_site, "-m", "mgfrec.cli.main", "plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    grounders = {e["name"]: e for e in listing["grounder"]}
    rewards = {e["name"]: e for e in listing["reward"]}
    assert grounders["cosine"]["origin"] == "mgfrec-example-plugins 0.1.0"
    assert rewards["hit-at-k"]["origin"] == "mgfrec-example-plugins 0.1.0"
    assert grounders["exact"]["origin"].startswith("mgfrec ")  # built-ins beside them, same table


def test_not_visible_without_install():
    proc = subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", "plugins", "list", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "cosine" not in {e["name"] for e in json.loads(proc.stdout)["grounder"]}


def test_config_selects_plugin_components(plugin_site):
    code = textwrap.dedent(
        """
        import json
        import numpy as np
        from mgfrec.config.load import load_config
        from mgfrec.registry import component_options, registry
        from mgfrec.rewards.base import RewardInput
        from mgfrec.rewards.compose import build_reward

        cfg = load_config(None, ["grounding.grounder=cosine", "grounding.options={batch_size: 2}",
                                 "grpo.rewards=[ndcg,{name: hit-at-k, options: {k: 3}},format]"])
        cls = registry().load("grounder", cfg.grounding.grounder)
        grounder = cls(np.array([[1, 0], [0, 1], [2, 0.1], [1, 0]], dtype=np.float32),
                       component_options(cls, cfg.grounding.options, "grounding.options"))
        idx, dist = grounder.search(np.array([[3, 0], [0, 5]], dtype=np.float32), 2)
        reward = build_reward(cfg.grpo.rewards)
        print(json.dumps({"idx": idx.tolist(), "cls": cls.__module__,
                          "r3": reward.breakdown(RewardInput(3, 10, True)),
                          "r4": reward.breakdown(RewardInput(4, 10, True))}))
        """
    )
    proc = _run(plugin_site, "-c", code)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["cls"] == "mgfrec_example_plugins.cosine_grounder"
    assert out["idx"] == [[0, 3], [1, 2]]  # items 0 and 3 tie exactly: index order
    assert out["r3"]["hit-at-k"] == 1.0 and out["r4"]["hit-at-k"] == 0.0
    assert out["r3"]["total"] == pytest.approx(0.5 + 1.0)


def test_the_plugin_grounder_builds_over_mgfrecs_read_only_view_without_a_warning(plugin_site):
    """``build_grounder`` hands a grounder a read-only view of the item vectors; the example shared it through
    ``torch.as_tensor``, and every ``index build`` and ``fit`` with it printed torch's "not writable" warning (review
    s37). Warnings are errors here."""
    code = textwrap.dedent(
        """
        import numpy as np
        from mgfrec.config.load import load_config
        from mgfrec.grounding.engine import build_grounder

        cfg = load_config(None, ["grounding.grounder=cosine"])
        items = np.array([[1, 0], [0, 1], [2, 0.1]], dtype=np.float32)
        idx, _ = build_grounder(items, cfg.grounding).search(np.array([[0, 3]], dtype=np.float32), 2)
        print(idx.tolist())
        """
    )
    proc = _run(plugin_site, "-W", "error", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[[1, 2]]"


def test_plugin_option_errors_name_the_field(plugin_site):
    code = "from mgfrec.rewards.compose import build_reward\nbuild_reward(['hit-at-k'], {'hit-at-k': {'k': 0}})\n"
    proc = _run(plugin_site, "-c", code)
    assert proc.returncode != 0
    assert "grpo.reward_options.hit-at-k.k" in proc.stderr


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """A small synthetic data set prepared through the CLI, with its own embedding cache folder."""
    root = tmp_path_factory.mktemp("plugin-cli")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgfrec.cli.main",
            "data",
            "prepare",
            "synthetic",
            "--out",
            str(root / "data"),
            "--set",
            "data.options={n_users: 40, n_items: 80, n_artists: 10, max_length: 6}",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (root / "system.txt").write_text(
        "Think in <think> </think>, search with <ground> </ground>, answer with <answer> </answer>.", encoding="utf-8"
    )
    return root


def _cli(site: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "80"}
    cache = ["--set", f"embedding.cache_dir={root / 'emb'}"]
    return subprocess.run(
        [sys.executable, "-m", "mgfrec.cli.main", *args, *cache], check=False, capture_output=True, text=True, env=env
    )


def test_index_build_treats_the_plugin_grounder_like_a_built_in(plugin_site, small_data):
    proc = _cli(plugin_site, small_data, "index", "build", str(small_data / "data"), "--grounder", "cosine")
    assert proc.returncode == 0, proc.stderr
    assert "cosine, exact search" in proc.stdout and "unknown" not in proc.stdout
    assert "titles first" in " ".join(proc.stderr.split())  # a fresh folder: it says why it takes a while


def test_index_query_grounds_with_the_plugin_grounder(plugin_site, small_data):
    import pandas as pd

    title = str(pd.read_parquet(small_data / "data" / "items.parquet")["title"].iloc[3])
    proc = _cli(
        plugin_site,
        small_data,
        "index",
        "query",
        str(small_data / "data"),
        title,
        "--grounder",
        "cosine",
        "-k",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["items"][0]["title"] == title


def test_fit_trains_with_the_plugin_grounder_and_reward(plugin_site, small_data):
    out = small_data / "fit"
    proc = _cli(
        plugin_site,
        small_data,
        "fit",
        "--data",
        str(small_data / "data"),
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--group-size",
        "2",
        "--kl-beta",
        "0",
        "--valid-samples",
        "2",
        "--no-progress",
        "--grounder",
        "cosine",
        "--reward",
        "ndcg",
        "--reward",
        "hit-at-k",
        "--reward",
        "format",
        *tiny_fit_sets(small_data / "system.txt", recall_size=0, more={"trainer.val_check_interval": 100}),
    )
    assert proc.returncode == 0, proc.stderr
    config = (out / "config.yaml").read_text(encoding="utf-8")
    assert "grounder: cosine" in config and "hit-at-k" in config
    assert "hit-at-k" in (out / "metrics.csv").read_text(encoding="utf-8").splitlines()[0]
    chatter = ("weights_only", "GPU available", "TPU available", "in eval mode", "LeafSpec", "Loading weights")
    assert not [c for c in chatter if c in proc.stderr + proc.stdout], proc.stderr  # hidden without --verbose
    recorded = json.loads((out / "run.json").read_text(encoding="utf-8"))["extra"]["plugins"]
    assert {(p["kind"], p["name"], p["package"]) for p in recorded} == {
        ("grounder", "cosine", "mgfrec-example-plugins 0.1.0"),
        ("reward", "hit-at-k", "mgfrec-example-plugins 0.1.0"),
    }
    # the run given to a colleague without the package: named with it, not "Did you mean 'exact'?"
    without = {**os.environ, "COLUMNS": "200"}
    for command in (["evaluate", str(out), "--split", "valid", "--limit", "2"], ["recommend", str(out), "--user", "1"]):
        proc = subprocess.run(
            [sys.executable, "-m", "mgfrec.cli.main", *command], capture_output=True, text=True, env=without
        )
        text = " ".join(proc.stderr.split())
        assert proc.returncode == 2 and "Traceback" not in text, proc.stderr
        assert (
            f"{out} was made with grounder 'cosine' (mgfrec_example_plugins.cosine_grounder:CosineGrounder) from "
            "mgfrec-example-plugins 0.1.0, which is not installed here: pip install 'mgfrec-example-plugins==0.1.0'"
        ) in text, proc.stderr
        assert "Did you mean" not in text
        if command[0] == "recommend":  # it computes no reward: a run trained with a reward plugin needs none
            assert "hit-at-k" not in text

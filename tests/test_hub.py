"""``mgfrec.hub``: whether the hub is offline, read as huggingface_hub reads it, and whether a model has a snapshot
in a local cache, the default one or sentence-transformers' own (review s35)."""

from __future__ import annotations

import pytest

from mgfrec.hub import hub_cached, hub_offline, offline_variable


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, None),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
        ({"TRANSFORMERS_OFFLINE": "1"}, "TRANSFORMERS_OFFLINE"),  # the message named HF_HUB_OFFLINE
        ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, None),  # huggingface_hub stays online: so do we
        ({"HF_HUB_OFFLINE": "yes"}, "HF_HUB_OFFLINE"),
    ],
)
def test_the_hub_is_offline_as_huggingface_hub_reads_it(monkeypatch, env, said):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert offline_variable() == said and hub_offline() == (said is not None)


def test_a_snapshot_in_sentence_transformers_own_cache_counts(tmp_path):
    """A model sentence-transformers downloaded under SENTENCE_TRANSFORMERS_HOME (a cluster node's setting) loads
    offline, but fit and sft refused it as "not in the local Hugging Face cache"."""
    commit = "0" * 40
    repo = tmp_path / "st" / "models--mgfrec-tests--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "modules.json").write_text("[]")  # no config.json at the root: still a model
    assert hub_cached("mgfrec-tests/cached", cache_dirs=(None, str(tmp_path / "st")))
    assert not hub_cached("mgfrec-tests/cached", cache_dirs=(None,))
    assert not hub_cached("mgfrec-tests/not-there", cache_dirs=(None, str(tmp_path / "st")))

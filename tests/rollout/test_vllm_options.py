"""The vllm engine's options, checked when the config is read: vLLM itself is not needed. ``model_path`` was
refused by Hugging Face ("Repo id must be in the form ...") or by a pydantic dump for an empty folder, and
``multiprocessing`` with constrained turns only when the first constrained turn was sampled, after the spawned
engine core had written vLLM's logs to stdout."""

from __future__ import annotations

import pytest

from mgfrec.config.components import check_components
from mgfrec.config.load import load_config

pytestmark = pytest.mark.reliability


def check(*sets: str) -> None:
    check_components(load_config(None, ("rollout.engine=vllm", *sets)), source="<test>")


def test_a_model_path_vllm_cannot_load_is_named(tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text("{}", encoding="utf-8")
    cases = {
        tmp_path / "nothing": "no such folder",
        tmp_path / "afile": "is a file",
        tmp_path / "empty": "holds no config.json",
        tmp_path / "config-only": "holds no weights (*.safetensors or *.bin)",
    }
    for path, why in cases.items():
        with pytest.raises(ValueError) as err:
            check(f"rollout.options.model_path={path}")
        assert "rollout.options.model_path" in str(err.value) and f"{path}" in str(err.value), err.value
        assert why in str(err.value) and "\n" not in str(err.value), err.value


def test_a_saved_folder_and_a_hub_name_are_taken(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "policy" / "model.safetensors").write_bytes(b"")
    check(f"rollout.options.model_path={tmp_path / 'policy'}")
    check("rollout.options.model_path=Qwen/Qwen2.5-1.5B-Instruct")  # vLLM's to find


def test_a_spawned_engine_core_with_constrained_turns_is_refused_when_the_config_is_read():
    with pytest.raises(ValueError, match=r"rollout.options.multiprocessing: true cannot sample agent.decoding"):
        check("rollout.options.multiprocessing=true", "agent.decoding=constrained")
    check("rollout.options.multiprocessing=true", "agent.decoding=free")
    check("rollout.options.multiprocessing=false", "agent.decoding=constrained")

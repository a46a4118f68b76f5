"""The vllm engine's options, checked when the config is read: vLLM itself is not needed. ``model_path`` was
refused by Hugging Face ("Repo id must be in the form ...") or by a pydantic dump for an empty folder, and
``multiprocessing`` with constrained turns only when the first constrained turn was sampled, after the spawned
engine core had written vLLM's logs to stdout."""

from __future__ import annotations

import re
import sys

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


def test_a_nucleus_below_one_is_refused_before_the_engine_is_built():
    """`rollout.top_p=0.9` with vLLM was refused at the first generation, after the recall fit and the engine's
    start, leaving a half-made run at --out (review s37)."""
    from mgfrec.registry import MissingExtraError
    from mgfrec.rollout.base import check_engine

    with pytest.raises(ValueError, match=r"rollout.top_p=0.9: the vllm engine's log-probs are renormalised"):
        check_engine(load_config(None, ("rollout.engine=vllm", "rollout.top_p=0.9")).rollout)  # vLLM or not
    try:
        check_engine(load_config(None, ("rollout.engine=vllm", "rollout.top_p=1.0")).rollout)
    except MissingExtraError:
        pass  # no vLLM here: the settings were fine
    check_engine(load_config(None, ("rollout.engine=hf", "rollout.top_p=0.9")).rollout)  # the hf engine samples it


def test_vllms_refusal_of_its_settings_names_the_rollout_options():
    """vLLM's refusal of a setting was pydantic's three-line dump of its own arguments, naming its own fields
    (`max_num_batched_tokens`, `VLLM_CPU_KVCACHE_SPACE`) and a link (review s37)."""
    from pydantic import BaseModel, ValidationError, model_validator

    from mgfrec.rollout.vllm_install import vllm_reason

    class SchedulerConfig(BaseModel):  # as vLLM's own config refuses
        max_num_batched_tokens: int

        @model_validator(mode="after")
        def _check(self):
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) is smaller than max_model_len "
                "(4096). This effectively limits the maximum sequence length ..."
            )

    with pytest.raises(ValidationError) as err:
        SchedulerConfig(max_num_batched_tokens=16)
    said = vllm_reason(err.value)
    assert said.startswith("rollout.options.max_num_batched_tokens (16) is smaller than rollout.options.max_model_len")
    assert "\n" not in said and "pydantic.dev" not in said and "ArgsKwargs" not in said
    plain = ValueError("--kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE (100000 GiB) is larger than the memory")
    assert vllm_reason(plain) == "rollout.options.kv_cache_space_gib (100000 GiB) is larger than the memory"


def installed(root, version: str, dist: str = "vllm"):
    """A vLLM distribution ``dist`` at ``version`` under ``root``, as pip lays it out (a package and its
    dist-info), importable once ``root`` is on ``sys.path``; vLLM's own code is never run by these checks."""
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text("", encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "top_level.txt").write_text("vllm\n", encoding="utf-8")
    return root


@pytest.fixture
def vllm_at(tmp_path, monkeypatch):
    def put(version: str, dist: str = "vllm"):
        monkeypatch.syspath_prepend(str(installed(tmp_path / f"{dist}-{version}", version, dist)))
        monkeypatch.delitem(sys.modules, "vllm", raising=False)

    return put


def test_an_older_vllm_is_refused_in_one_line_before_the_engine_starts(vllm_at):
    """vLLM 0.9 has no ``LLM(logprobs_mode=...)``: the engine failed at its start with a TypeError from inside vLLM,
    after the command had loaded its data and policy; ``pip install 'mgfrec[vllm]'`` allowed it (``vllm>=0.6``)."""
    from mgfrec.registry import MissingExtraError
    from mgfrec.rollout.vllm_engine import VLLMEngine, installed_vllm_version

    vllm_at("0.9.2")
    assert installed_vllm_version() == "0.9.2"
    with pytest.raises(MissingExtraError) as err:
        VLLMEngine.check_available()
    text = str(err.value)
    assert "vLLM 0.9.2 is installed" in text and "0.32 or newer" in text and "rollout.engine=hf" in text, text
    assert "\n" not in text


def test_the_cpu_build_and_newer_releases_are_taken(vllm_at):
    """The version is read from whichever distribution provides ``import vllm``: ``vllm-cpu`` (the CPU build the
    tests run) as well as ``vllm``; a development release of a newer version passes."""
    from mgfrec.rollout.vllm_engine import VLLMEngine, check_vllm_version, installed_vllm_version

    vllm_at("0.32.0", dist="vllm-cpu")
    assert installed_vllm_version() == "0.32.0"
    VLLMEngine.check_available()
    for version in ("0.33.0", "0.32.1.dev12+gabc", "1.0.0", "not-a-version", None):
        check_vllm_version(version)  # an unreadable or unknown version is left to vLLM
    for version in ("0.31.9", "0.10.2", "0.6.0"):
        with pytest.raises(ImportError, match=f"vLLM {re.escape(version)} is installed"):
            check_vllm_version(version)


def test_fit_names_an_older_vllm_and_keeps_the_run_at_out(vllm_at, tmp_path):
    from typer.testing import CliRunner

    from mgfrec.cli.main import app
    from mgfrec.config.schema import DataConfig
    from mgfrec.data.prepared import prepare

    prepare(
        DataConfig(source="synthetic", options={"n_users": 20, "n_items": 40, "n_artists": 8, "max_length": 5}),
        tmp_path / "d",
    )
    vllm_at("0.10.2")
    out = tmp_path / "run"
    flags = ["--data", str(tmp_path / "d"), "--out", str(out), "--max-steps", "1", "--rollout-engine", "vllm"]
    result = CliRunner().invoke(app, ["fit", *flags])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "vLLM 0.10.2 is installed" in text and "Traceback" not in text, text
    assert not out.exists()

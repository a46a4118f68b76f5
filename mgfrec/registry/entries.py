"""Component kinds and registry entries: how each kind is built, and where one component lives."""

from __future__ import annotations

import importlib
import importlib.util
import re
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

    @property
    def bare_target(self) -> str:
        """``module:attribute`` without an old-style entry point's extras or spaces (``"mod:Name [fast]"``)."""
        return self.target.partition("[")[0].replace(" ", "")

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
            raise RegistryError(f"{where} could not be imported: {exc}; {self._import_hint(exc)}") from exc
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

    def _import_hint(self, exc: ImportError) -> str:
        """What to do about ``exc``, raised importing the entry point's module. Only a module that is not
        installed at all (``ModuleNotFoundError`` for a top-level name outside the plugin's own package) is a
        package to install; a name missing from an installed package (``from lib import name``: another version),
        a module missing from the plugin's own package, or an ImportError naming nothing is the providing package's
        to fix. Each of these was told "it needs the package ..." (a package that was installed, its own module, or
        '') (note s31)."""
        module_name = self.target.partition(":")[0].strip()
        ours = not self.third_party
        missing = getattr(exc, "name", None) or ""
        own = missing.split(".")[0] == module_name.split(".")[0]  # the plugin's own package
        # an extension module's path, or a system library's name ("libcudart.so.12"; not "pkg.solver")
        compiled = re.compile(r"\.(so|pyd|dll|dylib)\b|shared object")
        loading = compiled.search(str(getattr(exc, "path", None) or "")) or compiled.search(str(exc))
        if loading and "cannot import name" not in str(exc):  # (that one: a name another version lacks, below)
            # a compiled extension that did not load (a missing libcudart, another GLIBC, a truncated file): its
            # name is set, and it read as "another version" or "lacks a name" (review s32)
            return (
                f"a compiled library {'mgfrec' if ours else 'the providing package'} needs could not be loaded "
                "(see the message: a missing system library, or a build for another platform)"
            )
        if not isinstance(exc, ModuleNotFoundError) or not missing:
            if missing and own:  # "cannot import name 'x' from 'pkg'": the plugin's own package lacks a name
                return f"the providing package {self.origin} lacks a name it imports from itself: it is broken"
            if missing:  # "cannot import name 'x' from 'lib'": lib is installed, in a version without it
                return (
                    f"'{missing}' is installed but does not provide what it imports (another version than "
                    f"{'mgfrec' if ours else self.origin} expects?); check the versions installed"
                )
            return f"{'mgfrec' if ours else 'the providing package'} could not load a library it needs; see the message"
        if module_name == missing or module_name.startswith(missing + "."):
            return "the entry point names a module that does not exist; check the providing package"
        top = missing.split(".")[0]
        if own:  # the plugin's own package lacks one of its modules
            return (
                f"the providing package {self.origin} lacks its own module '{missing}': it is broken or incompletely "
                "installed"
            )
        if top != missing and _installed(top):  # lib.sub missing from an installed lib
            return (
                f"'{top}' is installed but has no module '{missing}' (another version?); check the versions installed"
            )
        if ours:
            return (
                f"it needs the package '{top}'; install it (mgfrec's optional extras: "
                "faiss, hnswlib, openai, anthropic, deepspeed, vllm, e.g. pip install 'mgfrec[faiss]')"
            )
        return f"it needs the package '{top}', which {self.origin} should have installed; pip install it"


def _installed(module: str) -> bool:
    """Whether a top-level module can be found (never raises: a broken finder says no)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind '{kind}'; kinds are: {', '.join(KINDS)}")

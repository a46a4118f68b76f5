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

This module must not import any component module at import time.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mgfrec.validation import refuse_redacted, strict_scalar, validation_text


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


class MissingExtraError(ImportError):
    """An optional library a component needs (a grounder's faiss, the vllm engine's vLLM) is not installed; the
    message names what to install, and the default that needs nothing. A user error: one line, exit code 2."""


class RegistryError(LookupError):
    """A component name or kind that cannot be resolved, or two components claiming one name."""


class OptionsValidatorError(ValueError):
    """A component's ``Options`` validator raised something other than a user error (its own bug): one line, the
    original exception chained for a debugger. :meth:`Registry.build` names the component and its package."""


class PluginError(RegistryError, ValueError):
    """A third-party component's own user error (a ValueError, OSError or LookupError raised while it was built),
    with the plugin named. A ValueError too, so code that caught the plugin's ValueError still catches it."""


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
        return obj


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind '{kind}'; kinds are: {', '.join(KINDS)}")


class Registry:
    """Components by kind and name, discovered from entry points (plus any added in-process)."""

    def __init__(self, entries: dict[str, dict[str, Entry]]):
        self._entries = entries

    @classmethod
    def discover(cls) -> Registry:
        """Read every ``mgfrec.<kind>`` entry-point group; refuse a name claimed twice."""
        found: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        for entry in installed_entries():
            _add(found, entry)
        return cls(found)

    def add(self, kind: str, name: str, obj: Any) -> Entry:
        """Register an object in-process (notebooks, tests). The duplicate rule still applies."""
        check_kind(kind)
        target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
        entry = Entry(kind=kind, name=name, target=target, origin=f"python:{getattr(obj, '__module__', '?')}", _obj=obj)
        _add(self._entries, entry)
        return entry

    def names(self, kind: str) -> list[str]:
        check_kind(kind)
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        out: list[Entry] = []
        for k in kinds:
            check_kind(k)
            out.extend(self._entries[k][n] for n in sorted(self._entries[k]))
        return out

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists what exists and the closest match."""
        check_kind(kind)
        try:
            return self._entries[kind][name]
        except KeyError:
            pass
        known = self.names(kind)
        recorded = _recorded(kind, name)
        strays = [] if recorded else [s for s in stray_groups() if name in s.names]  # every package's metadata
        if recorded:  # a run made with a plugin package that is not installed here: which one to install
            hint = f" {recorded}"
        elif strays:  # the package is installed, under a group mgfrec does not read: say where, not "did you mean"
            hint = " " + "; ".join(s.describe() for s in strays)
        else:
            same = [k for k in known if k.lower() == name.lower()]  # SASRec: names are lower case
            close = same or difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(known) if known else "(none installed)"
        raise RegistryError(f"unknown {kind} '{name}'. Available: {listing}.{hint}") from None

    def load(self, kind: str, name: str) -> Any:
        return self.get(kind, name).load()

    def build(
        self,
        kind: str,
        name: str,
        options: Mapping[str, Any] | None,
        *deps: Any,
        after: tuple[Any, ...] = (),
        method: str | None = None,
        where: str | None = None,
    ) -> Any:
        """Look ``name`` up, validate ``options`` against its ``Options`` model, construct it.

        The call is ``component(*deps, options, *after)``, or ``component(*deps, *after)`` for a component
        without an ``Options`` model (unless the kind passes options always, :data:`KIND_SPECS`).
        ``method`` calls a class method instead of the class (retrievers are built by ``fit``). ``where`` is
        the config path shown in option errors (default: the kind's ``options_at``).
        """
        entry = self.get(kind, name)
        component = entry.load()
        spec = KIND_SPECS[kind]
        where_entry = entry.describe()
        factory = getattr(component, method, None) if method else component
        if not callable(factory):  # a grounder under mgfrec.retriever, an entry point naming a module
            what = (
                f"has no '{method}' method" if method else f"is a {type(component).__name__}, not a class or function"
            )
            raise RegistryError(f"{where_entry} {what}: is it registered under the right kind and attribute?")
        third_party = entry.third_party
        built = False  # the options are checked first: their errors name the config path already
        try:
            validated = component_options(component, options, where or spec.options_at.format(name=name))
            built = True
            if validated is None and not spec.always_options:
                return factory(*deps, *after)
            return factory(*deps, validated, *after)
        except OptionsValidatorError as exc:
            raise RegistryError(f"{where_entry}: {exc}") from None  # which component, from which package
        except (ValueError, OSError, LookupError) as exc:
            if not (third_party and built) or isinstance(exc, RegistryError):
                raise  # the component's own user errors (a bad option value, a missing file) say what is wrong
            # a plugin's: its message, with the plugin named (its words alone may not say where they come from)
            raise PluginError(f"{where_entry}: {error_message(exc)}") from None
        except Exception as exc:
            if not third_party:
                raise
            if isinstance(exc, TypeError) and built and _at_the_call(exc):
                # its constructor does not take what a component of this kind is given: often a class registered
                # under another kind's group (a reward under mgfrec.grounder)
                raise RegistryError(
                    f"{where_entry} cannot be built as a {kind} is ({exc}): is it registered under the right kind? "
                    "See the constructor each kind is given in docs/plugins.md"
                ) from None
            # A plugin's own bug: one line naming the plugin, not a traceback through mgfrec
            raise RegistryError(f"{where_entry} failed: {type(exc).__name__}: {exc}") from None


def _at_the_call(exc: BaseException) -> bool:
    """``exc`` was raised by the call in the frame that caught it (its arguments did not bind), not inside the
    called code: the traceback has no frame below the catching one."""
    return exc.__traceback__ is not None and exc.__traceback__.tb_next is None


def class_path(obj: object) -> str:
    """``module.Class`` of ``obj``'s type, for messages about a component that broke its contract: a plugin's
    module names its package, where the class name alone may not."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def registered_as(obj: object, kind: str | None = None) -> str | None:
    """:meth:`Entry.describe` of the registered component ``obj`` is (an instance, or the class or function
    itself): ``grounder 'l1' (pkg.mod:L1, from pkg 0.2)``, the name and package a user chose it by, for the
    message of a contract it broke; None when no entry's target is its class (built by hand, by a factory
    function, or wrapped). Never raises: a registry that cannot be read names nothing."""
    target: Any = obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj)
    wanted = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}"
    try:
        entries = registry().entries(kind)
    except Exception:  # noqa: BLE001 - a duplicate name is reported where components are resolved
        return None
    for entry in entries:
        if entry.target.partition("[")[0].replace(" ", "") == wanted:
            return entry.describe()
    return None


def call_component(component: object, method: str, *args: Any, **kwargs: Any) -> Any:
    """``component.method(*args, **kwargs)``; a ``TypeError`` raised by the call itself (the method's signature is
    not the one mgfrec calls: ``search(self, queries)`` without ``k``), not inside it, becomes one ``ValueError``
    naming the component's class and module (which names a plugin's package). Such an error has no frame of the
    plugin on its traceback, so nothing else could name it, and it read as a bug of mgfrec (a full traceback)."""
    try:
        return getattr(component, method)(*args, **kwargs)
    except TypeError as exc:
        if not _at_the_call(exc):
            raise  # raised inside the method: its own traceback names it
        raise ValueError(
            f"{class_path(component)}.{method} cannot be called as mgfrec calls it ({exc}); see the signature each "
            "kind provides in docs/plugins.md"
        ) from None


def blame(exc: BaseException) -> Entry | None:
    """The third-party component whose code ``exc`` was raised through, or None. Of the traceback's frames in a
    plugin's modules, innermost first: the first that runs the entry point's own object (``Class.method``, or the
    function); failing that, the innermost frame's module, then its package. One module may register several
    components, and its helper functions belong to none of them.

    A plugin's error at run time (a grounder's ``search``, a reward's ``__call__``) is raised deep inside a
    command; this is how the CLI names the plugin in its one line. Never raises: a registry that cannot be
    read blames nobody."""
    try:
        plugins = [e for e in registry().entries() if e.third_party and e.module.split(".")[0] != "mgfrec"]
    except Exception:  # noqa: BLE001 - a broken registry (a duplicate name) is reported where it is used
        return None
    if not plugins:
        return None
    frames: list[tuple[str, str]] = []  # (module, qualified name of the code), innermost first
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.insert(0, (str(tb.tb_frame.f_globals.get("__name__", "")), getattr(code, "co_qualname", code.co_name)))
        tb = tb.tb_next
    for module, qualname in frames:
        for e in plugins:
            attr = e.target.partition(":")[2].partition("[")[0].strip()
            if e.module == module and attr and (qualname == attr or qualname.startswith(attr + ".")):
                return e
    for module, _ in frames:
        exact = [e for e in plugins if e.module == module]
        package = [e for e in plugins if module.split(".")[0] == e.module.split(".")[0]]
        if exact or package:
            return (exact or package)[0]
    return None


def plugin_failure(exc: BaseException) -> str | None:
    """``kind 'name' (target, from package) failed: TypeError: message`` for an exception raised through a
    plugin's code (:func:`blame`), the type left out for what the CLI takes as a user error (ValueError, OSError,
    KeyError: ``cli.common.user_errors``); None when no plugin is to blame."""
    plugin = blame(exc)
    if plugin is None:
        return None
    if isinstance(exc, KeyError) and exc.args and not (isinstance(exc.args[0], str) and " " in exc.args[0]):
        return f"{plugin.describe()} failed: KeyError: {exc.args[0]!r}"  # a bare key ({}["x"]) said only "x"
    kind = "" if isinstance(exc, (ValueError, OSError, KeyError)) else f"{type(exc).__name__}: "
    return f"{plugin.describe()} failed: {kind}{error_message(exc)}"


def error_message(exc: BaseException) -> str:
    """One line for a user error: a KeyError's own text, an OSError as ``path: reason`` (the CLI prints every
    user error this way; a plugin's is named with it)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{target}: {exc.strerror}"
    return str(exc)


def dist_origin(dist: Any) -> str:
    """``name version`` of an installed distribution, as messages name a plugin's package; a ``.dist-info`` whose
    METADATA lacks them is named by its folder (it was ``None None``)."""
    if dist is None:
        return "unknown distribution"
    name, version = dist.metadata["Name"] if dist.metadata else None, getattr(dist, "version", None)
    if name and version:
        return f"{name} {version}"
    folder = getattr(dist, "_path", None)  # importlib.metadata.PathDistribution's own folder
    where = f" ({Path(folder).name})" if folder is not None else ""
    return f"{name or 'a package without a Name'} {version or '(no Version)'}{where}"


def installed_entries() -> list[Entry]:
    """Every ``mgfrec.<kind>`` entry point installed, in kind order, duplicates included (``mgfrec plugins list``
    shows them all; :meth:`Registry.discover` refuses a name claimed twice)."""
    entries = []
    for kind in KINDS:
        for ep in metadata.entry_points(group=GROUP_PREFIX + kind):
            origin = dist_origin(getattr(ep, "dist", None))
            entries.append(Entry(kind=kind, name=ep.name, target=ep.value, origin=origin))
    return entries


@dataclass(frozen=True)
class StrayGroup:
    """Entry points a package declared under a group that looks like mgfrec's but names no kind
    (``mgfrec.grounders``, ``mgfrec_grounder``): mgfrec never reads them, and nothing else would say so."""

    group: str
    names: tuple[str, ...]
    origin: str  # distribution "name version"
    closest: str | None  # the group meant, when one is close: "mgfrec.grounder"

    def describe(self) -> str:
        kinds = ", ".join(KINDS)
        meant = f"the group is '{self.closest}'" if self.closest else f"groups are mgfrec.<kind>: {kinds}"
        return (
            f"{self.origin} declares {', '.join(self.names)} under the entry-point group '{self.group}', which mgfrec "
            f"does not read; {meant}"
        )


def stray_groups() -> list[StrayGroup]:
    """Every installed entry-point group whose name starts with ``mgfrec`` (any case, any separator) and is not a
    kind's ``mgfrec.<kind>``: a typo in a plugin's ``pyproject.toml`` (``plugins list`` warns of each, and an
    unknown name declared in one says where it went). Reads package metadata only."""
    known = [GROUP_PREFIX + kind for kind in KINDS]
    found: dict[tuple[str, str], list[str]] = {}
    for dist in metadata.distributions():
        try:
            origin = dist_origin(dist)
            points = list(dist.entry_points)
        except Exception:  # noqa: BLE001 - another package's damaged metadata is not this check's to report
            continue
        for ep in points:
            if ep.group in known or not ep.group.lower().startswith("mgfrec"):
                continue
            names = found.setdefault((ep.group, origin), [])
            if ep.name not in names:
                names.append(ep.name)
    stray = []
    for (group, origin), names in sorted(found.items()):
        normal = group.lower().replace("_", ".").replace("-", ".")
        close = difflib.get_close_matches(normal, known, n=1, cutoff=0.75)
        stray.append(StrayGroup(group, tuple(sorted(names)), origin, close[0] if close else None))
    return stray


def _add(table: dict[str, dict[str, Entry]], entry: Entry) -> None:
    existing = table[entry.kind].get(entry.name)
    if existing is not None and existing.target != entry.target:
        raise RegistryError(
            f"duplicate {entry.kind} name '{entry.name}': provided by {existing.origin} ({existing.target}) "
            f"and by {entry.origin} ({entry.target}). Uninstall one of them or rename the plugin's entry point."
        )
    table[entry.kind][entry.name] = entry


# recorded_plugins's stack, innermost last; per thread (and task): serve loads runs in threads of its own
_RECORDED: ContextVar[tuple[tuple[str, tuple[Mapping[str, Any], ...]], ...]] = ContextVar("mgfrec_recorded", default=())


@contextmanager
def recorded_plugins(where: str, plugins: Any) -> Iterator[None]:
    """Inside the ``with`` block, a component name nobody registered that ``plugins`` (a run's ``run.json``
    ``extra.plugins``: ``{kind, name, target, package}`` each) records is reported as that package's, not
    installed here, instead of "did you mean" another component. ``where`` names what recorded it (the run
    folder). Entries that are not such mappings are ignored (a hand-edited run.json)."""
    kept = tuple(p for p in plugins if isinstance(p, Mapping)) if isinstance(plugins, (list, tuple)) else ()
    token = _RECORDED.set((*_RECORDED.get(), (where, kept)))
    try:
        yield
    finally:
        _RECORDED.reset(token)


_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
"""A distribution name or version as a ``pip install`` line may hold it: a run.json from someone else is text, and
a pasted command must do nothing but install."""


def _recorded(kind: str, name: str) -> str | None:
    """What :func:`recorded_plugins` knows of ``kind`` ``name``, as the end of an unknown-name error."""
    for where, plugins in reversed(_RECORDED.get()):
        for plugin in plugins:
            if plugin.get("kind") == kind and plugin.get("name") == name:
                package = str(plugin.get("package") or "an unknown package")
                target = f" ({plugin['target']})" if plugin.get("target") else ""
                dist, _, version = package.partition(" ")
                if dist.startswith("python:"):
                    install = "register it again in this process"
                elif _REQUIREMENT.fullmatch(dist) and _REQUIREMENT.fullmatch(version):
                    install = f"pip install '{dist}=={version}'"
                else:  # no version named (dist_origin), or text that is no package name: no command to paste
                    install = "install that package"
                return (
                    f"{where} was made with {kind} '{name}'{target} from {package}, which is not installed here: "
                    + install
                )
    return None


_DEFAULT: Registry | None = None
_ACTIVE: list[Registry] = []  # use_registry's stack, innermost last


def registry() -> Registry:
    """The registry components are built from: the innermost :func:`use_registry`'s, else the process-wide
    one (discovered on first use)."""
    global _DEFAULT
    if _ACTIVE:
        return _ACTIVE[-1]
    if _DEFAULT is None:
        _DEFAULT = Registry.discover()
    return _DEFAULT


@contextmanager
def use_registry(reg: Registry | None) -> Iterator[Registry]:
    """Build every component from ``reg`` inside the ``with`` block, however deep the call that builds it;
    ``None`` keeps the registry in use. The setting is process-wide (one stack, not per thread): threads that
    build components with different registries at the same time must pass ``reg`` to the builders."""
    if reg is None:
        yield registry()
        return
    _ACTIVE.append(reg)
    try:
        yield reg
    finally:
        _ACTIVE.pop()


F = TypeVar("F", bound=Callable[..., Any])


def within(context: Callable[[Any], AbstractContextManager[Any]], parameter: str, decorator: str) -> Callable[[F], F]:
    """A decorator running the function under ``context(value)`` of its ``parameter`` argument (``None`` when the
    call leaves it out): :func:`with_registry`, :func:`mgfrec.runs.with_run_plugins`. ``decorator`` names it in
    the error for a function without that parameter."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        if parameter not in signature.parameters:
            raise TypeError(f"{fn.__qualname__}: {decorator} needs a '{parameter}' parameter")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with context(signature.bind_partial(*args, **kwargs).arguments.get(parameter)):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


with_registry = within(use_registry, "reg", "with_registry")
"""Run a function under :func:`use_registry` of its ``reg`` argument (when one is given), so every component built
anywhere below it comes from that registry, whether or not ``reg`` is passed on."""


def component_options(component: Any, raw: dict[str, Any] | None, where: str) -> BaseModel | None:
    """Validate a component's ``options`` mapping against its ``Options`` model.

    ``where`` is the config path shown in errors, e.g. ``grounding.options``. Components without an
    ``Options`` model accept no options.
    """
    raw = dict(raw or {})
    refuse_redacted(raw, where)  # a secret option read back from a run's config.yaml (a plugin grounder's token)
    model = getattr(component, "Options", None)
    if model is None:
        if raw:
            raise ValueError(f"{where}: this component takes no options, got {sorted(raw)}")
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        # module and class: a plugin's module names its package, where the class name alone did not
        module = getattr(component, "__module__", type(component).__module__)
        name = f"{module}.{getattr(component, '__qualname__', type(component).__name__)}"
        raise ValueError(f"{where}: {name}.Options must be a pydantic BaseModel, got {model!r}")
    if model.model_config.get("extra") not in ("allow", "forbid"):  # pydantic's default ignores a misspelt key
        known = {name for name, field in model.model_fields.items() for name in (name, field.alias) if name}
        unknown = sorted(str(key) for key in raw if key not in known)
        if unknown:  # as a built-in's extra="forbid" says it, whatever the plugin's Options declared
            raise ValueError(
                "invalid options: "
                + "; ".join(
                    f"{where}.{key}: Extra inputs are not permitted (it takes {sorted(model.model_fields)})"
                    for key in unknown
                )
            )
    lax = []  # true given to a number, 1 or "yes" to a switch: pydantic's lax mode converted them without a word
    for name, value in raw.items():
        try:
            strict_scalar(model, name, value)
        except ValueError as exc:
            lax.append(f"{where}.{name}: {exc} (got {value!r})")
    if lax:
        raise ValueError("invalid options: " + "; ".join(lax))
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        # an error of the whole model (a validator across fields) has no location of its own: the path alone
        raise ValueError("invalid options: " + validation_text(exc, where=[where])) from None
    except (OSError, LookupError):
        raise  # a user error of the validator's own (a file it checks is missing): its message says what
    except Exception as exc:  # a validator's own bug: pydantic wraps only ValueError and AssertionError
        name = f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', 'Options')}"
        raise OptionsValidatorError(
            f"{where}: the component's options validator failed: {type(exc).__name__}: {exc} (in {name}); "
            "a bug of the component, not of the options given"
        ) from exc

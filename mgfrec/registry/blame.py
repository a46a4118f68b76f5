"""Naming a plugin: which registered component an object is, or an exception came through."""

from __future__ import annotations

import inspect
from typing import Any

from mgfrec.registry.core import built_entry, registry
from mgfrec.registry.entries import Entry
from mgfrec.registry.errors import MissingExtraError, _at_the_call, class_path, error_message


def registered_as(obj: object, kind: str | None = None) -> str | None:
    """:meth:`Entry.describe` of the registered component ``obj`` is (an instance, or the class or function
    itself): ``grounder 'l1' (pkg.mod:L1, from pkg 0.2)``, the name and package a user chose it by, for the
    message of a contract it broke; None when no entry's target is its class (built by hand, by a factory
    function, or wrapped). Never raises: a registry that cannot be read names nothing."""
    built = built_entry(obj)  # the entry it was built from: one class may be registered under several names
    if built is not None and kind in (None, built.kind):
        return built.describe()
    wanted = _target_of(obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj))
    try:
        entries = registry().entries(kind)
    except Exception:  # noqa: BLE001 - a duplicate name is reported where components are resolved
        return None
    matches = [entry.describe() for entry in entries if entry.bare_target == wanted]
    return " or ".join(matches) if matches else None  # several: each, rather than the first as if it were chosen


def method_named(component: object, method: str, kind: str | None = None) -> str:
    """``component``'s ``method`` for the message of a contract it broke: ``grounder 'l1' (pkg.mod:L1, from pkg
    0.2): search`` where it is registered (the name and package a user chose it by), else ``pkg.mod.L1.search``
    (its module names a plugin's package). Looked up on an error path only: the registry is not searched per call."""
    registered = registered_as(component, kind)
    return f"{registered}: {method}" if registered else f"{class_path(component)}.{method}"


def call_component(component: object, method: str, *args: Any, **kwargs: Any) -> Any:
    """``component.method(*args, **kwargs)``; a ``TypeError`` raised by the call itself (the method's signature is
    not the one mgfrec calls: ``search(self, queries)`` without ``k``), not inside it, becomes one ``ValueError``
    naming the component (its registered name and package where it is one, else its class and module). Such an
    error has no frame of the plugin on its traceback, so nothing else could name it, and it read as a bug of
    mgfrec (a full traceback). So does a component without the method at all (a grounder without ``search``)."""
    try:
        bound = getattr(component, method)
    except AttributeError:
        named = registered_as(component) or class_path(component)  # looked up on the error path only: calls are hot
        raise ValueError(
            f"{named} has no {method}() method, which mgfrec calls; see what each kind provides in docs/plugins.md"
        ) from None
    try:
        return bound(*args, **kwargs)
    except TypeError as exc:
        if not _at_the_call(exc) and _binds(bound, args, kwargs):
            raise  # raised inside the method: its own traceback names it
        raise ValueError(
            f"{method_named(component, method)} cannot be called as mgfrec calls it ({exc}); see the signature each "
            "kind provides in docs/plugins.md"
        ) from None


def _binds(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``args`` and ``kwargs`` bind to ``method``'s signature, read through a decorator's ``__wrapped__``
    (a ``scores`` under ``@torch.no_grad()`` raised its signature's ``TypeError`` a frame below the call, and was
    taken for one raised inside it; review s34). True when the signature cannot be read: nothing to tell."""
    return binding_error(method, args, kwargs) is None


def binding_error(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TypeError | None:
    """Why ``args`` and ``kwargs`` do not bind to ``method``'s signature (see :func:`_binds`), None when they do or
    the signature cannot be read: for a check made before the first call (a reward's, when rewards are built)."""
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return exc
    return None


def blame(exc: BaseException) -> Entry | None:
    """The third-party component whose code ``exc`` was raised through, or None. Of the traceback's frames,
    innermost first: the first in a plugin's package whose ``self`` (or ``cls``) is an entry point's class (a method
    it inherits from a base class runs under the base's name: the base, or another component sharing it, was named);
    then the first in a plugin's module that runs the entry point's own object (``Class.method``, or the
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
    frames: list[tuple[str, str, str | None]] = []  # (module, code's qualified name, self's class), innermost first
    built: list[Entry | None] = []  # the entry each frame's self was built from (Registry.build), innermost first
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        frames.insert(0, (module, getattr(code, "co_qualname", code.co_name), _bound_class(tb.tb_frame, code)))
        built.insert(0, _bound_entry(tb.tb_frame, code))
        tb = tb.tb_next
    by_class = {e.bare_target: e for e in reversed(plugins)}  # the first entry wins
    for (module, _, owner), chosen in zip(frames, built, strict=True):
        # only a base class of the plugin's own package: torch's load_state_dict or to() on a plugin nn.Module,
        # or mgfrec's own base-class code, is not the plugin's failure (review s32)
        entry = chosen if chosen is not None and chosen.third_party else None
        entry = entry or (by_class.get(owner) if owner is not None else None)
        if entry is not None and module.split(".")[0] == entry.module.split(".")[0]:
            return entry
    for module, qualname, _ in frames:
        for e in plugins:
            attr = e.target.partition(":")[2].partition("[")[0].strip()
            if e.module == module and attr and (qualname == attr or qualname.startswith(attr + ".")):
                return e
    for module, *_ in frames:
        exact = [e for e in plugins if e.module == module]
        package = [e for e in plugins if module.split(".")[0] == e.module.split(".")[0]]
        if exact or package:
            return (exact or package)[0]
    return None


def _bound_entry(frame: Any, code: Any) -> Entry | None:
    """The entry a method's ``self`` was built from (:func:`~mgfrec.registry.core.built_entry`), None otherwise."""
    if code.co_argcount < 1 or code.co_varnames[0] != "self":
        return None
    return built_entry(frame.f_locals.get("self"))


def _bound_class(frame: Any, code: Any) -> str | None:
    """``module:Qualname`` of the class a method's frame runs for: its first argument named ``self`` (its type) or
    ``cls`` (a classmethod's class); None for a function, or a frame whose first argument is neither."""
    if code.co_argcount < 1 or code.co_varnames[0] not in ("self", "cls"):
        return None
    bound = frame.f_locals.get(code.co_varnames[0])
    return _target_of(bound if code.co_varnames[0] == "cls" and isinstance(bound, type) else type(bound))


def _target_of(obj: Any) -> str:
    """``module:Qualname`` of a class or function: how an entry point names its target (:attr:`Entry.bare_target`)."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"


def plugin_failure(exc: BaseException) -> str | None:
    """``kind 'name' (target, from package) failed: TypeError: message`` for an exception raised through a
    plugin's code (:func:`blame`), the type left out for what the CLI takes as a user error (ValueError, OSError,
    KeyError: ``cli.common.user_errors``); None when no plugin is to blame."""
    plugin = blame(exc)
    if plugin is None:
        return None
    if isinstance(exc, KeyError) and exc.args and not (isinstance(exc.args[0], str) and " " in exc.args[0]):
        return f"{plugin.describe()} failed: KeyError: {exc.args[0]!r}"  # a bare key ({}["x"]) said only "x"
    if isinstance(exc, MissingExtraError):  # a library to install, said by the plugin itself: no failure of it
        return f"{plugin.describe()}: {error_message(exc)}"
    kind = "" if isinstance(exc, (ValueError, OSError, KeyError)) else f"{type(exc).__name__}: "
    return f"{plugin.describe()} failed: {kind}{error_message(exc)}"

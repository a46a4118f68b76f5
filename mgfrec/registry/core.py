"""The registry: components by kind and name, the one in use, and how each is built with its options."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from mgfrec.registry.discovery import _RECORDED, _add, _recorded, installed_entries, recorded_otherwise, stray_groups
from mgfrec.registry.entries import KIND_SPECS, KINDS, Entry, check_kind
from mgfrec.registry.errors import OptionsValidatorError, PluginError, RegistryError, _at_the_call, error_message
from mgfrec.validation import REDACTED, looks_like_key, refuse_redacted, strict_scalar, validation_text


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
        """Register an object in-process (notebooks, tests). The duplicate rule still applies. A name that is no
        text is refused naming the argument (None broke every later lookup of the kind: "'<' not supported ...";
        review s35); what ``obj`` is, is checked where it is built."""
        check_kind(kind)
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"Registry.add: name must be a non-empty string, got {name!r:.60}")
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
            entry = self._entries[kind][name]
        except KeyError:
            pass
        else:
            other = recorded_otherwise(kind, name, entry.target, entry.origin) if _RECORDED.get() else None
            if other is not None:
                raise RegistryError(other)
            return entry
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
        if looks_like_key(name):  # a key pasted where a name goes (--user-agent sk-...): not echoed, no guess
            raise RegistryError(f"unknown {kind} {REDACTED} (it looks like an API key). Available: {listing}.")
        raise RegistryError(f"unknown {kind} '{name}'. Available: {listing}.{hint}") from None

    def load(self, kind: str, name: str) -> Any:
        return self.get(kind, name).load()

    def options_model(self, kind: str, name: str) -> type[BaseModel] | None:
        """The pydantic model component ``name`` validates its ``options`` with (its class attribute ``Options``),
        or None when it takes none; importing the component (:func:`options_model_of`)."""
        return options_model_of(self.load(kind, name), f"{kind} '{name}'")

    def declares(self, kind: str, name: str, flag: str) -> bool:
        """What component ``name`` declares about itself in its class attribute ``flag`` (a retriever's
        ``reads_titles``, ``reads_training_settings``); True when it does not say or cannot be loaded, so an
        unknown component is treated as doing the thing (refitted, warned about) and named where it is built."""
        try:
            return bool(getattr(self.load(kind, name), flag, True))
        except Exception:  # noqa: BLE001 - the build that follows names the unknown or broken component
            return True

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
                return _remember(factory(*deps, *after), entry)
            return _remember(factory(*deps, validated, *after), entry)
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


_BUILT: dict[int, tuple[weakref.ref[Any], Entry]] = {}
"""The entry each component :meth:`Registry.build` made was built from, by the component's identity (a mapping
keyed by value gave two equal components, built under two names, the last one's name; review s39)."""


def _remember(component: Any, entry: Entry) -> Any:
    """``component``, remembered as built from ``entry``: one class registered under two names (an alias, another
    package's re-export) was named in errors by whichever entry came first, not the one the user chose (review
    s39). An object that cannot be weakly referenced is named by its class alone."""
    key = id(component)
    try:
        ref = weakref.ref(component, lambda _ref, key=key: _BUILT.pop(key, None))
    except TypeError:
        return component
    _BUILT[key] = (ref, entry)
    return component


def built_entry(component: Any) -> Entry | None:
    """The entry :meth:`Registry.build` built ``component`` from, None when it built no such object."""
    found = _BUILT.get(id(component))
    if found is None or found[0]() is not component:
        return None
    return found[1]


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


def _field_allows_inf(model: type[BaseModel], name: str) -> bool:
    """Whether field ``name`` of ``model`` opts in to ``inf``/``nan`` itself (``Field(allow_inf_nan=True)``)."""
    field = model.model_fields.get(name)
    return field is not None and any(getattr(m, "allow_inf_nan", None) is True for m in field.metadata)


def options_model_of(component: Any, where: str) -> type[BaseModel] | None:
    """``component``'s ``Options`` model, None when it declares none; one that is not a pydantic model is a
    :class:`ValueError` beginning with ``where`` (a config path, or the component's kind and name)."""
    model = getattr(component, "Options", None)
    if model is None or (isinstance(model, type) and issubclass(model, BaseModel)):
        return model
    # module and class: a plugin's module names its package, where the class name alone did not
    module = getattr(component, "__module__", type(component).__module__)
    name = f"{module}.{getattr(component, '__qualname__', type(component).__name__)}"
    raise ValueError(f"{where}: {name}.Options must be a pydantic BaseModel, got {model!r}")


def component_options(component: Any, raw: dict[str, Any] | None, where: str) -> BaseModel | None:
    """Validate a component's ``options`` mapping against its ``Options`` model.

    ``where`` is the config path shown in errors, e.g. ``grounding.options``. Components without an
    ``Options`` model accept no options.
    """
    raw = dict(raw or {})
    refuse_redacted(raw, where)  # a secret option read back from a run's config.yaml (a plugin grounder's token)
    model = options_model_of(component, where)
    if model is None:
        if raw:
            raise ValueError(f"{where}: this component takes no options, got {sorted(raw)}")
        return None
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
    named = {f.alias: n for n, f in model.model_fields.items() if f.alias and f.alias != n}  # alias -> field
    if named and not (model.model_config.get("populate_by_name") or model.model_config.get("validate_by_name")):
        # a field given by its name, where pydantic reads only its alias: dropped, the default used without a word
        raw = {
            (model.model_fields[k].alias if k in model.model_fields and k not in named else k): v
            for k, v in raw.items()
        }
    lax = []  # true given to a number, 1 or "yes" to a switch: pydantic's lax mode converted them without a word
    finite_only = model.model_config.get("allow_inf_nan") is not True  # pydantic's default took .inf and .nan
    for name, value in raw.items():
        if (
            finite_only
            and isinstance(value, float)
            and not math.isfinite(value)
            and not _field_allows_inf(model, named.get(name, name))
        ):
            # sasrec's init_std=.inf ran, then stopped naming retriever.lr; a backoff of .inf waited forever (s40)
            lax.append(
                f"{where}.{name}: must be a finite number (got {value!r}); a component that takes one says "
                "allow_inf_nan=True in its Options' model_config or the field's Field()"
            )
            continue
        try:
            strict_scalar(model, named.get(name, name), value)  # an alias is checked as its field
        except ValueError as exc:
            lax.append(f"{where}.{name}: {exc} (got {value!r})")
    if lax:
        raise ValueError("invalid options: " + "; ".join(lax))
    try:
        options = model.model_validate(raw)
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
    _check_defaults(model, raw, where)
    return options


def _check_defaults(model: type[BaseModel], raw: dict[str, Any], where: str) -> None:
    """Refuse an option left at a default its own field refuses (``k: int = Field(-5, ge=1)``): pydantic does not
    validate defaults, so the component was built with ``k = -5`` without a word. Each default is checked alone,
    against its field's type and constraints (not the model's validators, which may read which fields were given).
    A ``None`` default (a common "not set" sentinel), a factory's and a model that validates its defaults itself
    are let through."""
    if model.model_config.get("validate_default"):
        return
    given = set(raw)
    for name, field in model.model_fields.items():
        aliases = {field.alias, field.validation_alias if isinstance(field.validation_alias, str) else None}
        if name in given or given & (aliases - {None}) or field.is_required() or field.default_factory is not None:
            continue
        if field.default is None:
            continue
        try:
            adapter = TypeAdapter(Annotated[(field.annotation, *field.metadata)])  # type: ignore[valid-type]
        except Exception:  # noqa: BLE001 - a type pydantic cannot check alone (a forward reference): not ours to judge
            continue
        try:
            adapter.validate_python(field.default)
        except ValidationError as exc:
            owner = f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', 'Options')}"
            raise OptionsValidatorError(
                f"{where}.{name}: the component's default {field.default!r} is refused by its own field "
                f"({validation_text(exc, whole='value', limit=1)}) (in {owner}); a bug of the component: give "
                f"{where}.{name} yourself"
            ) from None

"""Finding components: installed entry points, groups mgfrec does not read, and plugins a run recorded."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mgfrec.registry.entries import GROUP_PREFIX, KINDS, Entry
from mgfrec.registry.errors import RegistryError


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
    shows them all; :meth:`Registry.discover` refuses a name claimed twice).

    Read package by package: one package's ``entry_points.txt`` that cannot be parsed (a line without ``=``) was a
    ``TypeError`` traceback from every command. Such a package is left out when its file names no ``mgfrec`` group
    (not a plugin: not this registry's to report), and refused in one line naming the file when it does (its
    components would vanish without a word)."""
    found: dict[str, list[Entry]] = {kind: [] for kind in KINDS}
    groups = {GROUP_PREFIX + kind: kind for kind in KINDS}
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = _normalized(dist)
        if name in seen:  # a package found twice on the path: the first wins, as importlib.metadata has it
            continue
        seen.add(name)
        try:
            points = list(dist.entry_points)
        except Exception as exc:  # noqa: BLE001 - a damaged file of another package: named below, or not ours
            where, text = _entry_points_file(dist)
            if "[mgfrec" in text.lower():
                raise RegistryError(
                    f"{where}: cannot be read ({type(exc).__name__}: {exc}); the mgfrec plugins of "
                    f"{dist_origin(dist)} are not loaded: reinstall or remove that package"
                ) from None
            continue
        for ep in points:
            if ep.group in groups:
                found[groups[ep.group]].append(
                    Entry(kind=groups[ep.group], name=ep.name, target=ep.value, origin=dist_origin(dist))
                )
    return [entry for kind in KINDS for entry in found[kind]]


def unreadable_entry_points() -> list[str]:
    """The ``entry_points.txt`` files of installed packages that cannot be parsed, by path: what makes pydantic's
    plugin discovery (which reads every package's) fail (``mgfrec.cli.main`` says so in one line)."""
    bad = []
    for dist in metadata.distributions():
        try:
            list(dist.entry_points)
        except Exception:  # noqa: BLE001 - whatever the parser raises, the file is what to name
            bad.append(_entry_points_file(dist)[0])
    return bad


def _normalized(dist: Any) -> str:
    try:
        name = dist.metadata["Name"] or ""
    except Exception:  # noqa: BLE001 - a package without readable METADATA is one of its own
        name = ""
    return re.sub(r"[-_.]+", "-", name).lower() or str(getattr(dist, "_path", id(dist)))


def _entry_points_file(dist: Any) -> tuple[str, str]:
    """Where a distribution's ``entry_points.txt`` is (its folder, else the package's name) and its text."""
    folder = getattr(dist, "_path", None)  # importlib.metadata.PathDistribution's own folder
    where = str(Path(folder) / "entry_points.txt") if folder is not None else f"{dist_origin(dist)}: entry_points.txt"
    try:
        text = dist.read_text("entry_points.txt") or ""
    except Exception:  # noqa: BLE001
        text = ""
    return where, text


@dataclass(frozen=True)
class StrayGroup:
    """Entry points a package declared under a group that looks like mgfrec's but names no kind
    (``mgfrec.grounders``, ``mgfrec_grounder``): mgfrec never reads them, and nothing else would say so."""

    group: str
    names: tuple[str, ...]
    origin: str  # distribution "name version"
    closest: str | None  # the group meant, when one is close: "mgfrec.grounder"
    unclosed: bool = False  # a header line without its closing bracket: everything under it is dropped unread

    def describe(self) -> str:
        kinds = ", ".join(KINDS)
        meant = f"the group is '{self.closest}'" if self.closest else f"groups are mgfrec.<kind>: {kinds}"
        if self.unclosed:
            return (
                f"{self.origin} declares {', '.join(self.names)} in its entry_points.txt under the line "
                f"'{self.group}', which is no section header (a header is [group], closed), so nothing under it is "
                f"read; {meant}"
            )
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
    unclosed: list[tuple[str, list[str], str]] = []
    for dist in metadata.distributions():
        try:
            origin = dist_origin(dist)
            points = list(dist.entry_points)
        except Exception:  # noqa: BLE001 - another package's damaged metadata is not this check's to report
            continue
        for ep in points:
            if ep.group in known or not ep.group.strip().lower().startswith("mgfrec"):
                continue
            names = found.setdefault((ep.group, origin), [])
            if ep.name not in names:
                names.append(ep.name)
        unclosed.extend((line, names, origin) for line, names in _unclosed_headers(_entry_points_file(dist)[1]))
    stray = []
    for (group, origin), names in sorted(found.items()):
        stray.append(StrayGroup(group, tuple(sorted(names)), origin, _closest(group, known)))
    for line, names, origin in unclosed:
        stray.append(StrayGroup(line, tuple(sorted(set(names))), origin, _closest(line, known), unclosed=True))
    return stray


def _closest(group: str, known: list[str]) -> str | None:
    normal = group.strip(" \t[]").lower().replace("_", ".").replace("-", ".")
    close = difflib.get_close_matches(normal, known, n=1, cutoff=0.75)
    return close[0] if close else None


def _unclosed_headers(text: str) -> list[tuple[str, list[str]]]:
    """``[mgfrec.user_agent`` lines (no closing bracket) and the names declared under each. importlib.metadata
    reads such a line as a value; before any good header it drops it and every entry point under it without a
    word (after one, the file fails to parse and :func:`installed_entries` names it)."""
    found: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            if not line.endswith("]") and line[1:].strip().lower().startswith("mgfrec"):
                found.append((line, []))
                continue
            if line.endswith("]"):
                found.append(("", []))  # a good header ends the unclosed one's names
                continue
        if found and found[-1][0] and "=" in line and not line.startswith(("#", ";")):
            found[-1][1].append(line.split("=", 1)[0].strip())
    return [(line, names) for line, names in found if line]


def _add(table: dict[str, dict[str, Entry]], entry: Entry) -> None:
    existing = table[entry.kind].get(entry.name)
    if existing is not None and existing.target != entry.target:
        builtin = [e for e in (existing, entry) if not e.third_party]
        other = (entry if builtin[0] is existing else existing) if builtin else None
        # "uninstall one of them" read as uninstalling mgfrec when the other was a built-in (review s39)
        if other is not None and other.origin.startswith("python:"):  # registry().add: nothing to uninstall
            remedy = "A plugin cannot take a built-in's name: register it under another name"
        elif other is not None:
            remedy = (
                "A plugin cannot take a built-in's name: rename its entry point, or uninstall "
                f"{other.origin.split(' ')[0]}"
            )
        else:
            remedy = "Uninstall one of them or rename the plugin's entry point"
        raise RegistryError(
            f"duplicate {entry.kind} name '{entry.name}': provided by {existing.origin} ({existing.target}) "
            f"and by {entry.origin} ({entry.target}). {remedy}."
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


def recorded_otherwise(kind: str, name: str, target: str, origin: str) -> str | None:
    """When a run read inside :func:`recorded_plugins` was made with ``kind`` ``name`` as another class than the one
    registered here under that name (``target``, from ``origin``): one line saying both. Another package claiming the
    name evaluated the run with its own model without a word, and wrote its results as the run's (review s31)."""
    for where, plugins in reversed(_RECORDED.get()):
        for plugin in plugins:
            if plugin.get("kind") != kind or plugin.get("name") != name:
                continue
            recorded = plugin.get("target")
            if not isinstance(recorded, str) or not recorded or recorded == target:
                return None
            package = str(plugin.get("package") or "an unknown package")
            return (
                f"{where} was made with {kind} '{name}' = {recorded} from {package}, but '{name}' here is {target} "
                f"from {origin}; install the package it was made with, or fit the run again"
            )
    return None


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

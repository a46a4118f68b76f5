"""Shared CLI plumbing: config loading from --config/--set, clean error exits, JSON output."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from mgfrec.text.terminal import terminal_safe  # noqa: F401 (the CLI modules import it from here)
from mgfrec.validation import is_blank, not_utf8_at


class SafeConsole(Console):
    """A console whose plain strings are shown, never acted on (:func:`terminal_safe`): a run folder named with an
    escape sequence recoloured the terminal in ``fitting pop on DATA -> OUT`` (review s42), and so are a table's
    title and caption; a table's cells and ``Text`` are made safe where they are built."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        for o in objects:  # a table's title and caption name folders (`data prepare`'s, `evaluate`'s): text too
            for part in ("title", "caption"):
                if isinstance(getattr(o, part, None), str):
                    setattr(o, part, terminal_safe(getattr(o, part)))
        super().print(*(terminal_safe(o) if isinstance(o, str) else o for o in objects), **kwargs)


# markup=False: titles, paths and messages are data and are printed as they are ("Thriller [explicit]",
# "mgfrec[serve]"); styled text is built with rich.text.Text instead.
console = SafeConsole(stderr=True, markup=False)  # progress, messages, errors
out = SafeConsole(markup=False)  # tables meant as the command's output
T = TypeVar("T")

CONFIG_HELP = "YAML config file (default: built-in defaults; see configs/)."
SAMPLE_ID_HELP = "With --split: which of the user's samples of the split (a sample_id of ranks_<split>.csv)."
SET_HELP = "Override any config field, e.g. --set agent.max_groundings=3 (repeatable)."


def typer_click(module: str) -> Any:
    """A module (``exceptions``, ``globals``) of the click that Typer runs on: Typer >= 0.29 vendors its own."""
    import importlib

    package = typer.BadParameter.__module__.rpartition(".")[0]
    return importlib.import_module(f"{package}.{module}")


def override_section(text: str) -> str:
    """The config section a ``--set section.field=value`` override sets (parsed as the config loader parses it)."""
    from mgfrec.config.load import parse_override

    return next(iter(parse_override(text)))


RUN_DECIDES = (
    "each run's own config.yaml decides the rest (to evaluate a run under other settings: mgfrec derive RUN OUT "
    "--set ...)"
)
"""How the notes of ``evaluate`` and ``report`` on a ``--set`` or ``--config`` they do not read end."""


def note_unread_config(path: str | None, command: str) -> None:
    """One note on stderr naming the sections a ``--config`` file sets besides ``eval``, which ``command`` (evaluate,
    report) does not read: each run's own config.yaml decides them, so the file's agent.* or user_agent.* changed
    nothing, silently."""
    if not path:
        return
    from pathlib import Path

    from mgfrec.config.load import load_yaml

    own = load_yaml(Path(path).read_text(encoding="utf-8"))  # the file's own sections: its base: parent's are not
    unread = sorted(str(s) for s in own if s not in ("eval", "base")) if isinstance(own, dict) else []
    if unread:
        console.print(
            f"note: --config {path} sets {', '.join(f'{s}.*' for s in unread)}: {command} reads only eval.* from it; "
            + RUN_DECIDES,
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def secret_sets(sets: Sequence[str], run_dirs: Sequence[str | Path]) -> list[str]:
    """The ``--set`` overrides outside ``eval`` that give again a value one of ``run_dirs`` recorded as
    ``<redacted>`` in its ``config.yaml`` (a ``user_agent.base_url`` with a password): ``evaluate`` and ``report``
    read them for that secret alone (``evaluate_run``'s ``secret_sets``). Its advice to evaluate such a run through
    ``derive`` led nowhere, the derived run recording the URL redacted again (review s30)."""
    import yaml

    from mgfrec.validation import REDACTED

    recorded = []
    for run_dir in run_dirs:
        try:
            recorded.append(yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # no config (a baseline's is read where it is scored) or a damaged one, named there
    found = []
    for text in sets:
        if override_section(text) == "eval":
            continue
        path = text.partition("=")[0].strip().split(".")
        for node in recorded:
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None and REDACTED in json.dumps(node, default=str):
                found.append(text)
                break
    return found


def note_unread_sets(sets: list[str], command: str, read: Sequence[str] = ()) -> None:
    """One note on stderr naming the ``--set`` overrides ``command`` does not read (those outside ``eval``, but
    for ``read``: the :func:`secret_sets`): a run is evaluated under its own ``config.yaml``, so they would change
    nothing, silently."""
    from mgfrec.config.load import redacted_override

    unread = [redacted_override(s) for s in sets if override_section(s) != "eval" and s not in read]
    if unread:
        console.print(
            f"note: --set {' '.join(unread)}: {command} reads only eval.* fields; " + RUN_DECIDES,
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


DATA_NOT_READ = "it reads the prepared data set given as --data (prepare another with 'mgfrec data prepare ... --set')"

TRAINED_RUN_SECTIONS = ("data", "trainer", "grpo", "policy.model", "retriever")
"""What ``recommend``, ``serve`` and ``chat`` never read of a run's config: its data set is the one it was made on,
training is over, the policy is the run's own and so is its recall model (``--set policy.model=...`` or
``retriever.model=pop`` answered from the run's own without a word; review s31). ``retriever.recall_size`` is
read (:data:`TRAINED_RUN_READ`)."""
TRAINED_RUN_READ = ("retriever.recall_size",)
GREEDY_NOT_READ = ("rollout.temperature", "rollout.top_p")
"""What a greedy rollout (``chat``; ``recommend`` without ``--sample``) never reads: it draws nothing, and
``--set rollout.temperature=1.5`` gave the same turns without a word (review s35)."""
TRAINED_RUN_NOT_READ = (
    "the run's data set, policy, recall model and training are used as they were made (train another run to change "
    "them)"
)


def note_unread_fields(
    sets: Sequence[str], command: str, unread: Sequence[str], why: str, read: Sequence[str] = ()
) -> None:
    """One note on stderr naming the ``--set`` overrides of sections or fields ``command`` never reads (``unread``:
    ``data``, ``grpo``, ``policy.model``), but the fields in ``read`` (``trainer.accelerator``). They were accepted
    and recorded in the run's ``config.yaml`` as if they had been used."""

    def under(key: str, names: Sequence[str]) -> bool:
        return any(key == n or key.startswith(n + ".") for n in names)

    def leaves(text: str) -> list[str]:  # a section given whole (policy={model: x}) is judged field by field
        from mgfrec.config.load import ConfigError, flat_fields, parse_override

        try:
            return list(flat_fields(parse_override(text)))
        except ConfigError:
            return [text.partition("=")[0].strip()]  # refused where the config is read, with its own line

    hit = [text for text in sets if any(under(key, unread) and not under(key, read) for key in leaves(text))]
    besides = f" (but {', '.join(read)})" if read else ""
    shown = ", ".join(u if "." in u else f"{u}.*" for u in unread)
    _note_sets(hit, f"{command} does not read {shown}{besides}; {why}")


def unused_recall_sets(sets: Sequence[str], source: str) -> list[str]:
    """``sets`` without the ``--set`` overrides of ``retriever.model`` and ``retriever.options`` given beside a
    recall run (``source``: ``--init RUN's recall run``, ``--recall-run RUN``), with one note on stderr naming
    them: the recall lists are that run's, and the run's ``config.yaml`` records its model and options. They are
    left out, not checked: the options of the recall run's model were refused against the config's model."""

    def unused(text: str) -> bool:
        key = text.partition("=")[0].strip()
        return key == "retriever.model" or key == "retriever.options" or key.startswith("retriever.options.")

    _note_sets(
        [t for t in sets if unused(t)],
        f"not used; the recall lists come from {source}, and config.yaml records its model and options",
    )
    return [t for t in sets if not unused(t)]


def note_fields(sets: Sequence[str], fields: Sequence[str], said: str) -> None:
    """One note on stderr naming the ``--set`` overrides of ``fields``, then ``said``: a field the command takes
    into config.yaml but does not read."""
    _note_sets([text for text in sets if text.partition("=")[0].strip() in fields], said)


def _note_sets(hit: Sequence[str], said: str) -> None:
    """The one note line of the ``--set`` overrides ``hit`` (none: nothing), each shown redacted (a URL's
    password given as ``data.path`` is not echoed), then ``said``."""
    if hit:
        from mgfrec.config.load import redacted_override

        shown = " ".join(redacted_override(t) for t in hit)
        console.print(f"note: --set {shown}: {said}", highlight=False, markup=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected errors (bad input, bad config, unknown component) into a message and exit code 2; a failed
    allocation (:func:`out_of_memory`) into one line and exit code 1."""
    from mgfrec.config.load import ConfigError
    from mgfrec.registry import MissingExtraError, RegistryError, error_message, plugin_failure
    from mgfrec.user_agents.base import UserAgentError

    try:
        yield
    except (ConfigError, RegistryError, UserAgentError, MissingExtraError, ValueError, KeyError, OSError) as exc:
        # Only the message is printed, never the chain: a chained SDK error may quote request headers.
        plugin = None if isinstance(exc, RegistryError) else plugin_failure(exc)  # registry errors name it already
        print_error(plugin or error_message(exc))
        raise typer.Exit(2) from None
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        # a traceback ending "DefaultCPUAllocator: can't allocate memory: you tried to allocate 549755813632 bytes"
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        print_error(
            f"out of memory ({' '.join(first.split())}); a smaller batch, model or --history-length "
            "(a data set's window far above its histories' lengths sizes sequence models by it) needs less"
        )
        raise typer.Exit(1) from None


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed: Python's MemoryError, torch's on the CPU (a RuntimeError) or a
    GPU's (``torch.OutOfMemoryError``, a RuntimeError too)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def print_error(message: str) -> None:
    """``error: message`` on stderr, one line, the message printed as it is (controls shown as escapes), a URL's
    credentials in it redacted (:func:`~mgfrec.config.redaction.scrub_urls`), and so is every key the environment
    holds (:func:`~mgfrec.config.redaction.scrub_env_secrets`: a plugin's error may quote one)."""
    from mgfrec.config.redaction import scrub_secrets

    # a newline in a value given (--split $'te\nst') split the line: its second half did not start with "error:"
    line = terminal_safe(scrub_secrets(message)).replace("\n", "\\n")
    console.print(Text.assemble(("error:", "bold red"), " ", line), highlight=False, soft_wrap=True)


def finite(value: float | None) -> float | None:
    """Typer callback of every float option: ``inf`` and ``nan`` are refused, naming the flag (``--recall-prior
    inf`` was taken as given, and reached the agent's prior unchecked)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value}: give a finite number")
    return value


def finite_in(low: float | None = None, high: float | None = None) -> Callable[[float | None], float | None]:
    """Typer callback of a float option with bounds, in place of Click's ``min=``/``max=``: Click checks the range
    first, and every comparison with ``nan`` is false, so ``--feedback-timeout nan`` was refused as "less than or
    equal to 604800". This says "finite" first, then the bound. Say the bounds in the option's help, in words:
    Typer reads ``[x>=0]`` as rich markup and drops it."""

    def check(value: float | None) -> float | None:
        value = finite(value)
        if value is not None and low is not None and value < low:
            raise typer.BadParameter(f"{value}: give a number >= {low:g}")
        if value is not None and high is not None and value > high:
            raise typer.BadParameter(f"{value}: give a number <= {high:g}")
        return value

    return check


def output_folder(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Typer callback of every ``--out`` (and ``derive``'s ``OUT``), each naming a folder: a path that is a file, or
    lies under one, is refused naming it before any work. It was "error: o/afile: File exists" once the whole input
    had been read, or a whole evaluation later."""
    if value is None:
        return None
    try:
        blocked = next((p for p in (value, *value.parents) if p.exists() and not p.is_dir()), None)
        # a link to nothing passed (exists() follows it), then failed as "lnk: File exists" (review s42)
        dangling = next((p for p in (value, *value.parents) if p.is_symlink() and not p.exists()), None)
    except OSError as exc:  # a folder on the path that cannot be searched: Path.exists raises on Python 3.11
        raise typer.BadParameter(f"{value}: {exc.strerror or exc}") from None
    if blocked is None and dangling is None:
        return value
    if blocked is not None:
        where = f"{value} is a file" if blocked == value else f"{value}: {blocked} is a file"
    else:
        link = f"{dangling} is a link to {dangling.readlink()}, which leads nowhere (missing, or a loop of links)"
        where = link if dangling == value else f"{value}: {link}"
    name = (
        next((o for o in param.opts if o.startswith("--")), None)
        or getattr(param, "metavar", None)
        or param.name.upper()
    )
    raise typer.BadParameter(f"{where}; {name} names a folder")


def feedback_timeout_option(help_text: str) -> Any:
    """``--feedback-timeout`` of ``serve`` and ``chat``: seconds to wait for a person, at most a week."""
    from mgfrec.user_agents.human import MAX_TIMEOUT_S

    return typer.Option(
        600.0,
        "--feedback-timeout",
        callback=finite_in(0.001, MAX_TIMEOUT_S),
        help=help_text,
    )


HISTORY_HELP = "Titles separated by ';', oldest first ('\\;' for a ';' inside a title)."
_SEPARATOR = re.compile(r"(?<!\\);")


def check_split(split: str | None) -> None:
    """``--split`` named in one line when it is not a split (before any model loads; the config's own error
    would name ``eval.split`` over two lines)."""
    from mgfrec.data.protocol import SPLITS

    if split is not None and split not in SPLITS:
        raise ValueError(f"--split {split}: unknown split; splits are {', '.join(SPLITS)}")


def check_user_id(user: str | None) -> None:
    """``--user`` named in one line when it holds bytes that are not UTF-8 (a Latin-1 terminal's): it was "'utf-8'
    codec can't encode ...", naming no flag, and in chat only once the model had loaded."""
    if user is not None and (at := not_utf8_at(user)) is not None:
        raise ValueError(f"--user {user!r}: not valid UTF-8 text (character {at})")


def check_history(history: str | None) -> None:
    """``--history`` without a title (``';'``, ``' ; ;'``) refused in one line before the run loads: it was refused
    only once the model had loaded, 15-20 s later (the line ``typed_history`` gives)."""
    if history is not None and all(is_blank(t) for t in split_titles(history)):
        raise ValueError("--history: give at least one title, separated by ';'")
    if history is not None and (at := not_utf8_at(history)) is not None:  # named "title", once the model had loaded
        raise ValueError(f"--history: not valid UTF-8 text (character {at}); give it as UTF-8")


def split_titles(text: str) -> list[str]:
    """``--history`` as titles: split at each ``;`` that is not written ``\\;`` (a title's own semicolon)."""
    return [part.replace("\\;", ";") for part in _SEPARATOR.split(text)]


def run(fn: Callable[[], T]) -> T:
    """``fn()`` with clean errors. Anything printed to stdout while it works (DeepSpeed and other libraries
    print there) goes to stderr: a command's stdout is only what it prints afterwards (its table or --json).
    Long stages show their progress on stderr (:mod:`mgfrec.progress`). SIGTERM stops ``fn`` as Ctrl-C does
    (:mod:`mgfrec.signals`): its clean-ups run, and it says "stopped by SIGTERM", exit 143."""
    from mgfrec import progress
    from mgfrec.cli.quiet import library_output
    from mgfrec.rl.peers import PeerFailed
    from mgfrec.signals import sigterm_stops

    try:
        with sigterm_stops(), user_errors(), redirect_stdout(sys.stderr), progress.reporting(), library_output():
            return fn()
    except PeerFailed as exc:  # another process of a multi-process fit failed and printed its error
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as stop:
        stopped(stop)


def stopped(stop: KeyboardInterrupt) -> NoReturn:
    """Say how a command was stopped and exit with the signal's code: Ctrl-C 130, SIGTERM 143
    (:class:`mgfrec.signals.Terminated`)."""
    name = getattr(stop, "signal_name", None)
    console.print(f"stopped by {name}" if name else "stopped by the user (Ctrl-C)", highlight=False)
    raise typer.Exit(getattr(stop, "exit_code", 130)) from None


def top_title(p: Mapping[str, Any]) -> str:
    """The title of a recommendation's top-k table: the answer it ranks from, or the baseline's scorer."""
    if p.get("kind") == "baseline" or p.get("answer") is None:
        return f"top {len(p['top'])} (ranked by the run's scorer)"
    return f"top {len(p['top'])} for the answer: {p['answer']}"


def note_short_top(p: Mapping[str, Any], top_k: int, num_items: int) -> None:
    """One note when a ranking shows fewer items than ``--top-k`` asked for: the catalogue holds fewer, or the
    history (left out of the ranking) took the rest. It returned fewer rows without a word (serve refuses a k above
    the catalogue's size; recommend and chat show what there is, as before)."""
    shown = len(p["top"])
    if not shown or shown >= top_k:  # no answer, no ranking: said already
        return
    why = f"the catalogue holds {num_items}" + ("" if shown == num_items else ", less the history, which is left out")
    typer.echo(f"note: --top-k {top_k}: {shown} items ranked, every one there is ({why})", err=True)


def shown_score(score: float) -> str:
    """A ranked item's score in a table, four decimals; a negative zero (the answered item's -0.0 distance, or a
    score that rounds to it) is shown as 0.0000."""
    text = f"{score:.4f}"
    return "0.0000" if text == "-0.0000" else text


def print_json(obj: Any) -> None:
    """``--json`` output: one strict JSON object (a NaN or infinite number is written as null)."""
    from mgfrec.runs import json_ready

    sys.stdout.write(json.dumps(json_ready(obj), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def note_other_samples(ds, split: str, user: str | None, chosen: int | None) -> None:
    """Say so when the user has several samples in the split: the latest was taken, and --sample-id picks another."""
    frame = ds.split(split)
    ids = frame.loc[frame["user_id"].astype(str) == str(user), "sample_id"].tolist()
    if len(ids) > 1:
        shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
        typer.echo(
            f"note: user {terminal_safe(str(user))} has {len(ids)} samples in split '{split}' ({shown}); this is "
            f"{chosen}, the latest (--sample-id picks another)",
            err=True,
        )


def note_typed_history(typed: list[str] | None, matched: list[str]) -> None:
    """One note naming the typed history titles the catalogue does not hold, each with the item it was read as
    (its nearest): a mistyped title silently became another item, and the recommendation another history's."""
    if typed is None:
        return
    from mgfrec.recommendation import history_titles_read

    titles = history_titles_read(typed)
    if len(matched) < len(titles):  # the latest of the data set's window were read (Recommender.history_of)
        typer.echo(
            f"note: {len(titles)} titles typed; the latest {len(matched)} were read, the history window the run's "
            "data set was prepared with (--history-length of mgfrec data prepare)",
            err=True,
        )
        titles = titles[len(titles) - len(matched) :]
    swapped = [(t, m) for t, m in zip(titles, matched, strict=False) if t != m]
    if swapped:
        shown = "; ".join(f"{t[:60]!r} -> {m[:60]!r}" for t, m in swapped[:5]) + ("; ..." if len(swapped) > 5 else "")
        typer.echo(
            terminal_safe(
                f"note: {len(swapped)} typed title(s) not in the catalogue, read as their nearest item: {shown}"
            ),
            err=True,
        )


def __getattr__(name: str) -> Any:
    """``load`` and ``check_ablation`` moved to :mod:`mgfrec.cli.flags`; they are importable from here as before
    (lazily: flags imports this module)."""
    if name in ("load", "check_ablation"):
        from mgfrec.cli import flags

        return getattr(flags, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

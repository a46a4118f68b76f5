"""Prompts as versioned template files: the agent's system prompt and first message, the user agent's prompt.

Shipped templates live in ``mgfrec/text/templates/`` and are never edited in place; a changed prompt gets a
new version file (``*.v2.txt``) so that old runs stay reproducible.

* ``recommendation_agent.v1.txt``: the paper's Table 2, word for word; the system prompt. No placeholders.
  Replace it with ``agent.template: path/to/file.txt``.
* ``first_prompt.v1.txt``: the user message. ``{history}`` (required): the user's history titles, oldest
  first, one numbered line each; ``{recall}`` (optional): the recall model's items (30 in the paper).
* ``user_agent.v1.txt``: the paper's Table 1, word for word, with its three slots named ``{history}``,
  ``{grounded_title}`` and ``{item_list}`` (the field names of ``FeedbackRequest``; lists as one-line JSON
  lists, the title as a JSON string). Replace it with
  ``user_agent.prompt: path/to/file.txt``.

Template rules: ``{name}`` is a placeholder; every placeholder a template uses must be one its kind knows,
and required ones must be present (an error names the file). Other braces are literal text. Values are
substituted in one pass, so a value is never itself read as a template. **A paragraph (text between blank
lines) holding a placeholder whose value is ``None`` is left out**: that is how the recall block disappears
when recall is off (``agent.use_recall: false`` / ``--no-recall``) or the recall list is empty. A file's
trailing newlines are dropped and CRLF line ends read as LF.

Every title and the grounded title are neutralized (:mod:`mgfrec.text.neutralize`) before substitution;
pass ``reserved=reserved_strings(tokenizer)`` so that no title can spell one of the tokenizer's special
tokens either. Templates themselves are trusted.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mgfrec.config.schema import AgentConfig, MGFRecConfig
from mgfrec.text.neutralize import neutralize_title
from mgfrec.validation import refuse_one_string

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
_PARAGRAPH_BREAK = re.compile(r"(\n[ \t]*\n\s*)")

# kind -> (default file, required placeholders, optional placeholders)
KINDS: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    "recommendation_agent": ("recommendation_agent.v1.txt", frozenset(), frozenset()),
    "first_prompt": ("first_prompt.v1.txt", frozenset({"history"}), frozenset({"recall"})),
    "user_agent": ("user_agent.v1.txt", frozenset({"history", "grounded_title", "item_list"}), frozenset()),
}


@dataclass(frozen=True)
class Template:
    """A loaded, validated template; ``source`` names the file (or ``builtin:<file>``) for error messages."""

    kind: str
    text: str
    source: str

    def render(self, **values: str | None) -> str:
        """Substitute ``values``; a paragraph holding a placeholder whose value is ``None`` is dropped, unless it
        also holds a required one (``{history}`` beside ``{recall}``): that paragraph is kept, the missing value
        left empty. Dropped whole, it took the user's history with the recall list (recall off, or an empty list),
        and the policy was trained and evaluated without its input."""
        used = set(_PLACEHOLDER.findall(self.text))
        missing = used - values.keys()
        if missing:
            raise ValueError(f"{self.source}: no value given for placeholder(s) {', '.join(sorted(missing))}")
        required = KINDS[self.kind][1] if self.kind in KINDS else frozenset()
        parts = _PARAGRAPH_BREAK.split(self.text)  # paragraph, break, paragraph, ...
        kept: list[str] = []
        for i in range(0, len(parts), 2):
            names = set(_PLACEHOLDER.findall(parts[i]))
            if any(values[n] is None for n in names) and not names & required:
                continue
            if kept:
                kept.append(parts[i - 1])
            kept.append(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)] or ""), parts[i]))
        return "".join(kept)


def load_template(kind: str, path: str | Path | None = None, *, field: str = "") -> Template:
    """The template of ``kind`` (see ``KINDS``) from ``path``, or the shipped default when ``path`` is None.

    ``field`` names the config field the path came from, for error messages (e.g. ``agent.template``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown template kind {kind!r}; known: {', '.join(KINDS)}")
    default, required, optional = KINDS[kind]
    where = f" (from {field})" if field else ""
    if path is None:
        text, source = _builtin(default), f"builtin:{default}"
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"{file}{where}: template file not found; give a path to a UTF-8 text file")
        try:
            text, source = file.read_text("utf-8"), str(file)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{file}{where}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    text = text.replace("\r\n", "\n").rstrip("\n")
    used = set(_PLACEHOLDER.findall(text))
    unknown, absent = used - required - optional, required - used
    if unknown:
        known = ", ".join(f"{{{n}}}" for n in sorted(required | optional)) or "none"
        raise ValueError(
            f"{source}{where}: unknown placeholder(s) {', '.join(f'{{{n}}}' for n in sorted(unknown))}; "
            f"a {kind} template knows {known}"
        )
    if absent:
        raise ValueError(
            f"{source}{where}: a {kind} template must contain {', '.join(f'{{{n}}}' for n in sorted(absent))}"
        )
    return Template(kind, text, source)


RUN_PROMPTS = "prompts"
"""The folder of a trained run that holds copies of the template files it was trained with."""
PROMPT_FILES = {
    "agent.template": "recommendation_agent",
    "agent.first_prompt": "first_prompt",
    "user_agent.prompt": "user_agent",
}
"""Config fields (dotted) that name a template file, and the kind of each: a run keeps a copy of each."""
PROMPT_FIELDS = {k.removeprefix("agent."): v for k, v in PROMPT_FILES.items() if k.startswith("agent.")}
"""``agent`` fields that name a template file, and the kind of each."""


def _files_of(section: Any, prefix: str) -> Iterable[tuple[str, str, str, str | None]]:
    """``(dotted, name, kind, path)`` of each :data:`PROMPT_FILES` field of ``section`` (the config's ``prefix``
    section)."""
    for dotted, kind in PROMPT_FILES.items():
        owner, _, name = dotted.partition(".")
        if owner == prefix:
            yield dotted, name, kind, getattr(section, name)


def _keep(section: Any, prefix: str, run_dir: str | Path) -> Any:
    """``section`` (``agent`` or ``user_agent``) with each template file it names copied into
    ``RUN/prompts/<kind>.txt`` and named there (absolute)."""
    folder = Path(run_dir).resolve() / RUN_PROMPTS
    update: dict[str, str] = {}
    for dotted, name, kind, path in _files_of(section, prefix):
        if path is None:
            continue
        if prefix == "user_agent":
            # read by the backends that use it (remote, hf-chat; a plugin may have its own placeholders), never by
            # simulated or none: kept as it is when there is a file, and a path with no file is left for the
            # backend to name (a fit must not fail over a file its user agent never reads)
            if not Path(path).expanduser().is_file():
                continue
        else:
            load_template(kind, path, field=dotted)  # a file that is gone or invalid is named as such
        source, copy = Path(path).expanduser().resolve(), folder / f"{kind}.txt"
        if source != copy:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
        update[name] = str(copy)
    return section.model_copy(update=update) if update else section


def _of_run(section: Any, prefix: str, run_dir: str | Path) -> Any:
    update: dict[str, str] = {}
    for _, name, kind, path in _files_of(section, prefix):
        copy = Path(run_dir) / RUN_PROMPTS / f"{kind}.txt"
        if path is None or not copy.is_file():
            continue
        named = Path(path).expanduser()
        if not named.is_file() or _another_runs_copy(named, kind, copy):
            update[name] = str(copy.resolve())
    return section.model_copy(update=update) if update else section


def _another_runs_copy(named: Path, kind: str, copy: Path) -> bool:
    """Whether ``named`` is another run folder's copy of this template (``OTHER/prompts/<kind>.txt``): a run copied
    with ``cp -r`` records the original's copy, and a later run made in the original's folder changed the copy's
    prompt without a word (review s33). The run's own copy is the one it was trained with."""
    resolved = named.resolve()
    return resolved.name == f"{kind}.txt" and resolved.parent.name == RUN_PROMPTS and resolved != copy.resolve()


def keep_run_prompts(cfg: MGFRecConfig, run_dir: str | Path) -> MGFRecConfig:
    """``cfg`` with each template file it names (:data:`PROMPT_FILES`) copied into ``RUN/prompts/<kind>.txt`` and
    named there (absolute): evaluating the run later prompts the policy, and the user agent, as in training, even
    after the user's file was edited, moved or deleted. The shipped defaults (None) stay None."""
    return cfg.model_copy(
        update={"agent": _keep(cfg.agent, "agent", run_dir), "user_agent": _keep(cfg.user_agent, "user_agent", run_dir)}
    )


def run_prompts(cfg: MGFRecConfig, run_dir: str | Path) -> MGFRecConfig:
    """A run's config as a command that loads the run uses it: a template file that is gone (the run was moved
    with its ``prompts/`` folder) is read from the run's own copy."""
    return cfg.model_copy(
        update={
            "agent": _of_run(cfg.agent, "agent", run_dir),
            "user_agent": _of_run(cfg.user_agent, "user_agent", run_dir),
        }
    )


def keep_prompts(agent: AgentConfig, run_dir: str | Path) -> AgentConfig:
    """The ``agent`` part of :func:`keep_run_prompts`."""
    return _keep(agent, "agent", run_dir)


def prompts_of_run(agent: AgentConfig, run_dir: str | Path) -> AgentConfig:
    """The ``agent`` part of :func:`run_prompts`."""
    return _of_run(agent, "agent", run_dir)


def same_prompt(a: str | None, b: str | None) -> bool:
    """Whether two values of a :data:`PROMPT_FILES` field give the same text (a run's copy and the
    user's file it was copied from)."""
    if a is None or b is None:
        return a == b
    files = [Path(a).expanduser(), Path(b).expanduser()]
    return all(f.is_file() for f in files) and files[0].read_bytes() == files[1].read_bytes()


@cache
def _builtin(name: str) -> str:
    # Read once per process: the user agent's prompt is built for every grounding.
    return resources.files("mgfrec.text").joinpath("templates", name).read_text("utf-8")


def numbered(titles: Iterable[Any], reserved: Iterable[str] = ()) -> str:
    """Neutralized titles as numbered lines ``1. title``; ``(none)`` for no titles."""
    reserved = tuple(reserved)
    lines = [f"{n}. {neutralize_title(t, reserved)}" for n, t in enumerate(titles, 1)]
    return "\n".join(lines) if lines else "(none)"


def inline_list(titles: Iterable[Any], reserved: Iterable[str] = ()) -> str:
    """Neutralized titles as a one-line JSON list, unambiguous whatever commas or quotes the titles hold."""
    reserved = tuple(reserved)
    return json.dumps([neutralize_title(t, reserved) for t in titles], ensure_ascii=False)


@dataclass(frozen=True)
class AgentPrompts:
    """The recommendation agent's system prompt and first user message."""

    system: Template
    first: Template
    use_recall: bool = True
    max_history: int | None = None  # the most recent titles shown (agent.prompt_history); None: all

    @classmethod
    def from_config(cls, config: AgentConfig | None = None) -> AgentPrompts:
        """System prompt from ``agent.template`` (default Table 2), first message from ``agent.first_prompt``,
        ``use_recall`` from ``agent.use_recall``."""
        config = config or AgentConfig()
        return cls(
            load_template("recommendation_agent", config.template, field="agent.template"),
            load_template("first_prompt", config.first_prompt, field="agent.first_prompt"),
            config.use_recall,
            config.prompt_history,
        )

    def messages(
        self, history_titles: Sequence[Any], recall_titles: Sequence[Any] | None = None, *, reserved: Iterable[str] = ()
    ) -> list[dict[str, str]]:
        """``[system, user]`` chat messages; the recall paragraph only when recall is on and non-empty."""
        refuse_one_string(history_titles, "history_titles", "titles")
        refuse_one_string(recall_titles, "recall_titles", "titles")
        reserved = tuple(reserved)
        recall = numbered(recall_titles, reserved) if self.use_recall and recall_titles else None
        if self.max_history is not None:
            history_titles = list(history_titles)[-self.max_history :]
        user = self.first.render(history=numbered(history_titles, reserved), recall=recall)
        return [{"role": "system", "content": self.system.render()}, {"role": "user", "content": user}]


def build_messages(
    history_titles: Sequence[Any],
    recall_titles: Sequence[Any] | None = None,
    *,
    prompts: AgentPrompts | None = None,
    reserved: Iterable[str] = (),
) -> list[dict[str, str]]:
    """The agent's chat messages with the default (or given) templates; ``recall_titles=None``: no recall."""
    return (prompts or AgentPrompts.from_config()).messages(history_titles, recall_titles, reserved=reserved)


def user_agent_prompt(
    history_titles: Sequence[Any],
    grounded_title: Any,
    item_titles: Sequence[Any],
    *,
    template: Template | None = None,
    reserved: Iterable[str] = (),
) -> str:
    """The user agent's prompt (Table 1) for one grounding; every title neutralized. Never shows a target."""
    template = template or load_template("user_agent")
    reserved = tuple(reserved)
    return template.render(
        history=inline_list(history_titles, reserved),
        grounded_title=json.dumps(neutralize_title(grounded_title, reserved), ensure_ascii=False),
        item_list=inline_list(item_titles, reserved),
    )


def encode_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Prompt token ids: the tokenizer's chat template with the generation prompt, tokenized once.

    The chat template adds the model's own control tokens (BOS included), so no others are added.
    """
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return list(tokenizer.encode(text, add_special_tokens=False))

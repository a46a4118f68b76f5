"""``grpo.rewards`` is a list, so the dotted overrides that address every other component's options
(``--set grounding.options.nlist=64``) had no path into it: ``--set grpo.rewards.hit-at-k.options.k=5``, the path
the rewards' own errors name, was refused with advice for a mapping that led nowhere, and ``fit --reward NAME``
dropped the options a config file gave that reward (review s37). Both are read here, by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mgfrec.config.overrides import set_path
from mgfrec.config.yaml_io import ConfigError, merge


def _name(entry: Any) -> Any:
    return entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, Mapping) else None


def reward_entries(raw: Mapping[str, Any]) -> list[Any] | None:
    """The ``grpo.rewards`` list ``raw`` holds, the defaults when it holds none, None when it holds no list."""
    grpo = raw.get("grpo")
    rewards = grpo.get("rewards") if isinstance(grpo, Mapping) else None
    if rewards is None:
        from mgfrec.config.schema import GRPOConfig

        return [spec.name for spec in GRPOConfig().rewards]
    return list(rewards) if isinstance(rewards, list) else None


def keep_options(raw: Mapping[str, Any], names: list[Any]) -> list[Any]:
    """``names`` (``--reward`` flags) with the options ``raw``'s entry of the same name carries."""
    given = {_name(e): e for e in reward_entries(raw) or () if isinstance(e, Mapping) and e.get("options")}
    return [given.get(n, n) if isinstance(n, str) else n for n in names]


def named_reward_options(over: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """What an override sets inside ``grpo.rewards`` by name (``{"hit-at-k": {"options": {"k": 5}}}``), or None
    when it sets something else."""
    grpo = over.get("grpo")
    if not isinstance(grpo, Mapping) or set(grpo) != {"rewards"} or not isinstance(grpo["rewards"], Mapping):
        return None
    return grpo["rewards"] or None


def _rejoined(name: Any, sub: Any) -> tuple[Any, Any]:
    """A reward's name that holds dots (a plugin's ``top.bonus``), which the dotted override split into levels
    (``{"top": {"bonus": {"options": ...}}}``), joined again: it was refused with advice naming a reward ``top``
    (review s39)."""
    parts, node = [str(name)], sub
    while isinstance(node, Mapping) and len(node) == 1 and "options" not in node:
        key = next(iter(node))
        parts.append(str(key))
        node = node[key]
    if len(parts) > 1 and isinstance(node, Mapping) and set(node) == {"options"}:
        return ".".join(parts), node
    return name, sub


def with_reward_options(raw: dict[str, Any], named: Mapping[str, Any], shown: str) -> dict[str, Any] | None:
    """``raw`` with each named reward's options merged in; None when ``raw``'s ``grpo.rewards`` is no list (the
    usual merge then says what is wrong). ``shown``: the override as messages show it."""
    rewards = reward_entries(raw)
    if rewards is None:
        return None
    for name, sub in named.items():
        name, sub = _rejoined(name, sub)
        given = sub.get("options", ...) if isinstance(sub, Mapping) and set(sub) == {"options"} else ...
        if not (given is None or isinstance(given, Mapping)):
            raise ConfigError(f"--set {shown}: give a reward's options as grpo.rewards.{name}.options.FIELD=VALUE")
        at = [i for i, e in enumerate(rewards) if _name(e) == name]
        if not at:
            held = ", ".join(str(_name(e)) for e in rewards) or "none"
            if str(name).isdigit():  # a position, as in a list: "add it (fit --reward 0)" led nowhere (review s40)
                raise ConfigError(
                    f"--set {shown}: rewards are named, not numbered: grpo.rewards.NAME.options.FIELD=VALUE, with "
                    f"NAME one of {held}"
                )
            # "add it (fit --reward NAME)": --reward replaces the list, so following it dropped ndcg and the format
            # gate without a word (review s42)
            kept = "".join(f"--reward {_name(e)} " for e in rewards)
            raise ConfigError(
                f"--set {shown}: grpo.rewards holds no reward '{name}' (it holds {held}); add it (fit {kept}--reward "
                f"{name}: --reward replaces the list, or --set 'grpo.rewards=[..., {{name: {name}, options: "
                "{...}}]')"
            )
        for i in at:
            before = rewards[i].get("options") if isinstance(rewards[i], Mapping) else None
            # `{}` or null clears them, as for every other component (it kept the file's options; review s41)
            options = {} if not given else merge(dict(before or {}), given)
            rewards[i] = {"name": name, "options": options}
    return set_path(raw, "grpo.rewards", rewards)

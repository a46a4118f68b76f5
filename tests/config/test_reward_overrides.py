"""``mgfrec.config.reward_overrides``: a reward's options addressed by name in the ``grpo.rewards`` list."""

from __future__ import annotations

import pytest

from mgfrec.config.load import ConfigError, load_config

pytestmark = pytest.mark.reliability


def test_a_rewards_options_are_set_by_its_name_as_its_errors_name_them():
    """`--set grpo.rewards.hit-at-k.options.k=5`, the path a reward's own errors name, was refused with advice for
    a mapping ("write grpo.rewards as a mapping") that then failed as "Input should be a valid list" (review s37)."""
    cfg = load_config(None, ["grpo.rewards=[ndcg, hit-at-k, format]", "grpo.rewards.hit-at-k.options.k=5"])
    assert [(r.name, r.options) for r in cfg.grpo.rewards] == [("ndcg", {}), ("hit-at-k", {"k": 5}), ("format", {})]
    given = "grpo.rewards=[{name: hit-at-k, options: {k: 5, x: 1}}]"
    again = load_config(None, [given, "grpo.rewards.hit-at-k.options.k=3"])
    assert again.grpo.rewards[0].options == {"k": 3, "x": 1}  # merged into what it had
    # `{}` or null clears them, as for every other component: `{}` kept them, null was refused (review s41)
    for cleared in ("{}", "null"):
        emptied = load_config(None, [given, f"grpo.rewards.hit-at-k.options={cleared}"])
        assert emptied.grpo.rewards[0].options == {}, cleared
    default = load_config(None, ["grpo.rewards.format.options.penalty=-1.0"])  # the default list, by name
    assert [(r.name, r.options) for r in default.grpo.rewards] == [("ndcg", {}), ("format", {"penalty": -1.0})]
    with pytest.raises(ConfigError, match=r"grpo.rewards holds no reward 'hit-at-k' \(it holds ndcg, format\); add"):
        load_config(None, ["grpo.rewards.hit-at-k.options.k=5"])
    # "add it (fit --reward hit-at-k)": --reward replaces the list, so following it dropped ndcg and format (s42)
    with pytest.raises(
        ConfigError,
        match=r"add it \(fit --reward ndcg --reward format --reward hit-at-k: --reward "
        r"replaces the list, or",
    ):
        load_config(None, ["grpo.rewards.hit-at-k.options.k=5"])
    with pytest.raises(ConfigError, match=r"give a reward's options as grpo.rewards.ndcg.options.FIELD=VALUE"):
        load_config(None, ["grpo.rewards.ndcg.weight=2"])
    # a position, as in a list, was told "add it (fit --reward 0)" (review s40)
    with pytest.raises(ConfigError, match=r"rewards are named, not numbered: .*NAME one of ndcg, format$"):
        load_config(None, ["grpo.rewards.0.options.k=5"])


def test_a_reward_flag_keeps_the_options_the_config_file_gives_that_reward(tmp_path):
    """`fit --config rew.yaml --reward ndcg --reward hit-at-k` trained hit-at-k with k=10, the file's k=5 dropped
    without a word (review s37)."""
    path = tmp_path / "rew.yaml"
    path.write_text("grpo:\n  rewards: [ndcg, {name: hit-at-k, options: {k: 5}}]\n", encoding="utf-8")
    cfg = load_config(path, [], {"grpo.rewards": ["format", "hit-at-k"]})
    assert [(r.name, r.options) for r in cfg.grpo.rewards] == [("format", {}), ("hit-at-k", {"k": 5})]


def test_a_reward_whose_name_holds_a_dot_is_set_by_its_name():
    """A plugin's reward `top.bonus`: `--set grpo.rewards.top.bonus.options.k=0` was refused with advice naming a
    reward `top`, which no list held (review s39)."""
    cfg = load_config(None, ["grpo.rewards=[ndcg, top.bonus]", "grpo.rewards.top.bonus.options.k=0"])
    assert [(r.name, r.options) for r in cfg.grpo.rewards] == [("ndcg", {}), ("top.bonus", {"k": 0})]
    with pytest.raises(ConfigError, match=r"grpo.rewards holds no reward 'top.bonus' \(it holds ndcg, format\)"):
        load_config(None, ["grpo.rewards.top.bonus.options.k=0"])

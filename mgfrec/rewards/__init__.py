"""Rewards (kind ``reward``): what a finished trajectory earns. Chosen by name in ``grpo.rewards``."""

"""Reinforcement learning of the recommendation agent: the policy and, beside it, the GRPO objective.

``policy.py`` builds or loads the policy model and its tokenizer: small from-scratch presets
(``preset:tiny``, ``preset:small``, ``preset:tiny-minilm``) that train on a CPU, or any causal LM by hub id
or local path (the paper's Qwen/Qwen2.5-1.5B-Instruct) through the same code. Sampling from the policy lives
in :mod:`mgfrec.rollout`; this package never generates text itself.
"""

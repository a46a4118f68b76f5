"""The policy model and its log-probs, shared by generation, the BIGRec baseline and training.

* ``policy``    builds or loads the policy model and its tokenizer: small from-scratch presets
  (``preset:tiny``, ``preset:small``, ``preset:tiny-minilm``) that train on a CPU, or any causal LM by hub id
  or local path (the paper's Qwen/Qwen2.5-1.5B-Instruct) through the same code.
* ``logprobs``  the one teacher-forced definition of a token's log-prob (and entropy), which the rollout
  engines' scores and the GRPO loss both use.

Sampling from the policy lives in :mod:`mgfrec.rollout`, training it in :mod:`mgfrec.rl`; this package
neither samples nor trains.
"""

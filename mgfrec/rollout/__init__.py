"""Rollouts: sampling the policy turn by turn while the environment answers its groundings.

``base.py`` defines a ``rollout_engine`` (token-id prompts in, :class:`~mgfrec.rollout.base.Generation` with
per-token log-probs out); ``hf_engine.py`` is the transformers implementation; ``logprobs.py`` scores
sequences at the sampling temperature through the one teacher-forced definition of a token's log-prob,
:func:`mgfrec.rl.logprobs.token_logprobs`, which the GRPO loss uses too; ``loop.py`` runs the multi-turn
agent loop and produces token-exact trajectories with their action masks.
"""

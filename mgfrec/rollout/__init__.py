"""Generation: sampling token ids from the policy, with the log-probs the trainer will recompute.

``base.py`` defines a ``rollout_engine`` (token-id prompts in, :class:`~mgfrec.rollout.base.Generation` with
per-token log-probs out); ``hf_engine.py`` is the transformers implementation, ``vllm_engine.py`` the vLLM
one and ``scripted_engine.py`` replays fixed turns; ``logprobs.py`` scores sequences at the sampling
temperature through the one teacher-forced definition of a token's log-prob,
:func:`mgfrec.models.logprobs.token_logprobs`, which the GRPO loss uses too. The multi-turn agent loop that
drives an engine and produces token-exact trajectories is :mod:`mgfrec.agent.loop`.
"""

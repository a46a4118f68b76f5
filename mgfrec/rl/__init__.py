"""Training the recommendation agent: the SFT warm start, the GRPO objective and the Lightning loop around it.

The policy model and its log-probs live in :mod:`mgfrec.models` (``mgfrec.rl.policy`` and
``mgfrec.rl.logprobs`` re-export them from their old paths); sampling from the policy lives in
:mod:`mgfrec.rollout`. This package never generates text itself.
"""

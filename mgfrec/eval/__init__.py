"""Evaluation of runs: a run folder -> a stored, compared result, on the full-ranking core in :mod:`mgfrec.ranking`.

* ``runs``        run folder -> scorer -> stored result (``mgfrec evaluate``)
* ``agent_eval``  an agent run: roll the policy out on the split, rank its answers
* ``policy_eval`` the greedy validation SFT and GRPO both run
* ``report``      Table-4-style comparison of runs (``mgfrec report``)
* ``figures``     the paper's section-5 figures (PNG) from run and sweep folders

``evaluator`` (:func:`~mgfrec.ranking.evaluator.rank_targets`) is re-exported from its old path here.
"""

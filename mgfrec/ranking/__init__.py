"""Full-ranking evaluation of any scorer: the core every method (baselines, recall, the agent) is scored by.

* ``metrics``   ranks (pessimistic ties) and per-sample Hit@K / NDCG@K / ndcg_full
* ``evaluator`` scorer + split -> per-sample ranks -> :class:`~mgfrec.ranking.results.EvalResult`
* ``results``   EvalResult: means, bootstrap intervals, JSON/CSV files, rich table
* ``stats``     bootstrap intervals, paired bootstrap and exact sign test

It sits below the retrievers, which validate on it, and below :mod:`mgfrec.eval`, which turns run folders
into stored, compared results.
"""

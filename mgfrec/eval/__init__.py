"""Evaluation: one full-ranking evaluator for every method, with intervals and paired tests.

* ``metrics``   ranks (pessimistic ties) and per-sample Hit@K / NDCG@K / ndcg_full
* ``evaluator`` scorer + split -> per-sample ranks -> :class:`~mgfrec.eval.results.EvalResult`
* ``results``   EvalResult: means, bootstrap intervals, JSON/CSV files, rich table
* ``stats``     bootstrap intervals, paired bootstrap and exact sign test
* ``runs``      run folder -> scorer -> stored result (``mgfrec evaluate``)
* ``report``    Table-4-style comparison of runs (``mgfrec report``)
"""

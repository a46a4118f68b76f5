"""Experiments over many runs: ablation presets (paper Table 5) and hyperparameter sweeps (Figs. 5, 7-8).

Nothing here trains or evaluates by itself: a sweep calls :func:`mgfrec.rl.fit.run_fit` and
:func:`mgfrec.eval.runs.evaluate_run` per cell, and ablations are plain config overrides.
"""

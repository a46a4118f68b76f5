"""Evaluation: one full-ranking evaluator for every method, with intervals and paired tests."""

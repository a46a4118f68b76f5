"""Retrievers (kind ``retriever``): classical baselines and the recall model for the first prompt."""

"""Title embeddings (kind ``embedder``) and their on-disk cache."""

"""Grounding engines (kind ``grounder``): nearest real items to a title by L2 over title embeddings."""

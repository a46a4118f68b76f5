"""GRU4Rec (Hidasi et al., 2016; Tan et al.'s improvements): a GRU reads the history; its final state,
projected back to the embedding size, scores items.

Defaults follow RecBole's GRU4Rec, which the paper's baselines use: one GRU layer of 128 units, dropout
0.3 on the item embeddings, cross-entropy over all items, Xavier initialisation.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mgfrec.config.schema import RetrieverConfig
from mgfrec.retrievers.sequences import right_align
from mgfrec.retrievers.training import SequentialRetriever, TrainOptions


class GRU4RecOptions(TrainOptions):
    hidden_size: int = Field(128, ge=1, description="GRU units")
    layers: int = Field(1, ge=1, description="stacked GRU layers")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout on the item embeddings")


class GRU4RecRetriever(SequentialRetriever):
    """A Table 4 baseline."""

    name = "gru4rec"
    Options = GRU4RecOptions

    def __init__(self, num_items: int, window: int, settings: RetrieverConfig, options: GRU4RecOptions):
        super().__init__(num_items, window, settings, options)
        dim = settings.embedding_dim
        self.dropout = nn.Dropout(options.dropout)
        self.gru = nn.GRU(dim, options.hidden_size, num_layers=options.layers, batch_first=True, bias=False)
        self.dense = nn.Linear(options.hidden_size, dim)
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        for weight in self.gru.parameters():
            nn.init.xavier_uniform_(weight)
        nn.init.xavier_normal_(self.dense.weight)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        # Packed, right-aligned input: the GRU starts from a zero state at the first real item and its
        # final state is the one after the most recent item, whatever the history's length.
        aligned, lengths = right_align(seq)
        packed = pack_padded_sequence(
            self.dropout(self.item_embedding(aligned)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.gru(packed)
        return self.dense(state[-1])

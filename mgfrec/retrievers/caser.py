"""Caser (Tang & Wang, 2018): the last ``window`` item embeddings form an image; vertical and horizontal
convolutions read it, and a fully connected layer turns their features into the history's representation.

Defaults follow RecBole's Caser, which the paper's baselines use: 8 vertical and 16 horizontal filters
(heights 1..window), dropout 0.4, ReLU activations, and a window equal to the maximum sequence length (here
the data set's history length; the Caser paper used 5, set ``window: 5`` for that).

Unlike the original, there is no user embedding: a retriever scores a *history* (the agent's recall and
the evaluator know no user ids, and test users may never appear in training).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mgfrec.config.schema import RetrieverConfig
from mgfrec.retrievers.training import SequentialRetriever, TrainOptions


class CaserOptions(TrainOptions):
    window: int | None = Field(None, ge=1, description="most recent items read (L); default: the history length")
    vertical_filters: int = Field(8, ge=0, description="n_v")
    horizontal_filters: int = Field(16, ge=0, description="n_h per height 1..window")
    dropout: float = Field(0.4, ge=0, lt=1, description="dropout on the convolutions' output")


class WindowCapped(UserWarning):
    """``retriever.options.window`` above the data set's history length: Caser reads no more than a history holds.
    Its own category, so the CLI shows it as one ``warning:`` line, not Python's two with a source line."""


class CaserRetriever(SequentialRetriever):
    """A Table 4 baseline."""

    name = "caser"
    Options = CaserOptions

    def __init__(self, num_items: int, window: int, settings: RetrieverConfig, options: CaserOptions):
        super().__init__(num_items, window, settings, options)
        dim = settings.embedding_dim
        self.length = min(options.window or window, window)
        if options.window is not None and options.window > window:  # capped without a word, config.yaml said 50
            warnings.warn(
                f"retriever.options.window {options.window} is above the data set's history length {window}: Caser "
                f"reads the last {window} items (a sample's history holds no more)",
                WindowCapped,
                stacklevel=2,
            )
        if options.vertical_filters + options.horizontal_filters == 0:
            raise ValueError("retriever.options: Caser needs vertical_filters or horizontal_filters above 0")
        self.vertical = nn.Conv2d(1, options.vertical_filters, (self.length, 1)) if options.vertical_filters else None
        self.horizontal = (
            nn.ModuleList(
                nn.Conv2d(1, options.horizontal_filters, (height, dim)) for height in range(1, self.length + 1)
            )
            if options.horizontal_filters
            else nn.ModuleList()
        )
        features = options.vertical_filters * dim + options.horizontal_filters * len(self.horizontal)
        self.dropout = nn.Dropout(options.dropout)
        self.fc = nn.Linear(features, dim)
        nn.init.normal_(self.item_embedding.weight, std=1.0 / dim)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        nn.init.xavier_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        image = self.item_embedding(seq[:, -self.length :]).unsqueeze(1)  # [B, 1, length, dim]
        features = []
        if self.vertical is not None:
            features.append(self.vertical(image).flatten(1))  # [B, n_v * dim]: weighted sums of rows
        for conv in self.horizontal:
            # [B, n_h, length - height + 1] -> max over positions: the strongest match of each union pattern
            features.append(F.relu(conv(image).squeeze(3)).max(dim=2).values)
        return F.relu(self.fc(self.dropout(torch.cat(features, dim=1))))

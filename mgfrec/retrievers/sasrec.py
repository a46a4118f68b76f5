"""SASRec (Kang & McAuley, 2018): causal self-attention over the history; the last position scores items.

Defaults follow RecBole's SASRec, which the paper's baselines use: 2 blocks, 2 heads, feed-forward 256,
dropout 0.5 on hidden states and attention, GELU, post-layer-norm blocks, N(0, 0.02) initialisation.
The hidden size is ``retriever.embedding_dim`` (64). The window is the data set's history length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mgfrec.config.schema import RetrieverConfig
from mgfrec.retrievers.sequences import PAD
from mgfrec.retrievers.training import SequentialRetriever, TrainOptions


class SASRecOptions(TrainOptions):
    layers: int = Field(2, ge=1, description="self-attention blocks")
    heads: int = Field(2, ge=1, description="attention heads; must divide retriever.embedding_dim")
    inner_size: int = Field(256, ge=1, description="feed-forward width")
    hidden_dropout: float = Field(0.5, ge=0, lt=1, description="dropout on embeddings and feed-forward outputs")
    attention_dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the attention weights")
    layer_norm_eps: float = Field(1e-12, gt=0, description="epsilon of the layer norms")
    init_std: float = Field(0.02, gt=0, description="std of the normal initialisation")


class Block(nn.Module):
    """Multi-head self-attention then a feed-forward layer, each with dropout, residual and layer norm."""

    def __init__(self, dim: int, options: SASRecOptions):
        super().__init__()
        self.heads, self.attention_dropout = options.heads, options.attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=options.layer_norm_eps)
        self.ffn = nn.Sequential(nn.Linear(dim, options.inner_size), nn.GELU(), nn.Linear(options.inner_size, dim))
        self.norm2 = nn.LayerNorm(dim, eps=options.layer_norm_eps)
        self.dropout = nn.Dropout(options.hidden_dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = self.norm1(x + self.dropout(self.proj(attended.transpose(1, 2).reshape(batch, length, dim))))
        return self.norm2(x + self.dropout(self.ffn(x)))


class SASRecRetriever(SequentialRetriever):
    """The paper's recall model and a Table 4 baseline."""

    name = "sasrec"
    Options = SASRecOptions

    def __init__(self, num_items: int, window: int, settings: RetrieverConfig, options: SASRecOptions):
        super().__init__(num_items, window, settings, options)
        dim = settings.embedding_dim
        if dim % options.heads:
            raise ValueError(f"retriever.options.heads={options.heads} must divide retriever.embedding_dim={dim}")
        self.position_embedding = nn.Embedding(window, dim)
        self.norm = nn.LayerNorm(dim, eps=options.layer_norm_eps)
        self.dropout = nn.Dropout(options.hidden_dropout)
        self.blocks = nn.ModuleList(Block(dim, options) for _ in range(options.layers))
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.options.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        length = seq.shape[1]
        positions = torch.arange(length, device=seq.device)
        x = self.dropout(self.norm(self.item_embedding(seq) + self.position_embedding(positions)))
        # A query attends to earlier-or-same positions holding real items; every position also attends to
        # itself, so that a padding position (all of whose earlier keys are padding) gets no all-masked row.
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        real_key = (seq != PAD).unsqueeze(1)  # [B, 1, L] over keys
        allowed = causal & (real_key | torch.eye(length, dtype=torch.bool, device=seq.device))
        allowed = allowed.unsqueeze(1)  # [B, 1, L, L], broadcast over heads
        for block in self.blocks:
            x = block(x, allowed)
        return x[:, -1]  # left padding: the last position is the most recent item

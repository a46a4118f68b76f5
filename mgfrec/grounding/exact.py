"""The ``exact`` grounder (the default): brute-force L2 over every distinct item vector, batched in torch.

At the paper's scale (thousands to tens of thousands of items) one matrix product per batch of queries is
fast and has no build step, no training and no recall loss, so it is the default. Approximate indexes pay off
from hundreds of thousands of items (see docs/benchmarks.md).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mgfrec.devices import visible_devices
from mgfrec.grounding.ties import UniqueVectors, check_queries, finish_topk, num_candidates

_DEVICES = re.compile(r"(cpu|cuda|mps|xpu)(:\d+)?")  # torch devices that hold data (not meta)

# Query batch chosen so a [batch, N] float32 distance block stays near 256 MB.
_BLOCK_ELEMENTS = 1 << 26


def _check_device(device: str) -> None:
    """A device this machine does not have, refused in one line: only CUDA was checked, so ``mps`` or ``xpu``
    failed inside torch with a traceback when the item matrix moved there."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return
    visible = visible_devices(kind)
    if visible <= int(index or 0):
        have = f"{visible} {kind.upper()} device(s) visible" if visible else f"no {kind.upper()} device is visible"
        raise ValueError(f"grounding.options.device '{device}': {have}; use cpu")


class ExactGrounder:
    """Exact top-k by L2 distance; see :class:`mgfrec.grounding.base.Grounder`."""

    approximate = False

    class Options(BaseModel):
        """``grounding.options`` for ``exact``."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        device: str = Field("cpu", description="torch device holding the item matrix")
        batch_size: int | None = Field(None, ge=1, description="queries per matrix product (default: ~256 MB blocks)")

        @field_validator("device")
        @classmethod
        def _known_device(cls, value: str) -> str:
            """A torch traceback at build ('foo') or at the first search ('meta') was what a wrong device gave."""
            if not _DEVICES.fullmatch(value):
                raise ValueError(f"unknown device {value!r}; use cpu, cuda, cuda:N, mps or xpu")
            return value

    def __init__(self, item_embeddings: np.ndarray, options: Options | None = None):
        import torch

        self.options = options or self.Options()
        _check_device(self.options.device)
        self.unique = UniqueVectors.build(item_embeddings)
        self.num_items, self.dim = self.unique.num_items, self.unique.dim
        centre = self.unique.centre  # None for vectors near the origin (normalised ones): no shift, as before
        self._centre = None if centre is None else torch.from_numpy(centre).to(self.options.device)
        items = torch.from_numpy(self.unique.vectors).to(self.options.device)
        self._items = items if self._centre is None else items - self._centre
        self._sq_norms = (self._items * self._items).sum(dim=1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        q = check_queries(queries, self.dim, k, self.num_items)
        n_cand = num_candidates(k, self.unique)
        batch = self.options.batch_size or max(1, _BLOCK_ELEMENTS // self.unique.num_unique)
        blocks = []
        with torch.inference_mode():
            for start in range(0, q.shape[0], batch):
                block = torch.from_numpy(q[start : start + batch]).to(self._items.device)
                if self._centre is not None:
                    block = block - self._centre
                # ||q||^2 is the same for every item of a row, so it cannot change the row's order: skipped.
                partial = self._sq_norms.unsqueeze(0) - 2.0 * (block @ self._items.T)
                blocks.append(_nearest(partial, n_cand).cpu().numpy())
        candidates = np.concatenate(blocks) if blocks else np.empty((0, n_cand), dtype=np.int64)
        return finish_topk(self.unique, q, candidates, k)


def _nearest(partial: Any, n_cand: int) -> Any:
    """The ``n_cand`` columns of each row of ``partial`` with the smallest values, ties broken by the lower index.
    ``topk`` picks an arbitrary subset of values tied at its boundary: with more than the margin's worth of
    distinct vectors at one distance (one-hot vectors, all at 1.0 from the origin), the tie rule's lowest items
    were not among the candidates (items 126-130 came back for 0-4; review s30). A row crowded so is sorted
    stably instead; any other keeps topk's (cheaper) choice."""
    import torch

    if n_cand >= partial.shape[1]:  # every column: nothing is left out
        return torch.topk(partial, n_cand, dim=1, largest=False, sorted=False).indices
    # one more than needed, sorted (a sort of n_cand + 1 values): the row is crowded when the one left out ties
    # with the last one kept
    values, chosen = torch.topk(partial, n_cand + 1, dim=1, largest=False, sorted=True)
    chosen = chosen[:, :n_cand]
    crowded = (values[:, n_cand] == values[:, n_cand - 1]).nonzero().squeeze(1)
    if crowded.numel():
        chosen[crowded] = torch.sort(partial[crowded], dim=1, stable=True).indices[:, :n_cand]
    return chosen

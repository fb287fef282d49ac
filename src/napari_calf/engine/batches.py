"""Feeding batches from a slice store to the training device (part of training).

No DataLoader and no worker processes: the slice store already holds prepared slices
(in memory or memmapped), so a batch is one fancy-index away. That keeps training safe
inside a Qt process (no fork) and lean:

- CPU: index the store, convert float16 → float32.
- CUDA, store small enough: the whole store is uploaded once and batches are indexed
  on the GPU (no host work per step at all).
- CUDA, larger stores: the next batch is gathered and pinned in a helper thread while
  the GPU works on the current one, then copied asynchronously.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .slice_store import SliceStore

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Upload the whole store when it takes at most this share of the free GPU memory.
GPU_RESIDENT_SHARE = 0.3


class BatchFeeder:
    """Yield ``(images, targets)`` device tensors for lists of store indices.

    Shapes: images (B, C, H, W) float32, targets (B, 1, H, W) float32.
    """

    def __init__(self, store: SliceStore, device: torch.device, *, resident: bool | None = None):
        import torch

        self.store = store
        self.device = device
        self.cuda = device.type == "cuda"
        if resident is None:
            resident = False
            if self.cuda:
                free, _total = torch.cuda.mem_get_info(device)
                resident = store.nbytes <= GPU_RESIDENT_SHARE * free
            elif device.type != "cpu":
                resident = True  # e.g. MPS: unified memory, upload once
        self.resident = bool(resident)
        self._images = self._targets = None
        if self.resident:
            self._images = torch.from_numpy(np.ascontiguousarray(store.images)).to(device)
            self._targets = torch.from_numpy(np.ascontiguousarray(store.targets)).to(device)

    def _host(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        idx = np.sort(np.asarray(idx, dtype=np.int64))  # sorted: sequential memmap reads
        x = torch.from_numpy(np.take(self.store.images, idx, axis=0))
        y = torch.from_numpy(np.take(self.store.targets, idx, axis=0))
        if self.cuda:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).float()
        y = y.to(self.device, non_blocking=True).float().unsqueeze(1)
        return x, y

    def get(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch (synchronously)."""
        import torch

        if self.resident:
            t = torch.as_tensor(np.sort(np.asarray(idx, dtype=np.int64))).to(self.device)
            return self._finish(self._images.index_select(0, t), self._targets.index_select(0, t))
        return self._finish(*self._host(idx))

    def iter_batches(self, batches: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches in order; on CUDA without residency the next one is prepared meanwhile."""
        if self.resident or not self.cuda or len(batches) < 2:
            for idx in batches:
                yield self.get(idx)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-calf-batches") as pool:
            pending = pool.submit(self._host, batches[0])
            for i in range(len(batches)):
                x, y = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(self._host, batches[i + 1])
                yield self._finish(x, y)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled batches of one epoch: a function of (seed, epoch) only, so resume
    reproduces them. The last partial batch is dropped (a batch of one breaks
    BatchNorm); every slice still appears across epochs."""
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    bs = min(batch_size, n)
    steps = max(1, n // bs)
    return [order[i * bs : (i + 1) * bs] for i in range(steps)]

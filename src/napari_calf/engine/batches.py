"""Feeding batches from a slice store to the training device (part of training).

No DataLoader and no worker processes: the slice store already holds prepared slices
(in memory or in files on disk), so a batch is one fancy-index (or a few file reads)
away. That keeps training safe inside a Qt process (no fork) and lean:

- CPU: index the store, convert float16 → float32. An on-disk store is read row by row
  with plain file reads (:func:`~napari_calf.engine._store_io.take_rows`), never by
  touching its memmap, so an epoch over a store larger than memory leaves the process's
  resident memory where it was (the kernel's page cache holds what fits).
- CUDA, store small enough: the whole store is uploaded once, in chunks of
  ``UPLOAD_CHUNK_BYTES``, and batches are indexed on the GPU. The epoch's slice order
  goes up once per epoch, asynchronously: uploading each batch's indices with a plain
  ``.to(device)`` was a blocking copy, which waits for the GPU to finish all queued work,
  so every step stalled the host and left the GPU idle while the next step was queued.
- CUDA, larger stores: the next batch is gathered and pinned in a helper thread while
  the GPU works on the current one, then copied asynchronously.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ._store_io import take_rows
from .slice_store import SliceStore

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Upload the whole store when it takes at most this share of the free GPU memory.
GPU_RESIDENT_SHARE = 0.3
#: Host memory a resident upload goes through at a time.
UPLOAD_CHUNK_BYTES = 64 * 2**20


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
            self._images = _upload(store.images, device)
            self._targets = _upload(store.targets, device)

    def _host(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        idx = np.sort(np.asarray(idx, dtype=np.int64))  # sorted: sequential memmap reads
        x = torch.from_numpy(take_rows(self.store.images, idx))
        y = torch.from_numpy(take_rows(self.store.targets, idx))
        if self.cuda:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).float()
        y = y.to(self.device, non_blocking=True).float().unsqueeze(1)
        return x, y

    def _indices_on_device(self, idx: np.ndarray) -> torch.Tensor:
        """``idx`` (int64) on the device without a blocking copy (pinned, non-blocking)."""
        import torch

        host = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
        if self.cuda:
            host = host.pin_memory()  # the copy below may then run behind queued work
        return host.to(self.device, non_blocking=True)

    def _resident(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._finish(self._images.index_select(0, t), self._targets.index_select(0, t))

    def get(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch."""
        if self.resident:
            return self._resident(self._indices_on_device(np.sort(np.asarray(idx, dtype=np.int64))))
        return self._finish(*self._host(idx))

    def iter_batches(self, batches: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches in order; on CUDA without residency the next one is prepared meanwhile."""
        if self.resident:
            if not len(batches):
                return
            # every batch's (sorted) indices in one upload per epoch; batches are slices
            ordered = [np.sort(np.asarray(b, dtype=np.int64)) for b in batches]
            order = self._indices_on_device(np.concatenate(ordered))
            start = 0
            for b in ordered:
                yield self._resident(order[start : start + b.size])
                start += b.size
            return
        if not self.cuda or len(batches) < 2:
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


def _upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Copy an (N, ...) array to ``device`` a chunk of rows at a time.

    A memmapped store is read chunk by chunk with file reads, so the upload never holds
    more than one chunk in host memory nor maps the file into the process.
    """
    import torch

    n = array.shape[0]
    per_row = max(1, array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64)))
    step = max(1, UPLOAD_CHUNK_BYTES // per_row)
    out = torch.empty(tuple(array.shape), dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype,
                      device=device)
    for a in range(0, n, step):
        rows = take_rows(array, np.arange(a, min(a + step, n)))
        out[a : a + rows.shape[0]].copy_(torch.from_numpy(rows))
    return out


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled batches of one epoch: a function of (seed, epoch) only, so resume
    reproduces them. The last partial batch is dropped (a batch of one breaks
    BatchNorm); every slice still appears across epochs."""
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    bs = min(batch_size, n)
    steps = max(1, n // bs)
    return [order[i * bs : (i + 1) * bs] for i in range(steps)]

"""Reading and writing the on-disk slice store without mapping it into the process.

Why not simply write and read through ``numpy.memmap``: every page of a memmap the
process touches counts in its resident memory (``RssFile``). Writing a BraTS-sized
store through a memmap made the preparing process look as large as the store (1.5 GB
at 40 cases, tens of GB at 1,251), and one training epoch that fancy-indexes the
memmap does the same. Plain positional reads and writes go through the page cache,
which the kernel manages and which is not the process's memory, so the process stays
the same size whatever the number of cases. The store's files are still ordinary
``.npy`` files and :class:`~napari_calf.engine.slice_store.SliceStore` still opens them
as read-only memmaps, for anyone who wants random access.

Disk space is reserved up front (``posix_fallocate``) so that a full disk is a clear
error before any work, instead of ``SIGBUS`` when a memmap page cannot be written
back, or a failure hours into preparing.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import CalfCheckpointError

log = logging.getLogger(__name__)

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# Filesystems (and platforms) that cannot preallocate: writing still works, and a full
# disk is then reported by the write itself.
_CANNOT_PREALLOCATE = {errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOSYS", errno.EINVAL)}


def disk_full_error(folder: Path, needed: int) -> CalfCheckpointError:
    """The error for a store that does not fit: the folder, bytes needed and free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = -1
    free_text = "an unknown amount" if free < 0 else f"{free / 2**20:,.0f} MiB ({free:,} bytes)"
    return CalfCheckpointError(
        f"{folder}: not enough disk space for the slice store: it needs "
        f"{needed / 2**20:,.0f} MiB ({needed:,} bytes) and {free_text} is free. "
        "Fix: free disk space there, choose a cache folder on a larger disk "
        "(--cache-dir), or keep fewer slices (--max-slices-per-case)."
    )


class StoreWriter:
    """Write an ``(n, *row_shape)`` array into a new ``.npy`` file, row blocks at a time.

    The file is created with its header and reserved at full size on construction;
    :meth:`write` puts rows at any position with positional writes.

    Parameters
    ----------
    path : Path
        The ``.npy`` file to create.
    dtype, shape
        Of the whole array.
    folder : Path, optional
        The folder to name when the disk is full (default: the file's folder).
    needed : int, optional
        The bytes to say are needed (default: this file's size), e.g. a whole store.

    Raises
    ------
    CalfCheckpointError
        The disk lacks space for the whole array (named with folder, needed and free
        bytes), or the file cannot be written.
    """

    def __init__(self, path: Path, dtype: np.dtype | type, shape: Sequence[int], *,
                 folder: Path | None = None, needed: int | None = None) -> None:
        self.path = Path(path)
        self.folder = Path(folder) if folder is not None else self.path.parent
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        # The header (and a sparse file of the final length) via numpy's own format
        # writer; the mapping is dropped at once, before any data page is touched.
        head = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        self.offset = int(head.offset)
        del head
        self.nbytes = self.offset + self.shape[0] * self.row_bytes
        self.needed = max(int(needed or 0), self.nbytes)
        self._fd = os.open(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            self._reserve()
        except BaseException:
            self.close()
            raise

    def _reserve(self) -> None:
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is None or self.nbytes == 0:
            return
        try:
            fallocate(self._fd, 0, self.nbytes)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                # give back whatever part was reserved before measuring what is free
                os.ftruncate(self._fd, 0)
                raise disk_full_error(self.folder, self.needed) from None
            if exc.errno in _CANNOT_PREALLOCATE:
                log.debug("%s: cannot preallocate (%s); writing without", self.path, exc)
                return
            raise CalfCheckpointError(
                f"{self.path}: cannot reserve space for the slice store ({exc.strerror or exc}). "
                "Fix: choose another cache folder with --cache-dir."
            ) from None

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (k, *row_shape) at row ``start``."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or not 0 <= start <= self.shape[0] - rows.shape[0]:
            raise ValueError(f"rows {rows.shape} do not fit at {start} in {self.shape}")
        view = memoryview(rows).cast("B")
        pos = self.offset + start * self.row_bytes
        try:
            while view:
                written = os.pwrite(self._fd, view, pos)
                view, pos = view[written:], pos + written
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise disk_full_error(self.folder, self.needed) from None
            raise CalfCheckpointError(
                f"{self.path}: writing the slice store failed ({exc.strerror or exc}). "
                "Fix: check the disk, or choose another cache folder with --cache-dir."
            ) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _file_backed(array: np.ndarray) -> bool:
    """True for a whole-file read-only-able ``numpy.memmap`` (not a view of one)."""
    return (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)
            and array.filename is not None and array.flags.c_contiguous)


def take_rows(array: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``array[idx]`` along the first axis; a memmap is read without mapping its pages.

    For a ``numpy.memmap`` of a whole file the rows are read with ordinary file reads
    (runs of consecutive indices in one read each), so the pages stay in the kernel's
    page cache and do not become resident memory of this process; any other array is
    indexed with :func:`numpy.take`.

    Shapes: ``array`` (N, ...), ``idx`` (k,) -> (k, ...).
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if not _file_backed(array) or idx.size == 0:
        return np.take(array, idx, axis=0)
    n = array.shape[0]
    if idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"row index out of range for {n} rows")
    out = np.empty((idx.size, *array.shape[1:]), dtype=array.dtype)
    row = out.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    buf = memoryview(out).cast("B")
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [idx.size]])
    with open(array.filename, "rb", buffering=0) as fh:
        for a, b in zip(starts.tolist(), ends.tolist()):
            fh.seek(int(array.offset) + int(idx[a]) * row)
            part = buf[a * row : b * row]
            while part:
                got = fh.readinto(part)
                if not got:
                    raise CalfCheckpointError(
                        f"{array.filename}: the slice store file is shorter than its header "
                        "says (damaged). Fix: delete its folder and run again."
                    )
                part = part[got:]
    return out

"""The slice store: prepared training/validation slices, read once from NIfTI.

Slices are preprocessed once (:mod:`napari_calf.engine.data`) into two compact arrays:

- ``images``  float16, shape (N, C, H, W)  (z-scores in [-5, 5] lose nothing that matters
  in float16, and it halves memory: a 1,251-case BraTS set fits a 32 GB workstation)
- ``targets`` uint8,   shape (N, H, W)

Small stores live in memory. Larger ones are ``.npy`` files in a cache folder
(default ``~/.cache/napari-calf``), keyed by a hash of the data files (paths, sizes,
modification times), the preprocessing settings and the chosen slices, so a second run
on the same data reuses them. A store is built in a temporary folder and renamed into
place only when complete, so a half-written store is never reused.

Preparing holds one volume in memory at a time (:mod:`~napari_calf.engine.case_slices`)
and yields :class:`~napari_calf.events.Progress` per case. An on-disk store is written
and read with plain file I/O (:mod:`~napari_calf.engine._store_io`), never through a
writable memmap, so the process's memory does not grow with the number of cases; its
space is reserved before the first case, so a full disk is reported up front.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._store_io import StoreWriter
from .case_slices import prepare_case_slices
from .data import Padding, canonical_shape, common_padded_shape, data_fingerprint, padding_for
from ..errors import CalfCheckpointError, CalfInputError
from ..events import Progress

log = logging.getLogger(__name__)

STORE_VERSION = 1
_META = "store.json"
#: "auto" keeps a store in memory when it takes at most this share of available memory.
MEMORY_SHARE = 0.25


@dataclass
class SliceStore:
    """Prepared slices of one split.

    Attributes
    ----------
    images : ndarray, float16, shape (N, C, H, W)
        An in-memory array or a read-only memmap.
    targets : ndarray, uint8, shape (N, H, W)
    case_ids : ndarray of str, shape (N,)
    slices : ndarray of int, shape (N,)
        Axial index of each slice in its case.
    areas : ndarray of float, shape (N,)
        Foreground pixels of each slice's target.
    modalities : tuple of str
        Channel order.
    paddings : dict
        case id -> :class:`~napari_calf.engine.data.Padding` (to crop predictions back).
    location : Path or None
        Folder of an on-disk store; None in memory.
    reused : bool
        True when an existing on-disk store was reused.
    """

    images: np.ndarray
    targets: np.ndarray
    case_ids: np.ndarray
    slices: np.ndarray
    areas: np.ndarray
    modalities: tuple[str, ...]
    paddings: dict[str, Padding] = field(default_factory=dict)
    location: Path | None = None
    key: str = ""
    reused: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """In-plane (H, W) of every slice."""
        return (int(self.images.shape[2]), int(self.images.shape[3]))

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes + self.targets.nbytes)

    def summary(self) -> dict[str, Any]:
        """JSON-safe description for the run card."""
        return {
            "slices": len(self),
            "cases": int(np.unique(self.case_ids).size) if len(self) else 0,
            "foreground_slices": int(np.count_nonzero(self.areas > 0)),
            "empty_slices": int(np.count_nonzero(self.areas == 0)),
            "channels": self.channels,
            "modalities": list(self.modalities),
            "shape": list(self.shape),
            "bytes": self.nbytes,
            "storage": "memory" if self.location is None else "disk",
            "location": None if self.location is None else str(self.location),
            "reused": self.reused,
            "key": self.key,
        }

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        targets: np.ndarray,
        *,
        case_ids: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
    ) -> SliceStore:
        """An in-memory store from ready arrays (tests, benchmarks, notebooks).

        ``images`` (N, C, H, W) and ``targets`` (N, H, W) are converted to float16 / uint8.
        """
        images = np.ascontiguousarray(images, dtype=np.float16)
        targets = np.ascontiguousarray(targets != 0, dtype=np.uint8)
        n = images.shape[0]
        ids = np.asarray(case_ids if case_ids is not None else ["memory"] * n, dtype=str)
        return cls(
            images=images,
            targets=targets,
            case_ids=ids,
            slices=np.arange(n, dtype=np.int64),
            areas=targets.reshape(n, -1).sum(axis=1).astype(np.float64),
            modalities=tuple(modalities or (f"ch{i}" for i in range(images.shape[1]))),
        )


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; else half the physical memory)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    return 4 * 2**30


def store_key(
    cases: Sequence[Any],
    selection: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
) -> str:
    """Hash of the data files, the preprocessing settings and the chosen slices."""
    payload = {
        "version": STORE_VERSION,
        "files": data_fingerprint(cases),
        "settings": dict(settings),
        "selection": {k: [int(i) for i in v] for k, v in sorted(selection.items())},
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def iter_build_slice_store(
    cases: Sequence[Any],
    selection: Mapping[str, np.ndarray],
    *,
    target: str = "wt",
    clip: float = 5.0,
    pad_multiple: int = 32,
    mode: str = "auto",
    cache_dir: str | Path | None = None,
    name: str = "train",
) -> Generator[Progress, None, SliceStore]:
    """Prepare the chosen slices of ``cases`` into a :class:`SliceStore`.

    Parameters
    ----------
    cases : sequence of Case
        Labelled cases (``io.Case``).
    selection : mapping case id -> slice indices
        Which axial slices of each case to store (cases absent or empty are skipped).
    target : {"wt", "tc", "et"}
    clip, pad_multiple
        Preprocessing settings (see :mod:`napari_calf.engine.data`).
    mode : {"auto", "memory", "disk"}
    cache_dir : path, optional
        Folder for on-disk stores (default ``~/.cache/napari-calf``).
    name : str
        Split name, part of the cache folder's name.

    Yields
    ------
    Progress
        ``stage="prepare"``, one per case.

    Raises
    ------
    CalfInputError
        Cases with different modalities, unreadable files, a missing label.
    CalfCheckpointError
        The cache folder cannot be written or lacks space.
    """
    chosen = [c for c in sorted(cases, key=lambda c: str(c.case_id))
              if len(selection.get(c.case_id, ())) > 0]
    if not chosen:
        raise CalfInputError(
            None,
            f"No {name} slices to prepare (the filter kept none).",
            "lower --min-area or raise --empty-fraction, or check the labels.",
        )
    modalities = tuple(chosen[0].images)
    for case in chosen[1:]:
        if tuple(case.images) != modalities:
            raise CalfInputError(
                case.folder,
                f"case {case.case_id} has modalities {list(case.images)}, but "
                f"{chosen[0].case_id} has {list(modalities)}.",
                "give every case the same modalities (same file suffixes).",
            )
    shapes = {c.case_id: canonical_shape(next(iter(c.images.values()))) for c in chosen}
    hw = common_padded_shape([s[:2] for s in shapes.values()], pad_multiple)
    n = int(sum(len(selection[c.case_id]) for c in chosen))
    nbytes = n * (len(modalities) * hw[0] * hw[1] * 2 + hw[0] * hw[1])
    settings = {"target": target, "clip": float(clip), "pad_multiple": int(pad_multiple),
                "modalities": list(modalities), "shape": list(hw)}
    key = store_key(chosen, selection, settings)
    paddings = {c.case_id: padding_for(shapes[c.case_id][:2], pad_multiple, padded=hw)
                for c in chosen}

    in_memory = mode == "memory" or (mode == "auto" and nbytes <= MEMORY_SHARE * available_memory())
    final_dir = tmp_dir = None
    writers: list[StoreWriter] = []
    if not in_memory:
        root = Path(cache_dir).expanduser() if cache_dir else Path("~/.cache/napari-calf").expanduser()
        final_dir = root / f"slices-{name}-{key[:24]}"
        reused = _open_existing(final_dir, key, paddings)
        if reused is not None:
            yield Progress("prepare", len(chosen), len(chosen), f"reused {final_dir}")
            return reused
        if final_dir.exists():  # incomplete or damaged leftovers under our own key: rebuild
            shutil.rmtree(final_dir, ignore_errors=True)
        tmp_dir = _make_tmp_dir(root, final_dir.name, nbytes)
    case_ids = np.empty(n, dtype=object)
    slice_idx = np.empty(n, dtype=np.int64)
    areas = np.empty(n, dtype=np.float64)

    pos = 0
    try:
        if tmp_dir is not None:
            # positional writes into preallocated files, not a writable memmap: see _store_io
            where = {"folder": tmp_dir.parent, "needed": nbytes}
            writers = [StoreWriter(tmp_dir / "images.npy", np.float16, (n, len(modalities), *hw),
                                   **where),
                       StoreWriter(tmp_dir / "targets.npy", np.uint8, (n, *hw), **where)]
        else:
            images = np.zeros((n, len(modalities), *hw), dtype=np.float16)
            targets = np.zeros((n, *hw), dtype=np.uint8)
        for done, case in enumerate(chosen, start=1):
            idx = np.asarray(selection[case.case_id], dtype=np.int64)
            case_images, tgt = prepare_case_slices(case, idx, modalities, paddings[case.case_id],
                                             target, clip)
            k = idx.size
            if writers:
                writers[0].write(pos, case_images)
                writers[1].write(pos, tgt)
            else:
                images[pos : pos + k] = case_images
                targets[pos : pos + k] = tgt
            areas[pos : pos + k] = tgt.reshape(k, -1).sum(axis=1)
            case_ids[pos : pos + k] = case.case_id
            slice_idx[pos : pos + k] = idx
            pos += k
            del case_images, tgt
            yield Progress("prepare", done, len(chosen), case.case_id)
    except BaseException:
        for writer in writers:
            writer.close()
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        raise

    case_ids = case_ids.astype(str)
    if final_dir is None:
        return SliceStore(images, targets, case_ids, slice_idx, areas, modalities, paddings,
                          key=key)
    for writer in writers:
        writer.close()
    np.save(tmp_dir / "case_ids.npy", case_ids)
    np.save(tmp_dir / "slices.npy", slice_idx)
    np.save(tmp_dir / "areas.npy", areas)
    meta = {"key": key, "version": STORE_VERSION, "complete": True, "created": time.time(),
            "modalities": list(modalities), "settings": settings,
            "paddings": {k: v.to_dict() for k, v in paddings.items()}}
    (tmp_dir / _META).write_text(json.dumps(meta), encoding="utf-8")
    try:
        os.replace(tmp_dir, final_dir)
    except OSError:
        # another process finished the same store first: use theirs
        shutil.rmtree(tmp_dir, ignore_errors=True)
    store = _open_existing(final_dir, key, paddings)
    if store is None:  # pragma: no cover - would mean the rename raced with a deletion
        raise CalfCheckpointError(f"{final_dir}: the slice store vanished after writing. Fix: run again.")
    store.reused = False
    return store


# .tmp-<store name>-<host>-<pid>-<ns>; stores of earlier versions lack the host part.
_TMP_STORE = re.compile(
    r"^\.tmp-slices-[A-Za-z0-9_]+-[0-9a-f]{24}(?:-(?P<host>[A-Za-z0-9]{1,24}))?"
    r"-(?P<pid>\d{1,10})-\d+$"
)


def remove_stale_store_dirs(root: Path) -> list[Path]:
    """Remove temporary store folders of killed builds from the cache folder ``root``.

    Only folders named exactly like :func:`_make_tmp_dir` names them, whose builder is gone
    and which are older than this process (:func:`napari_calf.io.files.leftover_is_stale`,
    judged on the newest time stamp of the folder and its files), are removed.
    """
    from ..io.files import leftover_is_stale

    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_STORE.match(entry.name)
        if m is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            newest = max([entry.stat(follow_symlinks=False).st_mtime]
                         + [f.stat(follow_symlinks=False).st_mtime for f in os.scandir(entry.path)])
        except OSError:
            continue
        if leftover_is_stale(m["host"] or "", int(m["pid"]), newest):
            shutil.rmtree(entry.path, ignore_errors=True)
            log.info("removed %s, left behind by an interrupted slice-store build", entry.path)
            removed.append(Path(entry.path))
    return sorted(removed)


def _make_tmp_dir(root: Path, name: str, nbytes: int) -> Path:
    from ..io.files import HOST_TAG
    from .checkpoints import check_free_space

    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_store_dirs(root)  # before the free-space check: they take space
        tmp = root / f".tmp-{name}-{HOST_TAG}-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
    except OSError as exc:
        raise CalfCheckpointError(
            f"{root}: cannot create the slice cache there ({exc.strerror or exc}). "
            "Fix: choose another folder with --cache-dir."
        ) from None
    try:
        check_free_space(root, int(nbytes * 1.05) + 2**20)
    except CalfCheckpointError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _open_existing(folder: Path, key: str, paddings: dict[str, Padding]) -> SliceStore | None:
    """Open a complete store with this key, or None (absent, incomplete or foreign)."""
    meta_path = folder / _META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key or not meta.get("complete"):
            return None
        # allow_pickle=False: the store's small arrays are plain numbers and strings
        return SliceStore(
            images=np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False),
            targets=np.load(folder / "targets.npy", mmap_mode="r", allow_pickle=False),
            case_ids=np.load(folder / "case_ids.npy", allow_pickle=False),
            slices=np.load(folder / "slices.npy", allow_pickle=False),
            areas=np.load(folder / "areas.npy", allow_pickle=False),
            modalities=tuple(meta["modalities"]),
            paddings={k: Padding.from_dict(v) for k, v in meta["paddings"].items()} or paddings,
            location=folder,
            key=key,
            reused=True,
        )
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        log.warning("ignoring damaged slice store %s (%s)", folder, exc)
        return None

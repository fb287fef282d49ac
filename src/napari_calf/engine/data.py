"""Preprocessing and case splits for training (CALF_METHOD §6).

- Canonical RAS orientation and the shape/affine check come from :func:`io.load_case`.
- Per case and modality: z-score over the brain (non-zero) voxels, clipped to
  [-clip, clip]; voxels outside the brain stay 0.
- Axial slices (last axis), padded in-plane to a multiple of 32 (centred), with the
  padding recorded so predictions are cropped back.
- All modalities of a case are the input channels, in the case's modality order.
- Binary target from :func:`stats.binary_target` with the case's label convention.
- Train/validation split **by case**, reproducible by seed.

The slice store that holds the prepared slices is in :mod:`napari_calf.engine.slice_store`;
GPU augmentation is in :mod:`napari_calf.engine.augment`. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalfConfigError, CalfInputError


# --------------------------------------------------------------------------- intensities


def zscore_brain(volume: np.ndarray, clip: float = 5.0) -> np.ndarray:
    """z-score a 3D image over its non-zero (brain) voxels, clipped to [-clip, clip].

    Voxels outside the brain (exactly 0, as skull-stripped BraTS data has them) stay 0, so
    the background looks the same in every case and modality.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
    clip : float

    Returns
    -------
    ndarray, float32, same shape
        A volume with no non-zero voxel, or a constant brain, gives zeros in the brain
        (there is no contrast to normalise) rather than NaN.
    """
    volume = np.asarray(volume, dtype=np.float32)
    mean, std = brain_moments(volume)
    return apply_zscore(volume, mean, std, clip)


def brain_moments(volume: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (float64) of the non-zero voxels; (0, 0) when none."""
    volume = np.asarray(volume, dtype=np.float32)
    values = volume[volume != 0].astype(np.float64)
    if values.size == 0:
        return 0.0, 0.0
    return float(values.mean()), float(values.std())


def apply_zscore(values: np.ndarray, mean: float, std: float, clip: float = 5.0) -> np.ndarray:
    """:func:`zscore_brain` with moments measured elsewhere, on any part of a volume.

    Preparing training slices measures the moments over the whole volume and then
    normalises only the chosen slices, which gives exactly the values normalising the
    whole volume would.

    Returns
    -------
    ndarray, float32, same shape as ``values``; zeros stay zeros.
    """
    values = np.asarray(values, dtype=np.float32)
    out = np.zeros(values.shape, dtype=np.float32)
    if std > 0 and math.isfinite(std):
        brain = values != 0
        out[brain] = np.clip((values[brain].astype(np.float64) - mean) / std,
                             -clip, clip).astype(np.float32)
    return out


def stack_modalities(images: Mapping[str, np.ndarray], clip: float = 5.0) -> np.ndarray:
    """Normalise each modality and stack them as channels.

    Parameters
    ----------
    images : mapping modality -> ndarray (X, Y, Z)
        In the order the channels should have (``Case.images`` order).

    Returns
    -------
    ndarray, float32, shape (C, X, Y, Z)
    """
    arrays = list(images.values())
    if not arrays:
        raise CalfConfigError("A case needs at least one image modality.")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise CalfConfigError(f"Modalities differ in shape {sorted(shapes)}; resample them first.")
    if arrays[0].ndim != 3:
        raise CalfConfigError(f"Modality images must be 3D, got shape {arrays[0].shape}.")
    return np.stack([zscore_brain(a, clip) for a in arrays], axis=0)


def case_target(labels: np.ndarray, target: str, convention: str) -> np.ndarray:
    """Binary target of a label volume (bool, same shape), via :func:`stats.binary_target`."""
    from ..calf.areas import binary_target

    return np.asarray(binary_target(labels, target, convention), dtype=bool)


# --------------------------------------------------------------------------- padding


@dataclass(frozen=True)
class Padding:
    """In-plane padding of an axial slice: (X, Y) → (H, W), centred.

    Attributes
    ----------
    shape : tuple of int
        The slice's own in-plane shape (X, Y).
    padded : tuple of int
        (H, W), each a multiple of the network's stride.
    before : tuple of int
        Rows/columns of padding added before the data along X and Y.
    """

    shape: tuple[int, int]
    padded: tuple[int, int]
    before: tuple[int, int]

    @property
    def after(self) -> tuple[int, int]:
        return tuple(p - s - b for p, s, b in zip(self.padded, self.shape, self.before))  # type: ignore[return-value]

    def pad(self, array: np.ndarray) -> np.ndarray:
        """Pad the last two axes of ``array`` (…, X, Y) with zeros to (…, H, W)."""
        widths = [(0, 0)] * (array.ndim - 2) + [
            (self.before[0], self.after[0]),
            (self.before[1], self.after[1]),
        ]
        return np.pad(array, widths)

    def crop(self, array: Any) -> Any:
        """Undo :meth:`pad` on the last two axes (numpy arrays or torch tensors)."""
        x0, y0 = self.before
        return array[..., x0 : x0 + self.shape[0], y0 : y0 + self.shape[1]]

    def to_dict(self) -> dict[str, list[int]]:
        return {"shape": list(self.shape), "padded": list(self.padded), "before": list(self.before)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[int]]) -> Padding:
        return cls(tuple(data["shape"]), tuple(data["padded"]), tuple(data["before"]))  # type: ignore[arg-type]


def padding_for(
    shape: Sequence[int], multiple: int = 32, *, padded: Sequence[int] | None = None
) -> Padding:
    """Centred padding of an in-plane ``shape`` (X, Y) up to a multiple of ``multiple``.

    ``padded`` forces a larger common size (e.g. the largest case of a dataset), which
    must itself be at least ``shape``.
    """
    shape = (int(shape[0]), int(shape[1]))
    if padded is None:
        padded = tuple(int(math.ceil(s / multiple) * multiple) for s in shape)
    padded = (int(padded[0]), int(padded[1]))
    if padded[0] < shape[0] or padded[1] < shape[1]:
        raise CalfConfigError(f"Cannot pad a {shape} slice to a smaller {padded}.")
    before = ((padded[0] - shape[0]) // 2, (padded[1] - shape[1]) // 2)
    return Padding(shape, padded, before)


def common_padded_shape(shapes: Sequence[Sequence[int]], multiple: int = 32) -> tuple[int, int]:
    """The smallest (H, W), multiples of ``multiple``, that hold every in-plane shape."""
    if not shapes:
        raise CalfConfigError("No slices to prepare.")
    h = max(int(s[0]) for s in shapes)
    w = max(int(s[1]) for s in shapes)
    return (int(math.ceil(h / multiple) * multiple), int(math.ceil(w / multiple) * multiple))


def canonical_shape(path: str | Path) -> tuple[int, int, int]:
    """Canonical-RAS (X, Y, Z) shape of a NIfTI file from its header, without reading voxels."""
    import nibabel as nib
    from nibabel.orientations import io_orientation

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises a zoo of types for bad files
        raise CalfInputError(path, f"cannot be read as NIfTI ({exc}).", "check the file.") from None
    shape = tuple(int(n) for n in img.shape[:3])
    ornt = io_orientation(img.affine)
    out = [0, 0, 0]
    for src_axis, (dst_axis, _flip) in enumerate(ornt[:3]):
        out[int(dst_axis)] = shape[src_axis]
    return (out[0], out[1], out[2])


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class CaseSplit:
    """Cases for training and for validation; no case is in both."""

    train: tuple[Any, ...]
    val: tuple[Any, ...]
    seed: int
    val_fraction: float

    @property
    def train_ids(self) -> list[str]:
        return [c.case_id for c in self.train]

    @property
    def val_ids(self) -> list[str]:
        return [c.case_id for c in self.val]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "train": self.train_ids,
            "val": self.val_ids,
        }


def split_cases(cases: Sequence[Any], val_fraction: float = 0.2, seed: int = 0) -> CaseSplit:
    """Split cases (not slices) into training and validation, reproducibly.

    The order of ``cases`` does not matter: they are sorted by ``case_id`` before the
    seeded shuffle, so the same files and seed always give the same split.

    Parameters
    ----------
    cases : sequence of Case
        Anything with a ``case_id``.
    val_fraction : float in (0, 1)
        Share of cases held out; rounded, at least one, and at least one case is left
        for training.
    seed : int

    Raises
    ------
    CalfInputError
        Fewer than two cases (one for training, one for validation).
    """
    if not 0 < val_fraction < 1:
        raise CalfConfigError(
            f"val_fraction={val_fraction!r} must be between 0 and 1 (exclusive). Fix: e.g. 0.2."
        )
    ordered = sorted(cases, key=lambda c: str(c.case_id))
    ids = [c.case_id for c in ordered]
    if len(set(ids)) != len(ids):
        raise CalfInputError(None, "Two cases share one case id.", "give every case its own id.")
    n = len(ordered)
    if n < 2:
        raise CalfInputError(
            None,
            f"Only {n} labelled case(s) found; training needs at least 2 (one to train on, "
            "one to validate on, since slices of one case must not be on both sides).",
            "add more labelled cases to the dataset folder (napari-calf phantom can make a "
            "sample set).",
        )
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    order = np.random.default_rng(int(seed)).permutation(n)
    val_idx = set(int(i) for i in order[:n_val])
    train = tuple(c for i, c in enumerate(ordered) if i not in val_idx)
    val = tuple(c for i, c in enumerate(ordered) if i in val_idx)
    return CaseSplit(train=train, val=val, seed=int(seed), val_fraction=float(val_fraction))


# --------------------------------------------------------------------------- slice choice


def slices_by_case(case_ids: np.ndarray, slices: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Kept slice indices per case (sorted), from per-slice arrays of a ``DatasetAreas``.

    Cases come in the order of their first kept slice. One sort over all slices (not a
    pass over all slices per case, which grew with cases x slices on BraTS-sized sets).
    """
    keep = np.asarray(keep, dtype=bool)
    ids = np.asarray(case_ids)[keep]
    kept = np.asarray(slices)[keep].astype(np.int64)
    if ids.size == 0:
        return {}
    names, first, group = np.unique(ids, return_index=True, return_inverse=True)
    order = np.lexsort((kept, group))  # by case, then by slice
    bounds = np.searchsorted(group[order], np.arange(names.size + 1))
    by_name = {str(names[g]): kept[order[bounds[g]:bounds[g + 1]]] for g in range(names.size)}
    return {str(names[g]): by_name[str(names[g])] for g in np.argsort(first, kind="stable")}


def cap_slices_per_case(
    selection: Mapping[str, np.ndarray], max_per_case: int | None, seed: int
) -> dict[str, np.ndarray]:
    """Keep at most ``max_per_case`` slices of each case, sampled with ``seed`` (sorted)."""
    if max_per_case is None:
        return {k: np.asarray(v) for k, v in selection.items()}
    out = {}
    for i, (cid, idx) in enumerate(sorted(selection.items())):
        idx = np.asarray(idx)
        if idx.size > max_per_case:
            rng = np.random.default_rng([int(seed), i])
            idx = np.sort(rng.choice(idx, size=max_per_case, replace=False))
        out[cid] = idx
    return out


def data_fingerprint(cases: Sequence[Any]) -> list[list[Any]]:
    """Paths, sizes and modification times of every file of ``cases`` (for cache keys)."""
    rows: list[list[Any]] = []
    for case in sorted(cases, key=lambda c: str(c.case_id)):
        files = list(case.images.values()) + ([case.label] if case.label is not None else [])
        for f in files:
            p = Path(f).resolve()
            try:
                st = p.stat()
                rows.append([str(p), st.st_size, st.st_mtime_ns])
            except OSError:
                rows.append([str(p), None, None])
    return rows

"""Per-slice foreground areas of label volumes (CALF_METHOD §2, §6).

Import the public names from :mod:`napari_calf.calf.stats`. Arrays are canonical RAS
(x, y, z); "axial" is axis 2. Areas are voxel counts (``unit="px"``) or mm²
(``unit="mm2"``, the product of the two in-plane spacings). No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CalfConfigError, CalfInputError
from ..events import Progress, drain
from ..io.labels import ANY_BRATS_LABEL, CONVENTION_LABELS, check_label_values

#: Binary targets derived from BraTS labels: whole tumour, tumour core, enhancing tumour.
TARGETS: tuple[str, ...] = ("wt", "tc", "et")
#: BraTS label conventions: 2017–2021 (1 NCR, 2 ED, 4 ET) and 2023+ (1 NCR, 2 ED, 3 ET).
CONVENTIONS: tuple[str, ...] = ("brats2021", "brats2023")
#: Area units: voxel counts, or mm² from the in-plane spacing.
UNITS: tuple[str, ...] = ("px", "mm2")

# Label values that make up each target per convention; wt is "any label > 0".
_TARGET_LABELS = {
    ("tc", "brats2021"): (1, 4),
    ("et", "brats2021"): (4,),
    ("tc", "brats2023"): (1, 3),
    ("et", "brats2023"): (3,),
}
# A label value that only the *other* convention uses: its presence means the
# convention is wrong, which would silently empty the ET/TC target.
_FOREIGN_LABEL = {"brats2021": 3, "brats2023": 4}


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise CalfConfigError(f"unknown {name} {value!r}. Fix: use one of {', '.join(choices)}.")


def binary_target(labels: np.ndarray, target: str = "wt", convention: str = "brats2021") -> np.ndarray:
    """Binary mask of a tumour sub-region from a BraTS label array.

    Parameters
    ----------
    labels : ndarray of int (or float holding integers)
        Label volume, any shape.
    target : {"wt", "tc", "et"}
        Whole tumour (label > 0), tumour core (NCR + ET) or enhancing tumour.
    convention : {"brats2021", "brats2023"}
        ET is label 4 in BraTS 2017–2021 and label 3 in BraTS 2023+.

    Returns
    -------
    ndarray of bool, same shape as ``labels``.

    Raises
    ------
    CalfConfigError
        Unknown target or convention.
    CalfInputError
        A value no BraTS convention uses (7, 255, a negative number …), named with its
        voxel count; for ``tc``/``et`` also the other convention's ET value (whole tumour
        is the same in both conventions, so ``wt`` accepts it).
    """
    _check_choice("target", target, TARGETS)
    _check_choice("label convention", convention, CONVENTIONS)
    labels = np.asarray(labels)
    floating = np.issubdtype(labels.dtype, np.floating)
    if floating:
        labels = np.rint(labels)  # float files of whole numbers: round like integers
    if target == "wt":
        check_label_values(labels, ANY_BRATS_LABEL, None, convention)
        return labels > 0
    foreign = _FOREIGN_LABEL[convention]
    if np.any(labels == foreign):
        other = CONVENTIONS[1 - CONVENTIONS.index(convention)]
        raise CalfInputError(
            None,
            f"label value {foreign} found, which the {convention} convention does not use "
            f"(its enhancing tumour is {_TARGET_LABELS[('et', convention)][0]}).",
            f"these look like {other} labels: use label convention {other!r}.",
        )
    check_label_values(labels, CONVENTION_LABELS[convention], None, convention)
    wanted = _TARGET_LABELS[(target, convention)]
    mask = labels == wanted[0]
    for value in wanted[1:]:
        mask |= labels == value
    return mask


def _normalise_axis(axis: int, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise CalfConfigError(
            f"slice axis {axis!r} does not exist in a {ndim}D volume. "
            f"Fix: use 0, 1 or 2 (axial is 2 in canonical RAS)."
        )
    return int(axis) % ndim


def _in_plane_area(spacing: Sequence[float] | None, axis: int, ndim: int, unit: str) -> float:
    """mm² of one pixel in the slice plane, or 1.0 for ``unit="px"``."""
    _check_choice("area unit", unit, UNITS)
    if unit == "px":
        return 1.0
    if spacing is None:
        raise CalfConfigError(
            "areas in mm² need the voxel spacing. Fix: pass spacing=(sx, sy, sz) in mm, "
            "or use unit='px'."
        )
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise CalfInputError(
            None, f"voxel spacing {spacing} does not fit a {ndim}D volume (need {ndim} sizes > 0 in mm).",
            "pass the spacing of the volume's axes, e.g. Volume.spacing.",
        )
    return math.prod(s for i, s in enumerate(spacing) if i != axis)


def slice_areas(
    mask: np.ndarray,
    *,
    axis: int = 2,
    spacing: Sequence[float] | None = None,
    unit: str = "px",
) -> np.ndarray:
    """Foreground area of every slice of a 3D mask.

    Parameters
    ----------
    mask : ndarray, shape (X, Y, Z)
        Non-zero voxels are foreground (typically from :func:`binary_target`).
    axis : int
        Slicing axis; 2 (axial in canonical RAS) by default.
    spacing : sequence of 3 floats, optional
        Voxel size in mm; needed for ``unit="mm2"``.
    unit : {"px", "mm2"}
        Voxel counts, or mm² (count × product of the two in-plane spacings).

    Returns
    -------
    ndarray of float64, shape (mask.shape[axis],)
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise CalfInputError(
            None, f"a {mask.ndim}D array was given where a 3D label volume is needed.",
            "pass one 3D volume (x, y, z); for a single 2D slice use np.count_nonzero.",
        )
    axis = _normalise_axis(axis, 3)
    scale = _in_plane_area(spacing, axis, 3, unit)
    if mask.dtype != np.bool_:
        mask = mask != 0
    # Why not a loop of np.count_nonzero per slice: axial slices are strided in a
    # C-ordered (x, y, z) array, so one vectorised pass over a (rows, slices) uint8
    # view of the mask is several times faster and copies nothing.
    counts = _count_per_slice(mask, axis)
    areas = counts.astype(np.float64)
    if scale != 1.0:
        areas *= scale
    return areas


def _count_per_slice(mask: np.ndarray, axis: int) -> np.ndarray:
    """Number of True voxels per index along ``axis`` of a 3D bool array."""
    moved = np.moveaxis(mask, axis, -1)
    n = moved.shape[-1]
    # uint32 sums are about twice as fast as int64 here and cannot overflow below
    # 2**32 voxels per slice.
    dtype = np.uint32 if mask.size // max(n, 1) < 2**32 else np.int64
    if moved.flags.c_contiguous:
        # rows x slices; the reduction over rows vectorises across the contiguous slices.
        counts = moved.reshape(-1, n).view(np.uint8).sum(axis=0, dtype=dtype)
    elif mask.flags.c_contiguous and axis == 0:
        counts = mask.reshape(n, -1).view(np.uint8).sum(axis=1, dtype=dtype)
    else:
        counts = np.count_nonzero(moved, axis=(0, 1))
    return counts.astype(np.int64, copy=False)


# eq=False: == on numpy fields would be ambiguous; compare the arrays instead.
@dataclass(frozen=True, eq=False)
class DatasetAreas:
    """Foreground area of every slice of every case of a dataset.

    Attributes
    ----------
    case_ids : ndarray of str, shape (n_slices,)
        Case of each slice (empty slices included).
    slices : ndarray of int, shape (n_slices,)
        Slice index within its case.
    areas : ndarray of float, shape (n_slices,)
        Foreground area (0 for empty slices), in ``unit``.
    unit : str
        ``"px"`` or ``"mm2"``.
    skipped : tuple of str
        One line per case left out (e.g. no label file), for the user to see.
    target, axis : str, int
        How the areas were measured.
    """

    case_ids: np.ndarray
    slices: np.ndarray
    areas: np.ndarray
    unit: str = "px"
    skipped: tuple[str, ...] = ()
    target: str = "wt"
    axis: int = 2
    spacings: dict[str, tuple[float, ...]] = field(default_factory=dict, compare=False)

    def nonzero(self) -> np.ndarray:
        """The non-zero areas (the sample CALF's moments are taken over)."""
        return self.areas[self.areas > 0]

    @property
    def n_empty(self) -> int:
        """Number of slices without foreground."""
        return int(np.count_nonzero(self.areas == 0))

    @property
    def n_slices(self) -> int:
        return int(self.areas.size)

    @property
    def n_cases(self) -> int:
        return int(np.unique(self.case_ids).size) if self.case_ids.size else 0

    def subset(self, keep: np.ndarray) -> DatasetAreas:
        """The slices where ``keep`` (bool, one per slice) is True."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.areas.shape:
            raise CalfConfigError(
                f"keep has shape {keep.shape}, but there are {self.n_slices} slices."
            )
        return DatasetAreas(
            self.case_ids[keep], self.slices[keep], self.areas[keep], self.unit,
            self.skipped, self.target, self.axis, self.spacings,
        )


def _as_item(item: Any, convention: str | None) -> tuple[str, Any, tuple[float, ...] | None, str, Any]:
    """(case_id, label path or array, spacing, convention, path-or-None) for a Case or tuple."""
    if isinstance(item, tuple):
        if len(item) not in (3, 4):
            raise CalfConfigError(
                f"an in-memory case must be (case_id, label_array, spacing[, convention]), "
                f"got a tuple of {len(item)}."
            )
        case_id, labels, spacing = item[:3]
        conv = convention or (item[3] if len(item) == 4 else "brats2021")
        spacing = None if spacing is None else tuple(float(s) for s in spacing)
        return str(case_id), np.asarray(labels), spacing, conv, None
    if hasattr(item, "case_id") and hasattr(item, "label"):
        conv = convention or getattr(item, "label_convention", "brats2021")
        return str(item.case_id), item.label, None, conv, item.label
    raise CalfConfigError(
        f"cannot measure areas of a {type(item).__name__}. Fix: pass napari_calf.io.volumes.Case "
        "objects or (case_id, label_array, spacing) tuples."
    )


def iter_dataset_areas(
    cases: Iterable[Any],
    *,
    target: str = "wt",
    axis: int = 2,
    unit: str = "px",
    convention: str | None = None,
) -> Generator[Progress, None, DatasetAreas]:
    """Measure every slice of every case, one case in memory at a time.

    Parameters
    ----------
    cases : iterable
        :class:`napari_calf.io.volumes.Case` objects (only the label file is loaded) or
        in-memory ``(case_id, label_array, spacing[, convention])`` tuples.
    target : {"wt", "tc", "et"}
    axis : int
        Slicing axis (2 = axial).
    unit : {"px", "mm2"}
    convention : str, optional
        Overrides each case's label convention (default: ``Case.label_convention``,
        or ``"brats2021"`` for tuples without one).

    Yields
    ------
    Progress
        ``stage="areas"``, one per case (``message`` is the case id).

    Returns
    -------
    DatasetAreas
        Cases without a label file are skipped and listed in ``skipped``.
    """
    _check_choice("target", target, TARGETS)
    _check_choice("area unit", unit, UNITS)
    if convention is not None:
        _check_choice("label convention", convention, CONVENTIONS)
    total = len(cases) if hasattr(cases, "__len__") else None  # type: ignore[arg-type]
    ids: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    values: list[np.ndarray] = []
    skipped: list[str] = []
    spacings: dict[str, tuple[float, ...]] = {}
    for done, item in enumerate(cases, start=1):
        case_id, labels, spacing, conv, path = _as_item(item, convention)
        if labels is None:
            skipped.append(f"{case_id}: no label file, skipped")
            yield Progress("areas", done, total, f"{case_id} (skipped: no label)")
            continue
        if path is not None:
            from ..io.volumes import load_volume  # io is only needed for cases on disk

            volume = load_volume(labels, label=True)
            labels, spacing = volume.data, tuple(volume.spacing)
            del volume  # else it keeps this label alive while the next one loads
        try:
            mask = binary_target(labels, target, conv)
            areas = slice_areas(mask, axis=axis, spacing=spacing, unit=unit)
        except CalfInputError as exc:
            # Name the case (and file) the bad array came from.
            raise CalfInputError(path, f"case {case_id}: {exc.problem}", exc.fix) from None
        del mask, labels  # keep one case in memory at a time
        ids.append(np.full(areas.size, case_id, dtype=object))
        idx.append(np.arange(areas.size, dtype=np.int64))
        values.append(areas)
        if spacing is not None:
            spacings[case_id] = spacing
        yield Progress("areas", done, total, case_id)
    if ids:
        case_ids = np.concatenate(ids).astype(str)
        slices, all_areas = np.concatenate(idx), np.concatenate(values)
    else:
        case_ids, slices, all_areas = np.array([], dtype=str), np.array([], dtype=np.int64), np.array([])
    return DatasetAreas(case_ids, slices, all_areas, unit, tuple(skipped), target, axis, spacings)


def dataset_areas(cases: Iterable[Any], **kwargs: Any) -> DatasetAreas:
    """:func:`iter_dataset_areas` run to the end (same arguments)."""
    return drain(iter_dataset_areas(cases, **kwargs))

"""NIfTI volumes in and out, with the checks a user needs to hear about.

Everything the core computes on lives in **canonical RAS** (the array layout
``nibabel.as_closest_canonical`` gives: axis 0 runs to the patient's Right,
axis 1 to Anterior, axis 2 to Superior). :func:`load_volume` reorients on the
way in and keeps the file's own affine, so :func:`save_like` can write a result
back in the orientation of the source file and it overlays the source in any
NIfTI viewer.

Case discovery (BraTS 2017-2021, BraTS 2023+, nnU-Net raw, generic folders)
lives in :mod:`napari_calf.io.discovery` and is re-exported here.

This module never imports torch, napari or Qt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._nifti import NIFTI_SUFFIXES, as_label_array, check_affine, is_nifti_path, label_dtype_for, nifti_stem, open_nifti, read_array, refuse_unreadable, storable_array
from ..errors import CalfFileExistsError, CalfInputError
from .files import atomic_path

log = logging.getLogger(__name__)

MODALITIES_2021: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")  # BraTS 2017-2021 suffixes
MODALITIES_2023: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")  # BraTS 2023+ suffixes

#: Tolerance (mm) when comparing affines of files that must share a grid.
AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True, eq=False)
class Volume:
    """A NIfTI volume in canonical RAS, with what it takes to write results back.

    Attributes
    ----------
    data : numpy.ndarray
        Canonical RAS array, shape (X, Y, Z) or (X, Y, Z, C) with channels last.
        float32 for images, an integer dtype for labels.
    affine : numpy.ndarray
        4x4 voxel-to-world (mm) affine of ``data``.
    spacing : tuple of float
        Voxel size in mm along the three canonical axes.
    orientation : tuple of str
        Axis codes of the file as stored, e.g. ``("L", "P", "S")``.
    source_affine : numpy.ndarray
        4x4 affine of the file as stored.
    source_shape : tuple of int
        Array shape of the file as stored.
    path : pathlib.Path or None
        Where the volume came from (None for volumes built in memory).
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, ...]
    orientation: tuple[str, ...]
    source_affine: np.ndarray
    source_shape: tuple[int, ...]
    path: Path | None = None


# --------------------------------------------------------------------------- orientation


def check_same_grid(reference: Volume, other: Volume) -> None:
    """Refuse ``other`` unless it lies on ``reference``'s grid: same shape and affines equal
    within :data:`AFFINE_ATOL_MM` (the modalities of a case, a label and its images, a
    corrected label and the original). The message names both files and how to fix it."""
    if reference.data.shape[:3] != other.data.shape[:3]:
        raise CalfInputError(
            other.path,
            f"does not match {reference.path}: grid {other.data.shape[:3]} vs "
            f"{reference.data.shape[:3]} voxels (canonical RAS).",
            "resample both onto the same grid (co-register them, e.g. with ANTs or FSL "
            "flirt) or remove the odd file from the case.",
        )
    diff = float(np.max(np.abs(reference.affine - other.affine)))
    if diff > AFFINE_ATOL_MM:
        raise CalfInputError(
            other.path,
            f"does not match {reference.path}: their affines (voxel-to-mm maps) differ by "
            f"up to {diff:.4g} mm, so they do not overlay.",
            "resample both onto the same grid (co-register them) or, if they truly are "
            "aligned, copy the header of one onto the other (e.g. fslcpgeom).",
        )


def _to_canonical_ornt(source_affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform: array as stored -> canonical RAS."""
    from nibabel.orientations import io_orientation

    return io_orientation(source_affine)


def _from_canonical_ornt(source_affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform: canonical RAS -> array as stored."""
    from nibabel.orientations import axcodes2ornt, ornt_transform

    return ornt_transform(axcodes2ornt(("R", "A", "S")), _to_canonical_ornt(source_affine))


def _canonical_affine(source_affine: np.ndarray, source_shape: tuple[int, ...]) -> np.ndarray:
    """Affine of the canonical array, exactly as ``nibabel.as_closest_canonical`` computes it."""
    from nibabel.orientations import inv_ornt_aff

    ornt = _to_canonical_ornt(source_affine)
    return source_affine @ inv_ornt_aff(ornt, source_shape[:3])


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the lengths of the affine's first three columns."""
    zooms = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    return tuple(float(z) for z in zooms)  # type: ignore[return-value]


def to_source_orientation(array: np.ndarray, volume: Volume) -> np.ndarray:
    """Undo the canonical reorientation: an array shaped like ``volume.data`` -> as stored on disk.

    Parameters
    ----------
    array : numpy.ndarray
        Shape (X, Y, Z, ...) in ``volume``'s canonical space (e.g. a predicted label map);
        trailing axes beyond the first three are carried along untouched.
    volume : Volume
        The volume ``array`` was computed from.

    Returns
    -------
    numpy.ndarray
        Shape ``volume.source_shape[:3] + array.shape[3:]``.

    Raises
    ------
    CalfInputError
        If ``array`` does not have the spatial shape of ``volume.data``.
    """
    from nibabel.orientations import apply_orientation

    array = np.asanyarray(array)
    if array.ndim < 3 or array.shape[:3] != volume.data.shape[:3]:
        raise CalfInputError(
            volume.path,
            f"an array of shape {array.shape} cannot be mapped back onto this volume, "
            f"whose canonical grid is {volume.data.shape[:3]}.",
            "pass an array computed on this volume's grid (same first three axes).",
        )
    return apply_orientation(array, _from_canonical_ornt(volume.source_affine))


# --------------------------------------------------------------------------- loading


def load_volume(
    path: str | Path, *, canonical: bool = True, label: bool | None = None
) -> Volume:
    """Read a NIfTI file, checked, and (by default) reoriented to canonical RAS.

    Parameters
    ----------
    path : str or Path
        A ``.nii`` or ``.nii.gz`` file with a 3D image, or 4D with channels last.
    canonical : bool
        Reorient to canonical RAS (the default, what the core expects). With False the
        array is returned as stored and ``affine`` equals ``source_affine``.
    label : bool or None
        True: a label map; the result has an integer dtype (whole-number floats are
        converted, anything else is refused). False: an image; the result is float32.
        None: integer files stay integer, everything else becomes float32.

    Returns
    -------
    Volume

    Raises
    ------
    CalfInputError
        Missing, zero-byte, not NIfTI, damaged/truncated, 2D, more than 4D, NaN or
        infinite voxels (the message says how many).
    """
    path = Path(path)
    refuse_unreadable(path)
    img = open_nifti(path)

    shape = tuple(int(n) for n in img.shape)
    # Trailing singleton axes (x, y, z, 1) are common in exports; they are not channels.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3:
        raise CalfInputError(
            path,
            f"holds a {len(shape)}D image (shape {shape}); napari-calf works on 3D volumes.",
            "give the 3D volume the slice came from (or stack the slices into one 3D NIfTI).",
        )
    if len(shape) > 4:
        raise CalfInputError(
            path,
            f"holds a {len(shape)}D image (shape {shape}); only 3D, or 4D with channels last, "
            "is supported.",
            "split it into 3D files, one per modality/time point (e.g. with fslsplit).",
        )

    on_disk_int = np.issubdtype(img.get_data_dtype(), np.integer)
    want_float = label is False or (label is None and not on_disk_int)
    array = read_array(img, path, np.float32 if want_float else None).reshape(shape)
    if array.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(array)))
        n_inf = int(np.count_nonzero(np.isinf(array)))
        if n_nan or n_inf:
            what = ", ".join(
                f"{n} {name}" for n, name in ((n_nan, "NaN"), (n_inf, "infinite")) if n
            )
            raise CalfInputError(
                path,
                f"has {what} voxel(s) out of {array.size}.",
                "replace them before use, e.g. with 0 (numpy.nan_to_num, or "
                "`fslmaths in -nan out`), or re-export the volume.",
            )
        if not want_float or array.dtype != np.float32:
            array = array.astype(np.float32)
    if label:
        array = as_label_array(array, path)

    source_affine = np.array(img.affine, dtype=float)
    import nibabel as nib

    orientation = tuple(str(c) for c in nib.aff2axcodes(source_affine))
    if canonical:
        from nibabel.orientations import apply_orientation

        ornt = _to_canonical_ornt(source_affine)
        data = np.ascontiguousarray(apply_orientation(array, ornt))
        affine = _canonical_affine(source_affine, shape)
    else:
        data, affine = array, source_affine.copy()
    return Volume(
        data=data,
        affine=affine,
        spacing=affine_spacing(affine),
        orientation=orientation,
        source_affine=source_affine,
        source_shape=shape,
        path=path,
    )


# --------------------------------------------------------------------------- saving


def save_volume(
    array: np.ndarray,
    path: str | Path,
    affine: np.ndarray,
    *,
    overwrite: bool = False,
    dtype: np.dtype | type | str | None = None,
) -> Path:
    """Write ``array`` as NIfTI, atomically, never replacing a file unless asked.

    The file is written to a temporary name in the same folder and moved into place
    with ``os.replace``, so a crash never leaves a half-written file under ``path``.

    Parameters
    ----------
    array : numpy.ndarray
        Shape (X, Y, Z) or (X, Y, Z, C). bool is stored as uint8, int64 as the
        smallest integer type that holds its values.
    path : str or Path
        Ends in ``.nii.gz`` (compressed) or ``.nii``. Missing parent folders are created.
    affine : numpy.ndarray
        4x4 voxel-to-world (mm) affine of ``array``; stored as both sform and qform.
    overwrite : bool
        Replace an existing file.
    dtype : optional
        Store with this dtype instead.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CalfFileExistsError
        ``path`` exists and ``overwrite`` is False.
    CalfInputError
        Wrong suffix, wrong dimensionality, or a bad affine.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti_path(path):
        raise CalfInputError(
            path, "is not a NIfTI file name.", "end the file name in .nii.gz (or .nii)."
        )
    data = storable_array(array, path, dtype)
    if data.ndim not in (3, 4):
        raise CalfInputError(
            path,
            f"cannot be written from a {data.ndim}D array of shape {data.shape}.",
            "pass a 3D volume (or 4D with channels last).",
        )
    affine = check_affine(affine, path)
    if path.exists() and not overwrite:
        raise CalfFileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    img = nib.Nifti1Image(data, affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    # The temp name keeps the suffix: nibabel decides on gzip from it.
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    log.debug("wrote %s %s %s", path, data.shape, data.dtype)
    return path


def save_like(
    array: np.ndarray, reference: Volume, path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write an array computed in ``reference``'s canonical space in the reference file's own
    orientation and affine, so it overlays the source file in any NIfTI viewer.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``reference.data.shape[:3]`` (plus optional channels), canonical RAS.
    reference : Volume
        The volume ``array`` was computed on (from :func:`load_volume`).
    path : str or Path
        Output ``.nii.gz``/``.nii`` file.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    stored = to_source_orientation(array, reference)
    return save_volume(stored, path, reference.source_affine, overwrite=overwrite)


__all__ = [
    "AFFINE_ATOL_MM",
    "MODALITIES_2021",
    "MODALITIES_2023",
    "NIFTI_SUFFIXES",
    "Volume",
    "affine_spacing",
    "is_nifti_path",
    "label_dtype_for",
    "load_volume",
    "nifti_stem",
    "save_like",
    "save_volume",
    "to_source_orientation",
]

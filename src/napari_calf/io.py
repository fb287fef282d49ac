"""NIfTI volumes in and out, with the checks a user needs to hear about.

Everything the core computes on lives in **canonical RAS** (the array layout
``nibabel.as_closest_canonical`` gives: axis 0 runs to the patient's Right,
axis 1 to Anterior, axis 2 to Superior). :func:`load_volume` reorients on the
way in and keeps the file's own affine, so :func:`save_like` can write a result
back in the orientation of the source file and it overlays the source in any
NIfTI viewer.

Case discovery (BraTS 2017-2021, BraTS 2023+, nnU-Net raw, generic folders)
lives in :mod:`napari_calf.discovery` and is re-exported here.

This module never imports torch, napari or Qt.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CalfFileExistsError, CalfInputError

log = logging.getLogger(__name__)

MODALITIES_2021: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")  # BraTS 2017-2021 suffixes
MODALITIES_2023: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")  # BraTS 2023+ suffixes

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")

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


def is_nifti_path(path: str | Path) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    """File name without ``.nii``/``.nii.gz``: ``BraTS2021_00000_t1.nii.gz`` -> ``BraTS2021_00000_t1``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------- orientation


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


def _refuse_unreadable(path: Path) -> None:
    """Fail early, with a clear message, on files nibabel would choke on obscurely."""
    if not path.exists():
        raise CalfInputError(path, "does not exist.", "check the path (and the current folder).")
    if path.is_dir():
        raise CalfInputError(
            path, "is a folder, not a NIfTI file.", "give a .nii or .nii.gz file inside it."
        )
    if not is_nifti_path(path):
        raise CalfInputError(
            path,
            f"is not a NIfTI file (its name ends in '{''.join(path.suffixes) or path.name}').",
            "convert it to NIfTI (.nii or .nii.gz), e.g. with dcm2niix for DICOM.",
        )
    if path.stat().st_size == 0:
        raise CalfInputError(
            path, "is empty (0 bytes).", "copy or download the file again; it was not written fully."
        )


def _open_nifti(path: Path):  # -> nibabel.Nifti1Image | Nifti2Image
    """Open a NIfTI-1/2 file. A ``.nii.gz`` is decompressed in full first, so gzip's CRC
    check runs: nibabel alone reads only the bytes it needs and would hand back a file
    damaged mid-stream as silently wrong voxels."""
    import nibabel as nib

    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                raw = stream.read()
        except (gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
            raise CalfInputError(
                path,
                f"is damaged: it could not be decompressed ({type(exc).__name__}: {exc}); "
                "a truncated download or copy is the usual cause.",
                "copy or download the file again.",
            ) from exc
        # The header's first field, sizeof_hdr (either byte order), tells NIfTI-1 from -2.
        sizes = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
        klass = nib.Nifti1Image if 348 in sizes else nib.Nifti2Image if 540 in sizes else None
        if klass is not None:
            try:
                return klass.from_bytes(raw)
            except Exception as exc:  # nibabel's header errors have no common base class
                raise CalfInputError(
                    path,
                    f"has a damaged NIfTI header ({type(exc).__name__}: {exc}).",
                    "copy the file again, or re-export it from the program that made it.",
                ) from exc
        raise CalfInputError(
            path,
            "could not be read as NIfTI: it is gzip-compressed but holds no NIfTI-1/2 header.",
            "check that it is a NIfTI file (not e.g. a compressed DICOM or MHA).",
        )
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, EOFError, OSError, ValueError) as exc:
        raise CalfInputError(
            path,
            f"could not be read as NIfTI ({type(exc).__name__}: {exc}).",
            "check that it is a NIfTI-1/2 file and not damaged: open it in another viewer "
            "or copy it again.",
        ) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise CalfInputError(
            path,
            f"is a {type(img).__name__}, not a NIfTI-1/2 image.",
            "convert it to NIfTI (.nii or .nii.gz).",
        )
    return img


def _read_array(img, path: Path, dtype: type | None) -> np.ndarray:
    """Read the voxels; truncated or corrupt files surface here, not in ``nib.load``."""
    try:
        if dtype is None:
            # Unscaled integer files stay integer (labels); scaled ones come back float.
            return np.asanyarray(img.dataobj)
        return np.asarray(img.dataobj, dtype=dtype)  # scales straight into float32
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as exc:
        raise CalfInputError(
            path,
            f"is damaged: its voxels could not be read ({type(exc).__name__}: {exc}); "
            "a truncated download or copy is the usual cause.",
            "copy or download the file again.",
        ) from exc


def label_dtype_for(lo: float, hi: float) -> np.dtype:
    """Smallest of uint8, int16, int32 (else int64) that holds integers in [lo, hi]."""
    for candidate in (np.uint8, np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.int64)


def _as_label_array(array: np.ndarray, path: Path | None) -> np.ndarray:
    """Integer label map; float files holding whole numbers are accepted and converted."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype.itemsize <= 4:
            return array
        return array.astype(label_dtype_for(array.min(), array.max())) if array.size else array
    rounded = np.rint(array)
    bad = int(np.count_nonzero(rounded != array))
    if bad:
        raise CalfInputError(
            path,
            f"is used as a label map but {bad} voxel(s) are not whole numbers "
            f"(e.g. {array[rounded != array].flat[0]!r}).",
            "give the segmentation file (integer labels), not an image or a probability map.",
        )
    return rounded.astype(label_dtype_for(rounded.min(), rounded.max())) if rounded.size else rounded


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
    _refuse_unreadable(path)
    img = _open_nifti(path)

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
    array = _read_array(img, path, np.float32 if want_float else None).reshape(shape)
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
        array = _as_label_array(array, path)

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


def _storable(array: np.ndarray, path: Path, dtype: np.dtype | type | str | None) -> np.ndarray:
    array = np.asanyarray(array)
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize > 4:
        # NIfTI readers widely lack int64; nibabel refuses it without an explicit dtype.
        return array.astype(label_dtype_for(array.min(), array.max())) if array.size else array
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise CalfInputError(
            path, f"cannot store an array of dtype {array.dtype} in NIfTI.",
            "convert it to an integer or float array first.",
        )
    return array


def _check_affine(affine: np.ndarray, path: Path) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise CalfInputError(
            path,
            f"cannot be written with affine of shape {affine.shape} (a finite 4x4 is needed).",
            "pass the 4x4 voxel-to-mm affine, e.g. Volume.affine of the image it belongs to.",
        )
    return affine


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
    data = _storable(array, path, dtype)
    if data.ndim not in (3, 4):
        raise CalfInputError(
            path,
            f"cannot be written from a {data.ndim}D array of shape {data.shape}.",
            "pass a 3D volume (or 4D with channels last).",
        )
    affine = _check_affine(affine, path)
    if path.exists() and not overwrite:
        raise CalfFileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    img = nib.Nifti1Image(data, affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    # The temp name keeps the suffix: nibabel decides on gzip from it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        nib.save(img, str(tmp))
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.debug("wrote %s %s %s", path, data.shape, data.dtype)
    return path


def _move_no_clobber(tmp: Path, path: Path) -> None:
    """Move into place unless ``path`` appeared meanwhile (a hard link fails atomically)."""
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise CalfFileExistsError(path) from exc
    except OSError:  # filesystems without hard links: the exists() check above must do
        if path.exists():
            raise CalfFileExistsError(path) from None
        os.replace(tmp, path)


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


# Case discovery lives in its own module (which imports from this one); its names are part
# of this module's API, resolved on first use so neither import order can form a cycle.
_DISCOVERY_NAMES = frozenset({"LAYOUTS", "Case", "LoadedCase", "discover_cases", "load_case"})


def __getattr__(name: str):
    if name in _DISCOVERY_NAMES:
        from . import discovery

        return getattr(discovery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AFFINE_ATOL_MM",
    "LAYOUTS",
    "MODALITIES_2021",
    "MODALITIES_2023",
    "Case",
    "LoadedCase",
    "Volume",
    "affine_spacing",
    "discover_cases",
    "is_nifti_path",
    "label_dtype_for",
    "load_case",
    "load_volume",
    "nifti_stem",
    "save_like",
    "save_volume",
    "to_source_orientation",
]

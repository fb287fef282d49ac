"""Low-level NIfTI file handling for :mod:`napari_calf.io.volumes`: names, opening with checks,
dtype rules and moving a finished file into place.

Every problem becomes a :class:`~napari_calf.errors.CalfInputError` naming the file, the
problem and the fix. Public names are re-exported by :mod:`napari_calf.io.volumes`.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import CalfInputError

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")


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


def refuse_unreadable(path: Path) -> None:
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


def open_nifti(path: Path):  # -> nibabel.Nifti1Image | Nifti2Image
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
                img = klass.from_bytes(raw)
            except Exception as exc:  # nibabel's header errors have no common base class
                raise CalfInputError(
                    path,
                    f"has a damaged NIfTI header ({type(exc).__name__}: {exc}).",
                    "copy the file again, or re-export it from the program that made it.",
                ) from exc
            check_claimed_size(img, path, len(raw), compressed=True)
            return img
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
    check_claimed_size(img, path, path.stat().st_size, compressed=False)
    return img


def check_claimed_size(img, path: Path, available: int, *, compressed: bool) -> None:
    """Refuse a header that claims more voxel bytes than the file holds, before anything is
    allocated for them: reading would reserve the claimed size (gigabytes for a damaged
    4 KB file) only to fail, or die with a MemoryError that names no file."""
    header = img.header
    shape = tuple(int(n) for n in header.get_data_shape())
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset())
    need = math.prod(shape) * dtype.itemsize
    have = max(0, available - offset)
    if need > have:
        raise CalfInputError(
            path,
            f"is damaged: its header claims a {shape} image of {dtype} ({need:,} bytes of "
            f"voxels from byte {offset}), but the file holds only {have:,} bytes of voxels"
            f"{' once decompressed' if compressed else ''}.",
            "the file is truncated or its header is damaged: copy or download it again, "
            "or re-export it from the program that made it.",
        )


def read_array(img, path: Path, dtype: type | None) -> np.ndarray:
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


def as_label_array(array: np.ndarray, path: Path | None) -> np.ndarray:
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


def storable_array(array: np.ndarray, path: Path, dtype: np.dtype | type | str | None) -> np.ndarray:
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


def check_affine(affine: np.ndarray, path: Path) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise CalfInputError(
            path,
            f"cannot be written with affine of shape {affine.shape} (a finite 4x4 is needed).",
            "pass the 4x4 voxel-to-mm affine, e.g. Volume.affine of the image it belongs to.",
        )
    return affine



"""napari writer: a Labels layer -> NIfTI that overlays its source in any viewer.

When the layer came from a NIfTI file through this plugin's reader (or was made on
its grid by the CALF widgets), ``layer.metadata["napari_calf"]`` holds the source
affine and orientation, and the labels are written back exactly as the source file is
stored: same voxel order, same affine. Otherwise the affine is built from the layer's
``scale`` and ``translate``, read in this plugin's display convention (see
:func:`~napari_calf._napari.reader.canonical_to_layer`), so opening the file again with
this reader puts it back where it was drawn.

napari's save dialog asks before replacing a file, so the writer replaces.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import CalfInputError
from .reader import DISPLAY_CONVENTION, METADATA_KEY, canonical_affine_from_layer, layer_to_canonical

log = logging.getLogger(__name__)


def _source_volume(canonical: np.ndarray, info: dict[str, Any]):  # -> Volume | None
    """The source grid recorded by the reader, if it still fits this layer's data."""
    from ..io.volumes import Volume

    try:
        shape = tuple(int(n) for n in info["shape"])[:3]
        source_affine = np.asarray(info["source_affine"], dtype=float)
        affine = np.asarray(info["affine"], dtype=float)
        source_shape = tuple(int(n) for n in info["source_shape"])
    except (KeyError, TypeError, ValueError):
        return None
    if info.get("display") != DISPLAY_CONVENTION or shape != canonical.shape[:3]:
        return None
    if source_affine.shape != (4, 4) or affine.shape != (4, 4):
        return None
    return Volume(
        data=canonical,
        affine=affine,
        spacing=tuple(float(s) for s in info.get("spacing", (1.0, 1.0, 1.0))),
        orientation=tuple(info.get("orientation", ())),
        source_affine=source_affine,
        source_shape=source_shape,
        path=None,
    )


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: save a Labels layer as ``.nii.gz``/``.nii``.

    Parameters
    ----------
    path : str
        Output file chosen by the user.
    data : array-like
        The layer's data, shape (Z, Y, X) in the reader's display convention (the first
        level of a multiscale layer is written).
    meta : dict
        The layer's attributes (``scale``, ``translate``, ``metadata`` …).

    Returns
    -------
    list of str
        The path written.

    Raises
    ------
    CalfInputError
        Not 3D, or not a NIfTI file name.
    """
    from ..io._nifti import label_dtype_for
    from ..io.volumes import save_like, save_volume

    if isinstance(data, (list, tuple)):  # multiscale: the full-resolution level
        data = data[0]
    array = np.asarray(data)
    if array.ndim != 3:
        raise CalfInputError(
            path,
            f"cannot be written from a {array.ndim}D labels layer (shape {array.shape}).",
            "save a 3D labels layer (a volume of slices).",
        )
    if array.dtype.kind in "iub" and array.size:
        # napari may hold labels as int32/int64; store the smallest type that fits, as
        # segmentation files usually are (uint8 for BraTS)
        array = array.astype(label_dtype_for(array.min(), array.max()), copy=False)
    canonical = layer_to_canonical(array)
    info = (meta.get("metadata") or {}).get(METADATA_KEY) or {}
    reference = _source_volume(canonical, info) if info else None
    if reference is not None:
        written = save_like(canonical, reference, path, overwrite=True)
    else:
        scale = meta.get("scale") if meta.get("scale") is not None else (1.0, 1.0, 1.0)
        translate = meta.get("translate") if meta.get("translate") is not None else (0.0, 0.0, 0.0)
        affine = canonical_affine_from_layer(scale, translate, array.shape)
        written = save_volume(canonical, path, affine, overwrite=True)
    log.info("saved labels %s", written)
    return [str(written)]

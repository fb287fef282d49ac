"""Show a given slice of a given case in the viewer (shared by the review lists).

Volumes opened by the napari-calf reader are canonical (x, y, z) arrays shown
as (z, y, x) with y and x reversed (``reader.canonical_to_layer``), so a slice
index along a canonical axis is mapped with :func:`._analysis_data.layer_slice`.

A case measured from files is found among the open layers **by the files it came
from** (the reader's metadata and napari's layer source), never by its id alone:
two datasets often share case ids (``BraTS2021_00001`` in the original and in a
re-annotated copy), and showing the other one's labels would mislead a review of
annotations. A case that is not open is opened from its folder. Cases measured
from Labels layers are named by their layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CalfInputError
from ..reader import METADATA_KEY
from ._analysis_data import layer_slice


def _within(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def layer_file(layer: Any) -> str | None:
    """The file a layer was read from: the reader's metadata, else napari's source path."""
    info = (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}
    return info.get("path") or getattr(getattr(layer, "source", None), "path", None)


def case_layers(viewer: Any, case_id: str, case_folder: Path | None) -> list[Any]:
    """Layers showing ``case_id``.

    With ``case_folder`` (a case measured from files): the layers read from files in
    that folder, whatever their names. Without (measured from a layer): the layer
    named ``case_id``.
    """
    if case_folder is not None:
        return [layer for layer in viewer.layers if _within(layer_file(layer), case_folder)]
    return [layer for layer in viewer.layers if layer.name == case_id]


def _namesakes(viewer: Any, case_id: str, shown: list[Any]) -> list[Any]:
    """Open layers of *another* case with the same id (from another folder)."""
    ids = {id(layer) for layer in shown}
    return [layer for layer in viewer.layers if id(layer) not in ids and (
        ((layer.metadata or {}).get(METADATA_KEY) or {}).get("case_id") == case_id
        or layer.name.split(" ")[0] == case_id)]


def show_case_slice(viewer: Any, case_id: str, index: int, *, axis: int = 2,
                    case_folder: Path | None = None) -> str | None:
    """Open ``case_id`` if no layer shows it, then move the slider of ``axis`` to ``index``.

    Layers of another case with the same id are hidden, and the returned note says so.

    Parameters
    ----------
    axis : int
        Canonical slicing axis the index refers to (2 = axial).
    case_folder : Path, optional
        The folder the case was measured from; it is opened from there.

    Returns
    -------
    str or None
        A note for the user (another case with this id was hidden), else None.

    Raises
    ------
    CalfInputError
        The case is not open and there is no folder to open it from.
    """
    layers = case_layers(viewer, case_id, case_folder)
    if not layers:
        if case_folder is None:
            raise CalfInputError(None, f"no layer named {case_id!r} is open.",
                                 "open that case (or rename the layer back) and choose the slice again.")
        layers = list(viewer.open(str(case_folder), plugin="napari-calf") or [])
        if not layers:
            raise CalfInputError(case_folder, "the napari-calf reader returned no layers.",
                                 "check that the folder holds NIfTI files.")
    note = None
    others = _namesakes(viewer, case_id, layers) if case_folder is not None else []
    if others:
        for other in others:
            other.visible = False
        note = (f"Showing {case_id} from {case_folder}. Another case with the same id is open "
                f"({', '.join(o.name for o in others[:3])}{'…' if len(others) > 3 else ''}); "
                "its layers were hidden.")
    layer = next((lay for lay in layers if lay.__class__.__name__ == "Labels"), layers[-1])
    layer.visible = True
    images = [lay for lay in layers if lay.__class__.__name__ == "Image"]
    if images and not any(image.visible for image in images):
        images[-1].visible = True  # the reader shows one modality (FLAIR-like); keep one on
    viewer.layers.selection.active = layer
    layer_axis, layer_index = layer_slice(axis, index, layer.data.shape)
    viewer_axis = viewer.dims.ndim - layer.ndim + layer_axis
    # world coordinate of the slice, so scaled (mm) and shifted layers land on the right step
    coord = np.zeros(layer.ndim)
    coord[layer_axis] = layer_index
    world = np.asarray(layer.data_to_world(coord), dtype=float)
    if viewer.dims.ndisplay == 2 and viewer_axis in viewer.dims.displayed:
        # slicing axis is on screen (e.g. sagittal review in an axial view): make it the slider
        order = list(viewer.dims.order)
        order.remove(viewer_axis)
        viewer.dims.order = (viewer_axis, *order)
    viewer.dims.set_point(viewer_axis, float(world[layer_axis]))
    return note

"""Show a given slice of a given case in the viewer (shared by the review lists).

Volumes opened by the napari-calf reader are canonical (x, y, z) arrays shown
as (z, y, x) with y and x reversed (``reader.canonical_to_layer``), so a slice
index along a canonical axis is mapped with :func:`._analysis_data.layer_slice`. A case is found among the open layers by name (Labels
layers analysed from the viewer are named by their case id) or by the file the
layer came from; a case that is not open is opened from its folder with the
napari-calf reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CalfInputError
from ._analysis_data import layer_slice


def _within(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def case_layers(viewer: Any, case_id: str, case_folder: Path | None) -> list[Any]:
    """Layers showing ``case_id``: named after it, or read from a file in its folder."""
    found = []
    for layer in viewer.layers:
        source = getattr(getattr(layer, "source", None), "path", None)
        if layer.name == case_id or (case_folder is not None and _within(source, case_folder)):
            found.append(layer)
        elif (layer.metadata.get("napari_calf") or {}).get("case_id") == case_id:
            found.append(layer)
    return found


def show_case_slice(viewer: Any, case_id: str, index: int, *, axis: int = 2,
                    case_folder: Path | None = None) -> None:
    """Open ``case_id`` if no layer shows it, then move the slider of ``axis`` to ``index``.

    Parameters
    ----------
    axis : int
        Canonical slicing axis the index refers to (2 = axial).

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
    layer = next((lay for lay in layers if lay.__class__.__name__ == "Labels"), layers[-1])
    for other in layers:
        other.visible = True
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

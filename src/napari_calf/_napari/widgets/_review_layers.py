"""The layers the review widget makes: prediction and error map, on the images' grid."""

from __future__ import annotations

from typing import Any

import numpy as np


def put_labels(viewer: Any, name: str, data: np.ndarray, reference: Any, metadata: dict[str, Any],
               colours: dict[Any, str]) -> str:
    """Add (or replace the data of) a Labels layer on ``reference``'s grid; returns its name.

    Same scale, translate, rotation, shear and affine as ``reference``, so it overlays
    the image voxel for voxel and the writer can save it onto the source file's grid.
    """
    from napari.utils.colormaps import DirectLabelColormap

    colormap = DirectLabelColormap(color_dict=colours)
    grid = {"scale": reference.scale, "translate": reference.translate,
            "rotate": reference.rotate, "shear": reference.shear,
            "affine": reference.affine.affine_matrix}
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.metadata = metadata
        layer.colormap = colormap
        for key, value in grid.items():
            setattr(layer, key, value)
    else:
        viewer.add_labels(data, name=name, metadata=metadata, colormap=colormap, opacity=0.7, **grid)
    return name


def show_layer_slice(viewer: Any, name: str, index: int) -> None:
    """Move the first slider to slice ``index`` (axis 0 of layer ``name``'s data)."""
    if name not in viewer.layers:
        return
    layer = viewer.layers[name]
    world = layer.data_to_world((index, 0, 0))
    axis = viewer.dims.ndim - layer.ndim  # layers may have fewer dims than the viewer
    viewer.dims.set_point(axis, float(world[0]))

"""The layers the review widget makes: prediction and error map, on the images' grid.

The prediction is a Labels layer (a user may correct it with napari's brush and save
it). The error map is an Image layer with a categorical colormap: nobody paints it,
and napari builds an Image layer in a fraction of a Labels layer's time (no brush and
polygon overlays), which is time napari's window cannot respond in.
"""

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
    if name in viewer.layers:
        layer = viewer.layers[name]
        _match_grid(layer, reference)
        layer.metadata = metadata
        layer.data = data
    else:
        viewer.add_labels(data, name=name, metadata=metadata, colormap=colormap, opacity=0.7,
                          **_grid(reference))
    return name


def _match_grid(layer: Any, reference: Any) -> None:
    """Give ``layer`` the reference's grid, touching only what differs: every change
    makes napari redraw the layer, five in a row cost the GUI thread five redraws."""
    for key, value in _grid(reference).items():
        if not np.allclose(np.asarray(getattr(layer, key) if key != "affine" else layer.affine.affine_matrix),
                           np.asarray(value)):
            setattr(layer, key, value)


def _grid(reference: Any) -> dict[str, Any]:
    return {"scale": reference.scale, "translate": reference.translate, "rotate": reference.rotate,
            "shear": reference.shear, "affine": reference.affine.affine_matrix}


def class_colormap(colours: dict[int, str], name: str) -> Any:
    """A napari colormap showing integer classes 1..n in ``colours`` and 0 transparent.

    Use with ``contrast_limits=(-0.5, n + 0.5)``: class ``k`` falls in the middle of bin ``k``.
    """
    from napari.utils.colormaps import Colormap
    from napari.utils.colormaps.standardize_color import transform_color

    n = max(colours)
    rgba = [[0.0, 0.0, 0.0, 0.0]] + [list(transform_color(colours[k])[0]) for k in range(1, n + 1)]
    controls = [i / (n + 1) for i in range(n + 2)]
    return Colormap(colors=rgba, controls=controls, interpolation="zero", name=name)


def put_class_image(viewer: Any, name: str, data: np.ndarray, reference: Any, metadata: dict[str, Any],
                    colours: dict[int, str]) -> str:
    """Add (or replace the data of) an Image layer showing classes 1..n in ``colours``."""
    n = max(colours)
    limits = (-0.5, n + 0.5)
    if name in viewer.layers:
        layer = viewer.layers[name]
        _match_grid(layer, reference)
        layer.metadata = metadata
        layer.data = data
        if tuple(layer.contrast_limits) != limits:
            layer.contrast_limits = limits
    else:
        viewer.add_image(data, name=name, metadata=metadata, colormap=class_colormap(colours, name),
                         contrast_limits=limits, interpolation2d="nearest", opacity=0.8,
                         blending="translucent", **_grid(reference))
    return name


def show_layer_slice(viewer: Any, name: str, index: int) -> None:
    """Move the first slider to slice ``index`` (axis 0 of layer ``name``'s data)."""
    if name not in viewer.layers:
        return
    layer = viewer.layers[name]
    world = layer.data_to_world((index, 0, 0))
    axis = viewer.dims.ndim - layer.ndim  # layers may have fewer dims than the viewer
    viewer.dims.set_point(axis, float(world[0]))

"""napari sample: *File > Open Sample > napari-calf > Brain-tumour phantom*.

A thin adapter over :func:`napari_calf.phantom.sample_case`: four MR modalities and
the BraTS labels, laid out exactly like a case opened from disk with this plugin's
reader (axial slices on screen, anterior up, same ``scale``/``translate`` and layer
metadata), so every widget treats the sample like real data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .reader import DISPLAY_CONVENTION, METADATA_KEY, canonical_to_layer, layer_scale_translate

LayerData = tuple[Any, dict[str, Any], str]

#: Name of the sample's labels layer.
LABELS_NAME = "tumour (seg)"
#: Shown on opening: tumour extent is clearest on FLAIR; the others are one click away.
VISIBLE_MODALITY = "flair"
#: BraTS colours most viewers use: necrosis red, oedema green, enhancing tumour yellow.
BRATS_2021_COLOURS = {1: "red", 2: "green", 4: "yellow"}


def _metadata(case: Any, **extra: Any) -> dict[str, Any]:
    """The reader's metadata layout, for an in-memory case (no file behind it)."""
    affine = np.asarray(case.affine)
    return {
        METADATA_KEY: {
            "path": None,
            "affine": affine.tolist(),
            "source_affine": affine.tolist(),
            "source_shape": list(case.label.shape),
            "shape": list(case.label.shape),
            "spacing": list(case.spacing),
            "orientation": ["R", "A", "S"],
            "display": DISPLAY_CONVENTION,
            "case_id": case.case_id,
            "layout": "brats2021",
            "label_convention": "brats2021",
            "synthetic": True,
            **extra,
        }
    }


def _contrast_limits(image: np.ndarray, brain: np.ndarray) -> tuple[float, float]:
    """0 to the 99.5th percentile of the brain: background black, no hot-voxel washout."""
    hi = float(np.percentile(image[brain], 99.5)) if brain.any() else float(image.max())
    return 0.0, max(hi, 1.0)


def sample_layers(case: Any) -> list[LayerData]:
    """Layer data tuples for a :class:`~napari_calf.phantom.dataset.PhantomCase`.

    Four image layers (``t1``, ``t1ce``, ``t2``, ``flair``; grey, only FLAIR visible) and
    one labels layer, all sharing ``scale`` and ``translate`` so they overlay.
    """
    scale, translate = layer_scale_translate(case.affine, case.label.shape)
    layers: list[LayerData] = []
    for modality, image in case.images.items():
        layers.append((
            canonical_to_layer(image),
            {
                "name": modality,
                "scale": scale,
                "translate": translate,
                "colormap": "gray",
                "contrast_limits": _contrast_limits(image, case.brain),
                # opaque-per-layer blending: toggling the eye of the top image reveals
                # the next one instead of mixing them
                "blending": "translucent_no_depth",
                "visible": modality == VISIBLE_MODALITY,
                "metadata": _metadata(case, modality=modality),
            },
            "image",
        ))
    labels_attrs: dict[str, Any] = {
        "name": LABELS_NAME,
        "scale": scale,
        "translate": translate,
        "opacity": 0.5,
        "metadata": _metadata(case),
    }
    try:
        from napari.utils.colormaps import DirectLabelColormap

        labels_attrs["colormap"] = DirectLabelColormap(
            color_dict={None: "transparent", 0: "transparent", **BRATS_2021_COLOURS}
        )
    except ImportError:  # pragma: no cover - very old napari: default label colours
        pass
    layers.append((canonical_to_layer(case.label), labels_attrs, "labels"))
    return layers


def make_sample_case() -> list[LayerData]:
    """npe2 sample-data command ``napari-calf.sample_case``."""
    from ..phantom.dataset import sample_case

    return sample_layers(sample_case())

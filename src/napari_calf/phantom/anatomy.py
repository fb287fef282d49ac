"""The phantom's anatomy: the packaged MNI152 template and the per-case warp.

The asset (``assets/mni152_2009a_2mm.nii.gz``, built by ``tools/make_template_asset.py``)
is a 4D uint8 volume at 2 mm, RAS: T1 intensity and grey/white-matter probabilities,
skull-stripped. It is read once per process and shared, read-only, by every case.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

TEMPLATE_ASSET = "mni152_2009a_2mm.nii.gz"
TEMPLATE_NOTICE = "MNI_ICBM152_2009_NOTICE.txt"


@lru_cache(maxsize=1)
def template() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The anatomy asset as float32 channels and its affine (read once per process).

    Channels: ``t1`` (scaled so normal white matter is 1.0), ``gm`` and ``wm``
    (probabilities in [0, 1]) and ``brain`` (1 inside the skull-stripped brain).
    """
    import nibabel as nib

    ref = resources.files("napari_calf") / "assets" / TEMPLATE_ASSET
    with resources.as_file(ref) as path:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
        affine = np.asarray(img.affine, dtype=float)
    wm = np.ascontiguousarray(data[..., 2] / 255.0)
    channels = {
        "t1": np.ascontiguousarray(data[..., 0] / float(np.median(data[..., 0][wm > 0.9]))),
        "gm": np.ascontiguousarray(data[..., 1] / 255.0),
        "wm": wm,
        "brain": (data[..., 0] > 0).astype(np.float32),
    }
    for array in (*channels.values(), affine):
        array.setflags(write=False)  # shared by every case: nobody may edit it in place
    return channels, affine


def template_notice() -> str:
    """The MNI ICBM152 2009 copyright notice, to ship with anything built from the template."""
    return (resources.files("napari_calf") / "assets" / TEMPLATE_NOTICE).read_text(encoding="utf-8")


def warp_params(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mild per-case geometric variation: scaling 0.94-1.06, rotation of a few degrees, shift.

    So that the cases of a dataset are not one brain with different tumours. The grid
    and affine stay those of the template (every case lives in the same space).
    Returns the output-to-input voxel matrix and offset for ``ndimage.affine_transform``.
    """
    scale = rng.uniform(0.94, 1.06) * (1 + rng.uniform(-0.02, 0.02, 3))
    yaw, pitch = np.deg2rad(rng.uniform(-6, 6)), np.deg2rad(rng.uniform(-4, 4))
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    inverse = np.linalg.inv(rz @ rx @ np.diag(scale))
    centre = (np.array(shape, dtype=float) - 1) / 2
    shift = rng.uniform(-2, 2, 3)
    return inverse, centre - inverse @ (centre + shift)


def warp(channel: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from scipy import ndimage as ndi

    inverse, offset = params
    return ndi.affine_transform(channel, inverse, offset=offset, order=1, mode="constant", cval=0.0)

"""The phantom's anatomy: the packaged MNI152 template and the per-case warp.

The asset (``assets/mni152_2009a_2mm.nii.gz``, built by ``tools/make_template_asset.py``)
is a 4D uint8 volume at 2 mm, RAS: T1 intensity and grey/white-matter probabilities,
skull-stripped. It is read once per process and shared, read-only, by every case.

``template(full_size=True)`` is the same anatomy resampled (trilinear) to BraTS
geometry: 240 x 240 x 155 voxels of 1 mm, the brain centred in the grid. It has no
more anatomical detail than the 2 mm asset; it exists so that memory and speed can be
measured on arrays of the size real BraTS cases have.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

TEMPLATE_ASSET = "mni152_2009a_2mm.nii.gz"
TEMPLATE_NOTICE = "MNI_ICBM152_2009_NOTICE.txt"
#: BraTS geometry (SRI24 space, 2017-2023 challenges): voxels per axis at 1 mm.
FULL_SIZE_SHAPE = (240, 240, 155)
FULL_SIZE_MM = 1.0


@lru_cache(maxsize=2)
def template(full_size: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The anatomy as float32 channels and its affine (built once per process and size).

    Channels: ``t1`` (scaled so normal white matter is 1.0), ``gm`` and ``wm``
    (probabilities in [0, 1]) and ``brain`` (1 inside the skull-stripped brain).

    Parameters
    ----------
    full_size : bool
        False: the packaged 2 mm grid (80 x 98 x 81). True: resampled to 1 mm on a
        240 x 240 x 155 grid (BraTS geometry), the brain's bounding box centred.
    """
    if full_size:
        return _full_size(*template(False))
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


def _full_size(channels: dict[str, np.ndarray], affine: np.ndarray,
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Resample the 2 mm channels onto the 1 mm BraTS grid, brain centred (trilinear)."""
    from scipy import ndimage as ndi

    step = float(np.sqrt((affine[:3, 0] ** 2).sum()))
    idx = np.argwhere(channels["brain"] > 0)
    centre_in = (idx.min(0) + idx.max(0)) / 2.0  # brain bounding-box centre, input voxels
    centre_out = (np.array(FULL_SIZE_SHAPE, dtype=float) - 1) / 2
    ratio = FULL_SIZE_MM / step
    # input voxel = ratio * output voxel + offset, with the two centres meeting
    offset = centre_in - ratio * centre_out
    out = {}
    for name, channel in channels.items():
        out[name] = ndi.affine_transform(channel, np.full(3, ratio), offset=offset,
                                         output_shape=FULL_SIZE_SHAPE, order=1,
                                         mode="constant", cval=0.0)
    out["brain"] = (out["brain"] > 0.5).astype(np.float32)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * ratio
    new_affine[:3, 3] = affine[:3, :3] @ offset + affine[:3, 3]
    for array in (*out.values(), new_affine):
        array.setflags(write=False)
    return out, new_affine


def template_notice() -> str:
    """The MNI ICBM152 2009 copyright notice, to ship with anything built from the template."""
    return (resources.files("napari_calf") / "assets" / TEMPLATE_NOTICE).read_text(encoding="utf-8")


def warp_params(rng: np.random.Generator, shape: tuple[int, ...],
                voxel_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Mild per-case geometric variation: scaling 0.94-1.06, rotation of a few degrees, shift.

    So that the cases of a dataset are not one brain with different tumours. The grid
    and affine stay those of the template (every case lives in the same space). The
    shift is up to 4 mm whatever the voxel size ``voxel_mm``. Returns the output-to-input voxel matrix and offset for ``ndimage.affine_transform``.
    """
    scale = rng.uniform(0.94, 1.06) * (1 + rng.uniform(-0.02, 0.02, 3))
    yaw, pitch = np.deg2rad(rng.uniform(-6, 6)), np.deg2rad(rng.uniform(-4, 4))
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    inverse = np.linalg.inv(rz @ rx @ np.diag(scale))
    centre = (np.array(shape, dtype=float) - 1) / 2
    shift = rng.uniform(-2, 2, 3) * (2.0 / voxel_mm)
    return inverse, centre - inverse @ (centre + shift)


def warp(channel: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from scipy import ndimage as ndi

    inverse, offset = params
    return ndi.affine_transform(channel, inverse, offset=offset, order=1, mode="constant", cval=0.0)

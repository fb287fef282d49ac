"""A tiny BraTS-2021-style dataset for the engine tests (trains in seconds on a CPU).

The phantom (``napari_calf.phantom``) is realistic but 80×98 per slice; engine tests
that only need *learnable* data use these 48×48×10 cases: a noisy elliptical "brain" in
four channels, and on a few slices a blob that is brighter in every channel, labelled
with BraTS-2021 labels (2 edema around 1 core with 4 enhancing in the middle).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (48, 48, 10)
MODALITIES = ("t1", "t1ce", "t2", "flair")


def write_tiny_dataset(root: Path, n_cases: int = 3, seed: int = 0) -> Path:
    """Write ``n_cases`` cases under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    xx, yy = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    brain2d = ((xx - 23.5) / 21) ** 2 + ((yy - 23.5) / 19) ** 2 <= 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-48, -48, -10)
    for i in range(n_cases):
        case = f"Tiny-{i:03d}"
        folder = root / case
        folder.mkdir(parents=True)
        label = np.zeros(SHAPE, np.uint8)
        for z in range(2, 8):  # tumour on six of ten slices, sizes vary
            cx, cy = rng.integers(14, 34, size=2)
            r = rng.uniform(2.5, 7.0)
            d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            label[..., z][(d <= r) & brain2d] = 2
            label[..., z][(d <= 0.6 * r) & brain2d] = 1
            label[..., z][(d <= 0.3 * r) & brain2d] = 4
        for j, m in enumerate(MODALITIES):
            img = rng.normal(400 + 50 * j, 30, size=SHAPE).astype(np.float32)
            img[label > 0] += 250 + 40 * j
            img[~np.broadcast_to(brain2d[..., None], SHAPE)] = 0
            nib.save(nib.Nifti1Image(img, affine), folder / f"{case}_{m}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), folder / f"{case}_seg.nii.gz")
    return root

"""Full-size phantom cases: BraTS geometry (240 x 240 x 155 voxels of 1 mm), same anatomy."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_calf.phantom import anatomy


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def test_full_size_template_is_brats_geometry_with_the_same_brain() -> None:
    small, small_affine = anatomy.template()
    full, full_affine = anatomy.template(full_size=True)
    for name, channel in full.items():
        assert channel.shape == (240, 240, 155), name
        assert channel.dtype == np.float32 and not channel.flags.writeable
    np.testing.assert_allclose(np.abs(np.diag(full_affine)[:3]), 1.0)

    brain_small = small["brain"] > 0
    brain_full = full["brain"] > 0
    # the brain's bounding box sits in the middle of the grid (within a voxel)
    idx = np.argwhere(brain_full)
    centre = (idx.min(0) + idx.max(0)) / 2
    np.testing.assert_allclose(centre, (np.array([240, 240, 155]) - 1) / 2, atol=1.0)
    # same place in the world: deep brain voxels of the 2 mm grid are brain at 1 mm, and
    # voxels well outside it are not (independent check through the two affines)
    inside = np.argwhere(ndi.binary_erosion(brain_small, iterations=2))
    outside = np.argwhere(~ndi.binary_dilation(brain_small, iterations=2))
    inv = np.linalg.inv(full_affine)
    for points, expected in ((inside, True), (outside[::50], False)):
        ijk = np.rint(_world(inv, _world(small_affine, points.astype(float)))).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.array(brain_full.shape)), axis=1)
        assert ok.mean() > 0.99 or not expected
        values = brain_full[tuple(ijk[ok].T)]
        assert np.all(values == expected)
    # and the same brain volume in mm³ (within 2 %)
    vol_small = brain_small.sum() * abs(np.linalg.det(small_affine[:3, :3]))
    vol_full = brain_full.sum() * abs(np.linalg.det(full_affine[:3, :3]))
    assert vol_full == pytest.approx(vol_small, rel=0.02)


def test_cli_full_size_flag_writes_cases_on_the_full_size_grid(tmp_path, monkeypatch) -> None:
    """``--full-size`` reaches the generator (on a coarser stand-in grid, to stay fast)."""
    from napari_calf._cli.main import main

    monkeypatch.setattr(anatomy, "FULL_SIZE_SHAPE", (100, 110, 90))
    monkeypatch.setattr(anatomy, "FULL_SIZE_MM", 2.0)
    anatomy.template.cache_clear()
    try:
        out = tmp_path / "full"
        assert main(["phantom", str(out), "--cases", "1", "--full-size", "--no-progress"]) == 0
    finally:
        anatomy.template.cache_clear()
    seg = nib.load(out / "CALF-Phantom-00000" / "CALF-Phantom-00000_seg.nii.gz")
    t1 = nib.load(out / "CALF-Phantom-00000" / "CALF-Phantom-00000_t1.nii.gz")
    assert seg.shape == t1.shape == (100, 110, 90)
    assert np.asarray(seg.dataobj).any(), "a tumour was drawn"
    grid = json.loads((out / "dataset.json").read_text())["grid"]
    assert grid == {"shape": [100, 110, 90], "voxel_mm": 2.0, "full_size": True}

"""Preprocessing, splits by case, the slice store and batch augmentation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps

from napari_calf.engine.data import cap_slices_per_case, padding_for, split_cases, stack_modalities, zscore_brain
from napari_calf.errors import CalfInputError
from napari_calf.events import drain
from napari_calf.engine.slice_store import iter_build_slice_store


@dataclass(frozen=True)
class FakeCase:
    case_id: str
    images: dict = field(default_factory=dict)
    label: Path | None = None


# --------------------------------------------------------------------------- splits


def test_split_is_by_case_reproducible_and_order_free() -> None:
    cases = [FakeCase(f"case{i:02d}") for i in range(10)]
    a = split_cases(cases, 0.3, seed=1)
    b = split_cases(list(reversed(cases)), 0.3, seed=1)
    assert a.train_ids == b.train_ids and a.val_ids == b.val_ids
    assert not set(a.train_ids) & set(a.val_ids)
    assert sorted(a.train_ids + a.val_ids) == [c.case_id for c in cases]
    assert len(a.val_ids) == 3
    others = {tuple(split_cases(cases, 0.3, seed=s).val_ids) for s in range(2, 8)}
    assert len(others | {tuple(a.val_ids)}) > 1, "the seed should change the split"


def test_split_keeps_one_case_each_side_and_refuses_too_few() -> None:
    two = [FakeCase("a"), FakeCase("b")]
    s = split_cases(two, 0.01, seed=0)
    assert len(s.val) == 1 and len(s.train) == 1
    s = split_cases(two, 0.99, seed=0)
    assert len(s.val) == 1 and len(s.train) == 1
    with pytest.raises(CalfInputError, match="at least 2"):
        split_cases([FakeCase("only")], 0.2)


# --------------------------------------------------------------------------- intensities


def test_zscore_over_brain_matches_scipy_and_clips() -> None:
    rng = np.random.default_rng(0)
    vol = np.zeros((20, 22, 8), np.float32)
    vol[4:16, 5:18, 1:7] = rng.normal(300, 40, size=(12, 13, 6))
    vol[10, 10, 3] = 5000  # an outlier that must be clipped
    out = zscore_brain(vol, clip=5.0)
    brain = vol != 0
    expected = np.clip(sps.zscore(vol[brain].astype(np.float64)), -5, 5)
    np.testing.assert_allclose(out[brain], expected, rtol=1e-5, atol=1e-5)
    assert np.all(out[~brain] == 0)
    assert out[10, 10, 3] == pytest.approx(5.0)


def test_zscore_of_constant_or_empty_volume_is_zero_not_nan() -> None:
    assert np.all(zscore_brain(np.full((4, 4, 4), 7.0)) == 0)
    assert np.all(zscore_brain(np.zeros((4, 4, 4))) == 0)


def test_padding_is_centred_multiple_of_32_and_crops_back() -> None:
    pad = padding_for((80, 98), 32)
    assert pad.padded == (96, 128)
    assert pad.before == (8, 15) and pad.after == (8, 15)
    x = np.random.default_rng(0).normal(size=(3, 80, 98))
    padded = pad.pad(x)
    assert padded.shape == (3, 96, 128)
    np.testing.assert_array_equal(pad.crop(padded), x)
    assert padded[:, :8].sum() == 0 and padded[:, :, -15:].sum() == 0


def test_cap_slices_per_case_is_seeded_subset() -> None:
    sel = {"a": np.arange(10), "b": np.arange(3)}
    capped = cap_slices_per_case(sel, 4, seed=0)
    assert len(capped["a"]) == 4 and set(capped["a"]) <= set(range(10))
    np.testing.assert_array_equal(capped["b"], np.arange(3))
    np.testing.assert_array_equal(cap_slices_per_case(sel, 4, seed=0)["a"], capped["a"])


# --------------------------------------------------------------------------- oriented files


def _write_lps_case(root: Path, case_id: str, seed: int) -> tuple[dict, np.ndarray]:
    from _engine_data import write_lps_case  # tests/_engine_data.py

    ras, label, _affine = write_lps_case(root, case_id, seed)
    return ras, label


def test_store_prepares_lps_case_in_canonical_orientation(tmp_path: Path) -> None:
    from napari_calf.io.discovery import discover_cases

    ras, label = _write_lps_case(tmp_path / "data", "caseA", seed=0)
    assert nib.aff2axcodes(nib.load(tmp_path / "data/caseA/caseA_t1.nii.gz").affine) == ("L", "P", "S")
    cases = discover_cases(tmp_path / "data")
    store = drain(iter_build_slice_store(cases, {"caseA": np.array([5, 6])}, mode="memory"))
    assert store.images.shape == (2, 4, 64, 64) and store.images.dtype == np.float16
    assert store.targets.dtype == np.uint8
    pad = store.paddings["caseA"]
    expected = stack_modalities(ras)[..., 5]  # (C, X, Y) canonical
    np.testing.assert_allclose(pad.crop(store.images[0].astype(np.float32)), expected, atol=2e-2)
    np.testing.assert_array_equal(pad.crop(store.targets[0]), label[..., 5] > 0)
    np.testing.assert_array_equal(store.areas, [(label[..., 5] > 0).sum(), (label[..., 6] > 0).sum()])
    np.testing.assert_array_equal(store.slices, [5, 6])


def test_disk_store_is_reused_and_rebuilt_when_data_change(tmp_path: Path) -> None:
    from napari_calf.io.discovery import discover_cases

    _write_lps_case(tmp_path / "data", "caseA", seed=0)
    cases = discover_cases(tmp_path / "data")
    cache = tmp_path / "cache"
    sel = {"caseA": np.array([4, 5, 6])}
    first = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    assert first.location is not None and first.location.parent == cache and not first.reused
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")], "temp folder left behind"
    second = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    assert second.reused and second.key == first.key
    np.testing.assert_array_equal(np.asarray(second.images), np.asarray(first.images))
    # touching a file (new mtime) invalidates the key
    t1 = cases[0].images["t1"]
    os.utime(t1, ns=(t1.stat().st_atime_ns, t1.stat().st_mtime_ns + 10**9))
    third = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    assert not third.reused and third.key != first.key


def test_half_written_store_is_never_reused(tmp_path: Path) -> None:
    from napari_calf.io.discovery import discover_cases

    _write_lps_case(tmp_path / "data", "caseA", seed=0)
    cases = discover_cases(tmp_path / "data")
    cache = tmp_path / "cache"
    sel = {"caseA": np.array([5])}
    gen = iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache)
    next(gen)  # one case prepared...
    gen.close()  # ...then interrupted before completion
    assert not any(cache.iterdir()), "an interrupted store must leave nothing behind"
    # a folder with the right name but no completion record is rebuilt, not trusted
    store = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    meta = store.location / "store.json"
    meta.unlink()
    again = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    assert not again.reused


# --------------------------------------------------------------------------- augmentation


def test_augmentation_moves_image_and_target_together_and_is_seeded() -> None:
    import torch

    from napari_calf.engine.augment import AugmentSettings, augment_batch

    rng = np.random.default_rng(0)
    target = (rng.random((16, 1, 32, 32)) > 0.7).astype(np.float32)
    # channel 0 is a copy of the target (+1 so it is "brain"), channel 1 a ramp
    ramp = np.broadcast_to(np.arange(32, dtype=np.float32)[None, None, None, :] + 1, (16, 1, 32, 32))
    images = torch.from_numpy(np.concatenate([target + 1, ramp], axis=1))
    y = torch.from_numpy(target)
    geo_only = AugmentSettings(intensity_scale=0.0, intensity_shift=0.0)
    xa, ya = augment_batch(images, y, torch.Generator().manual_seed(3), geo_only)
    assert xa.shape == images.shape and ya.shape == y.shape
    torch.testing.assert_close(xa[:, :1] - 1, ya)  # same geometric transform
    assert not torch.equal(xa, images), "16 samples should not all stay unchanged"
    xb, yb = augment_batch(images, y, torch.Generator().manual_seed(3), geo_only)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # every output is one of the 8 symmetries of its input
    for i in range(16):
        variants = [images[i].rot90(k, (-2, -1)) for k in range(4)]
        variants += [v.flip(-1) for v in variants]
        assert any(torch.equal(xa[i], v) for v in variants)


def test_intensity_jitter_is_mild_and_leaves_background() -> None:
    import torch

    from napari_calf.engine.augment import AugmentSettings, augment_batch

    x = torch.zeros(8, 2, 16, 16)
    x[:, :, 4:12, 4:12] = 1.0
    y = torch.zeros(8, 1, 16, 16)
    xa, _ = augment_batch(x, y, torch.Generator().manual_seed(0),
                          AugmentSettings(flips=False, rotations=False))
    assert torch.all(xa[:, :, :4] == 0)
    inside = xa[:, :, 4:12, 4:12]
    assert inside.min() >= 1 - 0.1 - 0.1 - 1e-6 and inside.max() <= 1 + 0.1 + 0.1 + 1e-6
    assert inside.std() > 0


def test_store_refuses_a_modality_off_the_label_grid_naming_both_files(tmp_path: Path) -> None:
    from napari_calf.io.discovery import discover_cases

    _write_lps_case(tmp_path / "data", "caseA", seed=0)
    flair = tmp_path / "data/caseA/caseA_flair.nii.gz"
    img = nib.load(flair)
    shifted = img.affine.copy()
    shifted[0, 3] += 2.0  # 2 mm off: it no longer overlays the label
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), flair)
    cases = discover_cases(tmp_path / "data")
    with pytest.raises(CalfInputError) as err:
        drain(iter_build_slice_store(cases, {"caseA": np.array([5, 6])}, mode="memory"))
    message = str(err.value)
    assert "caseA_flair.nii.gz" in message and "caseA_seg.nii.gz" in message
    assert "2 mm" in message and "co-register" in message

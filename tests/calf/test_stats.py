"""Foreground areas and their moments, against hand counts and scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from napari_calf.errors import CalfConfigError, CalfInputError
from napari_calf.events import Progress
from napari_calf.calf.areas import DatasetAreas, binary_target, dataset_areas, iter_dataset_areas, slice_areas
from napari_calf.calf.stats import imbalance_stats

# --------------------------------------------------------------------------- moments


@pytest.mark.parametrize(
    "sample",
    [
        np.random.default_rng(0).lognormal(4, 1.0, 800),  # right-skewed, heavy tail
        np.random.default_rng(1).normal(300, 30, 800).clip(1),  # symmetric
        5000 - np.random.default_rng(2).lognormal(4, 1.0, 800),  # left-skewed
        np.array([1.0, 2.0, 100.0]),  # the smallest defined sample
    ],
    ids=["right", "symmetric", "left", "three"],
)
def test_moments_equal_scipy_on_nonzero_areas(sample):
    with_empty = np.concatenate([sample, np.zeros(37)])
    stats = imbalance_stats(with_empty, n_empty=5)
    assert stats.n == sample.size
    assert stats.n_empty == 42  # 37 zeros in the input + 5 counted elsewhere
    assert stats.skewness == pytest.approx(sps.skew(sample, bias=True), rel=1e-12, abs=1e-12)
    assert stats.kurtosis == pytest.approx(
        sps.kurtosis(sample, fisher=True, bias=True), rel=1e-12, abs=1e-12
    )
    assert stats.mean == pytest.approx(sample.mean())
    assert stats.median == pytest.approx(np.median(sample))
    assert stats.defined and stats.undefined_reason is None


def test_signs_of_the_moments_follow_the_shape():
    rng = np.random.default_rng(5)
    assert imbalance_stats(rng.lognormal(3, 1, 3000)).skewness > 1
    assert imbalance_stats(1e4 - rng.lognormal(3, 1, 3000)).skewness < -1
    assert abs(imbalance_stats(rng.normal(1e3, 10, 3000)).skewness) < 0.2


def test_moments_do_not_change_with_units():
    # pixels -> mm² is a constant factor: S and K must stay (CALF_METHOD §2).
    a = np.random.default_rng(6).gamma(2.0, 50.0, 500)
    px, mm2 = imbalance_stats(a), imbalance_stats(a * 0.9 * 1.2)
    assert mm2.skewness == pytest.approx(px.skewness)
    assert mm2.kurtosis == pytest.approx(px.kurtosis)


@pytest.mark.parametrize(
    ("areas", "n", "reason"),
    [
        ([], 0, "N = 0"),
        ([0, 0, 0], 0, "N = 0"),
        ([12.0], 1, "N = 1"),
        ([12.0, 30.0, 0.0], 2, "N = 2"),
        ([7.0, 7.0, 7.0, 7.0], 4, "σ = 0"),
        ([1e9 + 1e-6, 1e9, 1e9 + 2e-6, 1e9], 4, "within rounding"),
    ],
)
def test_degenerate_inputs_are_undefined_with_a_reason_never_nan(areas, n, reason):
    stats = imbalance_stats(areas)
    assert stats.n == n
    assert stats.skewness is None and stats.kurtosis is None
    assert not stats.defined
    assert reason in stats.undefined_reason
    d = stats.to_dict()
    json.dumps(d, allow_nan=False)  # JSON-safe: no NaN anywhere
    if n == 0:
        assert stats.mean is None and stats.median is None


def test_stats_to_dict_is_plain_json():
    d = imbalance_stats([1.0, 2.0, 9.0, 0.0]).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert set(d) == {"n", "n_empty", "mean", "median", "skewness", "kurtosis", "undefined_reason"}
    assert d["n_empty"] == 1


@pytest.mark.parametrize("bad", [[1.0, -2.0, 3.0], [1.0, np.nan, 3.0], [np.inf, 1.0, 2.0]])
def test_bad_areas_are_refused(bad):
    with pytest.raises(CalfInputError, match="area"):
        imbalance_stats(bad)


# --------------------------------------------------------------------------- targets


def _labels(values: list[int]) -> np.ndarray:
    """A 1x1xN volume holding the given labels along z."""
    return np.asarray(values, dtype=np.uint8).reshape(1, 1, -1)


@pytest.mark.parametrize(
    ("convention", "labels", "wt", "tc", "et"),
    [
        ("brats2021", [0, 1, 2, 4], [0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]),
        ("brats2023", [0, 1, 2, 3], [0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]),
    ],
)
def test_targets_for_both_brats_conventions(convention, labels, wt, tc, et):
    lab = _labels(labels)
    for target, expected in (("wt", wt), ("tc", tc), ("et", et)):
        mask = binary_target(lab, target, convention)
        assert mask.dtype == bool
        assert mask.ravel().tolist() == [bool(v) for v in expected], target


def test_float_labels_behave_like_integers():
    lab = _labels([0, 1, 2, 4]).astype(np.float32)
    assert binary_target(lab, "et").ravel().tolist() == [False, False, False, True]
    assert binary_target(lab, "wt").ravel().tolist() == [False, True, True, True]


def test_wrong_convention_is_refused_instead_of_an_empty_target():
    with pytest.raises(CalfInputError, match="label value 3 .*'brats2023'"):
        binary_target(_labels([0, 1, 2, 3]), "et", "brats2021")
    with pytest.raises(CalfInputError, match="label value 4 .*'brats2021'"):
        binary_target(_labels([0, 1, 2, 4]), "tc", "brats2023")


def test_unknown_target_or_convention_lists_the_choices():
    with pytest.raises(CalfConfigError, match="wt, tc, et"):
        binary_target(_labels([0]), "edema")
    with pytest.raises(CalfConfigError, match="brats2021, brats2023"):
        binary_target(_labels([0]), "et", "brats2019")


# --------------------------------------------------------------------------- areas


@pytest.fixture
def hand_volume() -> np.ndarray:
    """4 x 3 x 5 labels (x, y, z) with counts worked out by hand in the tests."""
    lab = np.zeros((4, 3, 5), dtype=np.uint8)
    lab[0:2, 0:2, 1] = 2  # z=1: 4 voxels of oedema
    lab[0, 0, 2] = 4  # z=2: 1 ET + 2 NCR + 3 ED = 6 voxels
    lab[1, 0:2, 2] = 1
    lab[3, 0:3, 2] = 2
    lab[:, :, 4] = 1  # z=4: all 12 voxels NCR
    return lab


def test_slice_areas_by_hand(hand_volume):
    wt = binary_target(hand_volume, "wt")
    assert slice_areas(wt).tolist() == [0, 4, 6, 0, 12]
    assert slice_areas(binary_target(hand_volume, "tc")).tolist() == [0, 0, 3, 0, 12]
    assert slice_areas(binary_target(hand_volume, "et")).tolist() == [0, 0, 1, 0, 0]
    # Other axes, against an independent per-slice count.
    for axis in (0, 1, -1):
        expected = [np.count_nonzero(np.take(wt, i, axis=axis)) for i in range(wt.shape[axis])]
        assert slice_areas(wt, axis=axis).tolist() == expected
    # Non-contiguous input and integer masks count the same.
    assert slice_areas(np.asfortranarray(hand_volume)).tolist() == [0, 4, 6, 0, 12]
    assert slice_areas(wt[:, :, ::-1]).tolist() == [12, 0, 6, 4, 0]


def test_slice_areas_in_mm2_use_the_in_plane_spacing(hand_volume):
    spacing = (0.5, 2.0, 3.0)  # anisotropic; z spacing must not enter axial areas
    wt = binary_target(hand_volume, "wt")
    mm2 = slice_areas(wt, spacing=spacing, unit="mm2")
    np.testing.assert_allclose(mm2, [0, 4.0, 6.0, 0, 12.0])  # 0.5 * 2.0 = 1 mm² per voxel
    # Along x the slice plane is (y, z): 2.0 * 3.0 = 6 mm² per voxel.
    per_x = [np.count_nonzero(wt[i]) * 6.0 for i in range(4)]
    np.testing.assert_allclose(slice_areas(wt, axis=0, spacing=spacing, unit="mm2"), per_x)


def test_slice_areas_refuses_bad_arguments(hand_volume):
    with pytest.raises(CalfConfigError, match="voxel spacing"):
        slice_areas(hand_volume, unit="mm2")
    with pytest.raises(CalfInputError, match="spacing"):
        slice_areas(hand_volume, spacing=(1.0, 0.0, 1.0), unit="mm2")
    with pytest.raises(CalfConfigError, match="unknown area unit 'cm2'"):
        slice_areas(hand_volume, unit="cm2")
    with pytest.raises(CalfConfigError, match="slice axis 3"):
        slice_areas(hand_volume, axis=3)
    with pytest.raises(CalfInputError, match="2D array"):
        slice_areas(hand_volume[:, :, 0])


# --------------------------------------------------------------------------- datasets


def test_dataset_areas_from_arrays_keep_case_and_slice(hand_volume):
    other = np.zeros((4, 3, 2), dtype=np.uint8)
    other[0, 0, 1] = 3
    cases = [("a", hand_volume, (1, 1, 1)), ("b", other, (0.5, 0.5, 2), "brats2023")]
    events = []
    gen = iter_dataset_areas(cases, target="et")
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert events == [Progress("areas", 1, 2, "a"), Progress("areas", 2, 2, "b")]
    assert isinstance(result, DatasetAreas)
    assert result.case_ids.tolist() == ["a"] * 5 + ["b"] * 2
    assert result.slices.tolist() == [0, 1, 2, 3, 4, 0, 1]
    assert result.areas.tolist() == [0, 0, 1, 0, 0, 0, 1]  # ET = 4 in case a, 3 in case b
    assert result.n_empty == 5
    assert result.nonzero().tolist() == [1, 1]
    assert result.n_cases == 2 and result.n_slices == 7
    stats = imbalance_stats(result)
    assert (stats.n, stats.n_empty) == (2, 5)


def test_dataset_areas_in_mm2_per_case_spacing(hand_volume):
    res = dataset_areas(
        [("a", hand_volume, (0.5, 2.0, 9.0)), ("b", hand_volume, (1.0, 1.0, 1.0))], unit="mm2"
    )
    assert res.unit == "mm2"
    assert res.areas.tolist() == [0, 4, 6, 0, 12] * 2


def test_dataset_areas_from_cases_on_disk_skips_cases_without_label(tmp_path, hand_volume):
    io = pytest.importorskip("napari_calf.io")
    Case = io.Case
    affine = np.diag([0.5, 2.0, 3.0, 1.0])
    label = io.save_volume(hand_volume, tmp_path / "c1_seg.nii.gz", affine)
    image = io.save_volume(hand_volume.astype(np.float32), tmp_path / "c1_t1.nii.gz", affine)
    cases = [
        Case("c1", {"t1": image}, label, "brats2021", "brats2021"),
        Case("c2", {"t1": image}, None, "brats2021", "brats2021"),
    ]
    events = []
    from napari_calf.events import drain

    res = drain(iter_dataset_areas(cases, unit="mm2"), events.append)
    assert [e.message for e in events] == ["c1", "c2 (skipped: no label)"]
    assert res.skipped == ("c2: no label file, skipped",)
    assert res.case_ids.tolist() == ["c1"] * 5
    np.testing.assert_allclose(res.areas, [0, 4, 6, 0, 12])  # 0.5 mm × 2 mm = 1 mm²


def test_dataset_areas_names_the_case_with_bad_labels(hand_volume):
    with pytest.raises(CalfInputError, match="case b: label value 3"):
        dataset_areas([("a", hand_volume, None), ("b", _labels([0, 3]), None)], target="et")
    with pytest.raises(CalfConfigError, match="Case objects or"):
        dataset_areas([hand_volume])


def test_empty_dataset_gives_empty_areas():
    res = dataset_areas([])
    assert res.n_slices == 0 and res.n_empty == 0
    assert imbalance_stats(res).undefined_reason.startswith("no slice has foreground")
    assert math.isfinite(res.areas.sum())


# Label values no BraTS convention uses were once taken silently: 7 counted as tumour,
# negative labels were dropped (and changed the selected transform). Now refused, named.


@pytest.mark.parametrize("target", ["wt", "tc", "et"])
def test_labels_outside_the_convention_are_refused_naming_the_values(target):
    with pytest.raises(CalfInputError, match=r"label value\(s\) 7 .*brats2021.*0, 1, 2, 4"):
        binary_target(_labels([0, 1, 2, 4, 7, 7]), target, "brats2021")
    negative = np.asarray([0, -1, 2, -3], dtype=np.int16).reshape(1, 1, -1)
    with pytest.raises(CalfInputError, match=r"label value\(s\) -3, -1 "):
        binary_target(negative, target, "brats2021")


def test_whole_tumour_tolerates_the_other_conventions_enhancing_label():
    """Whole tumour is 'any tumour label' in both conventions: a 2023 file in a folder
    guessed as 2021 still measures right, while tc/et refuse it (they would differ)."""
    lab = _labels([0, 1, 2, 3])
    assert binary_target(lab, "wt", "brats2021").ravel().tolist() == [False, True, True, True]
    with pytest.raises(CalfInputError, match="label value 3"):
        binary_target(lab, "tc", "brats2021")


def test_dataset_areas_name_the_file_with_unexpected_labels(tmp_path):
    import nibabel as nib

    from napari_calf.io.discovery import discover_cases

    case = tmp_path / "p1"
    case.mkdir()
    labels = np.zeros((6, 6, 4), np.int16)
    labels[1:4, 1:4, 1] = 2
    labels[2, 2, 2] = -1  # a negative "tumour" voxel: once dropped without a word
    for name in ("t1", "t2"):
        nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.float32), np.eye(4)), case / f"p1_{name}.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), case / "p1_seg.nii.gz")
    with pytest.raises(CalfInputError) as info:
        dataset_areas(discover_cases(tmp_path))
    msg = str(info.value)
    assert str(case / "p1_seg.nii.gz") in msg and "-1" in msg and "Fix:" in msg

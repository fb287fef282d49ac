"""The phantom: real anatomy, plausible contrasts, steerable size skew, a dataset on disk."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps

from napari_calf.phantom import dataset as phantom
from napari_calf.errors import CalfConfigError, CalfFileExistsError, CalfInputError
from napari_calf.events import Progress, drain

N_CASES = 12  # the dataset size the presets are checked on


def _pooled_nonzero_areas(labels: list[np.ndarray]) -> np.ndarray:
    """Whole-tumour area of every non-empty axial slice, pooled (independent of the module)."""
    areas = np.concatenate([(lab > 0).sum(axis=(0, 1)) for lab in labels]).astype(float)
    return areas[areas > 0]


@pytest.fixture(scope="module")
def sample() -> phantom.PhantomCase:
    return phantom.sample_case()


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_arrays_and_other_seeds_differ() -> None:
    a = phantom.make_case(7, skew="symmetric", case_index=1, n_cases=3)
    b = phantom.make_case(7, skew="symmetric", case_index=1, n_cases=3)
    c = phantom.make_case(8, skew="symmetric", case_index=1, n_cases=3)
    assert a.label.tobytes() == b.label.tobytes()
    for name in phantom.MODALITIES:
        assert a.images[name].dtype == np.float32
        assert a.images[name].tobytes() == b.images[name].tobytes(), name
        assert not np.array_equal(a.images[name], c.images[name]), name
    assert not np.array_equal(a.label, c.label)
    # the fast label-only path is the same draw
    assert np.array_equal(phantom.make_labels(7, skew="symmetric", case_index=1, n_cases=3), a.label)


def test_cases_of_a_dataset_differ_in_anatomy_not_only_tumour() -> None:
    first = phantom.make_labels(0, skew="right", case_index=0, n_cases=2)
    a = phantom.make_case(0, skew="right", case_index=0, n_cases=2)
    b = phantom.make_case(0, skew="right", case_index=1, n_cases=2)
    assert np.array_equal(first, a.label)
    # per-case warp: the brain masks themselves differ, by more than a handful of voxels
    assert np.count_nonzero(a.brain ^ b.brain) > 0.02 * a.brain.sum()


# --------------------------------------------------------------------------- anatomy and labels


def test_geometry_labels_and_brain_mask(sample: phantom.PhantomCase) -> None:
    shape = sample.label.shape
    assert sample.label.dtype == np.uint8
    assert set(np.unique(sample.label).tolist()) == {0, 1, 2, 4}  # BraTS 2021, all regions
    assert sample.spacing == (2.0, 2.0, 2.0)
    assert nib.aff2axcodes(sample.affine) == ("R", "A", "S")
    tumour = sample.label > 0
    assert tumour.any()
    assert not np.any(tumour & ~sample.brain), "tumour voxels outside the brain"
    for name in phantom.MODALITIES:
        image = sample.images[name]
        assert image.shape == shape
        assert np.all(image[~sample.brain] == 0), f"{name}: not skull-stripped"
        assert np.all(image[sample.brain] >= 1), f"{name}: zero voxels inside the brain"
        assert np.array_equal(image, np.rint(image)), f"{name}: not integer-valued"


@pytest.mark.parametrize(("skew", "seed"), [("right", 3), ("symmetric", 4), ("left", 5)])
def test_every_case_keeps_labels_valid_and_inside_brain(skew: str, seed: int) -> None:
    for index in (0, N_CASES - 1):
        case_labels = phantom.make_labels(seed, skew=skew, case_index=index, n_cases=N_CASES)
        assert set(np.unique(case_labels).tolist()) <= {0, 1, 2, 4}
        assert (case_labels > 0).any()
    case = phantom.make_case(seed, skew=skew, case_index=0, n_cases=N_CASES)
    assert not np.any((case.label > 0) & ~case.brain)


def test_contrasts_look_like_mri(sample: phantom.PhantomCase) -> None:
    lab = sample.label
    wm = (sample.tissue["wm"] > 0.9) & (lab == 0)
    gm = (sample.tissue["gm"] > 0.8) & (lab == 0)
    csf = (sample.tissue["csf"] > 0.9) & (lab == 0)
    assert wm.sum() > 1000 and gm.sum() > 1000 and csf.sum() > 100

    def med(name: str, mask: np.ndarray) -> float:
        return float(np.median(sample.images[name][mask]))

    # normal tissue
    assert med("t1", wm) > med("t1", gm) > med("t1", csf)
    assert med("t2", csf) > med("t2", gm) > med("t2", wm)
    assert med("flair", gm) > med("flair", wm) > med("flair", csf)
    assert med("flair", csf) < 0.5 * med("flair", wm)  # CSF suppressed
    # tumour: enhancing rim bright on t1ce, oedema bright on FLAIR and T2,
    # necrosis dark on T1/T1ce and bright on T2
    assert med("t1ce", lab == 4) > 1.2 * med("t1ce", wm)
    assert med("flair", lab == 2) > 1.2 * max(med("flair", wm), med("flair", gm))
    assert med("t2", lab == 2) > med("t2", wm)
    assert med("t1ce", lab == 1) < 0.6 * med("t1ce", wm)
    assert med("t1", lab == 1) < med("t1", wm)
    assert med("t2", lab == 1) > med("t2", gm)


# --------------------------------------------------------------------------- size skew presets


@pytest.fixture(scope="module")
def preset_areas() -> dict[tuple[str, int], np.ndarray]:
    datasets = [("right", 0), ("symmetric", 1), ("symmetric", 3), ("left", 2)]
    return {
        (skew, seed): _pooled_nonzero_areas([
            phantom.make_labels(seed, skew=skew, case_index=i, n_cases=N_CASES)
            for i in range(N_CASES)
        ])
        for skew, seed in datasets
    }


def test_right_preset_is_right_skewed(preset_areas) -> None:
    areas = preset_areas[("right", 0)]
    assert sps.skew(areas, bias=True) > 1.0


@pytest.mark.parametrize("seed", [1, 3])
def test_symmetric_preset_is_close_to_normal(preset_areas, seed: int) -> None:
    areas = preset_areas[("symmetric", seed)]
    assert abs(sps.skew(areas, bias=True)) < 0.5
    assert abs(sps.kurtosis(areas, fisher=True, bias=True)) < 1.0


def test_left_preset_is_left_skewed(preset_areas) -> None:
    areas = preset_areas[("left", 2)]
    assert sps.skew(areas, bias=True) < -0.5


def test_presets_select_three_different_losses(preset_areas) -> None:
    """Under CALF_METHOD §3's default table the three presets lead to three transforms."""
    from napari_calf.calf.stats import imbalance_stats
    from napari_calf.calf.rules import select_transform

    chosen: dict[str, set[str]] = {}
    for (skew, _seed), areas in preset_areas.items():
        chosen.setdefault(skew, set()).add(select_transform(imbalance_stats(areas)).transform)
    assert chosen["right"] <= {"arcsine", "ln", "log10"}
    assert chosen["symmetric"] == {"bce-dice"}
    assert chosen["left"] <= {"fisher", "logit"}


def test_summary_matches_scipy() -> None:
    areas = np.array([1.0, 2, 2, 3, 10, 40])
    summary = phantom.slice_area_summary(areas)
    assert summary["skewness"] == pytest.approx(sps.skew(areas, bias=True), abs=1e-4)
    assert summary["kurtosis"] == pytest.approx(sps.kurtosis(areas, bias=True), abs=1e-4)
    assert phantom.slice_area_summary(np.array([5.0, 5.0, 5.0]))["skewness"] is None


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"skew": "middle"}, "right, symmetric, left"),
        ({"seed": -1}, "seed=-1"),
        ({"case_index": 3, "n_cases": 3}, "case_index=3"),
        ({"n_cases": 0}, "n_cases=0"),
    ],
)
def test_bad_settings_say_what_to_fix(kwargs: dict, needle: str) -> None:
    args = {"seed": 0, **kwargs}
    seed = args.pop("seed")
    with pytest.raises(CalfConfigError, match="Fix:") as info:
        phantom.make_case(seed, **args)
    assert needle in str(info.value)


# --------------------------------------------------------------------------- datasets on disk


def test_write_dataset_round_trips_through_discovery(tmp_path) -> None:
    from napari_calf.io.discovery import discover_cases, load_case

    out = tmp_path / "phantom"
    events: list[Progress] = []
    written = drain(phantom.write_dataset(out, 2, seed=11, skew="left"), events.append)

    assert [e.current for e in events] == [0, 1, 2]
    assert all(e.total == 2 for e in events)
    found = discover_cases(out)
    assert [c.case_id for c in found] == ["CALF-Phantom-00000", "CALF-Phantom-00001"]
    assert [c.case_id for c in written] == [c.case_id for c in found]
    assert {c.layout for c in found} == {"brats2021"}
    assert list(found[0].images) == list(phantom.MODALITIES)
    assert found[0].label.name == "CALF-Phantom-00000_seg.nii.gz"

    loaded = load_case(found[1], require_label=True)
    expected = phantom.make_case(11, skew="left", case_index=1, n_cases=2)
    assert np.array_equal(loaded.label.data, expected.label)
    for name in phantom.MODALITIES:
        assert np.array_equal(loaded.images[name].data, expected.images[name]), name
    np.testing.assert_allclose(loaded.label.affine, expected.affine)

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["synthetic"] is True and meta["skew"] == "left" and meta["n_cases"] == 2
    assert "Louis Collins" in meta["template_notice"]
    pooled = _pooled_nonzero_areas([
        np.asarray(nib.load(c.label).dataobj) for c in found
    ])
    assert meta["per_slice_area_whole_tumour"]["skewness"] == pytest.approx(
        sps.skew(pooled, bias=True), abs=1e-3)
    readme = (out / "README.md").read_text()
    assert "synthetic" in readme and "Copyright" in readme


def test_write_dataset_refuses_a_non_empty_folder(tmp_path) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(CalfFileExistsError, match="overwrite"):
        phantom.write_dataset(tmp_path, 1)  # refused before any work starts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert keep.read_text() == "mine"

    cases = drain(phantom.write_dataset(tmp_path, 1, overwrite=True))
    assert cases[0].label.is_file()
    assert keep.read_text() == "mine"  # overwrite replaces our files, never deletes others


def test_write_dataset_refuses_a_file_as_folder(tmp_path) -> None:
    target = tmp_path / "data.nii.gz"
    target.write_bytes(b"x")
    with pytest.raises(CalfInputError, match="is a file"):
        phantom.write_dataset(target, 1)

"""Case discovery in the folder layouts users bring, and load_case's consistency checks."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf.errors import CalfInputError
from napari_calf.io.volumes import MODALITIES_2021, MODALITIES_2023
from napari_calf.io.discovery import discover_cases, load_case

SHAPE = (12, 14, 10)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _write(path: Path, *, label: bool = False, affine: np.ndarray = AFFINE,
           shape: tuple[int, ...] = SHAPE, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if label:
        data = np.zeros(shape, np.uint8)
        data[3:7, 4:9, 2:6] = 2
        data[4:6, 5:7, 3:5] = 4
    else:
        data = rng.normal(100, 15, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _brats2021(root: Path, case: str, *, ext: str = ".nii.gz", label: bool = True) -> Path:
    for i, m in enumerate(MODALITIES_2021):
        _write(root / case / f"{case}_{m}{ext}", seed=i)
    if label:
        _write(root / case / f"{case}_seg{ext}", label=True)
    return root / case


def _brats2023(root: Path, case: str) -> Path:
    for i, m in enumerate(MODALITIES_2023):
        _write(root / case / f"{case}-{m}.nii.gz", seed=i)
    _write(root / case / f"{case}-seg.nii.gz", label=True)
    return root / case


def test_brats2021_dataset_in_sorted_order(tmp_path):
    for case in ("BraTS2021_00012", "BraTS2021_00002", "BraTS2021_00005"):
        _brats2021(tmp_path, case)
    (tmp_path / "README.txt").write_text("not a case")
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS2021_00002", "BraTS2021_00005", "BraTS2021_00012"]
    first = cases[0]
    assert first.layout == "brats2021"
    assert first.label_convention == "brats2021"
    assert tuple(first.images) == MODALITIES_2021
    assert first.images["t1ce"] == tmp_path / "BraTS2021_00002" / "BraTS2021_00002_t1ce.nii.gz"
    assert first.label == tmp_path / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz"


def test_single_case_folder_with_plain_nii(tmp_path):
    folder = _brats2021(tmp_path, "BraTS20_Training_001", ext=".nii")
    cases = discover_cases(folder)
    assert [c.case_id for c in cases] == ["BraTS20_Training_001"]
    assert cases[0].images["flair"].name == "BraTS20_Training_001_flair.nii"


def test_brats2023_dataset(tmp_path):
    _brats2023(tmp_path, "BraTS-GLI-00001-000")
    _brats2023(tmp_path, "BraTS-GLI-00000-000")
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000"]
    assert all(c.layout == "brats2023" and c.label_convention == "brats2023" for c in cases)
    assert tuple(cases[0].images) == MODALITIES_2023
    assert cases[0].label.name == "BraTS-GLI-00000-000-seg.nii.gz"


def _nnunet(root: Path, dataset_json: dict | None) -> Path:
    for case in ("BRATS_002", "BRATS_001"):
        for ch in range(4):
            _write(root / "imagesTr" / f"{case}_{ch:04d}.nii.gz", seed=ch)
        _write(root / "labelsTr" / f"{case}.nii.gz", label=True)
    for ch in range(4):
        _write(root / "imagesTs" / f"BRATS_900_{ch:04d}.nii.gz", seed=ch)
    if dataset_json is not None:
        (root / "dataset.json").write_text(json.dumps(dataset_json))
    return root


def test_nnunet_raw_without_dataset_json(tmp_path):
    cases = discover_cases(_nnunet(tmp_path, None))
    assert [c.case_id for c in cases] == ["BRATS_001", "BRATS_002", "BRATS_900"]
    assert all(c.layout == "nnunet" and c.label_convention == "brats2021" for c in cases)
    assert tuple(cases[0].images) == ("0000", "0001", "0002", "0003")
    assert cases[0].label == tmp_path / "labelsTr" / "BRATS_001.nii.gz"
    assert cases[2].label is None  # imagesTs: for prediction only


def test_nnunet_dataset_json_v2_gives_names_and_convention(tmp_path):
    meta = {
        "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
        "labels": {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3},
        "file_ending": ".nii.gz",
    }
    cases = discover_cases(_nnunet(tmp_path, meta) / "imagesTr")  # a subfolder works too
    assert cases[0].label_convention == "brats2023"
    assert cases[0].display_name("0003") == "FLAIR"


def test_nnunet_dataset_json_v1_with_label_4(tmp_path):
    meta = {"modality": {"0": "FLAIR", "1": "T1w"},
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing", "4": "enhancing"}}
    cases = discover_cases(_nnunet(tmp_path, meta))
    assert cases[0].label_convention == "brats2021"
    assert cases[0].channel_names == {"0000": "FLAIR", "0001": "T1w"}


def test_generic_flat_folder(tmp_path):
    for case in ("patient_b", "patient_a"):
        _write(tmp_path / f"{case}_T1w.nii.gz")
        _write(tmp_path / f"{case}_FLAIR.nii.gz", seed=1)
    _write(tmp_path / "patient_a_tumour_mask.nii.gz", label=True)  # only a has a label
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["patient_a", "patient_b"]
    a, b = cases
    assert a.layout == "generic"
    assert list(a.images) == ["T1w", "FLAIR"]
    # the label's modality part has a separator of its own; it still belongs to patient_a
    assert a.label == tmp_path / "patient_a_tumour_mask.nii.gz"
    assert b.label is None


def test_generic_flat_folder_labels(tmp_path):
    for case in ("p02", "p01"):
        _write(tmp_path / f"{case}_t1.nii")
        _write(tmp_path / f"{case}_flair.nii.gz", seed=1)
        _write(tmp_path / f"{case}_label.nii.gz", label=True)
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases] == ["p01", "p02"]
    assert all(c.layout == "generic" and c.label is not None for c in cases)
    assert list(cases[0].images) == ["t1", "flair"]  # known modalities in a fixed order
    assert cases[0].label.name == "p01_label.nii.gz"


def test_generic_case_folder_of_named_files(tmp_path):
    _write(tmp_path / "patient7" / "flair.nii.gz")
    _write(tmp_path / "patient7" / "t1.nii.gz", seed=2)
    _write(tmp_path / "patient7" / "mask.nii.gz", label=True)
    (case,) = discover_cases(tmp_path)
    assert case.case_id == "patient7"
    assert list(case.images) == ["t1", "flair"]
    assert case.label.name == "mask.nii.gz"


def test_no_case_lists_the_layouts_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    with pytest.raises(CalfInputError) as err:
        discover_cases(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg
    for layout in ("BraTS 2017-2021", "BraTS 2023+", "nnU-Net", "generic"):
        assert layout in msg


def test_missing_root_and_file_root(tmp_path):
    with pytest.raises(CalfInputError, match="does not exist"):
        discover_cases(tmp_path / "nope")
    f = _write(tmp_path / "x_t1.nii.gz")
    with pytest.raises(CalfInputError, match="is a file"):
        discover_cases(f)


def test_two_label_files_in_one_case_are_refused(tmp_path):
    folder = _brats2021(tmp_path, "c1")
    _write(folder / "c1_mask.nii.gz", label=True)
    with pytest.raises(CalfInputError, match="several label files") as err:
        discover_cases(tmp_path)
    assert "c1_mask.nii.gz" in str(err.value) and "c1_seg.nii.gz" in str(err.value)


def test_same_case_twice_is_refused(tmp_path):
    _brats2021(tmp_path / "a", "c1")
    _write(tmp_path / "a" / "c1_t1.nii.gz")
    with pytest.raises(CalfInputError, match="occurs twice"):
        discover_cases(tmp_path / "a")


# --------------------------------------------------------------------------- load_case


def test_load_case_gives_float_images_and_integer_label(tmp_path):
    _brats2021(tmp_path, "c1")
    loaded = load_case(discover_cases(tmp_path)[0], require_label=True)
    assert list(loaded.images) == list(MODALITIES_2021)
    assert all(v.data.dtype == np.float32 and v.data.shape == SHAPE for v in loaded.images.values())
    assert loaded.label.data.dtype == np.uint8
    assert set(np.unique(loaded.label.data)) == {0, 2, 4}


def test_case_without_label_loads_for_prediction_but_not_for_training(tmp_path):
    _brats2021(tmp_path, "c1", label=False)
    (case,) = discover_cases(tmp_path)
    assert case.label is None
    assert load_case(case).label is None
    with pytest.raises(CalfInputError) as err:
        load_case(case, require_label=True)
    msg = str(err.value)
    assert "has no label file; training needs one" in msg
    assert "c1_seg.nii.gz" in msg  # the fix names the file to add
    assert str(tmp_path / "c1") in msg


def test_nnunet_case_without_label_names_labelsTr_in_fix(tmp_path):
    cases = discover_cases(_nnunet(tmp_path, None))
    with pytest.raises(CalfInputError, match=r"labelsTr/BRATS_900\.nii\.gz"):
        load_case(cases[-1], require_label=True)


def test_label_with_other_shape_is_refused_naming_both_files(tmp_path):
    folder = _brats2021(tmp_path, "c1")
    _write(folder / "c1_seg.nii.gz", label=True, shape=(12, 14, 9))
    with pytest.raises(CalfInputError) as err:
        load_case(discover_cases(tmp_path)[0])
    msg = str(err.value)
    assert "c1_seg.nii.gz" in msg and "c1_t1.nii.gz" in msg
    assert "(12, 14, 9)" in msg


def test_modality_with_shifted_affine_is_refused_naming_both_files(tmp_path):
    folder = _brats2021(tmp_path, "c1")
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5
    _write(folder / "c1_flair.nii.gz", affine=shifted)
    with pytest.raises(CalfInputError) as err:
        load_case(discover_cases(tmp_path)[0])
    msg = str(err.value)
    assert "c1_flair.nii.gz" in msg and "c1_t1.nii.gz" in msg
    assert "affines" in msg and "0.5 mm" in msg


def test_tiny_affine_difference_is_tolerated(tmp_path):
    folder = _brats2021(tmp_path, "c1")
    nudged = AFFINE.copy()
    nudged[0, 3] = 1e-4  # float32 header round-off is far smaller than 1e-3 mm
    _write(folder / "c1_flair.nii.gz", affine=nudged)
    loaded = load_case(discover_cases(tmp_path)[0])
    assert set(loaded.images) == {"t1", "t1ce", "t2", "flair"}
    assert loaded.label is not None
    assert all(v.data.shape == loaded.label.data.shape for v in loaded.images.values())


def test_same_grid_stored_in_another_orientation_is_accepted(tmp_path):
    folder = _brats2021(tmp_path, "c1")
    # the label stored LPS: after canonical reorientation it lies on the same grid
    lps = np.diag([-1.0, -1.0, 2.0, 1.0])
    lps[:3, 3] = [SHAPE[0] - 1, SHAPE[1] - 1, 0]
    data = np.asarray(nib.load(str(folder / "c1_seg.nii.gz")).dataobj)
    nib.save(nib.Nifti1Image(data[::-1, ::-1], lps), str(folder / "c1_seg.nii.gz"))
    loaded = load_case(discover_cases(tmp_path)[0])
    np.testing.assert_array_equal(loaded.label.data, data)
    assert loaded.label.orientation == ("L", "P", "S")


def test_bad_file_in_case_is_reported_by_name(tmp_path):
    folder = _brats2021(tmp_path, "c1")
    (folder / "c1_t2.nii.gz").write_bytes(b"")
    with pytest.raises(CalfInputError, match=r"c1_t2\.nii\.gz: is empty"):
        load_case(discover_cases(tmp_path)[0])


def test_load_case_refuses_label_values_no_brats_convention_uses(tmp_path):
    _brats2021(tmp_path, "c1", label=False)
    data = np.zeros(SHAPE, np.uint8)
    data[3:7, 4:9, 2:6] = 2
    data[5, 5, 3] = 7  # not a BraTS label: once counted as tumour without a word
    nib.save(nib.Nifti1Image(data, AFFINE), str(tmp_path / "c1" / "c1_seg.nii.gz"))
    with pytest.raises(CalfInputError) as info:
        load_case(discover_cases(tmp_path)[0], require_label=True)
    msg = str(info.value)
    assert str(tmp_path / "c1" / "c1_seg.nii.gz") in msg
    assert "label value(s) 7 (1 voxel)" in msg and "Fix:" in msg

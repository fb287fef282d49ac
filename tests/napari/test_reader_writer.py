"""The napari reader and writer, through a real viewer (run under Xvfb).

What a user sees: a case folder opens as overlaid modality + label layers, axial
slices with anterior up, labels saved from napari land on the source file's grid.
References are nibabel's own view of the files written here.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf._napari.reader import METADATA_KEY, canonical_to_layer, get_reader, layer_to_canonical
from napari_calf.errors import CalfInputError
from napari_calf.io.volumes import MODALITIES_2021

SHAPE = (12, 14, 10)  # stored (x, y, z)
PLUGIN = "napari-calf"


def _lps_affine() -> np.ndarray:
    """LPS storage, anisotropic, with an offset: what DICOM-converted files often look like."""
    affine = np.diag([-0.9, -1.2, 2.5, 1.0])
    affine[:3, 3] = [40.0, 55.0, -12.0]
    return affine


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:7, 4:9, 2:6] = 2
    labels[4:6, 5:7, 3:5] = 1
    labels[5, 6, 4] = 4
    return labels


def _case(root: Path, case: str = "BraTS2021_00001", *, affine: np.ndarray | None = None) -> Path:
    affine = _lps_affine() if affine is None else affine
    folder = root / case
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for m in MODALITIES_2021:
        data = rng.normal(100, 10, SHAPE).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), str(folder / f"{case}_{m}.nii.gz"))
    nib.save(nib.Nifti1Image(_labels(), affine), str(folder / f"{case}_seg.nii.gz"))
    return folder


def test_case_folder_opens_as_four_images_and_labels_that_overlay(make_napari_viewer, tmp_path):
    folder = _case(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin=PLUGIN)

    kinds = [type(layer).__name__ for layer in viewer.layers]
    assert kinds == ["Image"] * 4 + ["Labels"]
    assert [layer.name for layer in viewer.layers] == [
        f"BraTS2021_00001 {m}" for m in (*MODALITIES_2021, "seg")
    ]
    extents = [np.asarray(layer.extent.world) for layer in viewer.layers]
    for extent in extents[1:]:
        np.testing.assert_allclose(extent, extents[0])
    # voxel centres span (n - 1) voxels of 2.5 mm (z), 1.2 mm (y), 0.9 mm (x)
    np.testing.assert_allclose(np.ptp(extents[0], axis=0), [9 * 2.5, 13 * 1.2, 11 * 0.9], rtol=1e-5)
    assert [layer.visible for layer in viewer.layers] == [False, False, False, True, True]

    labels = viewer.layers[-1]
    info = labels.metadata[METADATA_KEY]
    assert info["path"] == str(folder / "BraTS2021_00001_seg.nii.gz")
    assert info["orientation"] == ["L", "P", "S"]
    np.testing.assert_allclose(info["source_affine"], _lps_affine(), atol=1e-5)
    assert info["label_convention"] == "brats2021"
    # the labels are the file's labels, only reoriented for display
    np.testing.assert_array_equal(layer_to_canonical(labels.data)[::-1, ::-1], _labels())
    viewer.dims.current_step = (4 * 2.5, 0, 0)
    screenshot = viewer.screenshot(canvas_only=True, flash=False)
    assert screenshot.shape[0] > 0 and screenshot.std() > 0  # something was drawn


def test_axial_display_puts_anterior_up_and_patient_right_on_screen_left(tmp_path):
    # the same voxel (most Right, most Anterior, lowest slice) stored RAS and LPS
    ras = np.zeros(SHAPE, np.uint8)
    ras[-1, -1, 0] = 1
    lps = ras[::-1, ::-1]
    nib.save(nib.Nifti1Image(ras, np.eye(4)), str(tmp_path / "ras_mask.nii.gz"))
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:3, 3] = [SHAPE[0] - 1, SHAPE[1] - 1, 0]
    nib.save(nib.Nifti1Image(lps, lps_affine), str(tmp_path / "lps_mask.nii.gz"))
    for name in ("ras_mask.nii.gz", "lps_mask.nii.gz"):
        path = str(tmp_path / name)
        ((data, attrs, kind),) = get_reader(path)(path)
        assert kind == "labels"
        assert data.shape == (SHAPE[2], SHAPE[1], SHAPE[0])  # (z, y, x): axial slices
        assert np.argwhere(np.asarray(data)).tolist() == [[0, 0, 0]]  # top left of slice 0
        # world coordinates (S, P, L): identical for both storages
        np.testing.assert_allclose(attrs["translate"], (0.0, -(SHAPE[1] - 1), -(SHAPE[0] - 1)))


def test_display_transform_round_trips():
    rng = np.random.default_rng(3)
    for shape in (SHAPE, SHAPE + (3,)):
        a = rng.random(shape)
        np.testing.assert_array_equal(layer_to_canonical(canonical_to_layer(a)), a)
    assert canonical_to_layer(rng.random(SHAPE + (3,))).shape == (3, 10, 14, 12)


def test_labels_file_alone_opens_as_labels(make_napari_viewer, tmp_path):
    path = tmp_path / "tumour_seg.nii.gz"
    nib.save(nib.Nifti1Image(_labels().astype(np.float32), np.eye(4)), str(path))  # float-stored
    image = tmp_path / "t1.nii"
    nib.save(nib.Nifti1Image(_labels().astype(np.int16), np.eye(4)), str(image))  # int, not named
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    viewer.open(str(image), plugin=PLUGIN)
    seg, t1 = viewer.layers
    assert type(seg).__name__ == "Labels" and seg.name == "tumour_seg"
    assert np.issubdtype(seg.data.dtype, np.integer)
    assert set(np.unique(seg.data)) == {0, 1, 2, 4}
    assert type(t1).__name__ == "Image" and t1.data.dtype == np.float32


def test_4d_file_opens_with_channels(make_napari_viewer, tmp_path):
    data = np.stack([np.full(SHAPE, float(c), np.float32) for c in range(3)], axis=-1)
    data[..., :, :, :] += np.random.default_rng(0).random(SHAPE + (3,)).astype(np.float32)
    path = tmp_path / "multi.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), str(path))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image"] * 3
    assert [layer.name for layer in viewer.layers] == ["multi [0]", "multi [1]", "multi [2]"]
    for c, layer in enumerate(viewer.layers):
        assert layer.data.shape == (SHAPE[2], SHAPE[1], SHAPE[0])
        assert int(np.floor(layer.data.min())) == c  # channel c is channel c
        np.testing.assert_allclose(layer.scale, (3.0, 1.0, 1.0))


def test_unhandled_paths_are_left_to_other_readers(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "photo.png")) is None
    assert get_reader(str(tmp_path / "data.zarr")) is None
    assert get_reader(str(tmp_path / "plain")) is None
    assert get_reader([str(tmp_path / "photo.png"), str(tmp_path / "x.nii.gz")]) is None
    assert get_reader([]) is None


def test_bad_file_gives_a_clear_message_not_a_crash(make_napari_viewer, tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"")
    reader = get_reader(str(path))
    assert reader is not None
    with pytest.raises(CalfInputError) as err:
        reader(str(path))
    assert str(path) in str(err.value) and "empty (0 bytes)" in str(err.value)
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as napari_err:  # napari wraps it for its notification
        viewer.open(str(path), plugin=PLUGIN)
    chain, exc = [], napari_err.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, CalfInputError) for e in chain)
    assert len(viewer.layers) == 0


def test_dataset_folder_opens_first_case_and_says_how_many(make_napari_viewer, tmp_path):
    from napari.utils.notifications import notification_manager

    _case(tmp_path, "case_b")
    _case(tmp_path, "case_a")
    viewer = make_napari_viewer()
    notification_manager.records.clear()
    viewer.open(str(tmp_path), plugin=PLUGIN)
    assert {layer.metadata[METADATA_KEY]["case_id"] for layer in viewer.layers} == {"case_a"}
    messages = [str(n.message) for n in notification_manager.records]
    assert any("2 cases" in m and "case_a" in m for m in messages), messages


def test_writer_round_trip_gives_the_source_voxels_and_affine(make_napari_viewer, tmp_path):
    folder = _case(tmp_path)
    source = folder / "BraTS2021_00001_seg.nii.gz"
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin=PLUGIN)
    labels = viewer.layers["BraTS2021_00001 seg"]
    out = tmp_path / "saved_seg.nii.gz"
    written = labels.save(str(out), plugin=PLUGIN)
    assert [Path(p) for p in written] == [out]

    src, back = nib.load(str(source)), nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(src.dataobj))
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-6)
    assert back.get_data_dtype() == np.uint8
    # and it reopens exactly where it was
    viewer.open(str(out), plugin=PLUGIN)
    reopened = viewer.layers["saved_seg"]
    np.testing.assert_array_equal(reopened.data, labels.data)
    np.testing.assert_allclose(reopened.extent.world, labels.extent.world)


def test_writer_uses_scale_and_translate_for_layers_without_a_source(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.zeros((SHAPE[2], SHAPE[1], SHAPE[0]), np.int32)
    data[2, 3, 4] = 7
    layer = viewer.add_labels(data, scale=(3.0, 0.5, 0.7), translate=(10.0, -4.0, 2.0))
    out = tmp_path / "drawn.nii"
    layer.save(str(out), plugin=PLUGIN)
    stored = nib.load(str(out))
    np.testing.assert_allclose(np.abs(np.diag(stored.affine))[:3], (0.7, 0.5, 3.0))
    viewer.open(str(out), plugin=PLUGIN)
    # "drawn" is not named like labels and is integer: it opens as an image of the same grid
    reopened = viewer.layers["drawn"]
    np.testing.assert_array_equal(reopened.data, data)
    np.testing.assert_allclose(reopened.scale, layer.scale)
    np.testing.assert_allclose(reopened.translate, layer.translate)


def test_nnunet_case_layers_carry_channel_names_and_show_flair(tmp_path):
    import json

    for ch in range(4):
        data = np.full(SHAPE, float(ch), np.float32)
        path = tmp_path / "imagesTr" / f"BRATS_001_{ch:04d}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    (tmp_path / "labelsTr").mkdir()
    nib.save(nib.Nifti1Image(_labels(), np.eye(4)), str(tmp_path / "labelsTr" / "BRATS_001.nii.gz"))
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
         "labels": {"background": 0, "edema": 1, "non-enhancing": 2, "enhancing": 3}}))
    layers = get_reader(str(tmp_path))(str(tmp_path))
    names = [attrs["name"] for _, attrs, _ in layers]
    assert names == ["BRATS_001 FLAIR (0000)", "BRATS_001 T1w (0001)", "BRATS_001 t1gd (0002)",
                     "BRATS_001 T2w (0003)", "BRATS_001 seg"]
    assert [attrs.get("visible", True) for _, attrs, _ in layers] == [True, False, False, False, True]
    assert layers[-1][1]["metadata"][METADATA_KEY]["label_convention"] == "brats2023"


def test_manifest_claims_only_nifti_files_and_folders(make_napari_viewer, tmp_path):
    """With napari-calf installed, opening a .tif or .npy must not make napari ask which
    reader to use: the manifest claims *.nii, *.nii.gz and folders, nothing else."""
    from npe2 import PluginManager

    pm = PluginManager.instance()

    def claimed(path: Path) -> bool:
        return any(r.plugin_name == PLUGIN for r in pm.iter_compatible_readers([str(path)]))

    for name in ("stack.tif", "array.npy", "photo.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"0")
        assert not claimed(tmp_path / name), name
    for name in ("t1.nii", "t1.nii.gz", "T1.NII.GZ"):
        (tmp_path / name).write_bytes(b"0")
        assert claimed(tmp_path / name), name
    folder = _case(tmp_path / "data")
    assert claimed(folder)
    viewer = make_napari_viewer()
    # napari's own readers list *.nii(.gz) and folders too, so napari asks for those
    # (File > Open); choosing napari-calf opens the case
    from napari.plugins import _npe2

    assert PLUGIN in _npe2.get_readers(str(folder))
    viewer.open(str(folder), plugin=PLUGIN)
    seg = folder / "BraTS2021_00001_seg.nii.gz"
    assert viewer.layers[-1].metadata[METADATA_KEY]["path"] == str(seg)
    assert [layer.name for layer in viewer.layers] == [
        f"BraTS2021_00001 {m}" for m in (*MODALITIES_2021, "seg")]

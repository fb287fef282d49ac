"""NIfTI in/out: round trips, canonical reorientation, and the bad files a user meets.

References are independent of our code: nibabel's own ``as_closest_canonical`` and
arrays/affines written directly with nibabel.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf.errors import CalfFileExistsError, CalfInputError
from napari_calf.io.volumes import Volume, load_volume, save_like, save_volume, to_source_orientation

SHAPE = (12, 14, 10)


def _rotation_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def _oblique_affine() -> np.ndarray:
    """Rotation by 20 degrees, anisotropic spacing and an offset: nothing a bug can hide in."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(20) @ np.diag([0.8, 1.1, 2.5])
    affine[:3, 3] = [-31.5, 17.25, 4.0]
    return affine


def _write_nib(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).normal(100, 20, SHAPE).astype(np.float32)


def test_save_load_round_trip_keeps_voxels_and_oblique_affine(tmp_path, image):
    affine = _oblique_affine()
    path = save_volume(image, tmp_path / "t1.nii.gz", affine)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip-compressed, as the suffix asks

    vol = load_volume(path, canonical=False)
    np.testing.assert_array_equal(vol.data, image)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    np.testing.assert_allclose(vol.spacing, (0.8, 1.1, 2.5), atol=1e-6)
    # independent reader: nibabel agrees on both sform and qform
    img = nib.load(str(path))
    np.testing.assert_allclose(img.header.get_sform(), affine, atol=1e-5)
    np.testing.assert_allclose(img.header.get_qform(), affine, atol=1e-5)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_canonical_volume_matches_nibabel_as_closest_canonical(tmp_path, image):
    path = _write_nib(tmp_path / "t1.nii.gz", image, _oblique_affine())
    vol = load_volume(path)
    ref = nib.as_closest_canonical(nib.load(str(path)))
    np.testing.assert_array_equal(vol.data, np.asarray(ref.dataobj, dtype=np.float32))
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)


def test_lps_file_is_flipped_to_ras_and_written_back_identically(tmp_path, image):
    # LPS (DICOM/ITK convention): x grows to the Left, y to Posterior.
    affine = np.diag([-0.9, -1.2, 3.0, 1.0])
    affine[:3, 3] = [50.0, 60.0, -20.0]
    src = _write_nib(tmp_path / "lps.nii.gz", image, affine)

    vol = load_volume(src)
    assert vol.orientation == ("L", "P", "S")
    assert vol.source_shape == SHAPE
    np.testing.assert_allclose(vol.spacing, (0.9, 1.2, 3.0), atol=1e-6)
    # RAS: the voxel stored first on x/y is the one furthest Left/Posterior... reversed
    np.testing.assert_array_equal(vol.data, image[::-1, ::-1, :])
    assert np.all(np.diag(vol.affine)[:3] > 0)
    # the same voxel has the same world position before and after
    ijk_src = np.array([2, 3, 4, 1.0])
    ijk_can = np.array([SHAPE[0] - 1 - 2, SHAPE[1] - 1 - 3, 4, 1.0])
    np.testing.assert_allclose(affine @ ijk_src, vol.affine @ ijk_can, atol=1e-5)

    np.testing.assert_array_equal(to_source_orientation(vol.data, vol), image)
    out = save_like(vol.data, vol, tmp_path / "back.nii.gz")
    back = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(back.dataobj), image)
    np.testing.assert_allclose(back.affine, nib.load(str(src)).affine, atol=1e-6)


def test_save_like_writes_labels_in_source_orientation_of_a_transposed_file(tmp_path, image):
    # axes stored as (S, R, A): a permutation, not only flips
    affine = np.zeros((4, 4))
    affine[0, 1] = 1.0
    affine[1, 2] = 1.5
    affine[2, 0] = 2.0
    affine[3, 3] = 1.0
    src = _write_nib(tmp_path / "perm.nii", image, affine)
    vol = load_volume(src)
    assert vol.orientation == ("S", "R", "A")
    assert vol.data.shape == (SHAPE[1], SHAPE[2], SHAPE[0])
    labels = (vol.data > 110).astype(np.uint8)
    out = save_like(labels, vol, tmp_path / "seg.nii.gz")
    stored = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(stored.dataobj), (image > 110).astype(np.uint8))
    np.testing.assert_allclose(stored.affine, affine, atol=1e-6)
    assert stored.get_data_dtype() == np.uint8


def test_to_source_orientation_refuses_an_array_of_another_grid(tmp_path, image):
    vol = load_volume(_write_nib(tmp_path / "a.nii", image, np.eye(4)))
    with pytest.raises(CalfInputError, match="cannot be mapped back"):
        to_source_orientation(np.zeros((3, 3, 3)), vol)


def test_labels_stay_integer_and_images_become_float32(tmp_path):
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[3:6, 4:8, 2:5] = 4
    int_path = _write_nib(tmp_path / "seg.nii.gz", labels, np.eye(4))
    float_path = _write_nib(tmp_path / "seg_float.nii.gz", labels.astype(np.float32), np.eye(4))
    int16_image = _write_nib(tmp_path / "t1.nii.gz", labels.astype(np.int16) * 100, np.eye(4))

    assert load_volume(int_path).data.dtype == np.uint8  # auto: stored integer stays integer
    as_label = load_volume(float_path, label=True).data
    assert np.issubdtype(as_label.dtype, np.integer)
    np.testing.assert_array_equal(as_label, labels)
    img = load_volume(int16_image, label=False).data
    assert img.dtype == np.float32
    assert img.max() == 400.0


def test_scaled_integer_file_is_read_with_its_scaling(tmp_path):
    raw = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) % 1000
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    data = load_volume(path).data
    assert data.dtype == np.float32
    np.testing.assert_allclose(data, raw * 0.5 + 10.0)


def test_label_with_fractions_is_refused(tmp_path):
    probs = np.full(SHAPE, 0.25, dtype=np.float32)
    path = _write_nib(tmp_path / "prob_seg.nii.gz", probs, np.eye(4))
    with pytest.raises(CalfInputError, match="not whole numbers") as err:
        load_volume(path, label=True)
    assert "prob_seg.nii.gz" in str(err.value)


def test_4d_volume_keeps_channels_last_and_trailing_singleton_is_dropped(tmp_path):
    data = np.random.default_rng(1).random(SHAPE + (3,)).astype(np.float32)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    vol = load_volume(_write_nib(tmp_path / "multi.nii.gz", data, affine))
    assert vol.data.shape == SHAPE + (3,)
    np.testing.assert_array_equal(vol.data, data[::-1])
    one = load_volume(_write_nib(tmp_path / "one.nii.gz", data[..., :1], np.eye(4)))
    assert one.data.shape == SHAPE


def test_save_volume_refuses_to_overwrite_unless_asked(tmp_path, image):
    path = save_volume(image, tmp_path / "x.nii.gz", np.eye(4))
    before = path.read_bytes()
    with pytest.raises(CalfFileExistsError, match="already exists"):
        save_volume(image * 2, path, np.eye(4))
    assert path.read_bytes() == before
    save_volume(image * 2, path, np.eye(4), overwrite=True)
    np.testing.assert_array_equal(load_volume(path).data, image * 2)


def test_save_volume_stores_bool_and_int64_in_portable_dtypes(tmp_path):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[1, 2, 3] = True
    p1 = save_volume(mask, tmp_path / "mask.nii", np.eye(4))
    p2 = save_volume(mask.astype(np.int64) * 3, tmp_path / "seg.nii.gz", np.eye(4))
    assert nib.load(str(p1)).get_data_dtype() == np.uint8
    assert nib.load(str(p2)).get_data_dtype() == np.uint8
    assert p1.read_bytes()[:2] != b"\x1f\x8b"  # plain .nii is not compressed


@pytest.mark.parametrize(
    ("name", "affine", "match"),
    [
        ("out.png", np.eye(4), "not a NIfTI file name"),
        ("out.nii.gz", np.eye(3), "4x4"),
        ("out.nii.gz", np.full((4, 4), np.nan), "4x4"),
    ],
)
def test_save_volume_refuses_bad_names_and_affines(tmp_path, image, name, affine, match):
    with pytest.raises(CalfInputError, match=match):
        save_volume(image, tmp_path / name, affine)
    assert not (tmp_path / name).exists()


def test_save_volume_refuses_2d_arrays(tmp_path):
    with pytest.raises(CalfInputError, match="2D array"):
        save_volume(np.zeros((4, 5)), tmp_path / "flat.nii.gz", np.eye(4))


# --------------------------------------------------------------------------- bad input


def _assert_clear(err: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    msg = str(err.value)
    assert str(path) in msg, msg
    assert problem in msg, msg
    assert "Fix:" in msg, msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "does not exist")


def test_non_nifti_file(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "is not a NIfTI file")


def test_text_file_named_nii(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("these are my notes, not an image\n" * 20)
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "could not be read as NIfTI")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.touch()
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "is empty (0 bytes)")


def test_truncated_gzip_file(tmp_path, image):
    good = _write_nib(tmp_path / "good.nii.gz", image, np.eye(4))
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "damaged")


def test_corrupt_gzip_stream(tmp_path, image):
    raw = _write_nib(tmp_path / "raw.nii", image, np.eye(4)).read_bytes()
    packed = bytearray(gzip.compress(raw))
    packed[len(packed) // 2: len(packed) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "garbled.nii.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    assert str(path) in str(err.value)


def test_2d_nifti(tmp_path):
    path = _write_nib(tmp_path / "slice.nii.gz", np.zeros((12, 14), np.float32), np.eye(4))
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "2D image")


def test_5d_nifti(tmp_path):
    path = _write_nib(tmp_path / "5d.nii", np.zeros((4, 4, 4, 2, 2), np.float32), np.eye(4))
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "5D image")


def test_nan_voxels_are_counted(tmp_path, image):
    image[0, 0, :3] = np.nan
    image[1, 1, 1] = np.inf
    path = _write_nib(tmp_path / "nan.nii.gz", image, np.eye(4))
    with pytest.raises(CalfInputError) as err:
        load_volume(path)
    _assert_clear(err, path, "3 NaN, 1 infinite voxel(s)")


def test_volume_is_plain_data():
    vol = Volume(
        data=np.zeros(SHAPE, np.float32), affine=np.eye(4), spacing=(1.0, 1.0, 1.0),
        orientation=("R", "A", "S"), source_affine=np.eye(4), source_shape=SHAPE, path=None,
    )
    with pytest.raises(AttributeError):
        vol.path = Path("x")  # type: ignore[misc]


# A header is 352 bytes; it may claim any array size. Reading must not trust the claim.


def _header_claiming(shape: tuple[int, ...], dtype: type, data: bytes) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0" * 4 + data


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_header_claiming_a_huge_image_is_refused_before_allocating(tmp_path, suffix):
    """A 4 KB file claiming 400×400×400 float32 (256 MB) must not cost 256 MB to refuse."""
    import tracemalloc

    raw = _header_claiming((400, 400, 400), np.float32, b"\1" * 4096)
    path = tmp_path / f"claims{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    tracemalloc.start()
    try:
        with pytest.raises(CalfInputError) as info:
            load_volume(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse a 4 KB file"
    msg = str(info.value)
    assert str(path) in msg and "(400, 400, 400)" in msg
    assert f"{len(raw) - 352:,}" in msg or f"{len(raw):,}" in msg  # the data it really holds
    assert "Fix:" in msg


def test_an_absurd_claim_is_a_clear_error_not_memory_error(tmp_path):
    path = tmp_path / "absurd.nii.gz"
    path.write_bytes(gzip.compress(_header_claiming((30000, 30000, 30000), np.int16, b"\0" * 64)))
    with pytest.raises(CalfInputError, match=r"absurd\.nii\.gz.*\(30000, 30000, 30000\)"):
        load_volume(path, label=True)

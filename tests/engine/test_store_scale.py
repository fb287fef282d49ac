"""The slice store at scale: exact values, disk-full errors, epochs that do not map the store."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest

from napari_calf.engine._store_io import StoreWriter, take_rows
from napari_calf.engine.data import padding_for, slices_by_case, stack_modalities
from napari_calf.engine.slice_store import SliceStore, iter_build_slice_store
from napari_calf.errors import CalfCheckpointError
from napari_calf.events import drain


def _tiny_cases(root: Path, n: int = 3) -> list:
    from _engine_data import write_tiny_dataset  # tests/_engine_data.py

    from napari_calf.io.discovery import discover_cases

    return discover_cases(write_tiny_dataset(root, n_cases=n))


# --------------------------------------------------------------------------- exact values


def test_disk_and_memory_stores_hold_whole_volume_zscores_bit_for_bit(tmp_path: Path) -> None:
    """Only the chosen slices are normalised, yet the values are those of the whole volume."""
    import nibabel as nib

    cases = _tiny_cases(tmp_path / "data")
    sel = {cases[0].case_id: np.array([0, 3, 4, 9]), cases[2].case_id: np.array([5])}
    disk = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=tmp_path / "c"))
    memory = drain(iter_build_slice_store(cases, sel, mode="memory"))
    assert disk.location is not None and memory.location is None
    np.testing.assert_array_equal(np.asarray(disk.images), memory.images)
    np.testing.assert_array_equal(np.asarray(disk.targets), memory.targets)

    pad = padding_for((48, 48), 32)
    rows = []
    for case in (cases[0], cases[2]):
        arrays = {m: np.asarray(nib.load(p).dataobj, dtype=np.float32) for m, p in case.images.items()}
        whole = stack_modalities(arrays)  # the reference: every volume normalised in full
        for z in sel[case.case_id]:
            rows.append(pad.pad(whole[..., z]).astype(np.float16))
    np.testing.assert_array_equal(memory.images, np.stack(rows))
    np.testing.assert_array_equal(disk.case_ids, [cases[0].case_id] * 4 + [cases[2].case_id])
    np.testing.assert_array_equal(disk.slices, [0, 3, 4, 9, 5])


def test_slices_by_case_matches_a_per_case_scan() -> None:
    rng = np.random.default_rng(0)
    ids = np.repeat(np.array([f"c{i:03d}" for i in rng.permutation(40)]), 12)
    slices = np.tile(np.arange(12)[::-1], 40)  # descending within a case: output must sort
    keep = rng.random(ids.size) > 0.6
    got = slices_by_case(ids, slices, keep)
    expected = {}
    for cid in dict.fromkeys(ids[keep].tolist()):  # first-kept order, as before
        expected[cid] = np.sort(slices[keep & (ids == cid)])
    assert list(got) == list(expected)
    for cid in expected:
        np.testing.assert_array_equal(got[cid], expected[cid])
    assert slices_by_case(ids, slices, np.zeros(ids.size, bool)) == {}


# --------------------------------------------------------------------------- a full disk


def _no_space(*_args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _check_disk_full_message(err: CalfCheckpointError, folder: Path, at_least: int) -> None:
    text = str(err)
    assert text.startswith(f"{folder}:"), text  # the cache folder the user chose
    match = re.search(r"needs ([\d,]+) MiB \(([\d,]+) bytes\) and ([\d,]+) MiB \(([\d,]+) bytes\) is free",
                      text)
    assert match, text
    assert int(match[2].replace(",", "")) >= at_least
    assert int(match[4].replace(",", "")) > 0
    assert "--cache-dir" in text


def test_full_disk_at_preallocation_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    cases = _tiny_cases(tmp_path / "data", n=2)
    sel = {c.case_id: np.arange(10) for c in cases}
    cache = tmp_path / "cache"
    monkeypatch.setattr(os, "posix_fallocate", _no_space, raising=False)
    with pytest.raises(CalfCheckpointError) as info:
        drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    # 20 slices of 4 x 64 x 64 float16 at least
    _check_disk_full_message(info.value, cache, 20 * 4 * 64 * 64 * 2)
    assert list(cache.iterdir()) == [], "a failed store must leave nothing behind"


def test_full_disk_while_writing_without_preallocation_is_the_same_error(tmp_path, monkeypatch) -> None:
    cases = _tiny_cases(tmp_path / "data", n=2)
    sel = {c.case_id: np.arange(10) for c in cases}
    cache = tmp_path / "cache"

    def unsupported(*_args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    monkeypatch.setattr(os, "pwrite", _no_space)
    with pytest.raises(CalfCheckpointError) as info:
        drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
    _check_disk_full_message(info.value, cache, 20 * 4 * 64 * 64 * 2)
    assert list(cache.iterdir()) == []


# --------------------------------------------------------------------------- reading


def _memmap_file(path: Path, array: np.ndarray) -> np.ndarray:
    writer = StoreWriter(path, array.dtype, array.shape)
    writer.write(0, array)
    writer.close()
    return np.load(path, mmap_mode="r")


def test_take_rows_equals_fancy_indexing(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(50, 3, 5, 7)).astype(np.float16)
    mm = _memmap_file(tmp_path / "a.npy", data)
    for idx in ([0], [49], [3, 4, 5, 6], [7, 2, 2, 40, 41, 9], np.arange(50)[::-1], []):
        np.testing.assert_array_equal(take_rows(mm, np.asarray(idx, dtype=np.int64)), data[idx])
    np.testing.assert_array_equal(take_rows(mm[10:], np.array([0, 1])), data[[10, 11]])
    np.testing.assert_array_equal(take_rows(data, np.array([4, 1])), data[[4, 1]])
    with pytest.raises(IndexError):
        take_rows(mm, np.array([50]))


def _rss_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                out[key] = int(rest.split()[0])
    return out


@pytest.mark.skipif(not Path("/proc/self/status").exists() or "RssFile" not in
                    Path("/proc/self/status").read_text(), reason="needs Linux /proc RSS parts")
def test_an_epoch_over_a_1000_case_store_does_not_map_it_into_memory(tmp_path: Path) -> None:
    """64 MiB of images from 1,000 cases: one epoch of batches leaves RSS where it was.

    The control reads the same batches by fancy-indexing the memmap: that maps every page
    it touches into the process, which shows that the measurement sees what it should.
    """
    import torch

    from napari_calf.engine.batches import BatchFeeder, epoch_batches

    n_cases, per_case = 1000, 8
    n = n_cases * per_case
    rng = np.random.default_rng(0)
    images_path, targets_path = tmp_path / "images.npy", tmp_path / "targets.npy"
    writer = StoreWriter(images_path, np.float16, (n, 4, 32, 32))
    for a in range(0, n, 1000):
        writer.write(a, rng.normal(size=(1000, 4, 32, 32)).astype(np.float16))
    writer.close()
    targets = (rng.random((n, 32, 32)) > 0.9).astype(np.uint8)
    _memmap_file(targets_path, targets)
    store = SliceStore(
        images=np.load(images_path, mmap_mode="r"), targets=np.load(targets_path, mmap_mode="r"),
        case_ids=np.repeat([f"case{i:04d}" for i in range(n_cases)], per_case),
        slices=np.tile(np.arange(per_case), n_cases), areas=targets.reshape(n, -1).sum(1) * 1.0,
        modalities=("t1", "t1ce", "t2", "flair"), location=tmp_path,
    )
    del targets
    store_kib = store.nbytes // 1024
    batches = epoch_batches(n, 32, seed=0, epoch=1)

    feeder = BatchFeeder(store, torch.device("cpu"))
    start = _rss_kib()
    peak = dict(start)
    seen = 0
    for x, y in feeder.iter_batches(batches):
        seen += x.shape[0]
        assert x.dtype == torch.float32 and y.shape == (32, 1, 32, 32)
        for key, value in _rss_kib().items():
            peak[key] = max(peak[key], value)
    assert seen == n
    assert peak["RssFile"] - start["RssFile"] < 0.1 * store_kib
    assert peak["RssAnon"] - start["RssAnon"] < 0.1 * store_kib

    control = _rss_kib()["RssFile"]
    for idx in batches:
        np.take(store.images, np.sort(idx), axis=0)
    assert _rss_kib()["RssFile"] - control > 0.5 * (n * 4 * 32 * 32 * 2 // 1024)


def test_resident_batches_equal_host_batches_for_a_store_on_disk(tmp_path, monkeypatch) -> None:
    """Uploading a memmapped store in chunks and slicing one per-epoch index upload gives
    the same batches as reading each batch from the files."""
    import torch

    from napari_calf.engine import batches as batches_mod
    from napari_calf.engine.batches import BatchFeeder, epoch_batches

    rng = np.random.default_rng(3)
    n = 37
    images = rng.normal(size=(n, 2, 8, 8)).astype(np.float16)
    targets = (rng.random((n, 8, 8)) > 0.7).astype(np.uint8)
    store = SliceStore(images=_memmap_file(tmp_path / "i.npy", images),
                       targets=_memmap_file(tmp_path / "t.npy", targets),
                       case_ids=np.array(["a"] * n), slices=np.arange(n),
                       areas=targets.reshape(n, -1).sum(1) * 1.0, modalities=("x", "y"))
    monkeypatch.setattr(batches_mod, "UPLOAD_CHUNK_BYTES", 5 * images[0].nbytes)  # 8 chunks
    cpu = torch.device("cpu")
    resident = BatchFeeder(store, cpu, resident=True)
    host = BatchFeeder(store, cpu, resident=False)
    assert resident.resident and not host.resident
    torch.testing.assert_close(resident._images, torch.from_numpy(images))
    order = epoch_batches(n, 6, seed=1, epoch=2)
    got = list(resident.iter_batches(order))
    want = list(host.iter_batches(order))
    assert len(got) == len(want) == n // 6
    for (xr, yr), (xh, yh), idx in zip(got, want, order):
        torch.testing.assert_close(xr, xh)
        torch.testing.assert_close(yr, yh)
        expected = torch.from_numpy(images[np.sort(idx)].astype(np.float32))
        torch.testing.assert_close(xr, expected)
        assert yr.shape == (6, 1, 8, 8) and yr.dtype == torch.float32
    torch.testing.assert_close(resident.get(order[0])[0], got[0][0])

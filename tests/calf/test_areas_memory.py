"""Dataset areas hold one label volume at a time, whatever the number of cases."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_calf.calf.areas import iter_dataset_areas
from napari_calf.events import Progress


def test_each_label_volume_is_freed_before_the_next_case(tmp_path: Path, monkeypatch) -> None:
    import napari_calf.io.volumes as volumes
    from napari_calf.io.discovery import discover_cases

    rng = np.random.default_rng(0)
    for i in range(4):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        label = (rng.random((16, 12, 6)) > 0.8).astype(np.uint8) * 2
        for name, data in (("t1", label.astype(np.float32) + 1), ("seg", label)):
            nib.save(nib.Nifti1Image(data, np.eye(4)), folder / f"case{i}_{name}.nii.gz")
    cases = discover_cases(tmp_path)

    loaded: list[weakref.ref] = []
    real_load = volumes.load_volume

    def tracking_load(*args, **kwargs):
        volume = real_load(*args, **kwargs)
        loaded.append(weakref.ref(volume.data))
        return volume

    monkeypatch.setattr(volumes, "load_volume", tracking_load)
    gen = iter_dataset_areas(cases)
    seen = 0
    try:
        while True:
            event = next(gen)
            assert isinstance(event, Progress)
            seen += 1
            gc.collect()
            # at every yield, no label array of this or any earlier case is still held
            assert len(loaded) == seen
            assert all(ref() is None for ref in loaded), f"a label is still alive after case {seen}"
    except StopIteration as stop:
        areas = stop.value
    assert seen == 4 and areas.n_cases == 4

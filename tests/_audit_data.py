"""Tiny labelled datasets for the audit tests (train in a second on a CPU).

Cases are 32×32×10 BraTS-2021-style volumes: four modalities in which tumour is 80 units
brighter, and a disc of oedema (label 2) of random size on slices 2-7. A variant adds a
known annotation error (a spurious blob on one case) with the clean labels in ``truth/``
and a ``label_errors.json`` record, as ``napari-calf phantom --label-errors`` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_calf.io.volumes import save_volume

SHAPE = (32, 32, 10)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
TRAIN_OPTS = ["--encoder", "tu-resnet10t", "--encoder-depth", "3", "--epochs", "1",
              "--batch-size", "4", "--device", "cpu", "--lr", "0.003"]
#: The spurious blob of :func:`write_noisy_dataset`: case, slices and in-plane box.
BLOB = {"case_id": "Tiny_001", "z": (7, 8), "x": (4, 8), "y": (24, 28)}


def write_tiny_dataset(root: Path, n_cases: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    brain = np.zeros(SHAPE, bool)
    brain[3:-3, 3:-3, :] = True
    for i in range(n_cases):
        cid = f"Tiny_{i:03d}"
        folder = root / cid
        folder.mkdir(parents=True)
        label = np.zeros(SHAPE, np.uint8)
        for z in range(2, 8):
            r = rng.uniform(2.0, 6.0)
            cx, cy = rng.uniform(12, 20, 2)
            label[..., z][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 2
        for mod in ("t1", "t1ce", "t2", "flair"):
            img = (rng.normal(100, 10, SHAPE) + 80 * (label > 0)).astype(np.float32) * brain
            save_volume(img, folder / f"{cid}_{mod}.nii.gz", AFFINE)
        save_volume(label, folder / f"{cid}_seg.nii.gz", AFFINE)
    return root


def write_noisy_dataset(root: Path, n_cases: int = 4) -> Path:
    """:func:`write_tiny_dataset` with a spurious blob labelled in one case, the clean
    labels in ``root/truth/`` and the record in ``root/label_errors.json``."""
    from napari_calf.io.volumes import load_volume

    write_tiny_dataset(root, n_cases)
    cid = BLOB["case_id"]
    seg = root / cid / f"{cid}_seg.nii.gz"
    clean = load_volume(seg, label=True).data
    save_volume(clean, root / "truth" / cid / seg.name, AFFINE)
    for other in sorted(p for p in root.iterdir() if p.name.startswith("Tiny_") and p.name != cid):
        name = f"{other.name}_seg.nii.gz"
        save_volume(load_volume(other / name, label=True).data, root / "truth" / other.name / name,
                    AFFINE)
    noisy = clean.copy()
    (x0, x1), (y0, y1), (z0, z1) = BLOB["x"], BLOB["y"], BLOB["z"]
    noisy[x0:x1, y0:y1, z0:z1 + 1] = 2
    save_volume(noisy, seg, AFFINE, overwrite=True)
    added = int(np.count_nonzero(noisy != clean))
    record = {"case_id": cid, "kind": "spurious", "slices": [z0, z1], "component": None,
              "voxels": added, "volume_mm3": added * 8.0, "magnitude_mm": None,
              "centre_vox": [(x0 + x1 - 1) // 2, (y0 + y1 - 1) // 2, z0]}
    (root / "label_errors.json").write_text(json.dumps(
        {"version": 1, "spec": "spurious=0.25", "seed": 0, "truth_dir": "truth",
         "errors": [record]}))
    return root

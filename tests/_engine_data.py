"""A tiny BraTS-2021-style dataset for the engine tests (trains in seconds on a CPU).

The phantom (``napari_calf.phantom.dataset``) is realistic but 80×98 per slice; engine tests
that only need *learnable* data use these 48×48×10 cases: a noisy elliptical "brain" in
four channels, and on a few slices a blob that is brighter in every channel, labelled
with BraTS-2021 labels (2 edema around 1 core with 4 enhancing in the middle).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (48, 48, 10)
MODALITIES = ("t1", "t1ce", "t2", "flair")


def write_tiny_dataset(root: Path, n_cases: int = 3, seed: int = 0) -> Path:
    """Write ``n_cases`` cases under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    xx, yy = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    brain2d = ((xx - 23.5) / 21) ** 2 + ((yy - 23.5) / 19) ** 2 <= 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-48, -48, -10)
    for i in range(n_cases):
        case = f"Tiny-{i:03d}"
        folder = root / case
        folder.mkdir(parents=True)
        label = np.zeros(SHAPE, np.uint8)
        for z in range(2, 8):  # tumour on six of ten slices, sizes vary
            cx, cy = rng.integers(14, 34, size=2)
            r = rng.uniform(2.5, 7.0)
            d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            label[..., z][(d <= r) & brain2d] = 2
            label[..., z][(d <= 0.6 * r) & brain2d] = 1
            label[..., z][(d <= 0.3 * r) & brain2d] = 4
        for j, m in enumerate(MODALITIES):
            img = rng.normal(400 + 50 * j, 30, size=SHAPE).astype(np.float32)
            img[label > 0] += 250 + 40 * j
            img[~np.broadcast_to(brain2d[..., None], SHAPE)] = 0
            nib.save(nib.Nifti1Image(img, affine), folder / f"{case}_{m}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), folder / f"{case}_seg.nii.gz")
    return root


def write_lps_case(root: Path, case_id: str, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """A case stored in LPS orientation (x and y flipped on disk).

    Returns the canonical (RAS) image arrays and label we expect after loading, and the
    affine written to the files.
    """
    rng = np.random.default_rng(seed)
    shape = (40, 36, 12)
    ras = {}
    for m in MODALITIES:
        a = np.zeros(shape, np.float32)
        a[5:35, 4:32, :] = rng.normal(100, 20, size=(30, 28, 12)) + 200
        ras[m] = a
    label = np.zeros(shape, np.uint8)
    label[8:14, 20:30, 5] = 2  # an off-centre blob on one axial slice: orientation shows
    label[9:11, 21:23, 6] = 4
    ras_affine = np.diag([2.0, 2.0, 3.0, 1.0])
    ras_affine[:3, 3] = (-40, -36, -18)
    # LPS: flip x and y of the data; the affine maps flipped indices to the same points
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = shape[0] - 1, shape[1] - 1
    lps_affine = ras_affine @ flip
    folder = root / case_id
    folder.mkdir(parents=True)
    for m, a in ras.items():
        nib.save(nib.Nifti1Image(a[::-1, ::-1].copy(), lps_affine), folder / f"{case_id}_{m}.nii.gz")
    nib.save(nib.Nifti1Image(label[::-1, ::-1].copy(), lps_affine), folder / f"{case_id}_seg.nii.gz")
    return ras, label, lps_affine


def write_untrained_run(run: Path, encoder: str = "resnet18") -> Path:
    """A run folder with an untrained 4-channel U-Net (depth 3) and its run card, as
    `napari-calf train` leaves one: enough for prediction and loading tests."""
    import torch

    from napari_calf.config import DataConfig, ModelConfig, RunConfig
    from napari_calf.engine.checkpoints import save_weights
    from napari_calf.engine.models import build_model
    from napari_calf.engine.run_card import model_info, new_card, preprocessing_info, write_run_card

    config = RunConfig(data=DataConfig("unused"), out_dir=str(run),
                       model=ModelConfig("unet", encoder, encoder_depth=3))
    torch.manual_seed(0)
    save_weights(build_model("unet", encoder, 4, encoder_depth=3), run / "model.safetensors")
    card = new_card(config)
    card.update(model=model_info(config, 4, 0),
                preprocessing=preprocessing_info(config, ("t1", "t1ce", "t2", "flair")))
    write_run_card(run, card)
    return run


def hold_in_another_process(folder: Path, call: str = "lock_folder(sys.argv[1], doing='is busy', fix='wait')"):
    """A process holding ``folder`` with ``call`` (a lock of engine.run_lock) until it is
    killed: a training, a running compare or audit, a second napari."""
    import os
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from napari_calf.engine.run_lock import lock_folder, lock_run_folder\n"
         f"lock = {call}\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n", str(folder)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "held"
    return holder

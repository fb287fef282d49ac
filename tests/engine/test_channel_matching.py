"""Channels reach the network by name, never silently by position (reliability fault 1).

Each modality of the test case has its bright disc in a different place, and the stand-in
network segments whatever is bright in the run's *second* channel (t1ce). So the predicted
mask says, by its position alone, which file was fed as t1ce.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf.engine.inference import LoadedRun, predict_volume
from napari_calf.errors import CalfInputError

RUN_MODALITIES = ["t1", "t1ce", "t2", "flair"]
SHAPE = (40, 40, 4)
#: where each modality's bright disc lies (x, y): a mask shows which channel it came from
DISCS = {"t1": (10, 10), "t1ce": (29, 11), "t2": (11, 29), "flair": (29, 29)}


def disc(modality: str) -> np.ndarray:
    xx, yy = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    cx, cy = DISCS[modality]
    return np.broadcast_to((((xx - cx) ** 2 + (yy - cy) ** 2) <= 16)[..., None], SHAPE)


def image(modality: str) -> np.ndarray:
    img = np.zeros(SHAPE, np.float32)
    img[2:-2, 2:-2] = 100.0  # the "brain": non-zero, so it enters the z-score
    img[disc(modality)] = 300.0
    return img


def write_files(folder: Path, tokens: dict[str, str], prefix: str = "case_") -> dict[str, Path]:
    """One file per run modality, named ``<prefix><token>.nii.gz``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for modality, token in tokens.items():
        paths[modality] = folder / f"{prefix}{token}.nii.gz"
        nib.save(nib.Nifti1Image(image(modality), np.eye(4)), paths[modality])
    return paths


class SecondChannelNet:
    """Tumour wherever the second input channel (the run's t1ce) is bright."""

    def __init__(self) -> None:
        import torch

        class _Net(torch.nn.Module):
            def forward(self, x):
                return 20.0 * (x[:, 1:2] - 0.5)

        self.module = _Net()


def run_with(**preprocessing) -> LoadedRun:
    pre = {"modalities": RUN_MODALITIES, **preprocessing}
    return LoadedRun(model=SecondChannelNet().module, card={"preprocessing": pre})


@pytest.mark.parametrize("tokens, order", [
    # BraTS 2021 names but t1gd for t1ce; files given in another order than the run's
    ({"t1": "t1", "t1ce": "t1gd", "t2": "t2", "flair": "flair"}, ["t1ce", "flair", "t2", "t1"]),
    # BraTS 2023 names for a run trained on BraTS 2021 names
    ({"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}, ["flair", "t2", "t1ce", "t1"]),
])
def test_files_named_with_aliases_in_any_order_reach_their_channel(tmp_path, tokens, order) -> None:
    paths = write_files(tmp_path, tokens)
    pred = predict_volume(run_with(), [paths[m] for m in order], device="cpu")
    np.testing.assert_array_equal(pred.labels, disc("t1ce"))


def _nnunet_dataset(root: Path, names: list[str]) -> Path:
    """An nnU-Net raw folder with one test case whose channel k is modality ``names[k]``."""
    (root / "imagesTs").mkdir(parents=True)
    for k, modality in enumerate(names):
        nib.save(nib.Nifti1Image(image(modality), np.eye(4)), root / "imagesTs" / f"c1_{k:04d}.nii.gz")
    shown = {"t1": "T1", "t1ce": "T1Gd", "t2": "T2", "flair": "FLAIR"}
    (root / "dataset.json").write_text(json.dumps(
        {"channel_names": {str(k): shown[m] for k, m in enumerate(names)},
         "labels": {"background": 0, "edema": 2, "non-enhancing": 1, "enhancing": 4}}))
    return root


@pytest.mark.parametrize("run_pre", [
    {},  # run trained on BraTS-named files
    # run trained on an nnU-Net folder whose dataset.json said 0000=T1, 0001=T1ce, …
    {"modalities": ["0000", "0001", "0002", "0003"],
     "channel_names": {"0000": "T1", "0001": "T1ce", "0002": "T2", "0003": "FLAIR"}},
])
def test_nnunet_channels_follow_the_names_in_dataset_json(tmp_path, run_pre) -> None:
    root = _nnunet_dataset(tmp_path / "nn", ["flair", "t1", "t1ce", "t2"])  # another order
    pred = predict_volume(run_with(**run_pre), root, device="cpu")
    np.testing.assert_array_equal(pred.labels, disc("t1ce"))


def test_unmatched_names_are_refused_naming_the_file_unless_order_is_asked_for(tmp_path) -> None:
    paths = write_files(tmp_path, {"t1": "t1", "t1ce": "post", "t2": "t2", "flair": "flair"})
    files = [paths[m] for m in RUN_MODALITIES]
    with pytest.raises(CalfInputError) as err:
        predict_volume(run_with(), files, device="cpu")
    msg = str(err.value)
    assert "case_post.nii.gz" in msg and "t1ce" in msg and "positional" in msg
    # asked for explicitly: files taken in the order given (here the run's own order)
    pred = predict_volume(run_with(), files, device="cpu", channel_order="positional")
    np.testing.assert_array_equal(pred.labels, disc("t1ce"))


def test_two_files_for_one_channel_are_refused(tmp_path) -> None:
    paths = write_files(tmp_path, {"t1": "t1", "t1ce": "t1ce", "t2": "t1c", "flair": "flair"})
    with pytest.raises(CalfInputError, match="t1c"):
        predict_volume(run_with(), list(paths.values()), device="cpu")


def test_a_4d_file_has_no_channel_names_so_its_order_must_be_asked_for(tmp_path) -> None:
    stack = np.stack([image(m) for m in RUN_MODALITIES], axis=-1)
    path = tmp_path / "case4d.nii.gz"
    nib.save(nib.Nifti1Image(stack, np.eye(4)), path)
    with pytest.raises(CalfInputError, match="positional"):
        predict_volume(run_with(), path, device="cpu")
    pred = predict_volume(run_with(), path, device="cpu", channel_order="positional")
    np.testing.assert_array_equal(pred.labels, disc("t1ce"))


def test_arrays_by_modality_name_use_the_same_aliases() -> None:
    arrays = {"T2F": image("flair"), "t1n": image("t1"), "T1c": image("t1ce"), "t2w": image("t2")}
    pred = predict_volume(run_with(), arrays, device="cpu")
    np.testing.assert_array_equal(pred.labels, disc("t1ce"))


def test_alias_table_is_one_documented_mapping() -> None:
    from napari_calf.engine.channels import MODALITY_ALIASES, canonical_modality

    assert canonical_modality("T1-Gd") == canonical_modality("t1c") == "t1ce"
    assert canonical_modality("T2f") == canonical_modality("FLAIR") == "flair"
    assert canonical_modality("t1n") == "t1" and canonical_modality("T2w") == "t2"
    assert canonical_modality("dwi") == "dwi"  # unknown names stay themselves
    every = [a for aliases in MODALITY_ALIASES.values() for a in aliases]
    assert len(every) == len(set(every))  # no alias belongs to two modalities

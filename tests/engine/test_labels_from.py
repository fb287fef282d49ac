"""``--labels-from``: corrected labels replace the originals, corrected slices always train,
the run card says which labels were corrected; evaluation can score against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from napari_calf.errors import CalfInputError
from napari_calf.events import drain
from napari_calf.io.volumes import load_volume, save_volume

BLOB_SLICE, CUT_SLICE = 9, 3  # slice 9 is tumour-free in the original, slice 3 is not


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _audit_data import write_tiny_dataset  # tests/_audit_data.py

    return write_tiny_dataset(tmp_path_factory.mktemp("labels_from") / "data", 4)


def _val_case(data: Path, seed: int) -> str:
    from napari_calf.engine.data import split_cases
    from napari_calf.io.discovery import discover_cases

    return split_cases(discover_cases(data), 0.25, seed).val_ids[0]


def _correct(data: Path, corrections: Path, case_id: str) -> np.ndarray:
    """A corrected label: a 4×4 blob added on slice 9, the tumour of slice 3 erased."""
    seg = data / case_id / f"{case_id}_seg.nii.gz"
    original = load_volume(seg, label=True)
    fixed = original.data.copy()
    fixed[10:14, 10:14, BLOB_SLICE] = 2
    fixed[..., CUT_SLICE] = 0
    save_volume(fixed, corrections / case_id / seg.name, original.affine, overwrite=True)
    (corrections / "corrections.json").write_text(json.dumps({"version": 1, "audit": "..",
        "decisions": [{"issue_id": f"{case_id}/missed/1", "case_id": case_id,
                       "decision": "edited", "voxels_changed": int((fixed != original.data).sum()),
                       "label_file": str(seg), "corrected_file": f"{case_id}/{seg.name}",
                       "new_label_value": 2, "time": "2026-01-01T00:00:00"}]}))
    return fixed


def _config(data: Path, tmp_path: Path, seed: int, **extra) -> RunConfig:
    return RunConfig(
        data=DataConfig(str(data), val_fraction=0.25, empty_fraction=0.0, max_slices_per_case=2,
                        val_empty_fraction=0.0, store="memory", cache_dir=str(tmp_path / "cache"),
                        **extra),
        model=ModelConfig("unet", "tu-resnet10t", encoder_depth=3),
        train=TrainConfig(epochs=1, batch_size=4, device="cpu", seed=seed, patience=None),
        out_dir=str(tmp_path / "run"))


def test_corrected_case_trains_on_its_corrected_slices_beyond_sampling_and_cap(
        data: Path, tmp_path: Path) -> None:
    from napari_calf.engine.training_data import iter_prepare_data

    seed = 3
    case_id = _val_case(data, seed)  # without corrections this case would validate
    fixed = _correct(data, tmp_path / "corrections", case_id)
    prepared = drain(iter_prepare_data(_config(data, tmp_path, seed,
                                               labels_from=str(tmp_path / "corrections"))))
    assert case_id in prepared.split.train_ids and case_id not in prepared.split.val_ids
    store = prepared.train
    mine = store.slices[store.case_ids == case_id]
    # the cap keeps 2 tumour slices; slice 9 (empty before, so dropped by empty_fraction 0)
    # and slice 3 (emptied by the correction) are trained on anyway
    assert {BLOB_SLICE, CUT_SLICE} <= set(mine.tolist()) and len(mine) <= 2 + 2
    for z, expected in ((BLOB_SLICE, 16), (CUT_SLICE, 0)):
        index = np.flatnonzero((store.case_ids == case_id) & (store.slices == z))[0]
        assert int(store.targets[index].sum()) == expected == int((fixed[..., z] > 0).sum())
    other = [c for c in prepared.split.train_ids if c != case_id]
    assert all(len(store.slices[store.case_ids == c]) <= 2 for c in other)
    record = prepared.summary()["labels_from"]
    (row,) = record["cases"]
    assert row["case_id"] == case_id and row["slices"] == [CUT_SLICE, BLOB_SLICE]
    assert row["in_training_split"] is True and row["slices_always_trained"] == 2
    assert row["decisions"][0]["issue_id"] == f"{case_id}/missed/1"
    original = load_volume(data / case_id / f"{case_id}_seg.nii.gz", label=True).data
    assert row["voxels_changed"] == int((fixed != original).sum())


def test_a_correction_on_another_grid_is_refused_naming_the_file(data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "corrections" / "Tiny_000" / "Tiny_000_seg.nii.gz"
    save_volume(np.zeros((32, 32, 9), np.uint8), bad, np.diag([2.0, 2.0, 2.0, 1.0]))
    from napari_calf.engine.training_data import iter_prepare_data

    with pytest.raises(CalfInputError) as err:
        drain(iter_prepare_data(_config(data, tmp_path, 0, labels_from=str(bad.parents[1]))))
    assert "Tiny_000_seg.nii.gz" in str(err.value) and "corrections" in str(err.value)


def test_correcting_every_case_needs_named_validation_cases(data: Path, tmp_path: Path) -> None:
    from napari_calf.engine.training_data import iter_prepare_data

    for i in range(4):
        _correct(data, tmp_path / "all", f"Tiny_{i:03d}")
    with pytest.raises(CalfInputError, match="--val-cases"):
        drain(iter_prepare_data(_config(data, tmp_path, 0, labels_from=str(tmp_path / "all"))))
    prepared = drain(iter_prepare_data(_config(data, tmp_path, 0, labels_from=str(tmp_path / "all"),
                                               val_cases=("Tiny_002",))))
    assert prepared.split.val_ids == ["Tiny_002"]
    assert prepared.split.train_ids == ["Tiny_000", "Tiny_001", "Tiny_003"]


@pytest.mark.slow
def test_fine_tuning_cli_records_corrections_and_scores_before_and_after(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from _audit_data import TRAIN_OPTS

    from napari_calf._cli.main import main
    from napari_calf.calf.metrics import dice
    from napari_calf.engine.inference import predict_volume
    from napari_calf.io.discovery import discover_cases
    from napari_calf.study.evaluation import evaluate_run

    first = tmp_path / "first"
    assert main(["train", str(data), "--out", str(first), *TRAIN_OPTS, "--no-progress"]) == 0
    case_id = json.loads((first / "run.json").read_text())["data"]["split"]["train"][0]
    fixed = _correct(data, tmp_path / "corrections", case_id)
    tuned = tmp_path / "tuned"
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(tuned), *TRAIN_OPTS, "--no-progress",
                 "--labels-from", str(tmp_path / "corrections"), "--init", str(first)]) == 0
    printed = capsys.readouterr().out
    assert "1 corrected case(s), 2 corrected slice(s)" in printed
    assert case_id in printed and "before" in printed and "after" in printed
    card = json.loads((tuned / "run.json").read_text())
    assert card["config"]["data"]["labels_from"] == str((tmp_path / "corrections").resolve())
    (row,) = card["data"]["labels_from"]["cases"]
    assert row["case_id"] == case_id and row["slices"] == [CUT_SLICE, BLOB_SLICE]
    assert row["replacement"].endswith(f"corrections/{case_id}/{case_id}_seg.nii.gz")

    # evaluation against the corrected label: the Dice of the prediction with that label
    ev = evaluate_run(tuned, data, case_ids=[case_id], device="cpu",
                      labels_from=tmp_path / "corrections")
    (scored,) = ev.cases
    assert scored["label_from"].endswith(f"{case_id}_seg.nii.gz") and "corrections" in scored["label_from"]
    case = next(c for c in discover_cases(data) if c.case_id == case_id)
    mask = predict_volume(tuned, case, device="cpu").canonical_labels > 0
    assert scored["dice"] == pytest.approx(dice(mask, fixed > 0))

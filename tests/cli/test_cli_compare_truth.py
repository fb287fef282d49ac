"""``napari-calf compare ... --truth DIR``: the study's runs scored against clean labels.

A one-run study (1 epoch of a tiny U-Net) on a dataset whose label files carry a known
error (a spurious blob); its validation case is scored against the dataset's labels and,
apart, against ``truth/``, each checked against Dice computed here from the prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_calf._cli.main import main

pytestmark = pytest.mark.slow


def test_compare_truth_scores_the_runs_against_the_clean_labels(tmp_path: Path, capsys) -> None:
    from _audit_data import BLOB, TRAIN_OPTS, write_noisy_dataset

    from napari_calf.calf.metrics import dice
    from napari_calf.engine.inference import predict_volume
    from napari_calf.io.discovery import discover_cases
    from napari_calf.io.volumes import load_volume

    data = write_noisy_dataset(tmp_path / "data")
    study = tmp_path / "study"
    case_id = BLOB["case_id"]  # the case whose label file carries the error validates
    assert main(["compare", str(data), "--out", str(study), "--losses", "bce", "--archs", "unet",
                 "--seeds", "1", "--val-cases", case_id, "--truth", str(data / "truth"),
                 "--no-progress", "--bootstrap", "200", "--no-plots", *TRAIN_OPTS]) == 0
    printed = capsys.readouterr().out
    assert f"Against the labels in {(data / 'truth').resolve()}" in printed

    run = study / "runs" / "unet__bce__seed0"
    noisy_eval = json.loads((study / "evaluations" / "unet__bce__seed0.json").read_text())
    truth_eval = json.loads((study / "evaluations" / "unet__bce__seed0.truth.json").read_text())
    (noisy_row,) = noisy_eval["evaluation"]["cases"]
    (truth_row,) = truth_eval["evaluation"]["cases"]
    assert noisy_row["case_id"] == truth_row["case_id"] == case_id
    assert Path(truth_row["label_from"]) == (data / "truth" / case_id / f"{case_id}_seg.nii.gz").resolve()
    assert "label_from" not in noisy_row

    case = next(c for c in discover_cases(data) if c.case_id == case_id)
    mask = predict_volume(run, case, device="cpu").canonical_labels > 0
    truth = load_volume(data / "truth" / case_id / f"{case_id}_seg.nii.gz", label=True).data > 0
    noisy = load_volume(case.label, label=True).data > 0
    assert truth_row["dice"] == pytest.approx(dice(mask, truth))
    assert noisy_row["dice"] == pytest.approx(dice(mask, noisy))

    report = study / "against-truth"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["rows"][0]["dice_mean"] == pytest.approx(truth_row["dice"])
    assert summary["study"]["truth_dir"] == str((data / "truth").resolve())
    assert "truth" in (report / "README.md").read_text()
    main_summary = json.loads((study / "summary.json").read_text())
    assert main_summary["rows"][0]["dice_mean"] == pytest.approx(noisy_row["dice"])
    info = json.loads((study / "study.json").read_text())
    assert "--truth" in info["command"]


def test_compare_truth_refuses_a_truth_folder_missing_a_case(tmp_path: Path, capsys) -> None:
    from napari_calf.engine.labels_from import apply_label_overrides
    from napari_calf.errors import CalfInputError
    from napari_calf.io.discovery import discover_cases

    from _audit_data import write_noisy_dataset

    data = write_noisy_dataset(tmp_path / "data")
    (data / "truth" / "Tiny_002" / "Tiny_002_seg.nii.gz").unlink()
    with pytest.raises(CalfInputError, match="Tiny_002"):
        apply_label_overrides(discover_cases(data), data / "truth", require_all=True)

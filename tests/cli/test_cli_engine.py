"""The engine subcommands end to end on a tiny dataset: analyze, train, predict, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf._cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from _engine_data import write_tiny_dataset  # tests/_engine_data.py

    return write_tiny_dataset(tmp_path_factory.mktemp("cli") / "data", 3, seed=11)


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cli-run") / "run"
    report = out.parent / "train.json"
    code = main(["train", str(data), "--out", str(out), "--arch", "unet", "--encoder", "resnet18",
                 "--encoder-depth", "3", "--epochs", "2", "--batch-size", "4", "--device", "cpu",
                 "--max-slices-per-case", "4", "--val-fraction", "0.34", "--no-progress",
                 "--cache-dir", str(out.parent / "cache"), "--json", str(report)])
    assert code == 0
    return out, json.loads(report.read_text())


def _wt_slices(data: Path) -> tuple[int, int]:
    """(slices with tumour, all slices), counted straight from the label files."""
    fg = total = 0
    for seg in sorted(data.glob("*/*_seg.nii.gz")):
        lab = np.asanyarray(nib.load(seg).dataobj)
        per = (lab > 0).sum(axis=(0, 1))
        fg += int(np.count_nonzero(per))
        total += per.size
    return fg, total


def test_analyze_reports_statistics_and_marks_the_matched_rule(data, tmp_path, capsys) -> None:
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(data), "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    fg, total = _wt_slices(data)
    assert result["cases"] == 3 and result["slices"] == total
    assert result["statistics"]["n"] == fg
    sel = result["selection"]
    assert sel["transform"] in {"fisher", "logit", "arcsine", "log10", "ln", "bce-dice"}
    marked = [line for line in printed.splitlines() if line.startswith("→")]
    assert len(marked) == 1 and sel["transform"] in marked[0]
    assert f"Selected transform: {sel['transform']}" in printed
    # the same file again is refused without --overwrite (exit 1, one-line message)
    assert main(["analyze", str(data), "--json", str(out), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_train_writes_a_run_and_a_machine_readable_summary(run) -> None:
    out, report = run
    assert report["run_dir"] == str(out)
    assert len(report["history"]) == report["epochs_done"] == 2
    assert 0 <= report["best_dice"] <= 1 and report["best_epoch"] in (1, 2)
    assert report["device"] == "cpu"
    assert not set(report["split"]["train"]) & set(report["split"]["val"])
    assert report["loss"]["transform"] == report["selection"]["transform"]
    assert (out / "model.safetensors").is_file() and (out / "run.json").is_file()


def test_train_refuses_an_existing_run_folder_without_traceback(run, data, capsys) -> None:
    out, _ = run
    code = main(["train", str(data), "--out", str(out), "--epochs", "1", "--device", "cpu",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err


def test_predict_writes_labels_like_the_input(run, data, tmp_path, capsys) -> None:
    out, _ = run
    case = data / "Tiny-001"
    target = tmp_path / "pred.nii.gz"
    assert main(["predict", str(out), str(case), "--out", str(target), "--json", "-",
                 "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"):])
    source = nib.load(case / "Tiny-001_t1.nii.gz")
    written = nib.load(target)
    assert written.shape == source.shape and report["shape"] == list(source.shape)
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    np.testing.assert_allclose(report["affine"], source.affine, atol=1e-5)
    assert report["tumour_voxels"] == int(np.asanyarray(written.dataobj).sum())
    # no clobbering
    assert main(["predict", str(out), str(case), "--out", str(target), "--no-progress"]) == 1


def test_evaluate_reports_cases_and_size_buckets(run, data, tmp_path) -> None:
    out, report = run
    result_path = tmp_path / "eval.json"
    assert main(["evaluate", str(out), str(data), "--json", str(result_path), "--device", "cpu",
                 "--no-progress"]) == 0
    result = json.loads(result_path.read_text())
    rows = {r["case_id"]: r for r in result["cases"]}
    assert set(rows) == {"Tiny-000", "Tiny-001", "Tiny-002"}
    for cid, r in rows.items():
        assert r["in_training_split"] == (cid in report["split"]["train"])
        for key in ("dice", "iou", "precision", "recall", "hd95_mm", "fp_rate_empty_slices"):
            assert key in r
        assert 0 <= r["dice"] <= 1 and r["hd95_mm"] >= 0
    b = result["size_buckets"]
    assert {"small", "medium", "large", "empty"} <= set(b)
    fg, total = _wt_slices(data)
    assert sum(b[k]["n"] for k in ("small", "medium", "large")) == fg
    assert b["empty"]["n"] == total - fg
    assert result["n_in_training_split"] == len(report["split"]["train"])

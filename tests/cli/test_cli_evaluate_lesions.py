"""``napari-calf evaluate`` on crafted cases: lesion-wise scores and the ``--hd95`` choice.

The model is replaced by fixed masks (the run loader and the predictor are patched), so
every number is known by hand: five 36³ cases at 2 mm isotropic spacing (8 mm³ voxels),
BraTS-2021 labels, target WT.

- ``Craft-mixed``: a 10×10×5 lesion predicted shifted by 2 voxels along x (Dice 0.8,
  HD95 4 mm under brats), a missed 2×2×2 lesion (64 mm³ > 50: a false negative), a
  false 3×3×3 blob far from both, and a 1-voxel GT lesion (8 mm³ ≤ 50: ignored).
- ``Craft-missed``: one lesion, empty prediction.
- ``Craft-cube``: a 32³ cube against its 1-voxel erosion (HD95 2 mm brats, 2√2 mm monai).
- ``Craft-empty``: nothing in either.
- ``Craft-false``: no tumour, one predicted blob.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_calf._cli.main import main
from napari_calf.calf.lesions import lesion_wise
from napari_calf.calf.surface_distance import surface_distance_hd95
from napari_calf.io.volumes import save_volume

SHAPE = (36, 36, 36)
SPACING = (2.0, 2.0, 2.0)
DIAGONAL = math.sqrt(3) * 36 * 2.0  # the monai penalty when one mask is empty


def _crafted() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """case id -> (label with BraTS-2021 values, predicted mask), canonical RAS."""
    def empty() -> np.ndarray:
        return np.zeros(SHAPE, dtype=np.uint8)

    cases = {}
    gt, pred = empty(), empty()
    gt[4:14, 4:14, 4:9] = 2
    gt[7:11, 7:11, 5:8] = 1          # sub-regions do not matter for WT
    pred[6:16, 4:14, 4:9] = 1        # shifted by 2 voxels along x
    gt[28:30, 28:30, 28:30] = 2      # small lesion, missed
    gt[20, 30, 10] = 2               # 8 mm³: ignored
    pred[28:31, 4:7, 28:31] = 1      # false blob
    cases["Craft-mixed"] = (gt, pred)
    gt = empty()
    gt[10:16, 10:16, 10:16] = 4
    cases["Craft-missed"] = (gt, empty())
    gt, pred = empty(), empty()
    gt[2:34, 2:34, 2:34] = 2
    pred[3:33, 3:33, 3:33] = 1
    cases["Craft-cube"] = (gt, pred)
    cases["Craft-empty"] = (empty(), empty())
    pred = empty()
    pred[10:13, 10:13, 10:13] = 1
    cases["Craft-false"] = (empty(), pred)
    return cases


CASES = _crafted()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crafted")
    affine = np.diag([*SPACING, 1.0])
    for cid, (label, _pred) in CASES.items():
        folder = root / cid
        folder.mkdir()
        for mod in ("t1", "t1ce", "t2", "flair"):
            save_volume(np.zeros(SHAPE, np.float32), folder / f"{cid}_{mod}.nii.gz", affine)
        save_volume(label, folder / f"{cid}_seg.nii.gz", affine)
    return root


@pytest.fixture
def fixed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run 'predicts' the crafted masks; Craft-mixed is in its training split."""
    from napari_calf.engine import inference

    def load_run(_run_dir):
        return SimpleNamespace(preprocessing={"target": "wt"},
                               card={"data": {"split": {"train": ["Craft-mixed"]}}})

    def iter_predict_volume(_run, loaded, **_kw):
        mask = CASES[loaded.case.case_id][1]
        return SimpleNamespace(canonical_probabilities=mask.astype(np.float32), threshold=0.5)
        yield  # a generator, like the real one

    monkeypatch.setattr(inference, "load_run", load_run)
    monkeypatch.setattr(inference, "iter_predict_volume", iter_predict_volume)


def _evaluate(data: Path, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"eval{'-'.join(extra)}.json"
    assert main(["evaluate", str(tmp_path / "run"), str(data), "--json", str(out),
                 "--no-progress", *extra]) == 0
    return json.loads(out.read_text())


def test_lesion_wise_numbers_match_hand_values_and_the_core(data, fixed_model, tmp_path,
                                                            capsys) -> None:
    result = _evaluate(data, tmp_path)
    printed = capsys.readouterr().out
    rows = {r["case_id"]: r for r in result["cases"]}
    assert result["hd95_convention"] == "monai"
    info = result["lesion_wise"]
    assert info["region"] == "wt" and info["regions_not_scored"] == ["tc", "et"]
    assert (info["min_volume_mm3"], info["dilation_voxels"]) == (50.0, 3)

    mixed = rows["Craft-mixed"]
    # kept lesions: the shifted one (Dice 0.8) and the missed one (0); one FP (0)
    assert mixed["lesion_dice"] == pytest.approx(0.8 / 3)
    assert (mixed["lesion_tp"], mixed["lesion_fp"], mixed["lesion_fn"]) == (1, 1, 1)
    assert mixed["lesion_ignored_gt"] == 1
    assert mixed["lesion_f1"] == pytest.approx(2 / (2 + 1 + 1))
    shifted = [les for les in mixed["lesions"] if les["kind"] == "tp"][0]
    gt_l1 = np.zeros(SHAPE, bool)
    gt_l1[4:14, 4:14, 4:9] = True
    pred_l1 = np.roll(gt_l1, 2, axis=0)
    monai_l1 = surface_distance_hd95(pred_l1, gt_l1, SPACING, convention="monai")
    assert shifted["dice"] == pytest.approx(0.8)
    assert shifted["hd95_mm"] == pytest.approx(monai_l1)
    assert mixed["lesion_hd95_mm"] == pytest.approx((monai_l1 + 374 + 374) / 3)
    assert [les["kind"] for les in mixed["lesions"]] == ["tp", "fn", "fp"]
    assert mixed["lesions"][1]["gt_volume_mm3"] == 64.0 and mixed["lesions"][2][
        "pred_volume_mm3"] == 27 * 8.0

    missed, cube = rows["Craft-missed"], rows["Craft-cube"]
    assert (missed["lesion_dice"], missed["lesion_hd95_mm"], missed["lesion_fn"],
            missed["lesion_f1"]) == (0.0, 374.0, 1, 0.0)
    assert missed["hd95_mm"] == pytest.approx(DIAGONAL)  # monai: empty prediction
    assert cube["lesion_dice"] == pytest.approx(2 * 30**3 / (32**3 + 30**3))
    assert cube["hd95_mm"] == pytest.approx(2 * math.sqrt(2))
    assert cube["lesion_hd95_mm"] == pytest.approx(2 * math.sqrt(2))
    empty, false = rows["Craft-empty"], rows["Craft-false"]
    assert (empty["lesion_dice"], empty["lesion_hd95_mm"], empty["lesion_f1"]) == (1.0, 0.0, 1.0)
    assert (false["lesion_dice"], false["lesion_hd95_mm"], false["lesion_fp"],
            false["lesion_f1"]) == (0.0, 374.0, 1, 0.0)

    # every case equals the core on the same masks
    for cid, (label, pred) in CASES.items():
        expected = lesion_wise(pred, label > 0, SPACING, hd95_convention="monai")
        r = rows[cid]
        assert (r["lesion_dice"], r["lesion_hd95_mm"], r["lesion_tp"], r["lesion_fp"],
                r["lesion_fn"], r["lesion_f1"]) == pytest.approx(
            (expected.dice, expected.hd95_mm, expected.tp, expected.fp, expected.fn, expected.f1))
        assert r["lesions"] == expected.as_dict()["lesions"]

    # means over cases, and the pooled counts: TP 1+0+1+0+0, FP 1+0+0+0+1, FN 1+1+0+0+0
    dices = [0.8 / 3, 0.0, 2 * 30**3 / (32**3 + 30**3), 1.0, 0.0]
    assert result["mean"]["lesion_dice"] == pytest.approx(np.mean(dices))
    assert result["mean"]["lesion_f1"] == pytest.approx(np.mean([0.5, 0, 1, 1, 0]))
    counts = result["lesion_counts"]
    assert (counts["tp"], counts["fp"], counts["fn"], counts["ignored_gt"]) == (2, 2, 2, 1)
    assert counts["f1"] == pytest.approx(4 / (4 + 2 + 2))
    # held out (all but Craft-mixed): mean of the other four
    assert result["mean_held_out"]["lesion_dice"] == pytest.approx(np.mean(dices[1:]))
    # the printed table names the region and the convention
    assert "Lesion-wise WT" in printed and "TC, ET not scored" in printed
    assert "HD95 monai" in printed


def test_hd95_brats_changes_whole_case_and_lesion_hd95(data, fixed_model, tmp_path) -> None:
    monai = {r["case_id"]: r for r in _evaluate(data, tmp_path)["cases"]}
    result = _evaluate(data, tmp_path, "--hd95", "brats")
    assert result["hd95_convention"] == "brats" == result["lesion_wise"]["hd95_convention"]
    rows = {r["case_id"]: r for r in result["cases"]}
    # an empty prediction (or an empty truth) scores 374 mm instead of the image diagonal
    assert monai["Craft-missed"]["hd95_mm"] == pytest.approx(DIAGONAL)
    assert rows["Craft-missed"]["hd95_mm"] == 374.0
    assert monai["Craft-false"]["hd95_mm"] == pytest.approx(DIAGONAL)
    assert rows["Craft-false"]["hd95_mm"] == 374.0
    # the cube against its erosion: faces carry 95.6 % of the area, all 2 mm away
    assert rows["Craft-cube"]["hd95_mm"] == pytest.approx(2.0)
    assert rows["Craft-cube"]["lesion_hd95_mm"] == pytest.approx(2.0)
    # the shifted lesion: 2 voxels of 2 mm
    mixed = rows["Craft-mixed"]
    assert mixed["lesions"][0]["hd95_mm"] == pytest.approx(4.0)
    assert mixed["lesion_hd95_mm"] == pytest.approx((4.0 + 374 + 374) / 3)
    assert rows["Craft-empty"]["hd95_mm"] == 0.0
    for cid, (label, pred) in CASES.items():
        assert rows[cid]["hd95_mm"] == pytest.approx(
            surface_distance_hd95(pred, label > 0, SPACING, convention="brats"))
        # everything else is the same as with monai
        for key in ("dice", "iou", "lesion_dice", "lesion_tp", "lesion_fp", "lesion_fn"):
            assert rows[cid][key] == monai[cid][key]


def test_lesion_settings_reach_the_scores_and_bad_ones_are_refused(data, fixed_model, tmp_path,
                                                                   capsys) -> None:
    # with no volume threshold the 1-voxel lesion counts, and is missed
    rows = {r["case_id"]: r for r in _evaluate(
        data, tmp_path, "--lesion-min-volume", "0", "--lesion-dilation", "1")["cases"]}
    assert rows["Craft-mixed"]["lesion_fn"] == 2 and rows["Craft-mixed"]["lesion_ignored_gt"] == 0
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "run"), str(data), "--hd95", "hausdorff"])
    assert "hausdorff" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--lesion-min-volume", "-1", "-1.0 is negative (use 0 or more)"),
    ("--lesion-min-volume", "nan", "'nan' is not a finite number"),
    ("--lesion-dilation", "-2", "-2 is negative (use 0 or more)"),
    ("--lesion-dilation", "1.5", "'1.5' is not a whole number"),
])
def test_bad_lesion_options_are_refused_before_any_work(tmp_path, capsys, option, value, message) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(tmp_path / "run"), str(tmp_path / "data"), option, value])
    assert stop.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err

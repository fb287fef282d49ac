"""Metrics on hand-worked masks, the empty-mask conventions, and an independent HD95 reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from napari_calf.errors import CalfConfigError, CalfInputError
from napari_calf.calf.metrics import abs_volume_difference, bucket_summary, case_metrics, confusion_counts, dice, empty_slice_fp_rate, hd95, image_diagonal_mm, iou, per_slice_dice, precision, recall, size_buckets, size_thresholds, slice_metrics, specificity, volume_mm3

# --------------------------------------------------------------------------- overlap


def test_overlap_metrics_by_hand():
    gt = np.zeros((4, 4), bool)
    pred = np.zeros((4, 4), bool)
    gt[0:2, 0:3] = True  # 6 voxels
    pred[1:3, 0:3] = True  # 6 voxels, 3 shared
    assert confusion_counts(pred, gt) == (3, 3, 3, 7)
    assert dice(pred, gt) == pytest.approx(2 * 3 / 12)
    assert iou(pred, gt) == pytest.approx(3 / 9)
    assert precision(pred, gt) == pytest.approx(3 / 6)
    assert recall(pred, gt) == pytest.approx(3 / 6)
    assert specificity(pred, gt) == pytest.approx(7 / 10)
    # Label values other than 0/1 count as foreground.
    assert dice(pred.astype(np.uint8) * 4, gt) == pytest.approx(0.5)


def test_empty_and_one_empty_conventions():
    empty = np.zeros((5, 6), bool)
    some = empty.copy()
    some[2, 3] = True
    assert (dice(empty, empty), iou(empty, empty), hd95(empty, empty)) == (1.0, 1.0, 0.0)
    assert (precision(empty, empty), recall(empty, empty), specificity(empty, empty)) == (1, 1, 1)
    for pred, gt in ((some, empty), (empty, some)):
        assert dice(pred, gt) == 0.0 and iou(pred, gt) == 0.0
        assert precision(pred, gt) == 0.0 and recall(pred, gt) == 0.0
        # Penalty: diagonal of a 5 x 6 image with 0.5 x 2 mm pixels = sqrt(2.5² + 12²).
        assert hd95(pred, gt, (0.5, 2.0)) == pytest.approx(math.hypot(2.5, 12.0))
    full = np.ones((2, 2), bool)
    assert specificity(full, full) == 1.0  # no background at all: nothing to get wrong


def test_shape_mismatch_and_bad_spacing_are_refused():
    with pytest.raises(CalfInputError, match=r"prediction shape \(2, 2\) differs"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(CalfInputError, match="spacing"):
        hd95(np.ones((2, 2)), np.ones((2, 2)), (1.0, -1.0))
    with pytest.raises(CalfInputError, match="spacing"):
        hd95(np.ones((2, 2)), np.ones((2, 2)), (1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- HD95


def _square(shift_cols: int) -> np.ndarray:
    m = np.zeros((5, 7), bool)
    m[0:3, shift_cols : shift_cols + 3] = True
    return m


def test_hd95_hand_worked_anisotropic():
    # gt: 3x3 square at columns 0-2, pred: the same square one column to the right.
    # Surfaces are the 8 border pixels of each square. With rows 1 mm and columns 3 mm,
    # the directed distances (pred -> gt) are 0,0,3,1,3,0,0,3 and (gt -> pred)
    # 3,0,0,3,1,3,0,0; the 95th percentile of each sorted list [0,0,0,0,1,3,3,3] is 3.
    gt, pred = _square(0), _square(1)
    assert hd95(pred, gt, (1.0, 3.0)) == pytest.approx(3.0)
    # Swap the spacing: the one-column shift is now 1 mm and the worst surface
    # distance is the 1 mm shift itself.
    assert hd95(pred, gt, (3.0, 1.0)) == pytest.approx(1.0)
    assert hd95(pred, gt) == pytest.approx(1.0)


def test_hd95_is_robust_to_a_few_stray_pixels():
    # gt: one row of 20 pixels. pred: the same row plus 2 stray pixels 10 rows away.
    # pred -> gt distances: twenty 0s and two 10s (22 values); 95th percentile at
    # rank 0.95 * 21 = 19.95 -> 0 + 0.95 * (10 - 0) = 9.5 pixels; gt -> pred all 0.
    gt = np.zeros((12, 20), bool)
    gt[0, :] = True
    pred = gt.copy()
    pred[10, 0:2] = True
    assert hd95(pred, gt) == pytest.approx(9.5)
    assert hd95(gt, pred) == pytest.approx(9.5)  # symmetric
    assert hd95(pred, gt, (2.0, 1.0)) == pytest.approx(19.0)  # rows are 2 mm apart


def _reference_hd95(pred: np.ndarray, gt: np.ndarray, spacing) -> float:
    """Brute force: explicit 6-neighbour surfaces and all pairwise distances in mm."""

    def surface(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for ax in range(mask.ndim):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=ax)[(slice(1, -1),) * mask.ndim]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    d = cdist(surface(pred), surface(gt))
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


def test_hd95_3d_matches_brute_force_reference():
    rng = np.random.default_rng(4)
    zz, yy, xx = np.mgrid[0:14, 0:16, 0:12]
    gt = (zz - 6) ** 2 / 25 + (yy - 8) ** 2 / 36 + (xx - 5) ** 2 / 16 <= 1
    pred = (zz - 7) ** 2 / 20 + (yy - 7) ** 2 / 30 + (xx - 6) ** 2 / 16 <= 1
    pred[rng.random(pred.shape) < 0.01] = True  # scattered false positives
    pred[0, 0, 0] = True  # one at the image corner: the crop must still be exact
    spacing = (0.9, 1.2, 2.5)
    assert hd95(pred, gt, spacing) == pytest.approx(_reference_hd95(pred, gt, spacing), rel=1e-9)


# --------------------------------------------------------------------------- volume & cases


@pytest.fixture
def case_pair() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((6, 5, 4), bool)
    pred = np.zeros((6, 5, 4), bool)
    gt[1:3, 1:3, 1] = True  # z=1: 4 voxels
    gt[1:4, 1:3, 2] = True  # z=2: 6 voxels
    pred[1:3, 1:3, 1] = True  # z=1 exact
    pred[0, 0, 3] = True  # z=3 is tumour-free: a false positive slice
    # z=0 empty in both; z=2 missed entirely
    return pred, gt


def test_case_metrics_by_hand(case_pair):
    pred, gt = case_pair
    spacing = (1.0, 2.0, 5.0)  # 10 mm³ per voxel
    m = case_metrics(pred, gt, spacing)
    assert m["dice"] == pytest.approx(2 * 4 / (5 + 10))
    assert m["iou"] == pytest.approx(4 / 11)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["recall"] == pytest.approx(4 / 10)
    assert m["specificity"] == pytest.approx(109 / 110)
    assert m["volume_gt_ml"] == pytest.approx(0.1)
    assert m["volume_pred_ml"] == pytest.approx(0.05)
    assert m["abs_volume_diff_mm3"] == pytest.approx(50.0)
    assert m["abs_volume_diff_ml"] == pytest.approx(0.05)
    assert abs_volume_difference(pred, gt, spacing) == pytest.approx(50.0)
    assert volume_mm3(gt, spacing) == pytest.approx(100.0)
    # Axial slices 0 and 3 are tumour-free; only slice 3 has a prediction.
    assert (m["empty_slices"], m["fp_empty_slices"], m["fp_rate_empty_slices"]) == (2, 1, 0.5)
    assert empty_slice_fp_rate(pred, gt) == 0.5
    assert m["hd95_mm"] == pytest.approx(_reference_hd95(pred, gt, spacing))
    json.dumps(m, allow_nan=False)


def test_case_metrics_empty_cases_are_finite():
    empty = np.zeros((3, 4, 5), bool)
    m = case_metrics(empty, empty, (1, 1, 1))
    assert (m["dice"], m["hd95_mm"], m["fp_rate_empty_slices"]) == (1.0, 0.0, 0.0)
    some = empty.copy()
    some[1, 1, 1] = True
    m = case_metrics(empty, some, (1.0, 2.0, 3.0))
    assert m["dice"] == 0.0
    assert m["hd95_mm"] == pytest.approx(image_diagonal_mm((3, 4, 5), (1, 2, 3)))
    full = np.ones((2, 2, 2), bool)
    assert case_metrics(full, full, None)["fp_rate_empty_slices"] is None  # no empty slice
    json.dumps(m, allow_nan=False)


def test_slice_metrics_rows_and_vectorised_columns(case_pair):
    pred, gt = case_pair
    rows = slice_metrics(pred, gt, spacing=(1.0, 2.0, 5.0), with_hd95=True)
    assert [(r["slice"], r["gt_area"], r["pred_area"]) for r in rows] == [
        (0, 0, 0), (1, 4, 4), (2, 6, 0), (3, 0, 1)
    ]
    assert [r["dice"] for r in rows] == [1.0, 1.0, 0.0, 0.0]
    assert rows[1]["hd95_mm"] == 0.0
    assert rows[2]["hd95_mm"] == pytest.approx(math.hypot(6 * 1.0, 5 * 2.0))  # in-plane diagonal
    cols = per_slice_dice(pred, gt)
    assert cols["dice"].tolist() == [r["dice"] for r in rows]
    # Other axes agree with slicing by hand.
    for axis in (0, 1):
        expected = [dice(np.take(pred, k, axis), np.take(gt, k, axis)) for k in range(gt.shape[axis])]
        np.testing.assert_allclose(per_slice_dice(pred, gt, axis=axis)["dice"], expected)


# --------------------------------------------------------------------------- size buckets


def test_size_buckets_by_tertiles_and_by_thresholds():
    areas = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    t1, t2 = size_thresholds(areas)
    assert (t1, t2) == pytest.approx(tuple(np.quantile(np.arange(1, 10), [1 / 3, 2 / 3])))
    names = size_buckets(areas)
    assert names.tolist() == ["empty"] + ["small"] * 3 + ["medium"] * 3 + ["large"] * 3 + ["empty"]
    given = size_buckets(areas, (2, 8)).tolist()
    assert given == ["empty", "small", "small"] + ["medium"] * 6 + ["large", "empty"]
    with pytest.raises(CalfConfigError, match="0 <= t1 <= t2"):
        size_buckets(areas, (8, 2))
    with pytest.raises(CalfConfigError, match="two numbers"):
        size_buckets(areas, (1,))
    with pytest.raises(CalfInputError, match="no slice has foreground"):
        size_thresholds([0, 0])


def test_bucket_summary_groups_by_ground_truth_size():
    rows = [
        {"slice": 0, "dice": 0.2, "gt_area": 10, "pred_area": 3},
        {"slice": 1, "dice": 0.4, "gt_area": 20, "pred_area": 9},
        {"slice": 2, "dice": 0.8, "gt_area": 500, "pred_area": 480},
        {"slice": 3, "dice": 0.9, "gt_area": 900, "pred_area": 950},
        {"slice": 4, "dice": 1.0, "gt_area": 0, "pred_area": 0},
        {"slice": 5, "dice": 0.0, "gt_area": 0, "pred_area": 12},
    ]
    s = bucket_summary(rows, (50, 600))
    assert s["thresholds"] == [50.0, 600.0]
    assert s["small"] == {"n": 2, "mean": pytest.approx(0.3), "median": pytest.approx(0.3)}
    assert s["medium"]["n"] == 1 and s["medium"]["mean"] == pytest.approx(0.8)
    assert s["large"]["n"] == 1 and s["large"]["mean"] == pytest.approx(0.9)
    assert s["empty"] == {"n": 2, "with_prediction": 1, "fp_rate": 0.5}
    json.dumps(s, allow_nan=False)
    # Columns from per_slice_dice give the same summary as rows.
    cols = {k: np.array([r[k] for r in rows]) for k in ("dice", "gt_area", "pred_area")}
    assert bucket_summary(cols, (50, 600)) == s
    # Default thresholds: tertiles of the rows' own non-zero ground-truth areas.
    assert bucket_summary(rows)["thresholds"] == pytest.approx(list(size_thresholds([10, 20, 500, 900])))


def test_bucket_summary_without_tumour_and_without_rows():
    s = bucket_summary([{"dice": 1.0, "gt_area": 0, "pred_area": 0}])
    assert s["thresholds"] is None
    assert s["small"] == {"n": 0, "mean": None, "median": None}
    assert s["empty"]["fp_rate"] == 0.0
    assert bucket_summary([])["empty"] == {"n": 0, "with_prediction": 0, "fp_rate": None}
    with pytest.raises(CalfConfigError, match="no 'dice' column"):
        bucket_summary([{"gt_area": 1, "pred_area": 1}])

"""The review widget: prediction overlay, TP/FP/FN layer, metrics, per-slice table, export."""

from __future__ import annotations

import numpy as np
import pytest

from napari_calf._napari.widgets._review_analysis import (
    FN,
    FP,
    TP,
    error_counts,
    error_map,
    slice_rows,
)


def test_error_map_classes_match_a_hand_worked_example() -> None:
    pred = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    truth = np.array([[1, 0, 1, 0]], dtype=np.uint8)
    assert error_map(pred, truth).tolist() == [[TP, FP, FN, 0]]
    assert error_counts(error_map(pred, truth)) == {"tp": 1, "fp": 1, "fn": 1}


def test_error_map_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        error_map(np.zeros((2, 3)), np.zeros((3, 2)))


def test_slice_rows_list_tumour_slices_worst_first_with_per_slice_dice() -> None:
    truth = np.zeros((4, 5, 5), dtype=np.uint8)
    pred = np.zeros_like(truth)
    truth[0, :2, :2] = 1          # 4 px, predicted exactly -> Dice 1
    pred[0, :2, :2] = 1
    truth[1, :2, :2] = 1          # 4 px, half predicted -> Dice 2*2/(2+4)
    pred[1, :1, :2] = 1
    pred[2, 0, 0] = 1             # false positive only -> Dice 0
    # slice 3 empty in both: not listed
    rows = slice_rows(pred, truth, axis=0)
    assert [r.index for r in rows] == [2, 1, 0]
    assert [r.dice for r in rows] == pytest.approx([0.0, 4 / 6, 1.0])
    assert [(r.truth_area, r.pred_area) for r in rows] == [(0, 1), (4, 2), (4, 4)]
    # the slicing axis is honoured
    moved = slice_rows(np.moveaxis(pred, 0, 2), np.moveaxis(truth, 0, 2), axis=2)
    assert moved == rows

"""The numbers behind the review widget: error map and per-slice rows (numpy only, no Qt).

Kept apart from the widget so the arithmetic is plain, testable and small; the
widget only turns these results into layers, labels and a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Error-layer classes. 0 is background (transparent).
TP, FP, FN = 1, 2, 3
ERROR_CLASS_NAMES: dict[int, str] = {TP: "true positive", FP: "false positive", FN: "false negative"}
#: Colours chosen to stay apart from each other for the common red-green colour
#: deficiencies (blue / magenta / aquamarine differ in lightness and in red, not only in
#: hue) and from the BraTS label colours (red, green, yellow) of the ground truth.
ERROR_COLOURS: dict[int, str] = {TP: "#3d8bff", FP: "#ff00ff", FN: "#00ffd0"}


def error_map(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Voxel-wise agreement of a prediction with the ground truth.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        Masks of the same shape; non-zero means foreground.

    Returns
    -------
    numpy.ndarray of uint8
        0 where both are background, :data:`TP` (1) where both are foreground,
        :data:`FP` (2) where only ``pred`` is, :data:`FN` (3) where only ``truth`` is.

    Raises
    ------
    ValueError
        The shapes differ.
    """
    pred = np.asarray(pred) != 0
    truth = np.asarray(truth) != 0
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in shape")
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[pred & truth] = TP
    out[pred & ~truth] = FP
    out[~pred & truth] = FN
    return out


def error_counts(errors: np.ndarray) -> dict[str, int]:
    """Voxel counts per class of an :func:`error_map` (``{"tp": .., "fp": .., "fn": ..}``)."""
    counts = np.bincount(np.asarray(errors, dtype=np.uint8).ravel(), minlength=4)
    return {"tp": int(counts[TP]), "fp": int(counts[FP]), "fn": int(counts[FN])}


@dataclass(frozen=True)
class SliceRow:
    """One slice of the per-slice table.

    Attributes
    ----------
    index : int
        Slice index along the slicing axis of the arrays given.
    dice : float
        Dice of this slice (1.0 when both are empty; such slices are not listed).
    truth_area, pred_area : int
        Foreground pixels in the ground truth and in the prediction.
    """

    index: int
    dice: float
    truth_area: int
    pred_area: int


def slice_rows(pred: np.ndarray, truth: np.ndarray, *, axis: int = 0) -> list[SliceRow]:
    """Per-slice Dice and areas for every slice with tumour in the truth or the prediction.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        3D masks of the same shape.
    axis : int
        The slicing axis (0 for the (z, y, x) arrays napari displays axially).

    Returns
    -------
    list of SliceRow
        Worst Dice first; ties broken by larger ground-truth area (a big miss matters
        more), then by slice index, so the order is stable.
    """
    pred = np.moveaxis(np.asarray(pred) != 0, axis, 0)
    truth = np.moveaxis(np.asarray(truth) != 0, axis, 0)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in shape")
    flat_p = pred.reshape(pred.shape[0], -1)
    flat_t = truth.reshape(truth.shape[0], -1)
    p_area = flat_p.sum(axis=1)
    t_area = flat_t.sum(axis=1)
    inter = (flat_p & flat_t).sum(axis=1)
    rows = []
    for idx in np.flatnonzero((p_area > 0) | (t_area > 0)):
        dice = 2.0 * inter[idx] / (p_area[idx] + t_area[idx])
        rows.append(SliceRow(int(idx), float(dice), int(t_area[idx]), int(p_area[idx])))
    rows.sort(key=lambda r: (r.dice, -r.truth_area, r.index))
    return rows

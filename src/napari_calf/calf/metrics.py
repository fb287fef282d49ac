"""Segmentation metrics for binary masks: overlap, surface distance, volume, size buckets.

numpy/scipy only (no torch), so the trainer, the CLI and the review widget share
one implementation. Masks are any arrays of the same shape in which non-zero
means foreground (threshold probabilities first). Spacing is the voxel size in
mm per axis; without it every axis counts as 1 mm.

Conventions (the same in every function, so results are never NaN and never
raise for valid masks):

===========================  ===========  ==============================================
situation                    Dice / IoU   HD95
===========================  ===========  ==============================================
both masks empty             1            0 mm
exactly one mask empty       0            diagonal of the image extent in mm (penalty:
                                          the largest distance the image allows)
both non-empty               usual        usual
===========================  ===========  ==============================================

- Precision and recall follow the same rule: both empty -> 1; prediction empty
  but ground truth not -> precision 0, recall 0; ground truth empty but
  prediction not -> precision 0, recall 0 (every predicted voxel is false).
- Specificity is 1 when the ground truth has no background voxel.
- HD95 is the larger of the two directed 95th percentiles of surface-to-surface
  distances (surfaces: foreground voxels with a background face-neighbour),
  distances measured in mm with :func:`scipy.ndimage.distance_transform_edt`
  and ``sampling=spacing``. 2D per slice or 3D per case, by the array's rank.
- False-positive rate on tumour-free slices: the share of ground-truth-empty
  slices on which anything is predicted; ``None`` when no slice is empty.
- Size buckets: "small"/"medium"/"large" by the tertiles of the non-zero
  ground-truth areas (or user-given thresholds t1 <= t2): small is
  0 < area <= t1, medium t1 < area <= t2, large area > t2; area 0 is "empty".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .areas import _count_per_slice, _normalise_axis
from ..errors import CalfConfigError, CalfInputError

#: Bucket names, smallest first; ground-truth-empty slices are "empty".
SIZE_BUCKETS: tuple[str, ...] = ("small", "medium", "large")


# --------------------------------------------------------------------------- inputs
def _as_mask(array: Any) -> np.ndarray:
    array = np.asarray(array)
    return array if array.dtype == np.bool_ else array != 0


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_mask(pred), _as_mask(gt)
    if p.shape != g.shape:
        raise CalfInputError(
            None, f"prediction shape {p.shape} differs from ground truth shape {g.shape}.",
            "compare a prediction with the label of the same case and orientation.",
        )
    return p, g


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise CalfInputError(
            None, f"voxel spacing {tuple(spacing)} does not fit a {ndim}D mask "
            f"(need {ndim} sizes > 0 in mm).",
            "pass the spacing of the mask's axes, e.g. Volume.spacing (in-plane two for a slice).",
        )
    return values


def _ratio(num: int, den: int, *, if_zero: float) -> float:
    return float(num) / float(den) if den else if_zero


# --------------------------------------------------------------------------- overlap
def confusion_counts(pred: Any, gt: Any) -> tuple[int, int, int, int]:
    """True positives, false positives, false negatives, true negatives (voxel counts)."""
    p, g = _pair(pred, gt)
    tp = int(np.count_nonzero(p & g))
    n_pred, n_gt = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    fp, fn = n_pred - tp, n_gt - tp
    return tp, fp, fn, int(p.size) - tp - fp - fn


def _overlap(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice, IoU, precision, recall, specificity from counts, with the module's conventions."""
    both_empty = tp + fp + fn == 0
    return {
        "dice": 1.0 if both_empty else 2.0 * tp / (2 * tp + fp + fn),
        "iou": 1.0 if both_empty else tp / (tp + fp + fn),
        "precision": 1.0 if both_empty else _ratio(tp, tp + fp, if_zero=0.0),
        "recall": 1.0 if both_empty else _ratio(tp, tp + fn, if_zero=0.0),
        "specificity": _ratio(tn, tn + fp, if_zero=1.0),
    }


def dice(pred: Any, gt: Any) -> float:
    """Dice coefficient 2|P∩G| / (|P| + |G|); 1 when both are empty."""
    return _overlap(*confusion_counts(pred, gt))["dice"]


def iou(pred: Any, gt: Any) -> float:
    """Intersection over union |P∩G| / |P∪G|; 1 when both are empty."""
    return _overlap(*confusion_counts(pred, gt))["iou"]


def precision(pred: Any, gt: Any) -> float:
    """|P∩G| / |P|; 1 when both are empty, 0 when only one is."""
    return _overlap(*confusion_counts(pred, gt))["precision"]


def recall(pred: Any, gt: Any) -> float:
    """Sensitivity |P∩G| / |G|; 1 when both are empty, 0 when only one is."""
    return _overlap(*confusion_counts(pred, gt))["recall"]


def specificity(pred: Any, gt: Any) -> float:
    """True negatives / ground-truth background; 1 when there is no background."""
    return _overlap(*confusion_counts(pred, gt))["specificity"]


# --------------------------------------------------------------------------- distance
def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Length in mm of the diagonal of the image extent (the HD95 penalty)."""
    spacing = _spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with at least one background face-neighbour (image edge = background)."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hd95(pred: Any, gt: Any, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (2D or 3D masks).

    The larger of the two directed 95th percentiles of surface distances. Both
    masks empty -> 0; exactly one empty -> :func:`image_diagonal_mm`.

    Parameters
    ----------
    pred, gt : array-like, same shape (2D or 3D)
    spacing : sequence of float, optional
        Voxel size in mm per axis of the masks.
    """
    from scipy import ndimage

    p, g = _pair(pred, gt)
    sampling = _spacing(spacing, p.ndim)
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return 0.0
    if has_p != has_g:
        return image_diagonal_mm(p.shape, sampling)
    # Why crop: every surface voxel of either mask lies in the bounding box of their
    # union, so distances computed there are exact and the EDT runs on a small box
    # instead of the whole volume. One voxel of margin keeps the erosion honest.
    union = p | g
    box = []
    for ax in range(p.ndim):
        hits = np.flatnonzero(union.any(axis=tuple(a for a in range(p.ndim) if a != ax)))
        box.append(slice(max(int(hits[0]) - 1, 0), min(int(hits[-1]) + 2, p.shape[ax])))
    p, g = p[tuple(box)], g[tuple(box)]
    surf_p, surf_g = _surface(p), _surface(g)
    to_g = ndimage.distance_transform_edt(~surf_g, sampling=sampling)
    to_p = ndimage.distance_transform_edt(~surf_p, sampling=sampling)
    return float(max(np.percentile(to_g[surf_p], 95), np.percentile(to_p[surf_g], 95)))


# --------------------------------------------------------------------------- volume & slices
def volume_mm3(mask: Any, spacing: Sequence[float] | None = None) -> float:
    """Foreground volume in mm³ (voxel count × voxel volume)."""
    m = _as_mask(mask)
    return float(np.count_nonzero(m)) * math.prod(_spacing(spacing, m.ndim))


def abs_volume_difference(pred: Any, gt: Any, spacing: Sequence[float] | None = None) -> float:
    """|V(pred) − V(gt)| in mm³ (divide by 1000 for ml)."""
    p, g = _pair(pred, gt)
    voxel = math.prod(_spacing(spacing, p.ndim))
    return abs(int(np.count_nonzero(p)) - int(np.count_nonzero(g))) * voxel


def tumour_free_false_positives(pred: Any, gt: Any, *, axis: int = 2) -> tuple[int, int]:
    """(slices with a prediction but empty ground truth, ground-truth-empty slices)."""
    p, g = _pair(pred, gt)
    _require_3d(p)
    axis = _normalise_axis(axis, 3)
    empty = _count_per_slice(g, axis) == 0
    predicted = _count_per_slice(p, axis) > 0
    return int(np.count_nonzero(empty & predicted)), int(np.count_nonzero(empty))


def empty_slice_fp_rate(pred: Any, gt: Any, *, axis: int = 2) -> float | None:
    """Share of ground-truth-empty slices with any prediction; ``None`` if none is empty."""
    n_fp, n_empty = tumour_free_false_positives(pred, gt, axis=axis)
    return n_fp / n_empty if n_empty else None


def _require_3d(mask: np.ndarray) -> None:
    if mask.ndim != 3:
        raise CalfInputError(
            None, f"a {mask.ndim}D mask was given where a 3D volume (x, y, z) is needed.",
            "pass whole volumes (or stack 2D slices along one axis and name it).",
        )


def case_metrics(pred: Any, gt: Any, spacing: Sequence[float] | None, axis: int = 2) -> dict[str, Any]:
    """Per-case 3D metrics as a JSON-safe dict.

    Keys: ``dice``, ``iou``, ``precision``, ``recall``, ``specificity``, ``hd95_mm``,
    ``volume_pred_ml``, ``volume_gt_ml``, ``abs_volume_diff_mm3``,
    ``abs_volume_diff_ml``, ``empty_slices`` (ground-truth-empty slices along
    ``axis``), ``fp_empty_slices`` (those with a prediction) and
    ``fp_rate_empty_slices`` (``None`` when no slice is empty).
    """
    p, g = _pair(pred, gt)
    _require_3d(p)
    sampling = _spacing(spacing, 3)
    voxel = math.prod(sampling)
    tp, fp, fn, tn = confusion_counts(p, g)
    n_fp, n_empty = tumour_free_false_positives(p, g, axis=axis)
    vol_p, vol_g = (tp + fp) * voxel, (tp + fn) * voxel
    return {
        **_overlap(tp, fp, fn, tn),
        "hd95_mm": hd95(p, g, sampling),
        "volume_pred_ml": vol_p / 1000.0,
        "volume_gt_ml": vol_g / 1000.0,
        "abs_volume_diff_mm3": abs(vol_p - vol_g),
        "abs_volume_diff_ml": abs(vol_p - vol_g) / 1000.0,
        "empty_slices": n_empty,
        "fp_empty_slices": n_fp,
        "fp_rate_empty_slices": n_fp / n_empty if n_empty else None,
    }


def per_slice_dice(pred: Any, gt: Any, *, axis: int = 2) -> dict[str, np.ndarray]:
    """Vectorised per-slice Dice with areas (the trainer's every-epoch path).

    Returns
    -------
    dict of ndarray, each shape (n_slices,)
        ``slice`` (index), ``dice``, ``gt_area`` and ``pred_area`` (pixels).
    """
    p, g = _pair(pred, gt)
    _require_3d(p)
    axis = _normalise_axis(axis, 3)
    inter = _count_per_slice(p & g, axis)
    pred_area, gt_area = _count_per_slice(p, axis), _count_per_slice(g, axis)
    denom = pred_area + gt_area
    scores = np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))
    return {"slice": np.arange(denom.size), "dice": scores, "gt_area": gt_area, "pred_area": pred_area}


def slice_metrics(
    pred: Any,
    gt: Any,
    *,
    axis: int = 2,
    spacing: Sequence[float] | None = None,
    with_hd95: bool = False,
) -> list[dict[str, Any]]:
    """One row per slice: ``slice``, ``dice``, ``gt_area``, ``pred_area`` (pixels).

    With ``with_hd95`` each row also has ``hd95_mm`` (2D, in-plane spacing taken
    from ``spacing``), which is slower.
    """
    cols = per_slice_dice(pred, gt, axis=axis)
    rows = [
        {"slice": int(i), "dice": float(d), "gt_area": int(ga), "pred_area": int(pa)}
        for i, d, ga, pa in zip(cols["slice"], cols["dice"], cols["gt_area"], cols["pred_area"])
    ]
    if with_hd95:
        p, g = _pair(pred, gt)
        axis = _normalise_axis(axis, 3)
        sampling = _spacing(spacing, 3)
        in_plane = tuple(s for a, s in enumerate(sampling) if a != axis)
        for row in rows:
            k = row["slice"]
            row["hd95_mm"] = hd95(np.take(p, k, axis=axis), np.take(g, k, axis=axis), in_plane)
    return rows


# --------------------------------------------------------------------------- size buckets
def size_thresholds(areas: Any) -> tuple[float, float]:
    """Tertiles (t1, t2) of the non-zero ``areas``.

    Raises
    ------
    CalfInputError
        No non-zero area to take tertiles of.
    """
    values = np.asarray(areas, dtype=np.float64).ravel()
    values = values[values > 0]
    if values.size == 0:
        raise CalfInputError(
            None, "no slice has foreground, so there are no sizes to split into buckets.",
            "give size thresholds explicitly, or use a dataset with tumour slices.",
        )
    t1, t2 = np.quantile(values, [1 / 3, 2 / 3])
    return float(t1), float(t2)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, float]:
    try:
        t1, t2 = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise CalfConfigError(
            f"size thresholds must be two numbers (small/medium, medium/large), got {thresholds!r}."
        ) from None
    if not (math.isfinite(t1) and math.isfinite(t2) and 0 <= t1 <= t2):
        raise CalfConfigError(
            f"size thresholds ({t1:g}, {t2:g}) must satisfy 0 <= t1 <= t2. "
            "Fix: give the small/medium limit first."
        )
    return t1, t2


def size_buckets(areas: Any, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Bucket name ("empty", "small", "medium", "large") of every area.

    ``thresholds`` (t1, t2) default to the tertiles of the non-zero ``areas``
    (:func:`size_thresholds`).
    """
    values = np.asarray(areas, dtype=np.float64)
    if thresholds is None:
        if not np.any(values > 0):
            return np.full(values.shape, "empty", dtype="<U6")
        thresholds = size_thresholds(values)
    t1, t2 = _check_thresholds(thresholds)
    names = np.array(("empty", *SIZE_BUCKETS), dtype="<U6")
    index = np.where(values <= 0, 0, np.where(values <= t1, 1, np.where(values <= t2, 2, 3)))
    return names[index]


def _columns(rows: Any, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(metric, gt_area, pred_area) arrays from a list of row dicts or a dict of columns."""
    if isinstance(rows, Mapping):
        cols = rows
    else:
        rows = list(rows)
        keys = (metric, "gt_area", "pred_area")
        cols = {key: [row[key] for row in rows] for key in keys if all(key in r for r in rows)}
    for key in (metric, "gt_area", "pred_area"):
        if key not in cols:
            raise CalfConfigError(
                f"per-slice results have no {key!r} column. "
                "Fix: pass rows from slice_metrics() or columns from per_slice_dice()."
            )
    return tuple(np.asarray(cols[k], dtype=np.float64).ravel() for k in (metric, "gt_area", "pred_area"))


def bucket_summary(
    rows: Any, thresholds: Sequence[float] | None = None, *, metric: str = "dice"
) -> dict[str, Any]:
    """Group per-slice results by ground-truth ROI size.

    Parameters
    ----------
    rows : list of dict, or dict of arrays
        From :func:`slice_metrics` or :func:`per_slice_dice` (possibly concatenated
        over cases).
    thresholds : (t1, t2), optional
        Defaults to the tertiles of the rows' non-zero ``gt_area`` (pass the training
        set's thresholds to compare runs on the same buckets).
    metric : str
        The column summarised per bucket.

    Returns
    -------
    dict
        ``thresholds`` (``None`` if there was nothing to split); for each of
        small/medium/large: ``n``, ``mean``, ``median`` (``None`` when ``n`` is 0);
        ``empty``: ``n``, ``with_prediction`` and ``fp_rate`` (``None`` when ``n`` is 0).
    """
    values, gt_area, pred_area = _columns(rows, metric)
    if thresholds is None and np.any(gt_area > 0):
        thresholds = size_thresholds(gt_area)
    buckets = size_buckets(gt_area, thresholds) if thresholds is not None else np.full(
        gt_area.shape, "empty", dtype="<U6"
    )
    out: dict[str, Any] = {
        "thresholds": None if thresholds is None else list(_check_thresholds(thresholds))
    }
    for name in SIZE_BUCKETS:
        chosen = values[buckets == name]
        out[name] = {
            "n": int(chosen.size),
            "mean": float(chosen.mean()) if chosen.size else None,
            "median": float(np.median(chosen)) if chosen.size else None,
        }
    empty = buckets == "empty"
    n_empty, with_pred = int(np.count_nonzero(empty)), int(np.count_nonzero(empty & (pred_area > 0)))
    out["empty"] = {
        "n": n_empty,
        "with_prediction": with_pred,
        "fp_rate": with_pred / n_empty if n_empty else None,
    }
    return out

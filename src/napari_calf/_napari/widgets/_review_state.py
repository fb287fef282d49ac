"""What the review widget shows and exports, as plain data (no Qt).

:func:`review_case` computes a case's review (error map, the core's metrics,
per-slice rows) from copies of the layers' arrays; the widget runs it in a worker,
because HD95's distance transforms take seconds on a full-size volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._review_analysis import ERROR_COLOURS, FN, FP, TP, SliceRow, error_counts, error_map, slice_rows


@dataclass(frozen=True)
class ReviewResult:
    """A case's review: the core's 3D metrics, TP/FP/FN voxel counts and per-slice rows."""

    case: str
    metrics: dict[str, Any]
    counts: dict[str, int]
    rows: tuple[SliceRow, ...]


@dataclass(frozen=True, eq=False)
class CaseReview:
    """A computed review, the error map to show (display layout, uint8: 0, TP, FP, FN), and
    the two masks it compared (display layout), which the lesion table scores in turn."""

    result: ReviewResult
    errors: np.ndarray
    pred: np.ndarray
    truth: np.ndarray


def review_case(
    pred: np.ndarray, truth: np.ndarray, *, spacing_xyz: tuple[float, ...], case: str
) -> CaseReview:
    """Compare a prediction with the ground truth (both masks in the layers' (z, y, x) layout).

    Parameters
    ----------
    pred, truth : ndarray of bool, shape (Z, Y, X)
        Foreground masks as napari shows them (``reader.canonical_to_layer``).
    spacing_xyz : tuple of float
        Voxel size in mm along canonical (x, y, z), for HD95.
    case : str
        The case's name in the result.
    """
    from ...calf.metrics import case_metrics
    from ..reader import layer_to_canonical

    metrics = case_metrics(layer_to_canonical(pred), layer_to_canonical(truth), spacing_xyz, axis=2)
    errors = error_map(pred, truth)
    result = ReviewResult(metrics=metrics, counts=error_counts(errors),
                          rows=tuple(slice_rows(pred, truth, axis=0)), case=case)
    return CaseReview(result=result, errors=errors, pred=pred, truth=truth)


def most_tumour_slice(mask: np.ndarray) -> int | None:
    """Index (axis 0) of the slice with the most foreground, or None when there is none."""
    areas = np.count_nonzero(np.asarray(mask).reshape(mask.shape[0], -1), axis=1)
    return int(np.argmax(areas)) if areas.any() else None


def run_summary(card: dict[str, Any]) -> str:
    """One or two lines describing a run from its card (model, inputs, target, result)."""
    model = card.get("model") or {}
    pre = card.get("preprocessing") or {}
    modalities = pre.get("modalities") or []
    best = (card.get("best") or {}).get("dice")
    loss = card.get("loss") or {}
    parts = [
        f"{model.get('arch', '?')} / {model.get('encoder', '?')}",
        f"{len(modalities)} inputs ({', '.join(modalities)})" if modalities else "",
        f"target {pre.get('target', 'wt')}",
        f"loss {loss.get('formula') or loss.get('name')}" if loss else "",
        f"best val. Dice {best:.3f}" if isinstance(best, (int, float)) else "",
        f"status {card['status']}" if card.get("status") else "",
    ]
    return ", ".join(p for p in parts if p)


def metrics_rows(review: ReviewResult, run_dir: Path | None) -> list[dict[str, Any]]:
    """CSV rows: one ``scope=case`` row (3D metrics, counts), then one row per slice."""
    case_row: dict[str, Any] = {"scope": "case", "case": review.case, "slice": None,
                                "run": None if run_dir is None else str(run_dir)}
    case_row.update(review.metrics)
    case_row.update({f"{k}_voxels": v for k, v in review.counts.items()})
    rows = [case_row]
    for r in review.rows:
        rows.append({"scope": "slice", "case": review.case, "slice": r.index, "dice": r.dice,
                     "gt_area_px": r.truth_area, "pred_area_px": r.pred_area})
    return rows


def legend_html(counts: dict[str, int] | None) -> str:
    """The error layer's colour key, with voxel counts once known (rich text)."""
    parts = []
    for cls, key, text in ((TP, "tp", "correct (TP)"), (FP, "fp", "extra (FP)"),
                           (FN, "fn", "missed (FN)")):
        n = "" if counts is None else f" {counts[key]:,} vx"
        parts.append(f"<span style='color:{ERROR_COLOURS[cls]}'>■</span> {text}{n}")
    return " &nbsp; ".join(parts)

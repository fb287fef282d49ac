"""What the review widget shows and exports, as plain data (no Qt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._review_analysis import ERROR_COLOURS, FN, FP, TP, SliceRow


@dataclass(frozen=True)
class ReviewResult:
    """A case's review: the core's 3D metrics, TP/FP/FN voxel counts and per-slice rows."""

    case: str
    metrics: dict[str, Any]
    counts: dict[str, int]
    rows: tuple[SliceRow, ...]


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
    for cls, key, text in ((TP, "tp", "true positive"), (FP, "fp", "false positive"),
                           (FN, "fn", "false negative")):
        n = "" if counts is None else f" {counts[key]:,} vx"
        parts.append(f"<span style='color:{ERROR_COLOURS[cls]}'>■</span> {text}{n}")
    return " &nbsp; ".join(parts)

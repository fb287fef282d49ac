"""The audit's outputs: ranked issues (JSON, CSV), the summary, and the top-issues figure.

Rows follow the audit contract (``AUDIT_CONTRACT.md``, also ``docs/_design_auditcli.md``):
issue ids ``<case_id>/<kind>/<n>`` number a case's issues of one kind by position
(first slice, then centre), so an id stays the same when scores change; ``bbox`` pairs
are ``[start, stop)`` in canonical voxels; ``centre_mm`` is the issue centre in scanner
(world, RAS) millimetres, from the canonical affine.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .scoring import ISSUE_KINDS, AuditIssue, CaseAudit, match_injected

__all__ = ["ISSUES_JSON", "ISSUES_CSV", "SUMMARY_JSON", "TOP_ISSUES_PNG", "CSV_COLUMNS",
           "issue_rows", "write_issues", "summarise", "truth_report", "plot_top_issues"]

ISSUES_JSON = "issues.json"
ISSUES_CSV = "issues.csv"
SUMMARY_JSON = "summary.json"
TOP_ISSUES_PNG = "top_issues.png"
CSV_COLUMNS = ("id", "rank", "case_id", "kind", "score", "slices", "volume_mm3", "centre_vox",
               "centre_mm", "component", "magnitude_mm", "detail", "bbox", "in_sample")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def issue_rows(ranked: Sequence[AuditIssue], affines: Mapping[str, np.ndarray],
               in_sample: Mapping[str, bool]) -> list[dict[str, Any]]:
    """Contract rows of ``ranked`` (highest score first), ranks 1-based."""
    numbers: dict[int, int] = {}
    groups: dict[tuple[str, str], list[tuple[Any, int]]] = {}
    for position, issue in enumerate(ranked):
        groups.setdefault((issue.case_id, issue.kind), []).append(
            ((issue.slices, issue.centre_vox, position), position))
    for members in groups.values():
        for n, (_, position) in enumerate(sorted(members), start=1):
            numbers[position] = n
    rows = []
    for position, issue in enumerate(ranked):
        affine = np.asarray(affines.get(issue.case_id, np.eye(4)), dtype=float)
        world = affine @ np.array([*issue.centre_vox, 1.0])
        rows.append({
            "id": f"{issue.case_id}/{issue.kind}/{numbers[position]}", "rank": position + 1,
            "case_id": issue.case_id, "kind": issue.kind, "score": round(issue.score, 6),
            "slices": [int(s) for s in issue.slices], "volume_mm3": float(issue.volume_mm3),
            "centre_vox": [int(c) for c in issue.centre_vox],
            "centre_mm": [round(float(c), 2) for c in world[:3]],
            "component": issue.component, "magnitude_mm": issue.magnitude_mm,
            "detail": issue.detail,
            "bbox": [[int(lo), int(hi) + 1] for lo, hi in issue.bbox],
            "in_sample": bool(in_sample.get(issue.case_id, False)),
        })
    return rows


def write_issues(audit_dir: Path, rows: list[dict[str, Any]], bias: dict[str, Any]) -> None:
    """``issues.json`` and ``issues.csv`` (slices, centres and boxes as text), atomically."""
    from napari_calf.io.files import write_text_atomic

    doc = {"version": 1, "issues": rows, "dataset_bias": bias}
    write_text_atomic(audit_dir / ISSUES_JSON, json.dumps(_json_safe(doc), indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        for key in ("slices", "centre_vox", "centre_mm", "bbox"):
            flat[key] = json.dumps(row[key], separators=(",", ":"))
        writer.writerow({k: "" if flat[k] is None else flat[k] for k in CSV_COLUMNS})
    write_text_atomic(audit_dir / ISSUES_CSV, buffer.getvalue())


def summarise(audits: Sequence[CaseAudit], rows: list[dict[str, Any]], bias: dict[str, Any],
              in_sample: Mapping[str, bool], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``summary.json``: counts per kind, the dataset bias and its sentence, per case."""
    per_case = {}
    for audit in audits:
        mine = [r for r in rows if r["case_id"] == audit.case_id]
        per_case[audit.case_id] = {
            "in_sample": bool(in_sample.get(audit.case_id, False)),
            "boundary_bias_mm": audit.boundary_bias_mm, "n_issues": len(mine),
            "top_score": max((r["score"] for r in mine), default=None),
            "label_volume_mm3": audit.label_volume_mm3,
            "consensus_volume_mm3": audit.consensus_volume_mm3}
    counts = {kind: sum(1 for r in rows if r["kind"] == kind) for kind in ISSUE_KINDS}
    return _json_safe({
        "version": 1, "n_cases": len(audits),
        "n_in_sample": sum(1 for a in audits if in_sample.get(a.case_id)),
        "n_issues": len(rows), "counts": counts,
        "counts_score_over_half": {kind: sum(1 for r in rows if r["kind"] == kind
                                             and r["score"] > 0.5) for kind in ISSUE_KINDS},
        "dataset_bias": bias, "bias_sentence": bias.get("sentence"),
        "per_case": per_case, **extra})


def truth_report(ranked: Sequence[AuditIssue], injected: dict[str, Any],
                 bias: dict[str, Any]) -> dict[str, Any]:
    """Precision/recall of the top-k against injected errors, and the bias against the
    injected systematic dilation.

    ``injected`` is the phantom's ``label_errors.json`` (keys ``errors``, ``spec``,
    ``seed``); k is the number of injected errors other than the dataset-wide
    ``systematic-dilate``.
    """
    errors = list(injected.get("errors") or [])
    matched = match_injected(list(ranked), errors)
    systematic = [e.get("magnitude_mm") for e in errors if e.get("kind") == "systematic-dilate"]
    injected_mm = float(systematic[0]) if systematic and systematic[0] is not None else 0.0
    estimated = bias.get("median_mm")
    return {
        "spec": injected.get("spec"), "seed": injected.get("seed"),
        "top_k": matched,
        "systematic_bias": {
            "injected_mm": injected_mm, "estimated_mm": estimated,
            "error_mm": None if estimated is None else float(estimated) - injected_mm,
            "detected_as_systematic": bool(bias.get("systematic")),
            "n_cases_dilated": len(systematic)},
    }


def plot_top_issues(path: Path, ranked: Sequence[AuditIssue], cases: Mapping[str, Any],
                    audit_dir: Path, *, n: int = 12, target: str = "wt") -> Path | None:
    """A grid of the top ``n`` issues: image slice, annotation (yellow) and consensus
    (cyan) contours, the issue's box (red). ``None`` when there is nothing to draw."""
    if not ranked:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from napari_calf.calf.areas import binary_target
    from napari_calf.io.volumes import load_volume

    from .predictions import load_prediction

    top = list(ranked[:n])
    cols = min(4, len(top))
    rows = int(math.ceil(len(top) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for ax, (rank, issue) in zip(axes.ravel(), enumerate(top, start=1)):
        case = cases[issue.case_id]
        if issue.case_id not in cache:
            label = load_volume(case.label, label=True)
            modality = next((m for m in ("flair", "t2f", "t2", "t1ce") if m in case.images),
                            next(iter(case.images)))
            image = load_volume(case.images[modality], label=False).data
            mask = binary_target(label.data, target, case.label_convention)
            prob, _ = load_prediction(audit_dir, issue.case_id, label.data.shape)
            cache = {issue.case_id: (image, mask, prob > 0.5)}
        image, mask, consensus = cache[issue.case_id]
        z = int(np.clip(issue.centre_vox[2], 0, image.shape[2] - 1))
        (x0, x1), (y0, y1) = issue.bbox[0], issue.bbox[1]
        pad = 20
        xs = slice(max(x0 - pad, 0), min(x1 + pad + 1, image.shape[0]))
        ys = slice(max(y0 - pad, 0), min(y1 + pad + 1, image.shape[1]))
        # transpose so x runs left-right and y (anterior) upwards, as radiologists read
        ax.imshow(image[xs, ys, z].T, cmap="gray", origin="lower")
        for layer, colour in ((mask, "yellow"), (consensus, "cyan")):
            part = layer[xs, ys, z].T
            if part.any() and not part.all():
                ax.contour(part.astype(float), levels=[0.5], colors=colour, linewidths=1.0)
        ax.add_patch(Rectangle((x0 - xs.start - 0.5, y0 - ys.start - 0.5), x1 - x0 + 1,
                               y1 - y0 + 1, fill=False, edgecolor="red", linewidth=1.2))
        ax.set_title(f"#{rank} {issue.kind} {issue.score:.2f}\n{issue.case_id} z={z}",
                     fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(top):]:
        ax.axis("off")
    fig.suptitle("Top suspected annotation errors (yellow: label, cyan: models' consensus, "
                 "red: issue)", fontsize=9)
    fig.tight_layout()
    from napari_calf.io.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path

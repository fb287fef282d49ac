"""Evaluate a trained run on labelled cases: per-case metrics and per-slice Dice by size.

This is the loop behind ``napari-calf evaluate`` and the loss comparison study
(``napari-calf compare``): predict each case with :func:`inference.iter_predict_volume`,
binarise its label with the run's own target, and score it with :func:`score_case`
(:mod:`calf.metrics` and the BraTS-2023 lesion-wise scores of :mod:`calf.lesions`). The
per-slice columns (Dice, ground-truth and predicted area) are kept so that results can
be grouped by ROI size afterwards with the training split's thresholds.

A run predicts one binary region, its target (``wt`` by default, ``tc``/``et`` on
request), so lesion-wise scores exist for that region only: the other BraTS regions
cannot be told apart in a binary prediction and are never invented.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalfInputError
from ..events import Progress

__all__ = ["RunEvaluation", "iter_evaluate_run", "evaluate_run", "score_case",
           "pooled_lesion_counts", "CASE_METRIC_KEYS", "LESION_KEYS", "DEFAULT_LESION_SETTINGS"]

#: Per-case numbers averaged in summaries (see :func:`metrics.case_metrics` and
#: :func:`score_case`).
CASE_METRIC_KEYS = ("dice", "iou", "precision", "recall", "hd95_mm", "fp_rate_empty_slices",
                    "lesion_dice", "lesion_hd95_mm", "lesion_f1")
#: Lesion-wise keys of a case row (``lesions`` holds one dict per lesion besides).
LESION_KEYS = ("lesion_dice", "lesion_hd95_mm", "lesion_tp", "lesion_fp", "lesion_fn",
               "lesion_f1", "lesion_ignored_gt")
#: BraTS 2023 glioma settings (see :func:`calf.lesions.lesion_wise`).
DEFAULT_LESION_SETTINGS: dict[str, Any] = {"min_volume_mm3": 50.0, "dilation_voxels": 3}


def score_case(
    mask: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None,
    *,
    hd95_convention: str = "monai",
    min_volume_mm3: float = 50.0,
    dilation_voxels: int = 3,
) -> dict[str, Any]:
    """Whole-case and lesion-wise scores of one binary region of one case (JSON-safe).

    Parameters
    ----------
    mask, gt : ndarray of bool, shape (X, Y, Z)
        Prediction and ground truth of the same region, canonical RAS.
    spacing : sequence of 3 float or None
        Voxel size in mm.
    hd95_convention : {"monai", "brats"}
        Convention of both ``hd95_mm`` (whole case) and ``lesion_hd95_mm``. With exactly
        one mask empty the whole-case HD95 is the image diagonal (monai) or 374 mm (brats).
    min_volume_mm3, dilation_voxels
        BraTS lesion rules (:func:`calf.lesions.lesion_wise`).

    Returns
    -------
    dict
        The keys of :func:`metrics.case_metrics`, then :data:`LESION_KEYS` and ``lesions``
        (one dict per lesion: ``kind`` tp/fn/fp, volumes in mm³, ``dice``, ``hd95_mm``,
        ``centre_vox`` and ``bbox`` in canonical voxel indices).

    Raises
    ------
    CalfConfigError
        Unknown convention or bad lesion settings.
    """
    from ..calf.lesions import lesion_wise
    from ..calf.surface_distance import surface_distance_hd95
    from ..calf.metrics import case_metrics

    # lesion_wise first: it checks the convention and settings before the slower HD95
    result = lesion_wise(mask, gt, spacing, min_volume_mm3=min_volume_mm3,
                         dilation_voxels=dilation_voxels, hd95_convention=hd95_convention)
    row = case_metrics(mask, gt, spacing)
    if hd95_convention != "monai":  # case_metrics' HD95 is the monai convention
        row["hd95_mm"] = surface_distance_hd95(mask, gt, spacing, convention=hd95_convention)
    row.update({
        "lesion_dice": result.dice, "lesion_hd95_mm": result.hd95_mm,
        "lesion_tp": result.tp, "lesion_fp": result.fp, "lesion_fn": result.fn,
        "lesion_f1": result.f1, "lesion_ignored_gt": result.ignored_gt_lesions,
        "lesions": result.as_dict()["lesions"],
    })
    return row


def pooled_lesion_counts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Lesion counts summed over case rows, and the detection F1 of the sums.

    F1 = 2 TP / (2 TP + FP + FN), 1 when there is nothing to detect and nothing
    detected, ``None`` when no row has lesion counts.
    """
    scored = [r for r in rows if r.get("lesion_tp") is not None]
    if not scored:
        return {"tp": None, "fp": None, "fn": None, "ignored_gt": None, "f1": None, "n_cases": 0}
    tp, fp, fn = (sum(int(r[f"lesion_{k}"]) for r in scored) for k in ("tp", "fp", "fn"))
    ignored = sum(int(r.get("lesion_ignored_gt") or 0) for r in scored)
    den = 2 * tp + fp + fn
    return {"tp": tp, "fp": fp, "fn": fn, "ignored_gt": ignored,
            "f1": 2.0 * tp / den if den else 1.0, "n_cases": len(scored)}


@dataclass(frozen=True, eq=False)
class RunEvaluation:
    """A run's scores on a set of labelled cases.

    Attributes
    ----------
    run_dir : str
    data_dir : str
    target : str
        The run's binary target (``wt``, ``tc``, ``et``).
    cases : list of dict
        One row per case: ``case_id``, ``in_training_split`` and the keys of
        :func:`metrics.case_metrics`.
    slices : dict of ndarray, each shape (n_slices_total,)
        ``case_id``, ``slice``, ``dice``, ``gt_area``, ``pred_area`` (pixels), every axial
        slice of every case (tumour-free ones included).
    size_edges : (t1, t2) or None
        The training split's size tertiles from the run card (None if it had none).
    hd95_convention : {"monai", "brats"}
        Convention of the cases' ``hd95_mm`` and ``lesion_hd95_mm``.
    lesion_settings : dict
        ``min_volume_mm3`` and ``dilation_voxels`` of the lesion-wise scores; the region
        scored is ``target``.
    """

    run_dir: str
    data_dir: str
    target: str
    cases: list[dict[str, Any]]
    slices: dict[str, np.ndarray] = field(repr=False)
    size_edges: tuple[float, float] | None = None
    hd95_convention: str = "monai"
    lesion_settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LESION_SETTINGS))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (slice columns as lists); :meth:`from_dict` reads it back."""
        return {
            "run_dir": self.run_dir, "data_dir": self.data_dir, "target": self.target,
            "cases": self.cases,
            "slices": {k: np.asarray(v).tolist() for k, v in self.slices.items()},
            "size_edges": None if self.size_edges is None else list(self.size_edges),
            "hd95_convention": self.hd95_convention,
            "lesion_settings": dict(self.lesion_settings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunEvaluation:
        """Read back :meth:`to_dict`.

        Raises
        ------
        KeyError
            ``data`` lacks a part, e.g. it was written before the lesion-wise scores
            existed (a study's ``--collect`` then evaluates the run again).
        """
        s = data["slices"]
        slices = {
            "case_id": np.asarray(s["case_id"], dtype=str),
            "slice": np.asarray(s["slice"], dtype=np.int64),
            "dice": np.asarray(s["dice"], dtype=np.float64),
            "gt_area": np.asarray(s["gt_area"], dtype=np.float64),
            "pred_area": np.asarray(s["pred_area"], dtype=np.float64),
        }
        edges = data.get("size_edges")
        return cls(run_dir=data["run_dir"], data_dir=data["data_dir"], target=data["target"],
                   cases=list(data["cases"]), slices=slices,
                   size_edges=None if edges is None else (float(edges[0]), float(edges[1])),
                   hd95_convention=str(data["hd95_convention"]),
                   lesion_settings=dict(data["lesion_settings"]))

    def bucket_summary(self, thresholds: Sequence[float] | None = None) -> dict[str, Any]:
        """Per-slice Dice by ROI size (:func:`metrics.bucket_summary`), with the training
        split's tertiles unless ``thresholds`` are given."""
        from ..calf.metrics import bucket_summary

        edges = thresholds if thresholds is not None else self.size_edges
        if edges is not None and not edges[1] > 0:
            edges = None
        return bucket_summary(self.slices, edges)


def iter_evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    *,
    case_ids: Sequence[str] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    channel_order: str = "names",
    hd95_convention: str = "monai",
    lesion_min_volume_mm3: float = 50.0,
    lesion_dilation_voxels: int = 3,
    labels_from: str | Path | None = None,
    require_labels_from: bool = False,
) -> Generator[Progress, None, RunEvaluation]:
    """Predict and score labelled cases with a run; yields ``Progress("evaluate", …)`` per case.

    Parameters
    ----------
    run_dir : path
        A run folder made by ``napari-calf train`` (its best weights are used).
    data_dir : path
        Dataset (or case) folder with labels.
    case_ids : sequence of str, optional
        Only these cases (e.g. the run's validation split); all labelled cases if None.
    hd95_convention : {"monai", "brats"}
        Convention of the whole-case and the lesion-wise HD95 (:func:`score_case`).
    lesion_min_volume_mm3, lesion_dilation_voxels : float, int
        BraTS lesion rules; 50 mm³ and 3 voxels as for BraTS 2023 glioma.
    channel_order : {"names", "positional"}
        How each case's modalities reach the run's channels (see
        :func:`napari_calf.engine.inference.iter_predict_volume`).
    labels_from : path, optional
        Score against the label maps in this folder instead, where it has one
        (``<labels_from>/<case_id>/<label file name>``: a clean truth, an audit's
        corrections; see :mod:`napari_calf.engine.labels_from`). Rows then carry
        ``label_from`` (the file scored against).
    require_labels_from : bool
        Every evaluated case must have a label in ``labels_from`` (a truth folder).

    Raises
    ------
    CalfInputError
        No labelled case in ``data_dir``, or a requested case id is not there.
    CalfConfigError
        Unknown HD95 convention or bad lesion settings (before anything is predicted).
    CalfInputError
        (with ``require_labels_from``) ``labels_from`` lacks one of the cases' labels.
    """
    from ..events import drain
    from ..engine.inference import iter_predict_volume, load_run
    from ..io.discovery import discover_cases, load_case
    from ..calf.lesions import lesion_wise
    from ..calf.metrics import per_slice_dice
    from ..calf.areas import binary_target

    # a 1-voxel empty pair checks the convention and lesion settings with the core's own
    # messages before anything slow is predicted
    nothing = np.zeros((1, 1, 1), dtype=bool)
    lesion_wise(nothing, nothing, min_volume_mm3=lesion_min_volume_mm3,
                dilation_voxels=lesion_dilation_voxels, hd95_convention=hd95_convention)
    settings = {"min_volume_mm3": float(lesion_min_volume_mm3),
                "dilation_voxels": int(lesion_dilation_voxels)}
    run = load_run(run_dir)
    target = run.preprocessing.get("target", "wt")
    cases = [c for c in discover_cases(data_dir) if c.label is not None]
    if case_ids is not None:
        wanted = list(case_ids)
        by_id = {c.case_id: c for c in cases}
        missing = [cid for cid in wanted if cid not in by_id]
        if missing:
            raise CalfInputError(
                data_dir, f"lacks the case(s) {', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''} that {run_dir} was validated on.",
                "point to the dataset the run was trained with (e.g. --data DATA).",
            )
        cases = [by_id[cid] for cid in wanted]
    if not cases:
        raise CalfInputError(data_dir, "holds no case with a label file to evaluate against.",
                             "give a folder of labelled cases (each with a *_seg.nii.gz).")
    if labels_from is not None:
        from ..engine.labels_from import apply_label_overrides

        # the grid is checked when each case is loaded below
        cases, _ = apply_label_overrides(cases, labels_from, require_all=require_labels_from,
                                         measure=False)
    split = ((run.card.get("data") or {}).get("split") or {})
    trained_on = set(split.get("train") or [])
    edges = (run.card.get("size_buckets") or {}).get("edges")
    rows: list[dict[str, Any]] = []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("case_id", "slice", "dice", "gt_area",
                                                         "pred_area")}
    for i, case in enumerate(cases, start=1):
        loaded = load_case(case, require_label=True)
        # one Progress per case is enough for a study; per-batch events are not passed on
        pred = drain(iter_predict_volume(run, loaded, batch_size=batch_size, device=device,
                                         channel_order=channel_order))
        label = loaded.label  # present: require_label=True
        gt = binary_target(label.data, target, case.label_convention)  # type: ignore[union-attr]
        mask = pred.canonical_probabilities > pred.threshold
        row = {"case_id": case.case_id, "in_training_split": case.case_id in trained_on,
               **score_case(mask, gt, label.spacing, hd95_convention=hd95_convention,
                            **settings)}
        if labels_from is not None:
            row["label_from"] = str(case.label)
        rows.append(row)
        per = per_slice_dice(mask, gt)
        n = len(per["slice"])
        cols["case_id"].append(np.full(n, case.case_id, dtype=object))
        for key in ("slice", "dice", "gt_area", "pred_area"):
            cols[key].append(np.asarray(per[key]))
        yield Progress("evaluate", i, len(cases), case.case_id)
    slices = {k: np.concatenate(v) for k, v in cols.items()}
    slices["case_id"] = slices["case_id"].astype(str)
    return RunEvaluation(
        run_dir=str(run_dir), data_dir=str(Path(data_dir).resolve()), target=str(target),
        cases=rows, slices=slices,
        size_edges=None if not edges else (float(edges[0]), float(edges[1])),
        hd95_convention=hd95_convention, lesion_settings=settings,
    )


def evaluate_run(run_dir: str | Path, data_dir: str | Path, **kwargs: Any) -> RunEvaluation:
    """:func:`iter_evaluate_run` run to the end (same arguments)."""
    from ..events import drain

    return drain(iter_evaluate_run(run_dir, data_dir, **kwargs))


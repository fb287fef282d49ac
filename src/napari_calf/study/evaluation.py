"""Evaluate a trained run on labelled cases: per-case metrics and per-slice Dice by size.

This is the loop behind ``napari-calf evaluate`` and the loss comparison study
(``napari-calf compare``): predict each case with :func:`inference.iter_predict_volume`,
binarise its label with the run's own target, and score it with :mod:`.metrics`. The
per-slice columns (Dice, ground-truth and predicted area) are kept so that results can
be grouped by ROI size afterwards with the training split's thresholds.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalfInputError
from ..events import Progress

__all__ = ["RunEvaluation", "iter_evaluate_run", "evaluate_run", "CASE_METRIC_KEYS"]

#: Per-case numbers averaged in summaries (see :func:`metrics.case_metrics`).
CASE_METRIC_KEYS = ("dice", "iou", "precision", "recall", "hd95_mm", "fp_rate_empty_slices")


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
    """

    run_dir: str
    data_dir: str
    target: str
    cases: list[dict[str, Any]]
    slices: dict[str, np.ndarray] = field(repr=False)
    size_edges: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (slice columns as lists); :meth:`from_dict` reads it back."""
        return {
            "run_dir": self.run_dir, "data_dir": self.data_dir, "target": self.target,
            "cases": self.cases,
            "slices": {k: np.asarray(v).tolist() for k, v in self.slices.items()},
            "size_edges": None if self.size_edges is None else list(self.size_edges),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunEvaluation:
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
                   size_edges=None if edges is None else (float(edges[0]), float(edges[1])))

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
    channel_order : {"names", "positional"}
        How each case's modalities reach the run's channels (see
        :func:`napari_calf.engine.inference.iter_predict_volume`).

    Raises
    ------
    CalfInputError
        No labelled case in ``data_dir``, or a requested case id is not there.
    """
    from ..events import drain
    from ..engine.inference import iter_predict_volume, load_run
    from ..io.discovery import discover_cases, load_case
    from ..calf.metrics import case_metrics, per_slice_dice
    from ..calf.areas import binary_target

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
        rows.append({"case_id": case.case_id, "in_training_split": case.case_id in trained_on,
                     **case_metrics(mask, gt, label.spacing)})
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
    )


def evaluate_run(run_dir: str | Path, data_dir: str | Path, **kwargs: Any) -> RunEvaluation:
    """:func:`iter_evaluate_run` run to the end (same arguments)."""
    from ..events import drain

    return drain(iter_evaluate_run(run_dir, data_dir, **kwargs))


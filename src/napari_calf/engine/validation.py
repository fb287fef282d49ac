"""Validation during training: loss, Dice overall and per ROI-size bucket, and the
false-positive rate on tumour-free slices (part of training).

Per-slice true/false positive/negative counts are accumulated on the device and
copied to the host once per validation pass; the summary numbers are then computed
with numpy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .batches import BatchFeeder

if TYPE_CHECKING:  # pragma: no cover
    import torch

@dataclass(frozen=True)
class ValidationResult:
    """Validation numbers of one pass (all plain floats)."""

    loss: float
    dice: float
    dice_by_size: dict[str, float | None]
    fp_rate_empty: float | None
    n_slices: int
    n_empty: int
    counts: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def bucket_edges(train_areas: np.ndarray) -> tuple[float, float]:
    """Size-bucket thresholds from the training split (tertiles of its non-zero areas),
    fixed once so that "small" means the same thing every epoch."""
    from ..calf.metrics import size_thresholds

    a = np.asarray(train_areas, dtype=float)
    return size_thresholds(a) if np.any(a > 0) else (0.0, 0.0)


def summarise_counts(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, edges: tuple[float, float]
) -> tuple[float, dict[str, float | None], float | None]:
    """Pooled Dice, mean per-slice Dice per size bucket, FP rate on tumour-free slices.

    Per-slice numbers follow :mod:`napari_calf.calf.metrics` (``bucket_summary``); a slice
    with neither tumour nor prediction has Dice 1, and so does a pooled Dice over nothing.
    """
    from ..calf.metrics import SIZE_BUCKETS, bucket_summary

    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    denom = 2 * tp.sum() + fp.sum() + fn.sum()
    dice = float(2 * tp.sum() / denom) if denom > 0 else 1.0
    per = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0)
    summary = bucket_summary({"dice": per, "gt_area": tp + fn, "pred_area": tp + fp}, edges)
    by_size = {name: summary[name]["mean"] for name in SIZE_BUCKETS}
    return dice, by_size, summary["empty"]["fp_rate"]


def validate(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    feeder: BatchFeeder,
    *,
    batch_size: int,
    edges: tuple[float, float],
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> ValidationResult:
    """Run the model over the whole validation store (eval mode, no gradients)."""
    import torch

    store = feeder.store
    n = len(store)
    device = feeder.device
    was_training = model.training
    model.eval()
    tps, fps, fns = [], [], []
    loss_sum = torch.zeros((), device=device)
    # in order, so counts line up with the store's areas
    batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
        else contextlib.nullcontext()
    )
    try:
        with torch.inference_mode():
            for idx, (x, y) in zip(batches, feeder.iter_batches(batches)):
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast:
                    logits = model(x)
                logits = logits.float()
                loss_sum += loss_fn(logits, y).detach() * len(idx)
                pred = logits > 0
                truth = y > 0.5
                tps.append((pred & truth).sum(dim=(1, 2, 3)))
                fps.append((pred & ~truth).sum(dim=(1, 2, 3)))
                fns.append((~pred & truth).sum(dim=(1, 2, 3)))
    finally:
        model.train(was_training)
    tp = torch.cat(tps).cpu().numpy()
    fp = torch.cat(fps).cpu().numpy()
    fn = torch.cat(fns).cpu().numpy()
    areas = np.asarray(store.areas)
    dice, by_size, fp_rate = summarise_counts(tp, fp, fn, edges)
    return ValidationResult(
        loss=float(loss_sum.item() / max(n, 1)),
        dice=dice,
        dice_by_size=by_size,
        fp_rate_empty=fp_rate,
        n_slices=n,
        n_empty=int(np.count_nonzero(areas == 0)),
        counts={"tp": tp, "fp": fp, "fn": fn},
    )


def describe_edges(edges: tuple[float, float], unit: str = "px") -> dict[str, Any]:
    """Bucket definitions for the run card."""
    return {
        "unit": unit,
        "small": f"0 < area <= {edges[0]:.6g}",
        "medium": f"{edges[0]:.6g} < area <= {edges[1]:.6g}",
        "large": f"area > {edges[1]:.6g}",
        "edges": list(edges),
        "definition": "tertiles of the training split's non-zero slice areas "
                      "(napari_calf.calf.metrics.size_thresholds)",
    }

"""BraTS-2023-style lesion-wise Dice and HD95, and the two HD95 conventions.

BraTS 2023+ ranks each region (WT/TC/ET) by *lesion-wise* Dice and HD95, so a
model that finds the big tumour but misses or invents small lesions pays for
each of them. :func:`lesion_wise` scores one binary 3D mask pair (one region).

Rules, as in the official BraTS 2023 evaluation:

1. Lesions are 26-connected components. The GT is dilated ``dilation_voxels``
   times with the 18-connected 3x3x3 structure (in voxels, whatever the
   spacing; BraTS: 3 for GLI/SSA/PED, 1 for MEN/MET); GT voxels in one dilated
   component form one (merged) GT lesion. The GT itself is not changed.
2. A predicted component matches a GT lesion when it overlaps the lesion's
   dilation, so one up to ``dilation_voxels`` away is a detection (possibly
   with Dice 0). A component may match several GT lesions.
3. Per GT lesion: Dice and HD95 against the union of its matched components
   (whole components). No match: false negative (FN), Dice 0, HD95 374 mm.
4. GT lesions of volume <= ``min_volume_mm3`` (BraTS: 50 mm³, 2 for MET) are
   ignored: neither scored nor counted, and components matched to them are no
   false positives. The threshold applies to GT lesions only.
5. A predicted component matching no GT lesion (ignored ones included) is a
   false positive (FP), whatever its size: Dice 0, HD95 374 mm.
6. Dice = Σ Dice(kept) / (kept + FP); HD95 = (Σ HD95(kept) + 374·FP) / (kept + FP);
   detection F1 = 2 TP / (2 TP + FP + FN), TP = kept lesions with a match.

Edge cases (never NaN; ``legacy_dice`` is the whole-mask Dice, both empty -> 1):

==============================================  ====  =======  ====================
situation                                       Dice  HD95 mm  counts, F1
==============================================  ====  =======  ====================
both masks empty                                1     0        none, F1 1
GT empty, k predicted components                0     374      FP = k, F1 0
prediction empty, n kept GT lesions             0     374      FN = n, F1 0
all GT lesions <= threshold, no other component 1     0        ignored = n, F1 1
all GT lesions <= threshold, k FP elsewhere     0     374      FP = k, F1 0
==============================================  ====  =======  ====================

The HD95 of each lesion and of a whole case follows one of the two conventions of
:mod:`.surface_distance`.

Sources (read, not copied): BraTS 2023 lesion-wise metrics,
github.com/rachitsaluja/BraTS-2023-Metrics (README, ``eval.py``) and the
Sage-Bionetworks-Challenges/brats2023 workflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import CalfConfigError
from .surface_distance import (BRATS_MISSED_HD95_MM, Box, as_masks_3d, bounding_box, check_convention,
                               grow_box, hd95_nonempty, shift_box, spacing_3d, union_box)


_CUBE_26 = np.ones((3, 3, 3), dtype=bool)


# --------------------------------------------------------------------------- inputs
def _settings(min_volume_mm3: float, dilation_voxels: int) -> tuple[float, int]:
    try:
        threshold = float(min_volume_mm3)
    except (TypeError, ValueError):
        threshold = math.nan
    if not (math.isfinite(threshold) and threshold >= 0):
        raise CalfConfigError(
            f"min_volume_mm3 must be a number >= 0 (mm³), got {min_volume_mm3!r}. "
            "Fix: use 50 as in BraTS 2023 (2 for metastases), or 0 to keep every lesion."
        )
    if isinstance(dilation_voxels, bool) or not isinstance(dilation_voxels, (int, np.integer)) \
            or dilation_voxels < 0:
        raise CalfConfigError(
            f"dilation_voxels must be a whole number >= 0, got {dilation_voxels!r}. "
            "Fix: use 3 as in BraTS 2023 glioma (1 for meningioma and metastases)."
        )
    return threshold, int(dilation_voxels)


# --------------------------------------------------------------------------- lesion-wise
@dataclass(frozen=True)
class LesionMatch:
    """One kept GT lesion (``tp`` or ``fn``) or one false-positive component (``fp``).

    ``centre_vox`` is a voxel of the GT lesion (of the component for ``fp``) nearest
    its centroid; ``bbox`` spans the GT lesion and its matched components
    (the component alone for ``fp``), as (start, stop) per axis.
    """

    kind: str
    gt_label: int | None
    pred_labels: tuple[int, ...]
    gt_volume_mm3: float
    pred_volume_mm3: float
    dice: float
    hd95_mm: float
    centre_vox: tuple[int, int, int]
    bbox: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LesionWiseResult:
    """Lesion-wise scores of one region of one case (see the module docstring)."""

    lesions: tuple[LesionMatch, ...]
    dice: float
    hd95_mm: float
    tp: int
    fp: int
    fn: int
    f1: float
    ignored_gt_lesions: int
    legacy_dice: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the scores, and ``lesions`` as a list of dicts."""
        out = asdict(self)
        out["lesions"] = [
            {**row, "pred_labels": list(row["pred_labels"]), "centre_vox": list(row["centre_vox"]),
             "bbox": [list(pair) for pair in row["bbox"]]}
            for row in out["lesions"]
        ]
        return out


def _centre(mask: np.ndarray, origin: Sequence[int]) -> tuple[int, int, int]:
    """The voxel of ``mask`` nearest its centroid (inside even for a C-shaped lesion)."""
    coords = np.argwhere(mask)
    nearest = coords[np.argmin(((coords - coords.mean(axis=0)) ** 2).sum(axis=1))]
    return tuple(int(c) + int(o) for c, o in zip(nearest, origin))  # type: ignore[return-value]


def _pairs(box: Box) -> tuple[tuple[int, int], ...]:
    return tuple((s.start, s.stop) for s in box)


def _merged_gt_lesions(g: np.ndarray, dilation: int) -> tuple[np.ndarray, np.ndarray, Box]:
    """GT lesions merged by dilation, in a crop around the GT.

    Returns (merged id of each GT voxel, dilated-component ids, crop box); the
    dilation of merged lesion k is exactly dilated component k, because each GT
    voxel's dilation is connected and lies in its own component.
    """
    from scipy import ndimage

    # The dilation reaches `dilation` voxels at most, so dilating the crop (image
    # edge = background, as scipy does for the whole image) is exact.
    crop = grow_box(bounding_box(g), dilation, g.shape)
    local = g[crop]
    reach = local if not dilation else ndimage.binary_dilation(
        local, structure=ndimage.generate_binary_structure(3, 2), iterations=dilation)
    dilated, _ = ndimage.label(reach, structure=_CUBE_26)
    return np.where(local, dilated, 0), dilated, crop


def _gt_rows(
    pred_ids: np.ndarray, pred_boxes: list[Box], g: np.ndarray, dilation: int, threshold: float,
    sampling: tuple[float, float, float], convention: str,
) -> tuple[list[LesionMatch], set[int], int]:
    """Rows of kept GT lesions, the ids of every matched component, the ignored count."""
    from scipy import ndimage

    voxel = math.prod(sampling)
    rows: list[LesionMatch] = []
    matched: set[int] = set()
    ignored = 0
    merged, dilated, crop = _merged_gt_lesions(g, dilation)
    origin = [c.start for c in crop]
    for k, region in enumerate(ndimage.find_objects(dilated), start=1):
        corner = [r.start + o for r, o in zip(region, origin)]
        lesion = merged[region] == k
        hits = np.unique(pred_ids[shift_box(region, origin)][dilated[region] == k])
        labels = tuple(int(i) for i in hits[hits != 0])
        matched.update(labels)
        gt_vol = int(np.count_nonzero(lesion)) * voxel
        if gt_vol <= threshold:
            ignored += 1
            continue
        local_box = bounding_box(lesion)
        lesion, lesion_box = lesion[local_box], shift_box(local_box, corner)
        centre = _centre(lesion, [s.start for s in lesion_box])
        if not labels:
            rows.append(LesionMatch("fn", k, (), gt_vol, 0.0, 0.0, BRATS_MISSED_HD95_MM,
                                    centre, _pairs(lesion_box)))
            continue
        # Score in the box around the lesion and its whole matched components.
        box = union_box(lesion_box, *(pred_boxes[i - 1] for i in labels))
        gt_k = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
        gt_k[shift_box(lesion_box, [-b.start for b in box])] = lesion
        pred_k = np.isin(pred_ids[box], labels)
        n_pred = int(np.count_nonzero(pred_k))
        dice = 2.0 * np.count_nonzero(gt_k & pred_k) / (n_pred + np.count_nonzero(gt_k))
        rows.append(LesionMatch(
            "tp", k, labels, gt_vol, n_pred * voxel, float(dice),
            hd95_nonempty(pred_k, gt_k, sampling, convention), centre, _pairs(box),
        ))
    return rows, matched, ignored


def lesion_wise(
    pred: Any,
    gt: Any,
    spacing: Sequence[float] | None = None,
    *,
    min_volume_mm3: float = 50.0,
    dilation_voxels: int = 3,
    hd95_convention: str = "brats",
) -> LesionWiseResult:
    """BraTS-2023 lesion-wise Dice, HD95 and detection counts of one region.

    Parameters
    ----------
    pred, gt : array-like, shape (X, Y, Z)
        Binary masks of one region (WT, TC or ET); non-zero is foreground.
    spacing : sequence of 3 float, optional
        Voxel size in mm per axis (volumes and HD95); default 1 mm.
    min_volume_mm3 : float
        GT lesions of this volume or less are ignored (BraTS: 50; 2 for metastases).
    dilation_voxels : int
        Iterations of the 18-connected dilation that merges GT lesions and
        widens matching (BraTS: 3; 1 for meningioma and metastases).
    hd95_convention : {"brats", "monai"}
        How the HD95 of a matched lesion is computed; missed and false-positive
        lesions score 374 mm under both.

    Returns
    -------
    LesionWiseResult
        Rows for kept GT lesions (ordered by merged id) then false positives.

    Raises
    ------
    CalfInputError
        Masks of different shapes, not 3D, or a spacing that does not fit.
    CalfConfigError
        Unknown convention, negative threshold or dilation.
    """
    from scipy import ndimage

    convention = check_convention(hd95_convention)
    threshold, dilation = _settings(min_volume_mm3, dilation_voxels)
    p, g = as_masks_3d(pred, gt)
    sampling = spacing_3d(spacing)
    voxel = math.prod(sampling)

    pred_ids, n_pred = ndimage.label(p, structure=_CUBE_26)
    pred_boxes = ndimage.find_objects(pred_ids)
    rows, matched, ignored = _gt_rows(pred_ids, pred_boxes, g, dilation, threshold, sampling,
                                      convention) if g.any() else ([], set(), 0)
    sizes = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)
    for i in sorted(set(range(1, n_pred + 1)) - matched):
        box = pred_boxes[i - 1]
        rows.append(LesionMatch("fp", None, (i,), 0.0, float(sizes[i]) * voxel, 0.0,
                                BRATS_MISSED_HD95_MM, _centre(pred_ids[box] == i,
                                                              [s.start for s in box]), _pairs(box)))

    tp, fn, fp = (sum(r.kind == kind for r in rows) for kind in ("tp", "fn", "fp"))
    scored, detections = len(rows), 2 * tp + fp + fn  # rows: kept GT lesions + FPs
    both = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    return LesionWiseResult(
        lesions=tuple(rows),
        dice=sum(r.dice for r in rows) / scored if scored else 1.0,
        hd95_mm=sum(r.hd95_mm for r in rows) / scored if scored else 0.0,
        tp=tp, fp=fp, fn=fn,
        f1=2.0 * tp / detections if detections else 1.0,
        ignored_gt_lesions=ignored,
        legacy_dice=2.0 * np.count_nonzero(p & g) / both if both else 1.0,
    )

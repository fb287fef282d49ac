"""Annotation audit: suspected label errors from out-of-sample model predictions.

Each case's label is compared with the foreground probability ``P`` of a model that did
not train on that case (cross-validation by case), the idea of confident learning: where a
model that never saw the label confidently disagrees with it, the label is suspect. Only
regions are scored, never single voxels. Notation: ``L`` the binary label, ``C = P >
confident`` the models' consensus, components 26-connected, ``V`` a volume in mm³,
``p̄`` and ``σ̄`` the mean of ``P`` and of ``prob_std`` over a region.

- Volume factor ``f(V) = 1 - exp(-V / volume_scale_mm3)``: small disagreements are weak
  evidence. Regions under ``min_volume_mm3`` are not reported.
- Certainty ``c = clip(1 - uncertainty_weight * σ̄, 0, 1)`` (``c = 1`` without
  ``prob_std``): where the flips/models disagree among themselves, their word counts less.
- **spurious**: a label component ``K`` with less than ``spurious_max_support`` of its
  voxels, and less than ``min_volume_mm3``, in ``C``. Score ``(1 - p̄_K) f(V_K) c``.
- **missed**: a consensus component ``Q`` with less than ``missed_max_labelled`` of its
  voxels, and less than ``min_volume_mm3``, labelled; region ``Q \\ L``. Score
  ``p̄ f(V) c``. (Both conditions: a labelled lesion that the models merge with a large
  unlabelled blob is still a labelled lesion, judged by its boundary.)
- **slice-gap**: axial slices of a labelled model lesion ``Q`` where the label covers less
  than ``slice_gap_max_coverage`` of ``Q``'s area, with lesion and label on the slices just
  below and above; region ``Q \\ L`` on those slices. Score ``p̄ f(V) c``.
- **too-large / too-small**: each lesion ``A`` (label components joined through their slice
  gaps, spurious components left out) is compared with its reference ``R``: the consensus
  components it touches, a component touching several lesions split by nearest lesion,
  within ``A``'s bounding box grown by ``neighbourhood_mm``.
  ``d = signed_surface_distance(A, R)``, ``r = d - boundary_bias_mm`` (the dataset's
  style bias, see :func:`dataset_bias`). ``r > boundary_min_mm`` is too-large with region
  ``A \\ R``, ``r < -boundary_min_mm`` too-small with region ``R \\ A``. Score
  ``(1 - exp(-(|r| - boundary_min_mm) / boundary_scale_mm)) f(V) c``.

The case's ``boundary_bias_mm`` is the mean of ``d`` over all labelled surface voxels of
the case; :func:`dataset_bias` summarises it over cases and :func:`apply_dataset_bias`
re-scores the boundary issues with the median subtracted, so a systematic annotation style
(every label 1 mm larger) is reported once, as a dataset bias, and a single lesion drawn
2 mm larger than that style still stands out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from scipy import ndimage as ndi

from napari_calf.errors import CalfConfigError, CalfInputError

from . import _regions
from ._matching import match_injected
from ._regions import BoundaryRecord, RegionSummary

__all__ = [
    "ISSUE_KINDS", "AuditSettings", "AuditIssue", "CaseAudit", "BoundaryRecord", "RegionSummary",
    "score_case", "signed_surface_distance", "region_mask", "rank_issues", "dataset_bias",
    "apply_dataset_bias", "match_injected",
]

ISSUE_KINDS = ("spurious", "missed", "slice-gap", "too-large", "too-small")


@dataclass(frozen=True)
class AuditSettings:
    """Every threshold of the audit (see the module docstring for the formulas).

    Attributes
    ----------
    confident : probability above which the models "say tumour" (defines the consensus).
    min_volume_mm3 : disagreements smaller than this are not reported.
    boundary_min_mm : a lesion's |signed surface distance| (after the bias) below this is
        not an issue; 1 mm is about one voxel, the size of ordinary contouring noise.
    boundary_scale_mm : how fast a boundary score rises beyond ``boundary_min_mm``
        (reaches 0.63 at one scale beyond it).
    volume_scale_mm3 : volume at which the volume factor reaches 0.63.
    spurious_max_support : a label component is unsupported when less than this fraction
        of it lies in the consensus.
    missed_max_labelled : a consensus component is unlabelled when less than this
        fraction of it is labelled.
    slice_gap_max_coverage : an axial slice of a model lesion is unlabelled when the label
        covers less than this fraction of the lesion's area on it.
    uncertainty_weight : certainty is ``1 - uncertainty_weight * mean prob_std``; 2 maps
        the largest possible spread of a probability (0.5) to certainty 0.
    neighbourhood_mm : a lesion is compared with the consensus inside its bounding box
        grown by this much; farther consensus is not its boundary.
    boundary_bias_mm : the dataset's style bias subtracted before too-large/too-small; 0
        for a single case, set by :func:`apply_dataset_bias`.
    """

    confident: float = 0.5
    min_volume_mm3: float = 20.0
    boundary_min_mm: float = 1.0
    boundary_scale_mm: float = 1.0
    volume_scale_mm3: float = 50.0
    spurious_max_support: float = 0.1
    missed_max_labelled: float = 0.1
    slice_gap_max_coverage: float = 0.1
    uncertainty_weight: float = 2.0
    neighbourhood_mm: float = 20.0
    boundary_bias_mm: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CalfConfigError(f"AuditSettings.{item.name} = {value!r} is not a finite "
                                      "number. Fix: give a number such as the default "
                                      f"{item.default!r}.")
        limits = {"confident": (0.0, 1.0, False), "spurious_max_support": (0.0, 1.0, True),
                  "missed_max_labelled": (0.0, 1.0, True), "slice_gap_max_coverage": (0.0, 1.0, True)}
        for name, (low, high, closed) in limits.items():
            value = getattr(self, name)
            inside = low <= value <= high if closed else low < value < high
            if not inside:
                raise CalfConfigError(f"AuditSettings.{name} = {value} is outside "
                                      f"{'[' if closed else '('}{low}, {high}{']' if closed else ')'}. "
                                      "Fix: give a probability or fraction in that range.")
        for name in ("boundary_scale_mm", "volume_scale_mm3", "neighbourhood_mm"):
            if getattr(self, name) <= 0:
                raise CalfConfigError(f"AuditSettings.{name} must be > 0. Fix: use a positive scale.")
        for name in ("min_volume_mm3", "boundary_min_mm", "uncertainty_weight"):
            if getattr(self, name) < 0:
                raise CalfConfigError(f"AuditSettings.{name} must be >= 0. Fix: use 0 or more.")


@dataclass(frozen=True)
class AuditIssue:
    """One suspected annotation error. Indices are voxel indices of the case's arrays.

    ``slices`` and each ``bbox`` pair are inclusive (first, last); ``centre_mm`` is
    ``centre_vox * spacing`` on the voxel grid (no affine); ``magnitude_mm`` is the signed
    mean surface distance for too-large/too-small, else ``None``.
    """

    case_id: str
    kind: str
    score: float
    slices: tuple[int, int]
    volume_mm3: float
    centre_vox: tuple[int, int, int]
    centre_mm: tuple[float, float, float]
    component: int | None
    magnitude_mm: float | None
    detail: str
    bbox: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CaseAudit:
    """The audit of one case: its issues (highest score first) and boundary measurements."""

    case_id: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    settings: AuditSettings
    issues: tuple[AuditIssue, ...]
    boundaries: tuple[BoundaryRecord, ...]
    boundary_bias_mm: float | None
    label_volume_mm3: float
    consensus_volume_mm3: float

    def as_dict(self) -> dict:
        return asdict(self)


def region_mask(issue: AuditIssue, shape: Sequence[int]) -> np.ndarray:
    """Boolean mask of ``shape`` that is True inside the issue's bounding box (inclusive).

    A box, not the exact voxels: it shows where to look and keeps issues small enough to
    store in a report. Parts of the box outside ``shape`` are dropped.
    """
    if len(shape) != len(issue.bbox):
        raise CalfInputError(None, f"shape {tuple(shape)} has {len(shape)} axes but the issue's "
                             f"box has {len(issue.bbox)}.", "pass the shape of the audited case.")
    mask = np.zeros(tuple(int(n) for n in shape), dtype=bool)
    mask[tuple(slice(max(lo, 0), max(hi + 1, 0)) for lo, hi in issue.bbox)] = True
    return mask


def _validated(label: np.ndarray, prob: np.ndarray, spacing: Sequence[float],
               prob_std: np.ndarray | None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[float, float, float]]:
    """The binary label, the arrays and the spacing as floats, or a CalfInputError."""
    label, prob = np.asarray(label), np.asarray(prob)
    if label.ndim != 3 or prob.shape != label.shape:
        raise CalfInputError(None, f"label {label.shape} and probability {prob.shape} must be "
                             "3D arrays of the same shape.", "pass the case's label and the "
                             "out-of-sample probability resampled to the label's grid.")
    if prob_std is not None:
        prob_std = np.asarray(prob_std)
        if prob_std.shape != label.shape:
            raise CalfInputError(None, f"prob_std {prob_std.shape} differs from the label "
                                 f"{label.shape}.", "pass the spread of the same predictions, or None.")
    for name, array in (("probability", prob), ("prob_std", prob_std)):
        if array is None:
            continue
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            raise CalfInputError(None, f"{name} must be finite floats.", "pass probabilities, "
                                 "not logits or masks with NaN.")
        if array.size and (array.min() < -1e-6 or array.max() > 1 + 1e-6):
            raise CalfInputError(None, f"{name} has values outside [0, 1].",
                                 "apply the sigmoid/softmax before the audit.")
    try:
        sizes = tuple(float(size) for size in np.asarray(spacing, dtype=float).ravel())
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) != 3 or not all(math.isfinite(size) and size > 0 for size in sizes):
        raise CalfInputError(None, f"spacing {spacing} is not three positive sizes in mm.",
                             "pass the voxel size per axis (x, y, z), e.g. (1.0, 1.0, 1.0).")
    return label != 0, prob, prob_std, sizes  # type: ignore[return-value]


def _volume_factor(volume_mm3: float, settings: AuditSettings) -> float:
    return 1.0 - math.exp(-volume_mm3 / settings.volume_scale_mm3)


def _certainty(region: RegionSummary, settings: AuditSettings) -> float:
    if region.mean_std is None:
        return 1.0
    return float(np.clip(1.0 - settings.uncertainty_weight * region.mean_std, 0.0, 1.0))


def _issue(case_id: str, kind: str, score: float, region: RegionSummary,
           spacing: tuple[float, float, float], component: int | None,
           detail: str, magnitude: float | None = None) -> AuditIssue:
    return AuditIssue(
        case_id=case_id, kind=kind, score=float(np.clip(score, 0.0, 1.0)), slices=region.slices,
        volume_mm3=region.volume_mm3, centre_vox=region.centre_vox,
        centre_mm=tuple(float(c * s) for c, s in zip(region.centre_vox, spacing)),  # type: ignore[arg-type]
        component=component, magnitude_mm=magnitude, detail=detail, bbox=region.bbox)


def _on_slices(region: RegionSummary) -> str:
    first, last = region.slices
    return f"axial slice {first}" if first == last else f"axial slices {first}-{last}"


def score_case(case_id: str, label: np.ndarray, prob: np.ndarray, spacing: Sequence[float], *,
               prob_std: np.ndarray | None = None, settings: AuditSettings = AuditSettings()) -> CaseAudit:
    """Audit one case's label against out-of-sample predictions.

    Parameters
    ----------
    case_id : name used in the issues.
    label : int or bool array, shape (X, Y, Z); non-zero is tumour.
    prob : float array, shape (X, Y, Z), in [0, 1]: foreground probability of a model that
        did not train on this case (e.g. the mean over test-time flips).
    spacing : voxel size in mm along (x, y, z); axis 2 is the axial slice axis.
    prob_std : optional float array, shape (X, Y, Z): spread of the probability over flips
        or models; lowers scores where it is large.
    settings : thresholds, see :class:`AuditSettings`.

    Raises
    ------
    CalfInputError
        Shapes differ, probabilities are not finite or outside [0, 1], or the spacing is bad.
    """
    mask, prob, prob_std, spacing = _validated(label, prob, spacing, prob_std)
    consensus = prob > settings.confident
    voxel = float(np.prod(spacing))
    crop = _regions.crop_case(mask, consensus, prob, prob_std, spacing)
    issues: list[AuditIssue] = []
    records: tuple[BoundaryRecord, ...] = ()
    if crop is not None:
        records = _find_issues(case_id, crop, settings, issues)
        issues.extend(_boundary_issues(case_id, records, spacing, settings))
    issues.sort(key=lambda issue: -issue.score)
    surface = sum(r.n_surface for r in records)
    bias = sum(r.ssd_mm * r.n_surface for r in records) / surface if surface else None
    return CaseAudit(case_id=case_id, shape=tuple(mask.shape), spacing=spacing,  # type: ignore[arg-type]
                     settings=settings, issues=tuple(issues), boundaries=records,
                     boundary_bias_mm=bias, label_volume_mm3=float(np.count_nonzero(mask)) * voxel,
                     consensus_volume_mm3=float(np.count_nonzero(consensus)) * voxel)


def _find_issues(case_id: str, crop: _regions.Crop, settings: AuditSettings,
                 issues: list[AuditIssue]) -> tuple[BoundaryRecord, ...]:
    """Append spurious, missed and slice-gap issues; return the lesions' boundary records."""
    s = settings
    lab, n_lab = ndi.label(crop.label, structure=_regions.CONNECTIVITY_26)
    con, n_con = ndi.label(crop.consensus, structure=_regions.CONNECTIVITY_26)
    lab_size = np.bincount(lab.ravel(), minlength=n_lab + 1)
    lab_supported = np.bincount(lab[crop.consensus], minlength=n_lab + 1)
    con_size = np.bincount(con.ravel(), minlength=n_con + 1)
    con_labelled = np.bincount(con[crop.label], minlength=n_con + 1)
    lab_boxes, con_boxes = ndi.find_objects(lab), ndi.find_objects(con)
    overlap = _regions.pair_counts(lab, con, crop.label & crop.consensus)

    # unsupported / unlabelled: below the fraction AND below min_volume_mm3, so a lesion
    # that the models merge with a large unlabelled blob still counts as labelled
    min_voxels = s.min_volume_mm3 / crop.voxel_mm3
    spurious = [k for k in range(1, n_lab + 1) if lab_supported[k] == 0 or (
        lab_supported[k] < s.spurious_max_support * lab_size[k] and lab_supported[k] < min_voxels)]
    for k in spurious:
        region = _regions.summarise(lab[lab_boxes[k - 1]] == k, lab_boxes[k - 1], crop)
        if region is not None and region.volume_mm3 >= s.min_volume_mm3:
            score = (1 - region.mean_prob) * _volume_factor(region.volume_mm3, s) * _certainty(region, s)
            issues.append(_issue(case_id, "spurious", score, region, crop.spacing, k,
                                 f"A labelled region of {region.volume_mm3:.0f} mm³ on "
                                 f"{_on_slices(region)} where the models see no tumour (mean "
                                 f"probability {region.mean_prob:.2f}).", None))

    gaps = np.zeros(crop.label.shape, dtype=bool)
    labelled_lesions = []
    for q in range(1, n_con + 1):
        box = con_boxes[q - 1]
        block = con[box] == q
        if con_labelled[q] == 0 or (con_labelled[q] < s.missed_max_labelled * con_size[q]
                                    and con_labelled[q] < min_voxels):
            region = _regions.summarise(block & ~crop.label[box], box, crop)
            if region is not None and region.volume_mm3 >= s.min_volume_mm3:
                score = region.mean_prob * _volume_factor(region.volume_mm3, s) * _certainty(region, s)
                issues.append(_issue(case_id, "missed", score, region, crop.spacing, None,
                                     f"The models see an unlabelled lesion of "
                                     f"{region.volume_mm3:.0f} mm³ on {_on_slices(region)} (mean "
                                     f"probability {region.mean_prob:.2f}).", None))
            continue
        labelled_lesions.append(q)
        main = max((k for k, c in overlap if c == q), key=lambda k: overlap[(k, q)])
        for first, last in _regions.slice_gaps(block, crop.label[box], s.slice_gap_max_coverage):
            in_gap = block & ~crop.label[box]
            in_gap[:, :, :first] = False
            in_gap[:, :, last + 1:] = False
            gaps[box] |= in_gap
            region = _regions.summarise(in_gap, box, crop)
            if region is not None and region.volume_mm3 >= s.min_volume_mm3:
                score = region.mean_prob * _volume_factor(region.volume_mm3, s) * _certainty(region, s)
                issues.append(_issue(case_id, "slice-gap", score, region, crop.spacing, main,
                                     f"No label on {_on_slices(region)} inside lesion {main}, "
                                     "which is labelled above and below; the models see "
                                     f"{region.volume_mm3:.0f} mm³ of tumour there (mean "
                                     f"probability {region.mean_prob:.2f}).", None))
    lesions = (crop.label & ~np.isin(lab, spurious)) | gaps
    return _regions.boundary_records(crop, lab, con, lesions, set(labelled_lesions), s.neighbourhood_mm)


def _boundary_issues(case_id: str, records: Iterable[BoundaryRecord], spacing: tuple[float, float, float],
                     settings: AuditSettings) -> list[AuditIssue]:
    s = settings
    issues = []
    for record in records:
        relative = record.ssd_mm - s.boundary_bias_mm
        if abs(relative) <= s.boundary_min_mm:
            continue
        larger = relative > 0
        region = record.excess if larger else record.deficit
        if region is None or region.volume_mm3 < s.min_volume_mm3:
            continue
        rise = 1.0 - math.exp(-(abs(relative) - s.boundary_min_mm) / s.boundary_scale_mm)
        score = rise * _volume_factor(region.volume_mm3, s) * _certainty(region, s)
        style = (f" ({abs(relative):.1f} mm {'more' if larger else 'less'} than this dataset's "
                 f"usual {s.boundary_bias_mm:+.1f} mm)" if s.boundary_bias_mm else "")
        side = "beyond" if larger else "inside"
        issues.append(_issue(
            case_id, "too-large" if larger else "too-small", score, region, spacing,
            record.component,
            f"The label of lesion {record.component} lies on average {abs(record.ssd_mm):.1f} mm "
            f"{side} the models' boundary{style}; they differ by {region.volume_mm3:.0f} mm³ on "
            f"{_on_slices(region)}.", record.ssd_mm))
    return issues


def signed_surface_distance(annotation: np.ndarray, reference: np.ndarray,
                            spacing: Sequence[float]) -> float | None:
    """Mean signed distance (mm) from the annotation's surface to the reference's surface.

    Surface voxels of a mask are its voxels with a face neighbour outside it (voxels on the
    array's edge count). For each surface voxel of ``annotation`` the distance is the
    Euclidean distance (mm, voxel centres, ``spacing`` per axis) to the nearest surface
    voxel of ``reference``, counted negative when the voxel lies inside ``reference``. The
    result is the mean over the annotation's surface voxels: positive when the annotation
    is larger (lies outside the reference), negative when smaller; identical masks give 0
    and a flat face moved by k voxels gives k voxel sizes. ``None`` if either mask is empty.

    Shapes: ``annotation`` and ``reference`` (X, Y, Z), any dtype, non-zero is inside.

    Raises
    ------
    CalfInputError
        The masks differ in shape or the spacing is not three positive sizes.
    """
    first, second = np.asarray(annotation) != 0, np.asarray(reference) != 0
    if first.shape != second.shape or first.ndim != 3:
        raise CalfInputError(None, f"masks of shape {first.shape} and {second.shape} cannot be "
                             "compared.", "pass two 3D masks on the same voxel grid.")
    _, _, _, spacing_mm = _validated(first, np.zeros(first.shape, np.float32), spacing, None)
    crop = _regions.crop_case(first, second, first, None, spacing_mm)
    if crop is None or not crop.label.any() or not crop.consensus.any():
        return None
    return float(_regions.surface_distances(crop.label, crop.consensus, spacing_mm).mean())


def rank_issues(audits: Iterable[CaseAudit]) -> list[AuditIssue]:
    """All issues of all cases, highest score first; ties keep case and issue order."""
    return sorted((issue for audit in audits for issue in audit.issues), key=lambda i: -i.score)


def dataset_bias(audits: Iterable[CaseAudit], *, systematic_min_mm: float = 0.5) -> dict:
    """Dataset-wide boundary bias: how much larger the labels are than the models' boundary.

    Summarises each case's ``boundary_bias_mm`` (cases without one are left out): median
    (the value :func:`apply_dataset_bias` subtracts, robust to a case with a local error),
    mean, standard deviation, quartiles and a 95 % interval of the mean (mean ± 1.96 sd/√n,
    a normal approximation, "CI-ish" for few cases). ``systematic`` is True when that
    interval excludes 0 and |median| ≥ ``systematic_min_mm``.
    """
    per_case = {a.case_id: a.boundary_bias_mm for a in audits if a.boundary_bias_mm is not None}
    values = np.array(list(per_case.values()), dtype=float)
    n = int(values.size)
    if n == 0:
        return {"n_cases": 0, "median_mm": None, "mean_mm": None, "sd_mm": None,
                "quartiles_mm": None, "interval95_mm": None, "systematic": False,
                "per_case_mm": {}, "sentence": "No case had both a label and a model lesion "
                "to compare, so the boundary bias is unknown."}
    mean, median = float(values.mean()), float(np.median(values))
    sd = float(values.std(ddof=1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    interval = (mean - half, mean + half)
    systematic = n > 1 and (interval[0] > 0 or interval[1] < 0) and abs(median) >= systematic_min_mm
    if abs(median) < 0.05:
        headline = "annotations match the models' boundary on average"
    else:
        size = f"{median:+.1f} mm larger" if median > 0 else f"{-median:.1f} mm smaller"
        headline = f"annotations are on average {size} than the models' boundary"
    spread = (f"; 95 % interval of the mean {interval[0]:+.1f} to {interval[1]:+.1f} mm" if n > 1 else "")
    return {"n_cases": n, "median_mm": median, "mean_mm": mean, "sd_mm": sd,
            "quartiles_mm": (float(np.percentile(values, 25)), float(np.percentile(values, 75))),
            "interval95_mm": interval, "systematic": bool(systematic), "per_case_mm": per_case,
            "sentence": f"{headline[0].upper()}{headline[1:]} (median over {n} "
                        f"case{'s' if n != 1 else ''}{spread})."}


def apply_dataset_bias(audits: Iterable[CaseAudit], bias_mm: float | None = None) -> list[CaseAudit]:
    """Re-score too-large/too-small with the dataset bias subtracted (median by default).

    Other issues are kept as they are; the boundary measurements are reused, so no array is
    needed again.
    """
    audits = list(audits)
    if bias_mm is None:
        bias_mm = dataset_bias(audits)["median_mm"] or 0.0
    adjusted = []
    for audit in audits:
        settings = replace(audit.settings, boundary_bias_mm=float(bias_mm))
        kept = [i for i in audit.issues if i.kind not in ("too-large", "too-small")]
        issues = kept + _boundary_issues(audit.case_id, audit.boundaries, audit.spacing, settings)
        issues.sort(key=lambda issue: -issue.score)
        adjusted.append(replace(audit, settings=settings, issues=tuple(issues)))
    return adjusted

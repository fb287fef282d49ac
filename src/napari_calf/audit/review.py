"""Review of an annotation audit: the issues queue, the models' suggested fix, the corrections.

What a reviewer does with an audit folder (``napari-calf audit DATA --out AUDIT``, format in
``docs/_design_auditgui.md``), Qt-free so the napari dock and a script do the same thing:

- :func:`load_audit_folder` reads ``audit.json`` and ``issues.json`` into an
  :class:`AuditFolder`: the cases with their files, the issues in rank order, and which of
  them already carry a decision in ``corrections/corrections.json``.
- :func:`suggest_label` turns an issue into the label the models suggest there (the
  consensus ``prob > confident`` copied into the label inside the issue's box only).
- :func:`review_metrics` says how far the annotation and the consensus agree in the box.
- :class:`CorrectionStore` (in :mod:`napari_calf.audit._corrections`) records decisions and
  writes corrected label maps to ``AUDIT/corrections/``, never over the original file.

All arrays are canonical RAS (as :func:`napari_calf.io.load_volume` returns them); axis 2 is
the axial slice axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_calf.errors import CalfConfigError, CalfInputError

from ._corrections import CORRECTIONS_DIR, DECISIONS, CorrectionStore, safe_case_id
from .scoring import ISSUE_KINDS, AuditIssue

__all__ = [
    "AuditCase", "AuditFolder", "ReviewIssue", "CorrectionStore", "DECISIONS", "LABEL_VALUES",
    "load_audit_folder", "suggest_label", "review_metrics", "issue_box",
]

#: Label values a reviewer may give new tumour, per BraTS convention (oedema 2 first).
LABEL_VALUES: dict[str, dict[int, str]] = {
    "brats2021": {2: "oedema", 1: "necrotic core", 4: "enhancing tumour"},
    "brats2023": {2: "oedema", 1: "necrotic core", 3: "enhancing tumour"},
}
#: Fraction of a label component inside the consensus below which "spurious" removes it.
_SPURIOUS_SUPPORT = 0.5


@dataclass(frozen=True)
class AuditCase:
    """One audited case: where its files are (absolute paths) and how it was audited."""

    case_id: str
    label: Path
    images: dict[str, Path]
    prediction: Path | None
    prediction_std: Path | None
    fold: int | None
    in_sample: bool
    layout: str
    label_convention: str


@dataclass(frozen=True)
class ReviewIssue:
    """An issue as listed in ``issues.json``: its stable id, rank and the scored issue.

    ``issue.bbox`` is inclusive (first, last) per axis, as in :mod:`.scoring`, whatever
    convention the file used (see :func:`load_audit_folder`).
    """

    id: str
    rank: int
    in_sample: bool
    issue: AuditIssue

    @property
    def case_id(self) -> str:
        return self.issue.case_id

    @property
    def kind(self) -> str:
        return self.issue.kind

    @property
    def score(self) -> float:
        return self.issue.score

    @property
    def focus_slice(self) -> int:
        """The axial slice to show: the region's centre, kept inside its slice range."""
        first, last = self.issue.slices
        return int(min(max(self.issue.centre_vox[2], first), last))


@dataclass(frozen=True)
class AuditFolder:
    """An audit folder as the review sees it.

    Attributes
    ----------
    root : the audit folder.
    data_dir : the audited dataset.
    confident : the probability above which the models "say tumour" (audit settings).
    cases : case id -> :class:`AuditCase`.
    issues : every issue, highest score first.
    reviewed : ids of the issues with a decision in ``corrections/corrections.json``.
    """

    root: Path
    data_dir: Path
    confident: float
    cases: dict[str, AuditCase]
    issues: tuple[ReviewIssue, ...]
    reviewed: frozenset[str] = field(default_factory=frozenset)
    command: str = ""

    @property
    def corrections_dir(self) -> Path:
        return self.root / CORRECTIONS_DIR

    def store(self) -> CorrectionStore:
        return CorrectionStore(self.root)

    def counts(self) -> dict[str, int]:
        """Number of issues per kind (every kind listed, zero included)."""
        found = {kind: 0 for kind in ISSUE_KINDS}
        for item in self.issues:
            found[item.kind] = found.get(item.kind, 0) + 1
        return found


# --------------------------------------------------------------------------- reading


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CalfInputError(path.parent, f"holds no {path.name}, so it is not a complete audit "
                             "folder.", f"choose the folder written by `napari-calf audit DATA "
                             f"--out AUDIT` ({what}).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalfInputError(path, f"could not be read as JSON ({exc}).",
                             "run the audit again to rewrite it.") from exc
    if not isinstance(data, dict):
        raise CalfInputError(path, "does not hold a JSON object.", "run the audit again.")
    return data


def _case(root: Path, case_id: str, entry: Mapping[str, Any], audit_json: Path) -> AuditCase:
    safe_case_id(case_id)
    if not isinstance(entry, Mapping) or not entry.get("label"):
        raise CalfInputError(audit_json, f"case '{case_id}' has no label file.",
                             "run the audit again; only cases with a label are audited.")
    prediction = entry.get("prediction")
    prob = None if not prediction else (root / str(prediction)).resolve()
    std = root / "predictions" / f"{case_id}_std.nii.gz"
    fold = entry.get("fold")
    return AuditCase(
        case_id=case_id, label=Path(str(entry["label"])),
        images={str(m): Path(str(p)) for m, p in dict(entry.get("images") or {}).items()},
        prediction=prob, prediction_std=std if std.is_file() else None,
        fold=None if fold is None else int(fold), in_sample=bool(entry.get("in_sample", False)),
        layout=str(entry.get("layout") or "generic"),
        label_convention=str(entry.get("label_convention") or "brats2021"))


def _pairs(value: Any) -> tuple[tuple[int, int], ...]:
    return tuple((int(lo), int(hi)) for lo, hi in value)


def _issue(entry: Mapping[str, Any], rank: int, issues_json: Path) -> ReviewIssue:
    try:
        slices = (int(entry["slices"][0]), int(entry["slices"][1]))
        bbox = _pairs(entry["bbox"])
        # issues.json stores boxes stop-exclusive (the contract); a writer that dumped the
        # scoring's inclusive boxes shows itself by a z range equal to ``slices``.
        if len(bbox) != 3:
            raise ValueError(f"bbox has {len(bbox)} axes")
        if bbox[2][1] == slices[1] + 1:
            bbox = tuple((lo, hi - 1) for lo, hi in bbox)
        centre = entry.get("centre_vox") or [(lo + hi) // 2 for lo, hi in bbox]
        issue = AuditIssue(
            case_id=str(entry["case_id"]), kind=str(entry["kind"]), score=float(entry["score"]),
            slices=slices, volume_mm3=float(entry.get("volume_mm3") or 0.0),
            centre_vox=tuple(int(c) for c in centre),  # type: ignore[arg-type]
            centre_mm=tuple(float(c) for c in entry.get("centre_mm") or centre),  # type: ignore[arg-type]
            component=None if entry.get("component") is None else int(entry["component"]),
            magnitude_mm=None if entry.get("magnitude_mm") is None else float(entry["magnitude_mm"]),
            detail=str(entry.get("detail") or ""), bbox=bbox)
        issue_id = str(entry.get("id") or f"{issue.case_id}/{issue.kind}/{rank}")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CalfInputError(issues_json, f"issue {rank} is incomplete or malformed ({exc!r}).",
                             "run the audit again to rewrite issues.json.") from exc
    if issue.kind not in ISSUE_KINDS:
        raise CalfInputError(issues_json, f"issue '{issue_id}' has unknown kind '{issue.kind}'.",
                             f"use one of {', '.join(ISSUE_KINDS)} (or rerun the audit).")
    return ReviewIssue(id=issue_id, rank=int(entry.get("rank") or rank),
                       in_sample=bool(entry.get("in_sample", False)), issue=issue)


def load_audit_folder(folder: str | Path) -> AuditFolder:
    """Read an audit folder (or its ``audit.json``) for review.

    Issue boxes are read as the contract writes them, stop-exclusive, and returned
    inclusive like :class:`~napari_calf.audit.scoring.AuditIssue`'s; a file whose z range
    equals ``slices`` (already inclusive) is taken as it is.

    Raises
    ------
    CalfInputError
        No ``audit.json``/``issues.json``, unreadable JSON, an unsupported version, an
        issue of an unknown case or kind, or a case id that is not a plain name.
    """
    root = Path(folder).expanduser()
    if root.is_file() and root.name == "audit.json":
        root = root.parent
    if not root.is_dir():
        raise CalfInputError(root, "is not a folder.", "choose the audit folder (it holds audit.json).")
    root = root.resolve()
    audit_json = root / "audit.json"
    audit = _read_json(audit_json, "audit.json describes the run")
    if int(audit.get("version", 0)) != 1:
        raise CalfInputError(audit_json, f"has version {audit.get('version')!r}; this napari-calf "
                             "reads version 1.", "update napari-calf or rerun the audit.")
    cases = {str(cid): _case(root, str(cid), entry, audit_json)
             for cid, entry in dict(audit.get("cases") or {}).items()}
    issues_json = root / "issues.json"
    listed = _read_json(issues_json, "issues.json lists the issues").get("issues") or []
    issues = [_issue(entry, rank, issues_json) for rank, entry in enumerate(listed, start=1)]
    unknown = sorted({i.case_id for i in issues} - set(cases))
    if unknown:
        raise CalfInputError(issues_json, f"lists issues of case(s) {', '.join(unknown[:3])} that "
                             "audit.json does not describe.", "rerun the audit so both files agree.")
    issues.sort(key=lambda i: (-i.score, i.rank))
    confident = float(dict(audit.get("settings") or {}).get("confident", 0.5))
    store = CorrectionStore(root)
    return AuditFolder(root=root, data_dir=Path(str(audit.get("data_dir") or "")), confident=confident,
                       cases=cases, issues=tuple(issues), reviewed=frozenset(store.reviewed_ids()),
                       command=str(audit.get("command") or ""))


# --------------------------------------------------------------------------- suggestion


def issue_box(issue: AuditIssue | ReviewIssue, shape: tuple[int, ...], margin: int = 0) -> tuple[slice, ...]:
    """Index box of the issue's region (inclusive bbox) grown by ``margin`` voxels, clipped."""
    bbox = (issue.issue if isinstance(issue, ReviewIssue) else issue).bbox
    if len(shape) != 3 or len(bbox) != 3:
        raise CalfInputError(None, f"the issue's box {bbox} does not fit an array of shape {shape}.",
                             "pass the case's 3D canonical label.")
    box = tuple(slice(max(lo - margin, 0), min(hi + 1 + margin, n)) for (lo, hi), n in zip(bbox, shape))
    if any(s.start >= s.stop for s in box):
        raise CalfInputError(None, f"the issue's box {bbox} lies outside the case ({shape}).",
                             "check that the audit was made on this case's label grid.")
    return box


def _check_value(new_value: int, convention: str | None) -> int:
    allowed = LABEL_VALUES.get(convention or "") if convention else None
    if convention and allowed is None:
        raise CalfConfigError(f"Unknown label convention '{convention}'. Fix: use one of "
                              f"{', '.join(LABEL_VALUES)}.")
    if isinstance(new_value, bool) or int(new_value) != new_value or int(new_value) <= 0 or (
            allowed is not None and int(new_value) not in allowed):
        names = ", ".join(f"{v} {n}" for v, n in (allowed or {}).items()) or "a positive integer"
        raise CalfConfigError(f"Label value {new_value!r} cannot be given to new tumour"
                              f"{f' in {convention}' if convention else ''}. Fix: use {names}.")
    return int(new_value)


def _validated(label: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label, prob = np.asarray(label), np.asarray(prob)
    if label.ndim != 3 or label.shape != prob.shape:
        raise CalfInputError(None, f"label {label.shape} and probability {prob.shape} must be 3D "
                             "arrays of the same shape.", "pass the case's canonical label and its "
                             "out-of-sample probability from the audit's predictions folder.")
    if not np.issubdtype(label.dtype, np.integer):
        raise CalfInputError(None, f"the label has dtype {label.dtype}, not integer labels.",
                             "load it with napari_calf.io.load_volume(path, label=True).")
    return label, prob


def suggest_label(issue: AuditIssue | ReviewIssue, label: np.ndarray, prob: np.ndarray, *,
                  new_value: int = 2, convention: str | None = "brats2021",
                  confident: float = 0.5, margin: int = 1) -> np.ndarray:
    """The label with the models' consensus copied in where the issue is, nowhere else.

    The consensus is ``prob > confident``; the box is the issue's (inclusive) bounding box.

    - **spurious**: label components (26-connected) lying wholly inside the box with less
      than half of their voxels in the consensus are removed (set to 0).
    - **missed**, **slice-gap**: consensus voxels in the box that are unlabelled become
      ``new_value``; labelled voxels keep their value.
    - **too-large**, **too-small**: inside the box grown by ``margin`` voxels the label is
      replaced by the consensus: voxels in both keep their sub-label, consensus-only voxels
      become ``new_value``, label-only voxels become 0.

    Parameters
    ----------
    issue : the issue (box and kind are used).
    label : integer array, shape (X, Y, Z), canonical; not modified.
    prob : float array, shape (X, Y, Z): the out-of-sample foreground probability.
    new_value : label given to new tumour; 2 (oedema) by default, since new voxels lie at a
        lesion's edge or form a lesion whose parts nobody has drawn yet.
    convention : ``"brats2021"`` (1, 2, 4) or ``"brats2023"`` (1, 2, 3) restricts
        ``new_value``; ``None`` allows any positive integer.
    confident : consensus threshold (the audit's ``settings.confident``).
    margin : voxels added around the box for too-large/too-small, so the lesion's edge
        just outside a tight box is fixed too.

    Returns
    -------
    numpy.ndarray
        A new array, same shape and dtype as ``label``.

    Raises
    ------
    CalfInputError
        Shapes differ, the label is not integer, or the box is outside the array.
    CalfConfigError
        ``new_value`` is not a label of ``convention``, or the issue kind is unknown.
    """
    label, prob = _validated(label, prob)
    new_value = _check_value(new_value, convention)
    kind = (issue.issue if isinstance(issue, ReviewIssue) else issue).kind
    result = label.copy()
    if kind == "spurious":
        box = issue_box(issue, label.shape, margin=1)  # one voxel more: to see what leaves the box
        inner = issue_box(issue, label.shape)
        tumour = label[box] != 0
        components, n = ndi.label(tumour, structure=np.ones((3, 3, 3), dtype=bool))
        if n:
            inside = np.zeros(tumour.shape, dtype=bool)
            inside[tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(inner, box))] = True
            size = np.bincount(components.ravel(), minlength=n + 1)
            outside = np.bincount(components[~inside], minlength=n + 1)
            support = np.bincount(components[prob[box] > confident], minlength=n + 1)
            remove = [k for k in range(1, n + 1)
                      if outside[k] == 0 and support[k] < _SPURIOUS_SUPPORT * size[k]]
            result[box][np.isin(components, remove)] = 0
    elif kind in ("missed", "slice-gap"):
        box = issue_box(issue, label.shape)
        block = result[box]
        block[(block == 0) & (prob[box] > confident)] = new_value
    elif kind in ("too-large", "too-small"):
        box = issue_box(issue, label.shape, margin=margin)
        block = result[box]
        consensus = prob[box] > confident
        block[~consensus] = 0
        block[consensus & (block == 0)] = new_value
    else:
        raise CalfConfigError(f"Unknown issue kind '{kind}'. Fix: use one of {', '.join(ISSUE_KINDS)}.")
    return result


def review_metrics(issue: AuditIssue | ReviewIssue, label: np.ndarray, prob: np.ndarray, *,
                   spacing: tuple[float, float, float], confident: float = 0.5,
                   original_voxels: int | None = None, margin: int = 1) -> dict[str, float | None]:
    """How the annotation compares with the models' consensus in the issue's box.

    Returns a dict with ``dice`` (annotation vs consensus in the box grown by ``margin``;
    1.0 when both are empty there), ``label_mm3`` and ``consensus_mm3`` (volumes in that
    box), ``case_mm3`` (the whole label) and ``change_mm3`` (the whole label's volume minus
    ``original_voxels`` worth of voxels; None without it).
    """
    label, prob = np.asarray(label), np.asarray(prob)
    if label.shape != prob.shape or label.ndim != 3:
        raise CalfInputError(None, f"label {label.shape} and probability {prob.shape} differ.",
                             "pass arrays of the same case.")
    voxel = float(np.prod([float(s) for s in spacing]))
    if not math.isfinite(voxel) or voxel <= 0:
        raise CalfInputError(None, f"spacing {spacing} is not three positive sizes in mm.",
                             "pass the case's voxel size, e.g. Volume.spacing.")
    box = issue_box(issue, label.shape, margin=margin)
    annotated, consensus = label[box] != 0, prob[box] > confident
    both = int(np.count_nonzero(annotated & consensus))
    n_a, n_c = int(np.count_nonzero(annotated)), int(np.count_nonzero(consensus))
    case_voxels = int(np.count_nonzero(label))
    return {
        "dice": 1.0 if n_a + n_c == 0 else 2.0 * both / (n_a + n_c),
        "label_mm3": n_a * voxel, "consensus_mm3": n_c * voxel, "case_mm3": case_voxels * voxel,
        "change_mm3": None if original_voxels is None else (case_voxels - int(original_voxels)) * voxel,
    }

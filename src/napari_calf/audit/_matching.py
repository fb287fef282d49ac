"""How well an audit finds injected label errors: precision and recall of its top issues.

Part of :mod:`napari_calf.audit.scoring` (re-exported there); kept apart because it reads
the phantom's injected-error records, not images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_calf.errors import CalfInputError

#: Which issue kinds count as finding each injected error kind.
INJECTED_TO_ISSUES: dict[str, tuple[str, ...]] = {
    "missed": ("missed",),
    "erased-slices": ("missed", "slice-gap"),
    "spurious": ("spurious",),
    "dilate": ("too-large",),
    "erode": ("too-small",),
}
#: Dataset-wide errors: judged by dataset_bias, not by matching single issues.
DATASET_WIDE = ("systematic-dilate",)


def _get(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, Mapping) else getattr(item, name)


def _injected_box(record: Mapping, index: int) -> tuple[tuple[int, int], ...]:
    """Inclusive voxel box of an injected error: its voxels' box, or a ball of its size."""
    centre = [int(round(float(c))) for c in record["centre_vox"]]
    if len(centre) != 3:
        raise CalfInputError(None, f"injected error {index} has centre_vox {centre}.",
                             "give three voxel indices (x, y, z).")
    first, last = (int(v) for v in record["slices"])
    voxels = np.asarray(record.get("voxels", 0))
    if voxels.ndim == 2 and voxels.shape[1] == 3 and voxels.shape[0] > 0:
        return tuple((int(voxels[:, a].min()), int(voxels[:, a].max())) for a in range(3))
    # a count only: the half-width of a ball with that many voxels
    count = float(voxels) if voxels.ndim == 0 else 0.0
    half = int(math.ceil((3.0 * count / (4.0 * math.pi)) ** (1.0 / 3.0))) if count > 0 else 0
    return ((centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half), (first, last))


def _inside(point: Sequence[int], box: Sequence[Sequence[int]], margin: int) -> bool:
    return all(lo - margin <= p <= hi + margin for p, (lo, hi) in zip(point, box))


def match_injected(issues: Iterable[Any], injected: Iterable[Mapping], *, k: int | None = None,
                   margin_vox: int = 2) -> dict:
    """Precision and recall of the top-``k`` issues against injected-error records.

    Parameters
    ----------
    issues : AuditIssue objects (or their ``as_dict()``), in any order; they are ranked by
        score, ties keeping the given order.
    injected : records with keys ``case_id``, ``kind``, ``slices`` [first, last],
        ``centre_vox`` and ``voxels`` (a count, or a list of (x, y, z) indices).
        ``systematic-dilate`` records are dataset-wide and left out (see ``dataset_bias``).
    k : how many top issues to judge; default the number of evaluated injected errors.
    margin_vox : how far (voxels) a centre may lie outside the other region's box.

    An issue matches an injected error of the same case when its kind is one the injected
    kind maps to (missed→missed, erased-slices→missed|slice-gap, spurious→spurious,
    dilate→too-large, erode→too-small), their axial slices overlap, and the injected centre
    lies in the issue's bbox grown by ``margin_vox``, or the issue's centre in the injected
    error's box grown by it. Matching is one-to-one and greedy in rank order, so a second
    issue on an already found error counts against precision.

    Returns
    -------
    dict with ``k``, ``n_injected``, ``n_judged``, ``true_positives``, ``precision``,
    ``recall`` (``None`` where undefined), ``per_injected_kind`` (n, found, recall,
    issues of the kinds it maps to, precision), ``per_issue_kind`` (n, matched, precision),
    ``matches`` (rank, case, kinds, injected index) and ``not_evaluated`` (dataset-wide).

    Raises
    ------
    CalfInputError
        A record lacks a key or has an unknown kind.
    """
    records = []
    not_evaluated = 0
    for index, record in enumerate(injected):
        missing = [key for key in ("case_id", "kind", "slices", "centre_vox") if key not in record]
        if missing:
            raise CalfInputError(None, f"injected error {index} lacks {', '.join(missing)}.",
                                 "give case_id, kind, slices, centre_vox and voxels.")
        if record["kind"] in DATASET_WIDE:
            not_evaluated += 1
            continue
        if record["kind"] not in INJECTED_TO_ISSUES:
            raise CalfInputError(None, f"injected error {index} has unknown kind "
                                 f"{record['kind']!r}.", "use one of "
                                 f"{', '.join(list(INJECTED_TO_ISSUES) + list(DATASET_WIDE))}.")
        records.append((index, record, _injected_box(record, index)))
    ranked = sorted(issues, key=lambda issue: -float(_get(issue, "score")))
    k = len(records) if k is None else int(k)
    top = ranked[:max(k, 0)]
    taken: set[int] = set()
    matches = []
    for rank, issue in enumerate(top):
        first, last = (int(v) for v in _get(issue, "slices"))
        box, centre = _get(issue, "bbox"), _get(issue, "centre_vox")
        for index, record, injected_box in records:
            if (index in taken or record["case_id"] != _get(issue, "case_id")
                    or _get(issue, "kind") not in INJECTED_TO_ISSUES[record["kind"]]):
                continue
            inj_first, inj_last = injected_box[2]
            if first > inj_last or inj_first > last:
                continue
            if _inside(record["centre_vox"], box, margin_vox) or _inside(centre, injected_box, margin_vox):
                taken.add(index)
                matches.append({"rank": rank, "case_id": record["case_id"],
                                "issue_kind": _get(issue, "kind"), "injected_kind": record["kind"],
                                "injected_index": index})
                break

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    per_injected = {}
    for kind, mapped in INJECTED_TO_ISSUES.items():
        n = sum(1 for _, r, _ in records if r["kind"] == kind)
        found = sum(1 for m in matches if m["injected_kind"] == kind)
        claimed = sum(1 for issue in top if _get(issue, "kind") in mapped)
        if n or claimed:
            per_injected[kind] = {"n": n, "found": found, "recall": ratio(found, n),
                                  "issues": claimed, "precision": ratio(found, claimed)}
    per_issue = {}
    for kind in sorted({_get(issue, "kind") for issue in top}):
        n = sum(1 for issue in top if _get(issue, "kind") == kind)
        matched = sum(1 for m in matches if m["issue_kind"] == kind)
        per_issue[kind] = {"n": n, "matched": matched, "precision": ratio(matched, n)}
    return {"k": k, "n_injected": len(records), "n_judged": len(top),
            "true_positives": len(matches), "precision": ratio(len(matches), len(top)),
            "recall": ratio(len(matches), len(records)), "per_injected_kind": per_injected,
            "per_issue_kind": per_issue, "matches": matches, "not_evaluated": not_evaluated}

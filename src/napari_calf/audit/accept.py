"""Accept an audit's top suggestions without a viewer: corrections as the review writes them.

This is the measurement path (accept the top-k issues blindly, then fine-tune and see if
the model improves) and a fallback for scripts. The napari review (``audit/review.py``)
is where a person decides issue by issue; both write the same ``corrections/`` folder
(audit contract): ``corrections/<case_id>/<original label file name>`` on the source grid
and ``corrections/corrections.json`` with one decision per issue.

Suggestion per kind (the consensus ``C`` is ``prob > confident``; boxes are the issue's
``bbox``):

- spurious: label components (26-connected) lying mostly (>= half) inside the box are
  removed;
- missed, slice-gap: unlabelled consensus voxels inside the box are labelled
  ``new_value`` (oedema, 2, by default: the outermost tumour class);
- too-large: labelled voxels outside the consensus inside the box grown by ``margin``
  voxels are cleared;
- too-small: unlabelled consensus voxels inside that grown box are labelled ``new_value``.

Existing sub-labels are kept wherever label and consensus agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_calf.errors import CalfInputError

__all__ = ["CORRECTIONS_DIR", "suggest_correction", "accept_top_issues"]

CORRECTIONS_DIR = "corrections"
_CONN = np.ones((3, 3, 3), dtype=bool)


def _box(bbox: Sequence[Sequence[int]], shape: Sequence[int], margin: int = 0) -> tuple[slice, ...]:
    """Slices of a ``[start, stop)`` box grown by ``margin``, clipped to ``shape``."""
    return tuple(slice(max(int(lo) - margin, 0), min(int(hi) + margin, int(n)))
                 for (lo, hi), n in zip(bbox, shape))


def suggest_correction(issue: Mapping[str, Any], label: np.ndarray, prob: np.ndarray, *,
                       new_value: int = 2, confident: float = 0.5, margin: int = 2) -> np.ndarray:
    """The label with ``issue``'s suggestion applied (a new array; see the module doc).

    Parameters
    ----------
    issue : an ``issues.json`` row (``kind``, ``bbox`` as ``[start, stop)`` per axis).
    label : int array (X, Y, Z), canonical; non-zero is tumour.
    prob : float array, same shape: the out-of-sample probability.

    Raises
    ------
    CalfInputError
        Shapes differ or the kind is unknown.
    """
    label, prob = np.asarray(label), np.asarray(prob)
    if label.shape != prob.shape or label.ndim != 3:
        raise CalfInputError(None, f"label {label.shape} and probability {prob.shape} differ.",
                             "pass the case's label and its audit prediction.")
    out = label.copy()
    consensus = prob > confident
    kind = issue["kind"]
    if kind == "spurious":
        box = _box(issue["bbox"], label.shape)
        comps, _ = ndi.label(label != 0, structure=_CONN)
        inside = np.bincount(comps[box].ravel(), minlength=comps.max() + 1)
        total = np.bincount(comps.ravel(), minlength=comps.max() + 1)
        drop = [k for k in range(1, len(total)) if inside[k] * 2 >= total[k] > 0]
        out[np.isin(comps, drop)] = 0
    elif kind in ("missed", "slice-gap", "too-small"):
        box = _box(issue["bbox"], label.shape, margin if kind == "too-small" else 0)
        add = consensus[box] & (out[box] == 0)
        out[box][add] = new_value
    elif kind == "too-large":
        box = _box(issue["bbox"], label.shape, margin)
        out[box][~consensus[box]] = 0
    else:
        raise CalfInputError(None, f"issue kind {kind!r} is unknown.",
                             "use an issues.json written by napari-calf audit.")
    return out


def accept_top_issues(audit_dir: str | Path, k: int | None = None, *, new_value: int = 2,
                      confident: float | None = None) -> list[dict[str, Any]]:
    """Accept the suggestions of the ``k`` best-ranked issues (all when None).

    Writes ``corrections/<case_id>/<label file name>`` (the original label's dtype and
    grid) and ``corrections/corrections.json`` (decision ``use-suggestion`` per issue;
    an issue decided before is replaced). The original label files are never touched.

    Returns
    -------
    The decisions written in this call.

    Raises
    ------
    CalfInputError
        The folder is not a finished audit.
    """
    from napari_calf.io.files import write_text_atomic
    from napari_calf.io.volumes import load_volume, save_like

    from .pipeline import read_audit
    from .predictions import load_prediction

    audit_dir = Path(audit_dir)
    doc = read_audit(audit_dir)
    if not doc.get("issues"):
        raise CalfInputError(audit_dir, "has no issues.json yet.", "let the audit finish first.")
    confident = float(doc["settings"]["confident"]) if confident is None else confident
    rows = doc["issues"]["issues"][: (None if k is None else max(int(k), 0))]
    folder = audit_dir / CORRECTIONS_DIR
    record_path = folder / "corrections.json"
    record = (json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file()
              else {"version": 1, "audit": "..", "decisions": []})
    decisions = []
    for case_id in dict.fromkeys(r["case_id"] for r in rows):
        info = doc["cases"][case_id]
        original = load_volume(info["label"], label=True)
        target = folder / case_id / Path(info["label"]).name
        start = load_volume(target, label=True).data if target.is_file() else original.data
        prob, _ = load_prediction(audit_dir, case_id, original.data.shape)
        label = start
        for row in (r for r in rows if r["case_id"] == case_id):
            new = suggest_correction(row, label, prob, new_value=new_value, confident=confident)
            decisions.append({"issue_id": row["id"], "case_id": case_id,
                              "decision": "use-suggestion",
                              "voxels_changed": int(np.count_nonzero(new != label)),
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "label_file": info["label"],
                              "corrected_file": f"{case_id}/{target.name}",
                              "new_label_value": new_value})
            label = new
        target.parent.mkdir(parents=True, exist_ok=True)
        save_like(label.astype(original.data.dtype), original, target, overwrite=True)
    done = {d["issue_id"] for d in decisions}
    record["decisions"] = [d for d in record["decisions"] if d.get("issue_id") not in done] + decisions
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record_path, json.dumps(record, indent=1) + "\n")
    return decisions

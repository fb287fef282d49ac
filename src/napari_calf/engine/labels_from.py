"""Replacement label maps from another folder: an audit's corrections, or a clean truth.

``--labels-from DIR`` (train, evaluate) and ``compare --truth DIR`` take a case's label
from ``DIR`` where ``DIR`` has one, in the layout the audit contract fixes:
``DIR/<case_id>/<original label file name>`` (also found: ``DIR/<folder of the original
label>/<name>``, e.g. ``DIR/labelsTr/<case>.nii.gz`` for an nnU-Net truth copy, and
``DIR/<name>``). A replacement must lie on the original label's grid (shape and affine),
which is checked before any training.

For training, the axial slices where the replacement differs from the original are the
*corrected slices*: :func:`napari_calf.engine.training_data.iter_prepare_data` always
trains on them, and the run card lists them with the review decisions of
``DIR/corrections.json`` (when there is one).

No torch here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalfInputError

__all__ = ["CORRECTIONS_JSON", "LabelOverride", "find_label_override", "apply_label_overrides"]

#: The review's record of decisions inside a corrections folder (audit contract).
CORRECTIONS_JSON = "corrections.json"


@dataclass(frozen=True)
class LabelOverride:
    """One case whose label comes from the override folder.

    Attributes
    ----------
    case_id : str
    original, replacement : Path
        The dataset's label file and the file used instead.
    slices : tuple of int
        Axial (canonical axis 2) slices where the two differ, ascending.
    voxels_changed : int
        Voxels whose label value differs.
    decisions : tuple of dict
        The case's entries of ``corrections.json`` (empty without one).
    """

    case_id: str
    original: Path
    replacement: Path
    slices: tuple[int, ...]
    voxels_changed: int
    decisions: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "original": str(self.original),
                "replacement": str(self.replacement), "slices": list(self.slices),
                "voxels_changed": self.voxels_changed, "decisions": list(self.decisions)}


def find_label_override(case: Any, labels_dir: str | Path) -> Path | None:
    """The replacement of ``case``'s label in ``labels_dir``, or None (see the module doc)."""
    if case.label is None:
        return None
    root, name = Path(labels_dir), Path(case.label).name
    for candidate in (root / case.case_id / name, root / Path(case.label).parent.name / name,
                      root / name):
        if candidate.is_file():
            return candidate
    return None


def _decisions(labels_dir: Path) -> list[dict[str, Any]]:
    path = labels_dir / CORRECTIONS_JSON
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CalfInputError(path, f"cannot be read ({exc}).",
                             "restore it from the review, or delete it (the corrected label "
                             "files are used without it).") from None
    rows = doc.get("decisions") if isinstance(doc, dict) else None
    return [r for r in rows or [] if isinstance(r, dict)]


def apply_label_overrides(
    cases: Sequence[Any],
    labels_dir: str | Path,
    *,
    require_all: bool = False,
    measure: bool = True,
) -> tuple[list[Any], list[LabelOverride]]:
    """``cases`` with their labels replaced from ``labels_dir`` where it has one.

    Parameters
    ----------
    cases : io.Case objects (cases without a label are passed through).
    labels_dir : the override folder.
    require_all : every labelled case must have a replacement (a truth folder).
    measure : load both labels to find the changed slices and check the grid; without it
        only the paths are swapped (``slices`` empty, ``voxels_changed`` -1).

    Returns
    -------
    (cases in the same order, the overrides applied)

    Raises
    ------
    CalfInputError
        ``labels_dir`` is not a folder, a required replacement is missing, or a
        replacement is not on its case's grid (shape or affine) or not a label map.
    """
    from ..io.volumes import check_same_grid
    from ..io.volumes import load_volume

    root = Path(labels_dir).expanduser()
    if not root.is_dir():
        raise CalfInputError(root, "is not a folder of label maps.",
                             "give an audit's corrections/ folder or a truth folder laid out "
                             "as <case_id>/<label file name>.")
    decisions = _decisions(root)
    out: list[Any] = []
    overrides: list[LabelOverride] = []
    missing: list[str] = []
    for case in cases:
        found = find_label_override(case, root)
        if found is None:
            if require_all and case.label is not None:
                missing.append(case.case_id)
            out.append(case)
            continue
        slices: tuple[int, ...] = ()
        changed = -1
        if measure:
            original = load_volume(case.label, label=True)
            replacement = load_volume(found, label=True)
            check_same_grid(original, replacement)
            diff = original.data != replacement.data
            changed = int(np.count_nonzero(diff))
            slices = tuple(int(z) for z in np.flatnonzero(diff.any(axis=(0, 1))))
        mine = tuple(d for d in decisions if d.get("case_id") == case.case_id)
        overrides.append(LabelOverride(case.case_id, Path(case.label), found.resolve(), slices,
                                       changed, mine))
        out.append(dataclasses.replace(case, label=found.resolve()))
    if missing:
        raise CalfInputError(root, f"has no label for {len(missing)} case(s) "
                             f"({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}).",
                             "give a folder with a label for every case, laid out as "
                             "<case_id>/<label file name> like the dataset.")
    return out, overrides

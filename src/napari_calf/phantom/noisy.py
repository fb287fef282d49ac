"""A phantom dataset whose label files carry known annotation errors.

:func:`napari_calf.phantom.dataset.write_dataset` with ``label_errors=`` writes the
images as usual, the **clean** label maps to ``OUT/truth/<case>/<case>_seg.nii.gz`` (the
same layout as the dataset, so a truth folder can stand in for the labels wherever a
"labels from" folder is accepted), the **noisy** copies made by
:func:`napari_calf.phantom.label_errors.inject_label_errors` as the dataset's own label
files, and ``OUT/label_errors.json`` listing every injected error. Case discovery looks
one folder deep, so ``truth/`` is never taken for a case.

Injection needs every case at once (missed lesions are drawn from all lesions pooled),
so the labels and brain masks are kept in memory until the last case is drawn
(about 2 MB per phantom case).

No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import write_text_atomic
from .label_error_spec import LabelErrorSpec, parse_label_error_spec

__all__ = ["TRUTH_DIR", "LABEL_ERRORS_JSON", "check_spec", "write_noisy_labels",
           "read_label_errors"]

#: Folder (inside the dataset) of the clean label maps.
TRUTH_DIR = "truth"
#: File (inside the dataset) listing the injected errors.
LABEL_ERRORS_JSON = "label_errors.json"


def check_spec(spec: LabelErrorSpec | str) -> LabelErrorSpec:
    """The parsed spec (a string is parsed; raises CalfConfigError naming the bad part)."""
    return parse_label_error_spec(spec) if isinstance(spec, str) else spec


def write_noisy_labels(
    out_dir: Path,
    labels: Mapping[str, np.ndarray],
    brains: Mapping[str, np.ndarray],
    spacing: tuple[float, float, float],
    affine: np.ndarray,
    spec: LabelErrorSpec,
    *,
    seed: int,
    overwrite: bool,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Inject ``spec`` into ``labels``, write noisy labels, the truth and the record.

    Parameters
    ----------
    out_dir : the dataset folder; cases are ``out_dir/<case>/``.
    labels : case id -> clean uint8 label map (X, Y, Z), canonical RAS.
    brains : case id -> bool brain mask, same shape (where errors may add voxels).
    spacing, affine : the phantom grid (shared by all cases).
    spec : the errors to inject.
    seed : the dataset seed; same seed, same errors.

    Returns
    -------
    (noisy label maps by case id, the injected errors as ``as_dict`` records)
    """
    from ..io.volumes import save_volume
    from .label_errors import inject_label_errors

    noisy, records = inject_label_errors(labels, spacing, spec, seed=seed,
                                         brain_masks=dict(brains))
    for case_id, clean in labels.items():
        name = f"{case_id}_seg.nii.gz"
        save_volume(clean, out_dir / TRUTH_DIR / case_id / name, affine,
                    overwrite=overwrite, dtype=np.uint8)
        save_volume(noisy[case_id], out_dir / case_id / name, affine,
                    overwrite=overwrite, dtype=np.uint8)
    rows = [r.as_dict() for r in records]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    doc = {"version": 1, "spec": spec.describe(), "seed": int(seed),
           "truth_dir": TRUTH_DIR, "spacing_mm": [float(s) for s in spacing],
           "counts": counts, "errors": rows}
    write_text_atomic(out_dir / LABEL_ERRORS_JSON, json.dumps(doc, indent=1) + "\n",
                      overwrite=overwrite)
    return noisy, rows


def read_label_errors(path: str | Path) -> dict[str, Any]:
    """Read ``label_errors.json`` (a file, or a folder holding it).

    Raises
    ------
    CalfInputError
        The file is missing or not the record this module writes.
    """
    from ..errors import CalfInputError

    path = Path(path)
    if path.is_dir():
        path = path / LABEL_ERRORS_JSON
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CalfInputError(path, f"cannot be read as the injected-error record ({exc}).",
                             "give the label_errors.json written by `napari-calf phantom "
                             "--label-errors`.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        raise CalfInputError(path, "has no 'errors' list.", "give the label_errors.json "
                             "written by `napari-calf phantom --label-errors`.")
    return doc

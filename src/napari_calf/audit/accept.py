"""Accept an audit's top suggestions without a viewer (measurements, scripts).

The napari review dock is where a person decides issue by issue; this accepts the ``k``
best-ranked issues blindly, with the same core the dock uses: each issue's suggestion is
:func:`napari_calf.audit.review.suggest_label` (the models' consensus copied into the label
inside the issue's box) and each decision is recorded by
:class:`napari_calf.audit.review.CorrectionStore` as ``use-suggestion``, so the
``corrections/`` folder is exactly what a reviewer who accepted them would leave. The
original label files are never written.

Accepting without review is a way to measure what the suggestions are worth (the README's
phantom measurement), not a way to clean data: suspects can be real lesions the models miss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["accept_top_issues"]


def accept_top_issues(audit_dir: str | Path, k: int | None = None, *,
                      new_value: int = 2) -> list[dict[str, Any]]:
    """Accept the suggestions of the ``k`` best-ranked issues (all when None).

    Issues of a case are applied in rank order, each to the label as corrected so far;
    an issue decided before gets its decision replaced.

    Returns
    -------
    The decisions recorded in this call (as ``corrections/corrections.json`` stores them).

    Raises
    ------
    CalfInputError
        The folder is not a finished audit, or a case's prediction is missing.
    CalfConfigError
        ``new_value`` is not a label of the case's convention.
    """
    from .predictions import load_prediction
    from .review import load_audit_folder, suggest_label

    folder = load_audit_folder(audit_dir)
    store = folder.store()
    chosen = list(folder.issues if k is None else folder.issues[: max(int(k), 0)])
    decisions: list[dict[str, Any]] = []
    for case_id in dict.fromkeys(item.case_id for item in chosen):
        case = folder.cases[case_id]
        original, current = store.current_label(case_id, case.label)
        prob, _ = load_prediction(folder.root, case_id, original.data.shape)
        label = current.data
        for item in (i for i in chosen if i.case_id == case_id):
            new = suggest_label(item, label, prob, new_value=new_value,
                                convention=case.label_convention, confident=folder.confident)
            decisions.append(store.record(item.id, case_id, "use-suggestion", label_file=case.label,
                                          corrected=new, new_label_value=new_value,
                                          reference=original))
            label = new
    return decisions

"""The synthetic BraTS-style sample dataset: anatomy, MRI contrasts, tumours.

Depends on ``io`` and the ground. What may change here without
touching other parts: how cases look, presets, anything the generator draws.
"""

from __future__ import annotations

from .._lazy import lazy_face

_EXPORTS = {
    "SKEW_PRESETS": "dataset", "PhantomCase": "dataset", "make_case": "dataset",
    "make_labels": "dataset", "sample_case": "dataset", "write_dataset": "dataset",
    "LABEL_ERROR_KINDS": "label_errors", "LabelErrorSpec": "label_errors",
    "InjectedError": "label_errors", "parse_label_error_spec": "label_errors",
    "inject_label_errors": "label_errors", "lesion_components": "label_errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)

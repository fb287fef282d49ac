"""The method: foreground sizes, S and K, the rule table, filtering, losses, metrics.

Depends on ``io`` and the ground. What may change here without touching other parts: the
rule table, loss formulas, metric conventions (the engine and the doors call these names).
"""

from __future__ import annotations

from .._lazy import lazy_face

_EXPORTS = {
    "binary_target": "areas", "slice_areas": "areas", "DatasetAreas": "areas",
    "dataset_areas": "areas", "iter_dataset_areas": "areas",
    "ImbalanceStats": "stats", "imbalance_stats": "stats",
    "Rule": "rules", "Selection": "rules", "DEFAULT_RULES": "rules", "select_transform": "rules",
    "load_rules": "rules_io", "save_rules": "rules_io", "format_rules": "rules_io",
    "FilterResult": "filtering", "filter_slices": "filtering",
    "get_loss": "losses", "describe_loss": "losses", "CALFLoss": "losses",
    "dice": "metrics", "iou": "metrics", "precision": "metrics", "recall": "metrics",
    "specificity": "metrics", "hd95": "metrics", "volume_mm3": "metrics",
    "case_metrics": "metrics", "per_slice_dice": "metrics", "slice_metrics": "metrics",
    "size_buckets": "metrics", "size_thresholds": "metrics",
    "lesion_wise": "lesions", "LesionWiseResult": "lesions", "surface_distance_hd95": "surface_distance",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)

"""Annotation audit: out-of-sample suspects of label errors, their ranking and the report.

Depends on ``study``, ``engine``, ``calf``, ``io`` and the ground. What may change here
without touching other parts: how suspects are scored, ranked and recorded.
"""

from __future__ import annotations

from .._lazy import lazy_face

_EXPORTS = {
    "AuditSettings": "scoring", "AuditIssue": "scoring", "CaseAudit": "scoring",
    "score_case": "scoring", "rank_issues": "scoring", "dataset_bias": "scoring",
    "apply_dataset_bias": "scoring", "match_injected": "scoring", "region_mask": "scoring",
    "signed_surface_distance": "scoring",
    "make_folds": "folds", "plan_fold_runs": "folds",
    "AuditPlan": "pipeline", "AuditResult": "pipeline", "plan_audit": "pipeline",
    "plan_from_runs": "pipeline", "iter_run_audit": "pipeline", "read_audit": "pipeline",
    "accept_top_issues": "accept",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)

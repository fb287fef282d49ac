"""Comparison studies: plan, run, resume and collect many training runs; evaluate; report.

Depends on ``engine``, ``calf``, ``io`` and the ground. What may change here without touching
other parts: the report's tables, statistics and plots, scheduling of runs.
"""

from __future__ import annotations

from .._lazy import lazy_face

_EXPORTS = {
    "plan_study": "compare", "iter_run_study": "compare", "iter_collect": "collect",
    "StudyPlan": "compare", "PlannedRun": "compare",
    "evaluate_run": "evaluation", "iter_evaluate_run": "evaluation", "RunEvaluation": "evaluation",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)

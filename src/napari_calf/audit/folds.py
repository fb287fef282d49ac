"""Cross-validation by case for the audit: K folds, one ordinary training run per fold.

Every case is held out by exactly one fold; the run of fold ``k`` trains on all other
cases and validates on fold ``k`` (``DataConfig.val_cases``), so its prediction of a
fold-``k`` case is *out of sample*: the model never saw that case's label. The runs are
an ordinary :class:`napari_calf.study.compare.StudyPlan`, so the study machinery trains,
skips and resumes them (in process, one per device, or as cluster command lines).

Note: the fold run also picks its best epoch on fold ``k`` (as nnU-Net's cross-validation
does); the held-out labels thus steer which checkpoint is kept, never the weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_calf.config import RunConfig
from napari_calf.errors import CalfConfigError, CalfInputError
from napari_calf.study.compare import PlannedRun, StudyPlan

__all__ = ["RUNS_DIR", "make_folds", "fold_of", "fold_run_name", "plan_fold_runs"]

#: Fold runs live in ``AUDIT/runs/fold<k>``.
RUNS_DIR = "runs"


def make_folds(case_ids: Sequence[str], k: int, seed: int = 0) -> tuple[tuple[str, ...], ...]:
    """Split case ids into ``k`` folds of balanced size (they differ by at most one).

    The ids are sorted before a seeded shuffle, so the same ids and seed give the same
    folds whatever their order; each fold's ids are sorted.

    Raises
    ------
    CalfConfigError
        ``k`` is not a whole number in ``[2, number of cases]``.
    CalfInputError
        A case id repeats.
    """
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        raise CalfInputError(None, "two cases share one case id.", "give every case its own id.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(ids):
        raise CalfConfigError(f"--folds {k!r} does not fit {len(ids)} case(s). Fix: use a whole "
                              f"number from 2 to {max(len(ids), 2)} (5 is usual).")
    order = np.random.default_rng([int(seed), 0xF01D]).permutation(len(ids))
    return tuple(tuple(sorted(ids[int(i)] for i in order[fold::k])) for fold in range(int(k)))


def fold_of(folds: Sequence[Sequence[str]]) -> dict[str, int]:
    """Case id -> the fold that holds it out."""
    return {case_id: k for k, fold in enumerate(folds) for case_id in fold}


def fold_run_name(k: int) -> str:
    return f"fold{int(k)}"


def plan_fold_runs(audit_dir: str | Path, base: RunConfig,
                   folds: Sequence[Sequence[str]]) -> StudyPlan:
    """One planned run per fold: ``base`` with the fold as validation cases and its folder.

    ``base`` carries every training option (architecture, loss, seed, epochs …); only
    ``data.val_cases``, ``data.data_dir`` (made absolute) and ``out_dir`` change.
    """
    audit_dir = Path(audit_dir).expanduser().resolve()
    data_dir = Path(base.data.data_dir).expanduser().resolve()
    base = base.replace(data=dataclasses.replace(base.data, data_dir=str(data_dir),
                                                 val_cases=None))
    runs = []
    for k, fold in enumerate(folds):
        run_dir = audit_dir / RUNS_DIR / fold_run_name(k)
        config = base.replace(data=dataclasses.replace(base.data, val_cases=tuple(fold)),
                              out_dir=str(run_dir), overwrite=False, resume=None)
        runs.append(PlannedRun(fold_run_name(k), base.model.arch.lower(), base.train.loss,
                               base.train.seed, run_dir, config))
    return StudyPlan(audit_dir, data_dir, (base.train.loss,), (base.model.arch.lower(),),
                     (base.train.seed,), tuple(runs), base)

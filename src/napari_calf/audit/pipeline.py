"""The annotation audit from end to end: fold runs, out-of-sample predictions, ranked issues.

:func:`plan_audit` plans K cross-validation runs (:mod:`.folds`); :func:`plan_from_runs`
reuses existing runs instead (a case a run trained on is *in sample* for it).
:func:`iter_run_audit` trains what is missing (the study machinery: finished runs are
skipped, interrupted ones resume), predicts every case out of sample
(:mod:`.predictions`, skipping what is done), scores each case
(:func:`.scoring.score_case`), removes the dataset's style bias
(:func:`.scoring.apply_dataset_bias`) and writes ``AUDIT/audit.json``, ``issues.json``,
``issues.csv``, ``summary.json`` and ``top_issues.png`` (:mod:`.report`).

With the truth of a phantom (``napari-calf phantom --label-errors``: ``DATA/truth/`` and
``DATA/label_errors.json``) the summary also says how many injected errors the top-k
issues found, per kind, and how far the estimated bias is from the injected one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_calf.config import RunConfig
from napari_calf.errors import CalfConfigError, CalfInputError
from napari_calf.events import Progress, StopCallback

from .folds import fold_of, make_folds, plan_fold_runs
from .predictions import PREDICTIONS_DIR, check_runs_finished, iter_predict_cases, prob_path
from .scoring import AuditIssue, AuditSettings, CaseAudit

__all__ = ["AUDIT_JSON", "AuditCase", "AuditPlan", "AuditResult", "plan_audit",
           "plan_from_runs", "iter_run_audit", "read_audit", "find_truth"]

AUDIT_JSON = "audit.json"
_LABEL_ERRORS = "label_errors.json"


@dataclass(frozen=True)
class AuditCase:
    """A case of the audit: which runs predict it and whether it is out of sample."""

    case: Any  # io.Case
    fold: int | None
    in_sample: bool
    runs: tuple[Path, ...]


@dataclass(frozen=True)
class AuditPlan:
    """What an audit does. ``study`` holds the fold runs to train (None when reusing)."""

    audit_dir: Path
    data_dir: Path
    seed: int
    target: str
    runs: tuple[Path, ...]
    cases: dict[str, AuditCase]
    folds: tuple[tuple[str, ...], ...] | None = None
    study: Any = None  # study.compare.StudyPlan
    reused: bool = False

    def runs_json(self) -> dict[str, str]:
        """Run folders by index, relative to the audit folder when inside it."""
        out = {}
        for k, run in enumerate(self.runs):
            try:
                out[str(k)] = run.relative_to(self.audit_dir).as_posix()
            except ValueError:
                out[str(k)] = str(run)
        return out


@dataclass(frozen=True)
class AuditResult:
    """A finished audit: the ranked issues, their contract rows and the summary."""

    audit_dir: Path
    issues: list[AuditIssue]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    audits: list[CaseAudit] = field(repr=False, default_factory=list)


def _labelled_cases(data_dir: Path) -> list[Any]:
    from napari_calf.io.discovery import discover_cases

    cases = [c for c in discover_cases(data_dir) if c.label is not None]
    if len(cases) < 2:
        raise CalfInputError(data_dir, f"holds {len(cases)} labelled case(s); an audit needs "
                             "at least 2 (each is predicted by a model trained on the others).",
                             "add labelled cases, or try `napari-calf phantom OUT --cases 12 "
                             "--label-errors missed=0.2`.")
    return cases


def plan_audit(audit_dir: str | Path, base: RunConfig, *, folds: int,
               seed: int | None = None) -> AuditPlan:
    """K-fold audit of ``base.data.data_dir``: one run per fold, ``base`` otherwise.

    ``seed`` (default ``base.train.seed``) draws the folds.

    Raises
    ------
    CalfConfigError
        ``folds`` does not fit the number of labelled cases.
    CalfInputError
        Fewer than two labelled cases.
    """
    seed = base.train.seed if seed is None else int(seed)
    data_dir = Path(base.data.data_dir).expanduser().resolve()
    cases = _labelled_cases(data_dir)
    fold_ids = make_folds([c.case_id for c in cases], folds, seed)
    study = plan_fold_runs(audit_dir, base, fold_ids)
    where = fold_of(fold_ids)
    runs = tuple(r.run_dir for r in study.runs)
    planned = {c.case_id: AuditCase(c, where[c.case_id], False, (runs[where[c.case_id]],))
               for c in cases}
    return AuditPlan(study.study_dir, data_dir, seed, base.data.target, runs, planned,
                     fold_ids, study, False)


def plan_from_runs(audit_dir: str | Path, data_dir: str | Path,
                   runs: Sequence[str | Path]) -> AuditPlan:
    """Audit with existing runs: each case is predicted by the runs that did not train on
    it (mean over them); a case every run trained on is predicted by all and marked
    ``in_sample`` (its issues are weaker evidence: the models saw its label).

    Raises
    ------
    CalfConfigError
        No runs, or runs trained for different targets.
    CalfCheckpointError
        A run folder without a finished run card and weights.
    """
    from napari_calf.engine.checkpoints import RUN_CARD, read_json

    if not runs:
        raise CalfConfigError("--runs is empty. Fix: name at least one run folder.")
    run_dirs = tuple(Path(r).expanduser().resolve() for r in runs)
    check_runs_finished(run_dirs)
    cards = [read_json(r / RUN_CARD) for r in run_dirs]
    targets = {((c.get("config") or {}).get("data") or {}).get("target", "wt") for c in cards}
    if len(targets) != 1:
        raise CalfConfigError(f"the runs were trained for different targets ({sorted(targets)}). "
                              "Fix: audit with runs of one target.")
    trained = [set(((c.get("data") or {}).get("split") or {}).get("train") or []) for c in cards]
    data_dir = Path(data_dir).expanduser().resolve()
    planned = {}
    for case in _labelled_cases(data_dir):
        outside = [k for k, ids in enumerate(trained) if case.case_id not in ids]
        chosen = outside or list(range(len(run_dirs)))
        planned[case.case_id] = AuditCase(case, outside[0] if outside else None, not outside,
                                          tuple(run_dirs[k] for k in chosen))
    return AuditPlan(Path(audit_dir).expanduser().resolve(), data_dir, 0, targets.pop(),
                     run_dirs, planned, None, None, True)


def _audit_json(plan: AuditPlan, settings: AuditSettings, tta: bool, command: str,
                created: str) -> dict[str, Any]:
    cases = {}
    for cid, ac in plan.cases.items():
        c = ac.case
        done = prob_path(plan.audit_dir, cid).is_file()
        cases[cid] = {"fold": ac.fold, "in_sample": ac.in_sample, "label": str(Path(c.label).resolve()),
                      "images": {m: str(Path(p).resolve()) for m, p in c.images.items()},
                      "layout": c.layout, "label_convention": c.label_convention,
                      "prediction": f"{PREDICTIONS_DIR}/{cid}_prob.nii.gz" if done else None}
    return {"version": 1, "data_dir": str(plan.data_dir),
            "folds": None if plan.folds is None else len(plan.folds), "seed": plan.seed,
            "created": created, "command": command, "settings": dataclasses.asdict(settings),
            "tta": bool(tta), "target": plan.target,
            "fold_cases": None if plan.folds is None else [list(f) for f in plan.folds],
            "runs": plan.runs_json(), "cases": cases}


def _check_same_audit(plan: AuditPlan, before: dict[str, Any]) -> None:
    mine = {"data_dir": str(plan.data_dir), "runs": plan.runs_json(),
            "fold_cases": None if plan.folds is None else [list(f) for f in plan.folds]}
    diff = [k for k, v in mine.items() if before.get(k) != v]
    if diff:
        raise CalfConfigError(f"{plan.audit_dir / AUDIT_JSON}: this folder holds an audit with "
                              f"other {', '.join(diff)}. Fix: rerun its own command (in "
                              "audit.json) to resume it, or give a new --out.")


def find_truth(data_dir: str | Path, truth: str | Path | None = None) -> tuple[Path, dict] | None:
    """The truth folder and the injected-error record, or None when there is none.

    With ``truth`` given, ``label_errors.json`` is looked for in it and beside it;
    without, ``DATA/truth/`` with ``DATA/label_errors.json`` (a phantom) is used.

    Raises
    ------
    CalfInputError
        ``truth`` is given but is not a folder or has no record beside it.
    """
    if truth is None:
        folder = Path(data_dir) / "truth"
        if not (folder.is_dir() and (Path(data_dir) / _LABEL_ERRORS).is_file()):
            return None
    else:
        folder = Path(truth).expanduser()
        if not folder.is_dir():
            raise CalfInputError(folder, "is not a folder.", "give the phantom's truth/ folder.")
    for candidate in (folder / _LABEL_ERRORS, folder.parent / _LABEL_ERRORS):
        if candidate.is_file():
            try:
                doc = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CalfInputError(candidate, f"cannot be read ({exc}).",
                                     "write the phantom again.") from None
            if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
                return folder.resolve(), doc
    raise CalfInputError(folder, f"has no {_LABEL_ERRORS} in it or beside it.",
                         "give the truth/ folder of `napari-calf phantom --label-errors`.")


def iter_run_audit(
    plan: AuditPlan,
    *,
    train: bool = True,
    tta: bool = False,
    device: str = "auto",
    batch_size: int = 16,
    settings: AuditSettings = AuditSettings(),
    truth: str | Path | None = None,
    command: str = "",
    figure: bool = True,
    stop: StopCallback | None = None,
) -> Generator[Any, None, AuditResult | None]:
    """Run (or resume) an audit.

    Parameters
    ----------
    train : train the plan's fold runs that are not finished (in this process); with
        False they must be finished already (e.g. trained with ``--devices`` or a cluster).
    tta : average over test-time flips; the spread lowers uncertain scores.
    truth : the truth folder of a phantom (automatic for ``DATA/truth`` with
        ``DATA/label_errors.json``).
    figure : write ``top_issues.png`` (needs matplotlib).

    Yields
    ------
    StudyRunEvent and training events while fold runs train; ``Progress`` with stages
    ``"predict"`` and ``"score"``, one per case.

    Returns
    -------
    AuditResult, or None when stopped (run it again to resume).
    """
    from napari_calf.engine.checkpoints import write_json_atomic

    from . import report
    from .scoring import apply_dataset_bias, dataset_bias, rank_issues

    audit_dir = plan.audit_dir
    path = audit_dir / AUDIT_JSON
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CalfInputError(path, f"cannot be read ({exc}).", "delete it to start the "
                                 "audit record afresh (runs and predictions are kept), or give "
                                 "a new --out.") from None
        _check_same_audit(plan, before)
        created = before.get("created", created)
        command = command or before.get("command", "")
    found_truth = find_truth(plan.data_dir, truth)  # fail on a bad --truth before training
    audit_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, _audit_json(plan, settings, tta, command, created))

    if train and plan.study is not None:
        from napari_calf.study.compare import iter_run_study

        outcome = yield from iter_run_study(plan.study, device=None if device == "auto" else device,
                                            stop=stop)
        if "stopped" in outcome.values():
            return None
    check_runs_finished(plan.runs)
    jobs = [(ac.case, ac.runs) for ac in plan.cases.values()]
    done = yield from iter_predict_cases(audit_dir, jobs, tta=tta, device=device,
                                         batch_size=batch_size, stop=stop)
    write_json_atomic(path, _audit_json(plan, settings, tta, command, created))
    if "stopped" in done.values():
        return None

    audits, affines = yield from _iter_score(plan, settings)
    in_sample = {cid: ac.in_sample for cid, ac in plan.cases.items()}
    # the style bias is estimated where the models never saw the labels
    outside = [a for a in audits if not in_sample[a.case_id]] or audits
    bias = dataset_bias(outside)
    audits = apply_dataset_bias(audits, bias["median_mm"] or 0.0)
    ranked = rank_issues(audits)
    rows = report.issue_rows(ranked, affines, in_sample)
    report.write_issues(audit_dir, rows, bias)
    extra: dict[str, Any] = {
        "settings": dataclasses.asdict(settings), "tta": bool(tta), "target": plan.target,
        "folds": None if plan.folds is None else len(plan.folds), "reused_runs": plan.reused,
        "truth": None if found_truth is None else {
            "truth_dir": str(found_truth[0]),
            **report.truth_report(ranked, found_truth[1], bias)}}
    summary = report.summarise(audits, rows, bias, in_sample, extra)
    write_json_atomic(audit_dir / report.SUMMARY_JSON, summary)
    if figure:
        report.plot_top_issues(audit_dir / report.TOP_ISSUES_PNG, ranked,
                               {cid: ac.case for cid, ac in plan.cases.items()}, audit_dir,
                               target=plan.target)
    return AuditResult(audit_dir, ranked, rows, summary, audits)


def _iter_score(plan: AuditPlan, settings: AuditSettings,
                ) -> Generator[Progress, None, tuple[list[CaseAudit], dict[str, Any]]]:
    from napari_calf.calf.areas import binary_target
    from napari_calf.io.volumes import load_volume

    from .predictions import load_prediction
    from .scoring import score_case

    audits, affines = [], {}
    total = len(plan.cases)
    for i, (cid, ac) in enumerate(plan.cases.items(), start=1):
        label = load_volume(ac.case.label, label=True)
        mask = binary_target(label.data, plan.target, ac.case.label_convention)
        prob, std = load_prediction(plan.audit_dir, cid, label.data.shape)
        audits.append(score_case(cid, mask, prob, label.spacing, prob_std=std, settings=settings))
        affines[cid] = label.affine
        yield Progress("score", i, total, cid)
    return audits, affines


def read_audit(folder: str | Path) -> dict[str, Any]:
    """``audit.json`` of an audit folder, with ``issues`` and ``summary`` when written.

    Raises
    ------
    CalfInputError
        The folder holds no ``audit.json``.
    """
    folder = Path(folder)
    path = folder / AUDIT_JSON
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CalfInputError(path, f"cannot be read ({exc}).",
                             "point to the --out folder of `napari-calf audit`.") from None
    for key, name in (("issues", "issues.json"), ("summary", "summary.json")):
        other = folder / name
        doc[key] = json.loads(other.read_text(encoding="utf-8")) if other.is_file() else None
    return doc

"""``napari-calf audit DATA --out AUDIT --folds K``: find suspected annotation errors.

Trains K ordinary ``napari-calf train`` runs (cross-validation by case, runs under
``AUDIT/runs/fold<k>/``), predicts every case with the run that never saw it, and ranks
the regions where those predictions confidently contradict the label. Options of
``train`` are passed to every fold run; ``--devices`` and ``--plan`` work as in
``compare``. Rerun the same command to resume: finished folds and predictions are kept.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ._engine import fraction, positive_int

#: train options the audit sets per fold itself (or that make no sense here).
_NOT_PASSED = frozenset({"help", "data", "out", "resume", "overwrite", "json", "no_progress",
                         "val_cases", "val_fraction"})


def register(subparsers: argparse._SubParsersAction) -> None:
    from .compare import make_train_parser, passed_actions

    p = subparsers.add_parser(
        "audit",
        help="annotation audit: rank suspected label errors with out-of-sample predictions",
        description=(
            "Cross-validate by case (--folds K runs, every case held out once), predict each "
            "case with the run that did not train on it, and rank regions where the "
            "prediction confidently contradicts the label: spurious labels, missed lesions, "
            "slice gaps, boundaries drawn too large or too small beyond the dataset's own "
            "style bias. Writes AUDIT/issues.csv|json, summary.json, top_issues.png and "
            "predictions/ for the napari review. --runs reuses existing runs instead of "
            "training. Rerun the same command to resume."
        ),
    )
    p.add_argument("data", metavar="DATA", type=Path, help="dataset folder with labels")
    p.add_argument("--out", type=Path, metavar="AUDIT", required=True,
                   help="audit folder (created or resumed)")
    a = p.add_argument_group("audit")
    a.add_argument("--folds", type=positive_int, default=5, metavar="K",
                   help="cross-validation folds, each case held out once (default 5)")
    a.add_argument("--runs", type=Path, nargs="+", default=None, metavar="RUN",
                   help="reuse these finished runs instead of training folds; cases a run "
                        "trained on are predicted by the others, or marked in-sample")
    a.add_argument("--tta", action="store_true",
                   help="average over test-time flips (x, y, both); their spread lowers the "
                        "scores of uncertain regions")
    a.add_argument("--truth", type=Path, default=None, metavar="DIR",
                   help="a phantom's truth/ folder (with label_errors.json beside it): adds "
                        "precision/recall of the top issues and the bias error to summary.json "
                        "(automatic when DATA has truth/ and label_errors.json)")
    a.add_argument("--confident", type=fraction, default=0.5, metavar="P",
                   help="probability above which the models say tumour (default 0.5)")
    a.add_argument("--predict-batch-size", type=positive_int, default=16,
                   help="slices per batch when predicting (default 16)")
    a.add_argument("--no-figure", action="store_true", help="no top_issues.png")
    a.add_argument("--devices", default=None, metavar="DEV,DEV",
                   help="train the folds concurrently, one per listed device at a time")
    a.add_argument("--plan", type=Path, default=None, metavar="PLAN.json",
                   help="write the fold runs as `napari-calf train` command lines and stop; "
                        "after they ran, rerun this command without --plan")
    a.add_argument("--overwrite", action="store_true", help="replace an existing --plan file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    t = p.add_argument_group("training options (passed to every fold run; see "
                             "`napari-calf train -h`)")
    train_parser = make_train_parser()
    for action in passed_actions(train_parser, _NOT_PASSED):
        t._add_action(action)
    p.set_defaults(run=run, _train_parser=train_parser, _not_passed=_NOT_PASSED)


def _fold_argv(args: argparse.Namespace, data: Path, run: Any) -> list[str]:
    from .compare import passthrough_argv

    return [str(data), "--out", str(run.run_dir), "--val-cases",
            ",".join(run.config.data.val_cases), *passthrough_argv(args)]


def make_audit_plan(args: argparse.Namespace) -> tuple[Any, dict[str, list[str]]]:
    """The audit plan and each fold run's train argv (checked to describe the same runs)."""
    from ..audit.pipeline import plan_audit, plan_from_runs
    from .compare import config_from_argv, passthrough_argv

    data = Path(args.data).expanduser().resolve()
    out = Path(args.out).expanduser().resolve()
    if args.runs:
        return plan_from_runs(out, data, args.runs), {}
    if args.epochs is None:
        args.epochs = 20
    base = config_from_argv(args, [str(data), "--out", str(out / "runs" / "base"),
                                   *passthrough_argv(args)])
    plan = plan_audit(out, base, folds=args.folds)
    argvs = {}
    for r in plan.study.runs:
        argv = _fold_argv(args, data, r)
        if config_from_argv(args, argv) != r.config:  # pragma: no cover - a bug
            raise RuntimeError(f"fold {r.name}: its command line and the audit plan disagree")
        argvs[r.name] = argv
    return plan, argvs


def audit_command(args: argparse.Namespace, plan: Any) -> str:
    """The command that reproduces (and resumes) this audit."""
    from .compare import passthrough_argv

    argv = ["napari-calf", "audit", str(plan.data_dir), "--out", str(plan.audit_dir)]
    if plan.reused:
        argv += ["--runs", *map(str, plan.runs)]
    else:
        argv += ["--folds", str(len(plan.folds)), *passthrough_argv(args)]
    if args.tta:
        argv.append("--tta")
    if args.truth is not None:
        argv += ["--truth", str(Path(args.truth).expanduser().resolve())]
    if args.confident != 0.5:
        argv += ["--confident", str(args.confident)]
    return shlex.join(argv)


def run(args: argparse.Namespace) -> int:
    from ..audit.scoring import AuditSettings
    from ._runs import hold_folder, run_concurrently, run_in_process, write_commands_file

    plan, argvs = make_audit_plan(args)
    command = audit_command(args, plan)
    if args.plan is not None:
        if plan.study is None:
            from ..errors import CalfConfigError

            raise CalfConfigError("--plan writes fold runs to train; with --runs there is "
                                  "nothing to train. Fix: leave out --plan or --runs.")
        path = write_commands_file(Path(args.plan), plan.study, argvs,
                                   {"tool": "napari-calf audit", "command": command,
                                    "audit_dir": str(plan.audit_dir),
                                    "folds": [list(f) for f in plan.folds]},
                                   command, overwrite=args.overwrite)
        print(f"Wrote {len(plan.study.runs)} fold run command(s) to {path}. Run them anywhere "
              f"(one per job), then: {command}")
        return 0
    with hold_folder(plan.audit_dir, "audit"):  # one audit per folder at a time
        if plan.study is not None:
            from ..study.compare import check_run_matches

            for r in plan.study.runs:
                check_run_matches(r)
            code = (run_concurrently(args, plan.study, argvs) if args.devices
                    else run_in_process(args, plan.study))
            if code:
                return code
        settings = AuditSettings(confident=args.confident)
        return _audit(args, plan, settings, command)


def _audit(args: argparse.Namespace, plan: Any, settings: Any, command: str) -> int:
    from ..audit.pipeline import iter_run_audit
    from . import drain_with_tqdm

    gen = iter_run_audit(plan, train=False, tta=args.tta, device=args.device or "auto",
                         batch_size=args.predict_batch_size, settings=settings,
                         truth=args.truth, command=command, figure=not args.no_figure)
    try:
        result = drain_with_tqdm(gen, "audit", disable=args.no_progress)
    except KeyboardInterrupt:
        gen.close()
        print(f"Stopped. Resume with: {command}", file=sys.stderr)
        return 130
    if result is None:
        print(f"Stopped. Resume with: {command}", file=sys.stderr)
        return 130
    _print_result(result)
    return 0


def _print_result(result: Any) -> None:
    s = result.summary
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v) or "none"
    print(f"{s['n_issues']} suspected issue(s) in {s['n_cases']} case(s) ({counts}); "
          f"{s['n_in_sample']} case(s) in-sample.")
    print(s.get("bias_sentence") or "")
    for row in result.rows[:10]:
        print(f"  #{row['rank']:<3} {row['score']:.2f} {row['kind']:<10} {row['case_id']} "
              f"slices {row['slices'][0]}-{row['slices'][1]}: {row['detail']}")
    truth = s.get("truth")
    if truth:
        top = truth["top_k"]
        bias = truth["systematic_bias"]

        def pct(v: float | None) -> str:
            return "—" if v is None else f"{v:.2f}"

        print(f"Against the injected errors: top-{top['k']} precision {pct(top['precision'])}, "
              f"recall {pct(top['recall'])}")
        for kind, row in top["per_injected_kind"].items():
            print(f"  {kind:<14} injected {row['n']:>3}, found {row['found']:>3} "
                  f"(recall {pct(row['recall'])}, precision {pct(row['precision'])})")
        if bias["injected_mm"] or bias["estimated_mm"] is not None:
            est = bias["estimated_mm"]
            print(f"  systematic bias: injected {bias['injected_mm']:+.1f} mm, estimated "
                  f"{'—' if est is None else f'{est:+.2f} mm'}")
    out = result.audit_dir
    print(f"Issues: {out / 'issues.csv'} (and issues.json, summary.json, top_issues.png). "
          f"Review them in napari, then fine-tune: napari-calf train DATA --labels-from "
          f"{out / 'corrections'} --init RUN")

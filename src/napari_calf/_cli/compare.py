"""``napari-calf compare DATA --out STUDY``: train and compare losses (the comparison study).

Every (architecture, loss, seed) is an ordinary ``napari-calf train`` run under
``STUDY/runs/<arch>__<loss>__seed<k>/``, built from the same command line with only
``--arch``, ``--loss`` and ``--seed`` changed, so compared runs differ only in the loss.
Options of ``train`` (``--epochs``, ``--encoder``, ``--batch-size`` …) are accepted here
and passed to every run.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import Any

from ._engine import positive_int
from ._runs import (command_line, hold_folder, run_concurrently, run_in_process, split_names,
                    write_commands_file)

DEFAULT_LOSSES = "calf,bce,dice,bce-dice,focal,tversky"
DEFAULT_ARCHS = "unet,fpn,deeplabv3"
#: With --truth, the report against the clean labels goes to STUDY/<this>/.
TRUTH_REPORT_DIR = "against-truth"
#: train options that compare sets per run (or that make no sense for a study).
_NOT_PASSED = {"help", "data", "out", "resume", "overwrite", "arch", "loss", "seed", "json",
               "no_progress"}
_PATH_OPTIONS = {"init", "cache_dir", "rules", "labels_from"}


def make_train_parser() -> argparse.ArgumentParser:
    """A fresh ``napari-calf train`` parser (its options are the study's pass-through)."""
    from . import train

    root = argparse.ArgumentParser(prog="napari-calf")
    sub = root.add_subparsers(dest="command")
    train.register(sub)
    parser: argparse.ArgumentParser = sub.choices["train"]
    parser.prog = "napari-calf train"
    return parser


def passed_actions(train_parser: argparse.ArgumentParser,
                   not_passed: set[str] | frozenset[str] = frozenset(_NOT_PASSED),
                   ) -> list[argparse.Action]:
    """The train options a command passes on to every run (all but ``not_passed``)."""
    return [a for a in train_parser._actions if a.dest not in not_passed]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="loss comparison study: train every loss × architecture × seed, then report",
        description=(
            "Train one run per loss, architecture and seed on the same case split, "
            "preprocessing, filtering and schedule (only the loss differs), evaluate each on "
            "its validation cases and write STUDY/summary.csv/.json, paired comparisons "
            "against CALF (bootstrap interval, Wilcoxon), plots and README.md. Rerun the same "
            "command to resume an interrupted study: finished runs are skipped, stopped ones "
            "resume. --plan writes the runs as `napari-calf train` command lines instead "
            "(for a cluster); --collect STUDY reports on whatever runs exist."
        ),
    )
    p.add_argument("data", metavar="DATA", type=Path, nargs="?", help="dataset folder")
    p.add_argument("--out", type=Path, metavar="STUDY", help="study folder (created or resumed)")
    s = p.add_argument_group("study")
    s.add_argument("--losses", default=DEFAULT_LOSSES,
                   help=f"comma-separated loss names (default {DEFAULT_LOSSES})")
    s.add_argument("--archs", default=DEFAULT_ARCHS,
                   help=f"comma-separated architectures (default {DEFAULT_ARCHS})")
    s.add_argument("--seeds", type=positive_int, default=3,
                   help="number of seeds, 0 … N-1; each seed has its own case split (default 3)")
    s.add_argument("--devices", default=None, metavar="DEV,DEV",
                   help="run concurrently, one run per listed device at a time "
                        "(e.g. cuda:0,cuda:1; repeat a device to share it)")
    s.add_argument("--plan", type=Path, default=None, metavar="PLAN.json",
                   help="write the runs as `napari-calf train` command lines and stop")
    s.add_argument("--collect", type=Path, default=None, metavar="STUDY",
                   help="only evaluate and report the runs that exist in STUDY")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing --plan file; write a study into a non-empty "
                        "folder that is not a study; let the report replace files of its "
                        "names that the study did not write (or that were edited since)")
    r = p.add_argument_group("report")
    r.add_argument("--reference", default="calf",
                   help="loss the others are compared with (default calf)")
    r.add_argument("--bucket-thresholds", default=None, metavar="T1,T2",
                   help="ROI-size bucket limits in px (default: tertiles of each seed's "
                        "training split)")
    r.add_argument("--bootstrap", type=positive_int, default=2000,
                   help="bootstrap resamples for the 95%% intervals (default 2000)")
    r.add_argument("--data", dest="collect_data", type=Path, default=None, metavar="DATA",
                   help="with --collect: the dataset, if not where the runs were trained")
    r.add_argument("--eval-batch-size", type=positive_int, default=16,
                   help="slices per batch when evaluating (default 16)")
    r.add_argument("--no-plots", action="store_true", help="no PNG plots (no matplotlib needed)")
    r.add_argument("--truth", type=Path, default=None, metavar="DIR",
                   help="also evaluate every run against the clean labels in DIR (same layout "
                        "as the dataset, e.g. a phantom's truth/): report in STUDY/against-truth/")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    t = p.add_argument_group("training options (passed to every run; see `napari-calf train -h`)")
    train_parser = make_train_parser()
    for action in passed_actions(train_parser):
        t._add_action(action)
    p.set_defaults(run=run, _train_parser=train_parser, _not_passed=frozenset(_NOT_PASSED))


# --------------------------------------------------------------------------- plan


def passthrough_argv(args: argparse.Namespace) -> list[str]:
    """The train options of ``args`` as explicit command-line arguments (every option
    with a value, defaults included, so a run's command line does not depend on the
    defaults of the napari-calf version that executes it). ``args._not_passed`` names
    the options the subcommand sets per run itself."""
    out: list[str] = []
    for action in passed_actions(args._train_parser, args._not_passed):
        value = getattr(args, action.dest, None)
        flag = action.option_strings[0] if action.option_strings else None
        if flag is None or value is None:
            continue
        if action.nargs == 0:  # store_true flags
            if value:
                out.append(flag)
            continue
        if action.dest in _PATH_OPTIONS:
            value = Path(value).expanduser().resolve()
        out += [flag, str(value)]
    return out


def run_argv(args: argparse.Namespace, data: Path, run_dir: Path, arch: str, loss: str,
             seed: int) -> list[str]:
    """``napari-calf train`` arguments of one run (absolute paths, all options)."""
    return [str(data), "--out", str(run_dir), "--arch", arch, "--loss", loss, "--seed",
            str(seed), *passthrough_argv(args)]


def config_from_argv(args: argparse.Namespace, argv: list[str]) -> Any:
    """The RunConfig ``napari-calf train <argv>`` would use (train's own parser and builder)."""
    from .train import build_config

    return build_config(args._train_parser.parse_args(argv))


def make_plan(args: argparse.Namespace) -> tuple[Any, dict[str, list[str]]]:
    """The study plan and each run's train argv; checks they describe the same runs."""
    from ..errors import CalfConfigError
    from ..study.compare import plan_study

    if args.data is None or args.out is None:
        raise CalfConfigError("compare needs DATA and --out STUDY (or --collect STUDY). "
                              "Fix: e.g. napari-calf compare data/ --out study/ --epochs 20")
    if args.epochs is None:
        args.epochs = 20
    data = Path(args.data).expanduser().resolve()
    study = Path(args.out).expanduser().resolve()
    losses = split_names(args.losses, "--losses")
    archs = [a.lower() for a in split_names(args.archs, "--archs")]
    seeds = list(range(args.seeds))
    base = config_from_argv(args, run_argv(args, data, study / "runs" / "base", archs[0],
                                           losses[0], seeds[0]))
    plan = plan_study(study, base, losses=losses, archs=archs, seeds=seeds)
    argvs: dict[str, list[str]] = {}
    for r in plan.runs:
        argv = run_argv(args, data, r.run_dir, r.arch, r.loss, r.seed)
        if config_from_argv(args, argv) != r.config:  # pragma: no cover - a bug, not a user error
            raise RuntimeError(f"run {r.name}: its command line and the study plan disagree")
        argvs[r.name] = argv
    return plan, argvs


def study_command(args: argparse.Namespace, plan: Any) -> str:
    """The compare command that reproduces this study (absolute paths, every option)."""
    argv = ["napari-calf", "compare", str(plan.data_dir), "--out", str(plan.study_dir),
            "--losses", ",".join(plan.losses), "--archs", ",".join(plan.archs),
            "--seeds", str(len(plan.seeds))]
    if args.bucket_thresholds:
        argv += ["--bucket-thresholds", str(args.bucket_thresholds)]
    if args.reference != "calf":
        argv += ["--reference", args.reference]
    if getattr(args, "truth", None) is not None:
        argv += ["--truth", str(Path(args.truth).expanduser().resolve())]
    return shlex.join([*argv, *passthrough_argv(args)])


def study_info(args: argparse.Namespace, plan: Any) -> dict[str, Any]:
    from .. import __version__

    return {
        "tool": "napari-calf compare", "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": study_command(args, plan),
        "study_dir": str(plan.study_dir), **plan.to_dict(),
        "bucket_thresholds": _thresholds(args), "reference": args.reference,
        "train_commands": {r.name: command_line(run_argv(args, plan.data_dir, r.run_dir, r.arch,
                                                         r.loss, r.seed)) for r in plan.runs},
    }


def write_plan(args: argparse.Namespace, plan: Any, argvs: dict[str, list[str]]) -> Path:
    from ..study.compare import write_study_json
    from ..study.report_files import check_study_folder

    check_study_folder(plan.study_dir, overwrite=args.overwrite)
    path = write_commands_file(
        Path(args.plan), plan, argvs, study_info(args, plan),
        shlex.join(["napari-calf", "compare", "--collect", str(plan.study_dir)]),
        overwrite=args.overwrite)
    write_study_json(plan.study_dir, study_info(args, plan))
    return path


def _thresholds(args: argparse.Namespace) -> list[float] | None:
    from ..errors import CalfConfigError

    if not args.bucket_thresholds:
        return None
    try:
        t1, t2 = (float(x) for x in str(args.bucket_thresholds).split(","))
    except ValueError:
        raise CalfConfigError(f"--bucket-thresholds {args.bucket_thresholds!r} is not two "
                              "numbers. Fix: e.g. --bucket-thresholds 100,400") from None
    if not 0 <= t1 <= t2:
        raise CalfConfigError(f"--bucket-thresholds {t1:g},{t2:g}: need 0 <= T1 <= T2. "
                              "Fix: give the small/medium limit first.")
    return [t1, t2]


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    if args.collect is not None:
        return collect(args, Path(args.collect))
    plan, argvs = make_plan(args)
    if args.plan is not None:
        path = write_plan(args, plan, argvs)
        print(f"Wrote {len(plan.runs)} run command(s) to {path}. Run them anywhere (one per "
              f"job), then: napari-calf compare --collect {plan.study_dir}")
        return 0
    from ..study.compare import check_run_matches, write_study_json
    from ..study.report_files import check_study_folder

    check_study_folder(plan.study_dir, overwrite=args.overwrite)  # someone's folder: refuse
    with hold_folder(plan.study_dir, "compare"):  # one compare per study at a time
        for r in plan.runs:
            check_run_matches(r)
        write_study_json(plan.study_dir, study_info(args, plan))
        if args.devices:
            code = run_concurrently(args, plan, argvs)
        else:
            code = run_in_process(args, plan)
        if code:
            return code
        return _collect(args, plan.study_dir)


# --------------------------------------------------------------------------- collect


def collect(args: argparse.Namespace, study_dir: Path) -> int:
    """``compare --collect STUDY``: the report, while no other compare writes there."""
    study_dir = Path(study_dir).expanduser().resolve()
    if not study_dir.is_dir():
        return _collect(args, study_dir)  # the collector names the missing folder
    with hold_folder(study_dir, "compare"):
        return _collect(args, study_dir)


def _collect(args: argparse.Namespace, study_dir: Path) -> int:
    from ..study.collect import iter_collect
    from ..study.compare import read_study_json
    from ..study.report import write_report
    from . import drain_with_tqdm

    study_dir = Path(study_dir).expanduser().resolve()
    info = read_study_json(study_dir) or {"study_dir": str(study_dir)}
    info["study_dir"] = str(study_dir)
    thresholds = _thresholds(args) or info.get("bucket_thresholds")
    records, notes = drain_with_tqdm(
        iter_collect(study_dir, data_dir=args.collect_data, device=args.device or "auto",
                     batch_size=args.eval_batch_size),
        "evaluate", disable=args.no_progress)
    for note in notes:
        print(f"note: {note}")
    summary = write_report(study_dir, records, notes=notes, thresholds=thresholds, info=info,
                           reference=args.reference, n_resamples=args.bootstrap,
                           plots=not args.no_plots, overwrite=args.overwrite)
    _print_summary(summary)
    print(f"Report: {study_dir / 'README.md'} (summary.csv, summary.json, paired.csv"
          + (", plots/" if summary.get("plots") else "") + ")")
    if args.truth is not None:
        truth = Path(args.truth).expanduser().resolve()
        records, notes = drain_with_tqdm(
            iter_collect(study_dir, data_dir=args.collect_data, device=args.device or "auto",
                         batch_size=args.eval_batch_size, labels_from=truth),
            "evaluate (truth)", disable=args.no_progress)
        notes = [f"every run is scored against the labels in {truth}, not the dataset's own "
                 "labels it trained on", *notes]
        out = study_dir / TRUTH_REPORT_DIR
        out.mkdir(parents=True, exist_ok=True)
        summary = write_report(out, records, notes=notes, thresholds=thresholds,
                               info={**info, "truth_dir": str(truth)}, reference=args.reference,
                               n_resamples=args.bootstrap, plots=not args.no_plots)
        print(f"Against the labels in {truth}:")
        _print_summary(summary)
        print(f"Report: {out / 'README.md'}")
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    def pm(row: dict[str, Any], m: str) -> str:
        mean, sd = row.get(f"{m}_mean"), row.get(f"{m}_sd")
        return "—" if mean is None else f"{mean:.3f}" + ("" if sd is None else f"±{sd:.3f}")

    print(f"{'arch':<10} {'loss':<9} {'seeds':>5} {'Dice':>13} {'HD95mm':>13} "
          f"{'FP-empty':>13} {'Dice small':>13} {'lesion Dice':>13} {'lesion F1':>13}")
    for r in summary["rows"]:
        print(f"{r['arch']:<10} {r['loss']:<9} {r['n_seeds']:>5} {pm(r, 'dice'):>13} "
              f"{pm(r, 'hd95_mm'):>13} {pm(r, 'fp_rate_empty'):>13} {pm(r, 'dice_small'):>13} "
              f"{pm(r, 'lesion_dice'):>13} {pm(r, 'lesion_f1'):>13}")
    for p in summary.get("paired") or []:
        print(f"{p['arch']}: {p['verdict']}")

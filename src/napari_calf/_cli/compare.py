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
import sys
import time
from pathlib import Path
from typing import Any

from ._engine import fmt, positive_int

DEFAULT_LOSSES = "calf,bce,dice,bce-dice,focal,tversky"
DEFAULT_ARCHS = "unet,fpn,deeplabv3"
#: train options that compare sets per run (or that make no sense for a study).
_NOT_PASSED = {"help", "data", "out", "resume", "overwrite", "arch", "loss", "seed", "json",
               "no_progress"}
_PATH_OPTIONS = {"init", "cache_dir", "rules"}


def _train_parser() -> argparse.ArgumentParser:
    """A fresh ``napari-calf train`` parser (its options are the study's pass-through)."""
    from . import train

    root = argparse.ArgumentParser(prog="napari-calf")
    sub = root.add_subparsers(dest="command")
    train.register(sub)
    parser: argparse.ArgumentParser = sub.choices["train"]
    parser.prog = "napari-calf train"
    return parser


def _passed_actions(train_parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in train_parser._actions if a.dest not in _NOT_PASSED]


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
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    t = p.add_argument_group("training options (passed to every run; see `napari-calf train -h`)")
    train_parser = _train_parser()
    for action in _passed_actions(train_parser):
        t._add_action(action)
    p.set_defaults(run=run, _train_parser=train_parser)


# --------------------------------------------------------------------------- plan


def _split_names(text: str, what: str) -> list[str]:
    from ..errors import CalfConfigError

    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise CalfConfigError(f"{what} is empty. Fix: give comma-separated names.")
    return names


def passthrough_argv(args: argparse.Namespace) -> list[str]:
    """The train options of ``args`` as explicit command-line arguments (every option
    with a value, defaults included, so a run's command line does not depend on the
    defaults of the napari-calf version that executes it)."""
    out: list[str] = []
    for action in _passed_actions(args._train_parser):
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
    losses = _split_names(args.losses, "--losses")
    archs = [a.lower() for a in _split_names(args.archs, "--archs")]
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


def command_line(argv: list[str]) -> str:
    return shlex.join(["napari-calf", "train", *argv])


def study_command(args: argparse.Namespace, plan: Any) -> str:
    """The compare command that reproduces this study (absolute paths, every option)."""
    argv = ["napari-calf", "compare", str(plan.data_dir), "--out", str(plan.study_dir),
            "--losses", ",".join(plan.losses), "--archs", ",".join(plan.archs),
            "--seeds", str(len(plan.seeds))]
    if args.bucket_thresholds:
        argv += ["--bucket-thresholds", str(args.bucket_thresholds)]
    if args.reference != "calf":
        argv += ["--reference", args.reference]
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
    from ..engine.checkpoints import write_json_atomic
    from ..errors import CalfFileExistsError
    from ..study.compare import write_study_json
    from ..study.report_files import check_study_folder

    path = Path(args.plan).expanduser()
    if path.exists() and not args.overwrite:
        raise CalfFileExistsError(path)
    check_study_folder(plan.study_dir, overwrite=args.overwrite)
    commands = [command_line(argvs[r.name]) for r in plan.runs]
    n = len(commands)
    doc = {
        **study_info(args, plan),
        "commands": commands,
        "runs": [{"index": i, "name": r.name, "arch": r.arch, "loss": r.loss, "seed": r.seed,
                  "run_dir": str(r.run_dir), "argv": ["train", *argvs[r.name]],
                  "command": commands[i]} for i, r in enumerate(plan.runs)],
        "collect": shlex.join(["napari-calf", "compare", "--collect", str(plan.study_dir)]),
        "slurm": (f"sbatch --array=0-{n - 1} job.sh, where job.sh runs: "
                  f"eval \"$(jq -r \".commands[$SLURM_ARRAY_TASK_ID]\" {path.resolve()})\""),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
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
    for r in plan.runs:
        check_run_matches(r)
    write_study_json(plan.study_dir, study_info(args, plan))
    if args.devices:
        code = _run_concurrently(args, plan, argvs)
    else:
        code = _run_in_process(args, plan)
    if code:
        return code
    return collect(args, plan.study_dir)


def _run_in_process(args: argparse.Namespace, plan: Any) -> int:
    from tqdm.auto import tqdm

    from ..study.compare import StudyRunEvent, iter_run_study
    from ..engine.training_events import EpochEnd, TrainStarted, TrainStep

    gen = iter_run_study(plan)
    bar = None
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                outcome = stop.value
                break
            if isinstance(ev, StudyRunEvent):
                if bar is not None:
                    bar.close()
                    bar = None
                tail = f" ({ev.message})" if ev.message else ""
                tqdm.write(f"[{ev.index}/{ev.total}] {ev.name}: {ev.action}{tail}")
            elif isinstance(ev, TrainStarted):
                sel = ev.selection or {}
                tqdm.write(f"  split {len(ev.train_cases)}/{len(ev.val_cases)} cases, "
                           f"CALF selection {sel.get('transform')}, loss "
                           f"{(ev.loss or {}).get('formula') or (ev.loss or {}).get('name')}")
            elif isinstance(ev, TrainStep):
                if bar is None:
                    bar = tqdm(total=ev.total_steps, desc="  train", unit="step",
                               disable=args.no_progress, leave=False)
                bar.n = ev.step
                bar.set_postfix_str(f"epoch {ev.epoch}/{ev.epochs}, loss {ev.loss:.4f}",
                                    refresh=True)
            elif isinstance(ev, EpochEnd):
                tqdm.write(f"  epoch {ev.epoch}/{ev.epochs}: Dice {ev.dice:.4f}, FP on "
                           f"tumour-free slices {fmt(ev.fp_rate_empty)}")
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        gen.close()  # the running training saves its resume state
        print("Stopped. Run the same command again to resume the study.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    failed = {k: v for k, v in outcome.items() if v.startswith("failed")}
    for name, why in failed.items():
        print(f"{name}: {why}", file=sys.stderr)
    if "stopped" in outcome.values():
        return 130
    return 0


def _run_concurrently(args: argparse.Namespace, plan: Any, argvs: dict[str, list[str]]) -> int:
    from ..study.compare import LOGS_DIR, run_status
    from ..study.jobs import iter_run_commands

    devices = _split_names(args.devices, "--devices")
    exe = [sys.executable, "-m", "napari_calf._cli.main", "train"]
    jobs = []
    for r in plan.runs:
        status = run_status(r.run_dir)
        if status == "finished":
            print(f"{r.name}: finished earlier, skipped")
        elif status == "resumable":
            jobs.append((r.name, [*exe, "--resume", str(r.run_dir)]))
        else:
            jobs.append((r.name, [*exe, *argvs[r.name], *(["--overwrite"] if status == "restart"
                                                          else [])]))
    log_dir = plan.study_dir / LOGS_DIR
    codes: dict[str, int] = {}
    gen = iter_run_commands(jobs, devices, log_dir=log_dir)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                codes = stop.value
                break
            if ev.action == "start":
                print(f"{ev.name}: started on {ev.device} (log {ev.log})")
            else:
                print(f"{ev.name}: {'done' if ev.returncode == 0 else f'exit {ev.returncode}'} "
                      f"on {ev.device}")
    except KeyboardInterrupt:
        gen.close()  # SIGINT to every running training: they save their resume state
        print("Stopped. Run the same command again to resume the study.", file=sys.stderr)
        return 130
    bad = {k: c for k, c in codes.items() if c != 0}
    for name, code in bad.items():
        print(f"{name}: failed (exit {code}); see {log_dir / (name + '.log')}", file=sys.stderr)
    return 0  # report on the runs that finished; failures were listed


# --------------------------------------------------------------------------- collect


def collect(args: argparse.Namespace, study_dir: Path) -> int:
    from ..study.compare import iter_collect, read_study_json
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

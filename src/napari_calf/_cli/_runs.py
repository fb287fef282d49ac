"""Training many runs from one command: in process, one per device, or as a plan file.

Shared by ``compare`` (a loss study) and ``audit`` (cross-validation folds): both plan
ordinary ``napari-calf train`` runs (a :class:`~napari_calf.study.compare.StudyPlan`)
and hand them to these drivers.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ._engine import fmt


def split_names(text: str, what: str) -> list[str]:
    from ..errors import CalfConfigError

    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise CalfConfigError(f"{what} is empty. Fix: give comma-separated names.")
    return names


def hold_folder(folder: Path, tool: str) -> Any:
    """Hold a study or audit folder for this command (released when the process ends):
    two ``compare`` (or ``audit``) commands on one folder would each see the other's runs
    in progress, report them as failed and write the same report files."""
    from ..engine.run_lock import lock_folder

    lock = lock_folder(folder, doing=f"is running `napari-calf {tool}` on this folder",
                       fix="wait until it ends or stop it (Ctrl-C). To share a study's runs "
                           "among machines, use --plan (one train command per job) and "
                           "collect the results afterwards.")
    if lock.note:
        print(f"note: {lock.note}", file=sys.stderr)
    return lock


def command_line(argv: list[str]) -> str:
    return shlex.join(["napari-calf", "train", *argv])


def write_commands_file(path: Path, plan: Any, argvs: dict[str, list[str]],
                        info: dict[str, Any], collect: str, *, overwrite: bool) -> Path:
    """A plan file of ``napari-calf train`` command lines (one per run, for a cluster's
    job array) and the command that gathers their results afterwards."""
    from ..engine.checkpoints import write_json_atomic
    from ..errors import CalfFileExistsError

    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise CalfFileExistsError(path)
    commands = [command_line(argvs[r.name]) for r in plan.runs]
    n = len(commands)
    doc = {
        **info,
        "commands": commands,
        "runs": [{"index": i, "name": r.name, "arch": r.arch, "loss": r.loss, "seed": r.seed,
                  "run_dir": str(r.run_dir), "argv": ["train", *argvs[r.name]],
                  "command": commands[i]} for i, r in enumerate(plan.runs)],
        "collect": collect,
        "slurm": (f"sbatch --array=0-{n - 1} job.sh, where job.sh runs: "
                  f"eval \"$(jq -r \".commands[$SLURM_ARRAY_TASK_ID]\" {path.resolve()})\""),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    return path


def run_in_process(args: argparse.Namespace, plan: Any) -> int:
    """Train the plan's runs here, one after another (tqdm); 130 when stopped."""
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


def run_concurrently(args: argparse.Namespace, plan: Any, argvs: dict[str, list[str]]) -> int:
    """Run the plan's train command lines, one per ``args.devices`` entry at a time."""
    from ..study.compare import LOGS_DIR, run_status
    from ..study.jobs import iter_run_commands

    devices = split_names(args.devices, "--devices")
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

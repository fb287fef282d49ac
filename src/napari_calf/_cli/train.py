"""``napari-calf train DATA --out RUN``: train a segmentation model with CALF (or a named loss)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ._engine import add_filter_args, add_json_arg, add_target_args, fmt, non_negative_float, non_negative_int, open_fraction, positive_float, positive_int

LOSS_CHOICES = ("calf", "fisher", "logit", "arcsine", "log10", "ln", "bce-dice", "bce", "dice",
                "focal", "tversky", "lovasz")  # = losses.LOSS_NAMES (not imported: fast --help)

#: Options a resumed run may change (applied and said on stderr); DATA may be given too.
RESUME_MAY_CHANGE = ("epochs", "device", "patience", "cache_dir", "store")
#: Options that shape a run's numbers: with --resume they must equal the run's own value.
#: dest -> (config part, field, how the option's value reads as that field)
RESUME_FIXED: dict[str, tuple[str, str, Any]] = {
    "arch": ("model", "arch", lambda v: str(v).lower()),
    "encoder": ("model", "encoder", str),
    "encoder_depth": ("model", "encoder_depth", int),
    "encoder_weights": ("model", "encoder_weights", lambda v: v),
    "init": ("model", "init", lambda v: os.path.abspath(os.path.expanduser(v))),
    "loss": ("train", "loss", str),
    "dice_weight": ("train", "dice_weight", float),
    "dice_mode": ("train", "dice_mode", str),
    "batch_size": ("train", "batch_size", int),
    "lr": ("train", "lr", float),
    "weight_decay": ("train", "weight_decay", float),
    "no_augment": ("train", "augment", lambda v: not v),
    "seed": ("train", "seed", int),
    "target": ("data", "target", str),
    "val_fraction": ("data", "val_fraction", float),
    "max_slices_per_case": ("data", "max_slices_per_case", lambda v: v),
    "unit": ("data", "unit", str),
    "empty_fraction": ("data", "empty_fraction", float),
    "min_area": ("data", "min_area", lambda v: v),
    "outlier_iqr": ("data", "outlier_iqr", lambda v: v),
    "drop_outliers": ("data", "drop_outliers", bool),
    "rules": ("data", "rules_path", lambda v: os.path.abspath(os.path.expanduser(v))),
}
#: Namespace attribute listing the options typed on the command line (defaults are not).
GIVEN = "_given_options"


class _RecordsGiven:
    """Mixed into an option's action: notes in the namespace that the option was typed, so
    --resume can tell an option given (even with its default value) from one left out."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)  # type: ignore[misc]
        setattr(namespace, GIVEN, getattr(namespace, GIVEN, frozenset()) | {self.dest})  # type: ignore[attr-defined]


_RECORDING: dict[type, type] = {}


def _record_given(parser: argparse.ArgumentParser, dests: set[str]) -> None:
    for action in parser._actions:
        if action.dest in dests and action.option_strings:
            cls = type(action)
            if cls not in _RECORDING:
                _RECORDING[cls] = type(f"Recorded{cls.__name__}", (_RecordsGiven, cls), {})
            action.__class__ = _RECORDING[cls]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a segmentation model (CALF loss by default)",
        description=(
            "Split DATA by case, measure the training split's tumour sizes, let CALF pick the "
            "loss (or use --loss), and train a segmentation-models-pytorch network on axial "
            "slices. Writes a run folder: model.safetensors (best), last.safetensors, run.json "
            "(run card), history.csv and resume state. Ctrl-C stops cleanly; continue with "
            "--resume RUN."
        ),
    )
    p.add_argument("data", metavar="DATA", type=Path, nargs="?",
                   help="dataset folder (with --resume: only if the data has moved)")
    p.add_argument("--out", type=Path, metavar="RUN", help="run folder to create")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue a stopped run where it stopped, with its own settings; "
                        "--epochs, --device, --patience, --cache-dir, --store and DATA may "
                        "change, other options are refused if they differ from the run's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run files in an existing --out folder (and an existing --json)")
    m = p.add_argument_group("model")
    m.add_argument("--arch", default="unet",
                   help="smp architecture: unet, unetplusplus, fpn, deeplabv3, deeplabv3plus, "
                        "linknet, pspnet, manet, pan … (default unet)")
    m.add_argument("--encoder", default="resnet34", help="smp encoder name (default resnet34)")
    m.add_argument("--encoder-depth", type=int, choices=(3, 4, 5), default=5,
                   help="encoder stages; 3 is smaller and faster (default 5)")
    m.add_argument("--encoder-weights", choices=("imagenet",), default=None,
                   help="download ImageNet weights for the encoder (default: none, offline)")
    m.add_argument("--init", type=Path, metavar="CKPT",
                   help="fine-tune from a napari-calf run folder or model.safetensors")
    o = p.add_argument_group("optimisation")
    o.add_argument("--loss", choices=LOSS_CHOICES, default="calf",
                   help="calf (selected from the data, default) or a fixed loss")
    o.add_argument("--dice-weight", type=non_negative_float, default=1.0,
                   help="λ in CE_T + λ·Dice (default 1; 0 = transformed CE only)")
    o.add_argument("--dice-mode", choices=("batch", "sample"), default="batch",
                   help="Dice pooled over the batch (default) or per sample")
    o.add_argument("--epochs", type=positive_int, default=None,
                   help="default 20 (with --resume: the run's own, or more to extend it)")
    o.add_argument("--batch-size", type=positive_int, default=16, help="default 16")
    o.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    o.add_argument("--weight-decay", type=non_negative_float, default=1e-4, help="default 1e-4")
    o.add_argument("--patience", type=non_negative_int, default=10,
                   help="stop after this many epochs without a better validation Dice; 0 = never "
                        "(default 10)")
    o.add_argument("--no-augment", action="store_true", help="no flips/rotations/intensity jitter")
    o.add_argument("--seed", type=non_negative_int, default=0, help="default 0")
    o.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    d = p.add_argument_group("data")
    add_target_args(d)
    d.add_argument("--val-fraction", type=open_fraction, default=0.2,
                   help="share of cases held out for validation (at least one; default 0.2)")
    d.add_argument("--val-cases", default=None, metavar="ID,ID",
                   help="validate on exactly these cases (comma-separated ids); the others "
                        "train and --val-fraction is not used")
    d.add_argument("--labels-from", type=Path, default=None, metavar="DIR",
                   help="use DIR/<case_id>/<label file name> as a case's label where it "
                        "exists (an audit's corrections/ folder); corrected cases always "
                        "train, their corrected slices are always in the training set, and "
                        "the run card lists them. With --init, the corrected cases are "
                        "scored before and after")
    d.add_argument("--max-slices-per-case", type=positive_int, default=None, metavar="N",
                   help="train on at most N slices per case (sampled with the seed)")
    d.add_argument("--unit", choices=("px", "mm2"), default="px", help="area unit for the statistics")
    d.add_argument("--cache-dir", type=Path, default=None,
                   help="where large slice stores are cached (default ~/.cache/napari-calf)")
    d.add_argument("--store", choices=("auto", "memory", "disk"), default="auto",
                   help="keep prepared slices in memory, on disk (memmap), or decide (default)")
    add_filter_args(p)
    add_json_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _record_given(p, set(RESUME_MAY_CHANGE) | set(RESUME_FIXED))
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> Any:
    """A :class:`~napari_calf.config.RunConfig` from the parsed arguments."""
    from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ..errors import CalfConfigError

    if args.resume:
        return resume_plan(args).config
    if args.data is None or args.out is None:
        raise CalfConfigError(
            "train needs DATA and --out RUN (or --resume RUN). "
            "Fix: e.g. napari-calf train data/ --out runs/first"
        )
    data = DataConfig(
        data_dir=str(args.data), target=args.target, unit=args.unit,
        empty_fraction=args.empty_fraction, min_area=args.min_area,
        outlier_iqr=args.outlier_iqr, drop_outliers=args.drop_outliers,
        val_fraction=args.val_fraction, max_slices_per_case=args.max_slices_per_case,
        cache_dir=None if args.cache_dir is None else str(args.cache_dir), store=args.store,
        rules_path=None if args.rules is None else str(args.rules),
        val_cases=_val_cases(args.val_cases),
        labels_from=None if args.labels_from is None else str(Path(args.labels_from).resolve()),
    )
    model = ModelConfig(arch=args.arch, encoder=args.encoder, encoder_weights=args.encoder_weights,
                        encoder_depth=args.encoder_depth,
                        init=None if args.init is None else str(args.init))
    train = TrainConfig(
        loss=args.loss, dice_weight=args.dice_weight, dice_mode=args.dice_mode,
        epochs=args.epochs or 20, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, patience=args.patience or None, seed=args.seed,
        device=args.device, augment=not args.no_augment,
    )
    return RunConfig(data=data, model=model, train=train, out_dir=str(args.out),
                     overwrite=args.overwrite)


def resume_plan(args: argparse.Namespace) -> Any:
    """How ``train --resume RUN [DATA]`` continues (an ``engine.training.ResumePlan``).

    Raises
    ------
    CalfConfigError
        An option that shapes the run's numbers was given with another value than the
        run's own (each named with both values).
    """
    from ..engine.training import plan_resume
    from ..errors import CalfConfigError

    if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise CalfConfigError("--resume continues in its own folder; leave out --out.")
    given = getattr(args, GIVEN, frozenset())
    changes = {dest: getattr(args, dest) for dest in RESUME_MAY_CHANGE if dest in given}
    plan = plan_resume(args.resume, data_dir=args.data, **changes)
    own = plan.config.to_dict()
    refused = []
    for dest in sorted(given & set(RESUME_FIXED)):
        part, field, read = RESUME_FIXED[dest]
        value, before = read(getattr(args, dest)), own[part][field]
        if value != before and not (isinstance(before, str) and str(value).lower() == before.lower()):
            refused.append(f"{_flag(dest)} {getattr(args, dest)} (the run: {before})")
    if refused:
        raise CalfConfigError(
            f"--resume continues {args.resume} with the settings it was started with, but "
            f"these options would change them: {', '.join(refused)}. Fix: leave them out "
            "(only --epochs, --device, --patience, --cache-dir, --store and DATA may change "
            f"on a resume), or start a new run with them (--init {args.resume} starts from "
            "its weights)."
        )
    return plan


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _resume_lines(args: argparse.Namespace, plan: Any) -> list[str]:
    """What the user should read before a resume starts (stderr)."""
    applied = [f"{_flag(k) if k != 'data_dir' else 'DATA'} {after} (the run had {before})"
               for k, (before, after) in plan.changes.items()]
    lines = [f"Resuming {args.resume} with its own settings"
             + (f"; applying {', '.join(applied)}." if applied else ".")]
    return lines + [f"note: {note}" for note in plan.notes]


def _val_cases(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    ids = tuple(t.strip() for t in str(text).split(",") if t.strip())
    if not ids:
        from ..errors import CalfConfigError

        raise CalfConfigError("--val-cases is empty. Fix: give comma-separated case ids.")
    return ids


def _epoch_line(ev: Any) -> str:
    sizes = ", ".join(f"{k} {fmt(v)}" for k, v in ev.dice_by_size.items())
    mark = " *best*" if ev.improved else ""
    return (f"epoch {ev.epoch}/{ev.epochs}: train loss {ev.train_loss:.4f}, val loss "
            f"{ev.val_loss:.4f}, Dice {ev.dice:.4f} ({sizes}), FP on tumour-free slices "
            f"{fmt(ev.fp_rate_empty)}, {ev.transform}, {ev.seconds:.0f}s{mark}")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..events import Progress
    from ..engine.training import iter_train
    from ..engine.training_events import EpochEnd, TrainNotice, TrainStarted, TrainStep
    from ._engine import clean_json, write_json_output

    if args.resume:
        plan = resume_plan(args)
        config = plan.config
        for line in _resume_lines(args, plan):
            print(line, file=sys.stderr)
    else:
        config = build_config(args)
    if args.json and args.json != "-" and Path(args.json).exists() and not args.overwrite:
        from ..errors import CalfFileExistsError

        raise CalfFileExistsError(args.json)  # before hours of training, not after
    # First Ctrl-C: stop cleanly at the next batch (best + last checkpoints and resume state
    # kept); a second one aborts at once.
    interrupts = {"n": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        interrupts["n"] += 1
        if interrupts["n"] > 1:
            raise KeyboardInterrupt
        tqdm.write("Stopping at the next batch (press Ctrl-C again to abort now) ...")

    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    gen = iter_train(config, stop=lambda: interrupts["n"] > 0)
    bar = None
    prep = None
    prep_stage = None
    started = None
    quiet = args.no_progress
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if isinstance(ev, Progress):
                if prep is None or prep_stage != ev.stage:
                    if prep is not None:
                        prep.close()
                    prep_stage = ev.stage
                    prep = tqdm(total=ev.total, desc=ev.stage, unit="case", disable=quiet,
                                leave=False)
                prep.n = ev.current
                prep.set_postfix_str(ev.message, refresh=True)
            elif isinstance(ev, TrainStarted):
                if prep is not None:
                    prep.close()
                started = ev
                _print_start(ev)
            elif isinstance(ev, TrainStep):
                if bar is None:
                    bar = tqdm(total=ev.batches, desc=f"epoch {ev.epoch}/{ev.epochs}",
                               unit="batch", disable=quiet, leave=False)
                bar.n = ev.batch
                eta = "" if ev.eta_s is None else f", run ETA {ev.eta_s / 60:.1f} min"
                bar.set_postfix_str(f"loss {ev.loss:.4f}, lr {ev.lr:.2e}, "
                                    f"{ev.images_per_s:.1f} img/s{eta}", refresh=True)
            elif isinstance(ev, EpochEnd):
                if bar is not None:
                    bar.close()
                    bar = None
                tqdm.write(_epoch_line(ev))
            elif isinstance(ev, TrainNotice):
                tqdm.write(f"note: {ev.message}")
    except KeyboardInterrupt:
        for b in (bar, prep):
            if b is not None:
                b.close()
        gen.close()  # saves last.safetensors + resume state at a consistent point
        out = config.resume or config.out_dir
        print(f"Stopped. Continue with: napari-calf train --resume {out}", file=sys.stderr)
        return 130
    finally:
        for b in (bar, prep):
            if b is not None:
                b.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if result.stopped_by_user:
        print(f"Stopped by request. Continue with: napari-calf train --resume {result.run_dir}",
              file=sys.stderr)
    why = ("stopped early (no improvement for "
           f"{config.train.patience} epochs)" if result.stopped_early else
           "stopped" if result.stopped_by_user else "finished")
    print(f"Training {why} in {result.seconds / 60:.1f} min: best validation Dice "
          f"{fmt(result.best_dice, 4)} at epoch {result.best_epoch}. Run folder: {result.run_dir}")
    summary = {
        "run_dir": str(result.run_dir),
        "best_dice": result.best_dice,
        "best_epoch": result.best_epoch,
        "epochs_done": result.epochs_done,
        "steps_done": result.steps_done,
        "stopped_early": result.stopped_early,
        "stopped_by_user": result.stopped_by_user,
        "seconds": result.seconds,
        "history": list(result.history),
        "device": None if started is None else started.device,
        "loss": None if started is None else dict(started.loss),
        "selection": None if started is None else started.selection,
        "split": None if started is None else {"train": list(started.train_cases),
                                               "val": list(started.val_cases)},
    }
    if config.data.labels_from:
        summary["corrections"] = _report_corrections(result.run_dir, config, args)
    write_json_output(args.json, clean_json(summary), overwrite=args.overwrite)
    return 0


def _report_corrections(run_dir: Path, config: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Print which labels came from --labels-from and, with --init, the corrected cases'
    Dice against their corrected labels before (the --init run) and after (this run)."""
    from ..engine.checkpoints import RUN_CARD, read_json
    from ..study.evaluation import iter_evaluate_run
    from . import drain_with_tqdm

    card = read_json(Path(run_dir) / RUN_CARD)
    info = (card.get("data") or {}).get("labels_from") or {}
    rows = [r for r in info.get("cases") or [] if r.get("voxels_changed")]
    print(f"Labels from {info.get('dir')}: {len(rows)} corrected case(s), "
          f"{sum(len(r['slices']) for r in rows)} corrected slice(s), always trained on.")
    out: dict[str, Any] = {"cases": [r["case_id"] for r in rows]}
    init = config.model.init
    if not rows or not init:
        return out
    ids = [r["case_id"] for r in rows]
    scores = {}
    for name, run in (("before", Path(init)), ("after", Path(run_dir))):
        if run.is_file():
            run = run.parent
        ev = drain_with_tqdm(iter_evaluate_run(run, config.data.data_dir, case_ids=ids,
                                               device=config.train.device,
                                               labels_from=config.data.labels_from),
                             f"score {name}", disable=args.no_progress)
        scores[name] = {r["case_id"]: r["dice"] for r in ev.cases}
    trained = {r["case_id"] for r in rows if r.get("in_training_split")}
    print("Corrected cases, Dice against the corrected labels (a training case's 'after' is "
          "in-sample):")
    for cid in ids:
        print(f"  {cid:<28} before {fmt(scores['before'].get(cid))}  after "
              f"{fmt(scores['after'].get(cid))}  ({'training' if cid in trained else 'validation'})")
    out["dice_before"], out["dice_after"] = scores["before"], scores["after"]
    return out


def _print_start(ev: Any) -> None:
    sel = ev.selection or {}
    loss = ev.loss or {}
    f = ev.filtering or {}
    print(f"Device: {ev.device} ({ev.device_reason})")
    print(f"Split by case: {len(ev.train_cases)} training case(s) ({ev.train_slices} slices), "
          f"{len(ev.val_cases)} validation case(s) ({ev.val_slices} slices)")
    print(f"Filtering (training split): kept {f.get('kept')} of {f.get('slices')} slices, "
          f"dropped {f.get('dropped')}, flagged {f.get('flagged')}")
    print(f"CALF selection: {sel.get('transform')} ({sel.get('reason')})")
    print(f"Loss in force: {loss.get('formula') or loss.get('name')}")
    model = ev.model or {}
    print(f"Model: {model.get('arch')}-{model.get('encoder')} (depth {model.get('encoder_depth')}, "
          f"{model.get('parameters', 0) / 1e6:.1f} M parameters); {ev.epochs} epochs × "
          f"{ev.steps_per_epoch} steps of {ev.batch_size}")
    for note in ev.notes:
        print(f"note: {note}")

"""``napari-calf evaluate RUN DATA``: per-case and per-size-bucket metrics of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._engine import add_channel_order_arg, add_json_arg, fmt, positive_int

def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Dice, IoU, precision, recall, HD95 and FP rate of a run on labelled cases",
        description=(
            "Predict every labelled case in DATA with the run and compare with its label: "
            "per case (Dice, IoU, precision, recall, HD95 in mm, false-positive rate on "
            "tumour-free slices) and per ROI-size bucket of the slices (small/medium/large, "
            "by the training split's tertiles). Cases the run trained on are marked."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder made by `napari-calf train`")
    p.add_argument("data", metavar="DATA", type=Path, help="dataset or case folder with labels")
    p.add_argument("--batch-size", type=positive_int, default=16, help="slices per batch (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    add_channel_order_arg(p)
    add_json_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``evaluate`` reports (JSON-safe), from :func:`evaluation.iter_evaluate_run`
    (the same loop the comparison study uses)."""
    from ..study.evaluation import CASE_METRIC_KEYS, iter_evaluate_run
    from ..calf.metrics import SIZE_BUCKETS
    from . import drain_with_tqdm

    ev = drain_with_tqdm(
        iter_evaluate_run(args.run_dir, args.data, batch_size=args.batch_size, device=args.device,
                          channel_order=args.channel_order),
        "evaluate", disable=args.no_progress,
    )
    rows = ev.cases
    held_out = [r for r in rows if not r["in_training_split"]]
    return {
        "run": str(args.run_dir),
        "data": ev.data_dir,
        "target": ev.target,
        "cases": rows,
        "mean": _means(rows, CASE_METRIC_KEYS),
        "mean_held_out": (_means(held_out, CASE_METRIC_KEYS)
                          if held_out and len(held_out) < len(rows) else None),
        "n_in_training_split": len(rows) - len(held_out),
        "size_buckets": ev.bucket_summary(),
        "bucket_names": list(SIZE_BUCKETS),
    }


def _means(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(sum(values) / len(values)) if values else None
    return out


def run(args: argparse.Namespace) -> int:
    from ..errors import CalfFileExistsError
    from ._engine import clean_json, write_json_output

    if args.json and args.json != "-" and Path(args.json).exists() and not args.overwrite:
        raise CalfFileExistsError(args.json)
    result = evaluate(args)
    header = f"{'case':<28} {'Dice':>6} {'IoU':>6} {'prec':>6} {'recall':>6} {'HD95mm':>7} {'FP-empty':>8}"
    print(header)
    for r in result["cases"]:
        mark = " (training case)" if r["in_training_split"] else ""
        print(f"{r['case_id'][:28]:<28} {fmt(r['dice']):>6} {fmt(r['iou']):>6} "
              f"{fmt(r['precision']):>6} {fmt(r['recall']):>6} {fmt(r['hd95_mm'], 1):>7} "
              f"{fmt(r['fp_rate_empty_slices']):>8}{mark}")
    m = result["mean"]
    print(f"{'mean':<28} {fmt(m['dice']):>6} {fmt(m['iou']):>6} {fmt(m['precision']):>6} "
          f"{fmt(m['recall']):>6} {fmt(m['hd95_mm'], 1):>7} {fmt(m['fp_rate_empty_slices']):>8}")
    if result["n_in_training_split"]:
        print(f"note: {result['n_in_training_split']} case(s) were in the run's training split; "
              "their numbers are optimistic.")
    b = result["size_buckets"]
    print("Per-slice Dice by tumour size (training-split tertiles "
          f"{b.get('thresholds')} px):")
    for name in result["bucket_names"]:
        print(f"  {name:<7} n = {b[name]['n']:<5} mean Dice {fmt(b[name]['mean'])}")
    print(f"  tumour-free slices: {b['empty']['n']}, with a prediction: "
          f"{b['empty']['with_prediction']} (rate {fmt(b['empty']['fp_rate'])})")
    write_json_output(args.json, clean_json(result), overwrite=args.overwrite)
    return 0

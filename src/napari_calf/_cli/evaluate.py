"""``napari-calf evaluate RUN DATA``: per-case and per-size-bucket metrics of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._engine import add_channel_order_arg, add_json_arg, fmt, non_negative, non_negative_int, positive_int

_HD95_HELP = (
    "HD95 convention of the whole-case and the lesion-wise HD95: monai (default; surface "
    "voxels, the 95th percentile of their distances; an empty prediction of a tumour case "
    "scores the image diagonal in mm) or brats (BraTS 2023: area-weighted surface, "
    "DeepMind's robust Hausdorff; an empty prediction scores 374 mm)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Dice, IoU, precision, recall, HD95 and FP rate of a run on labelled cases",
        description=(
            "Predict every labelled case in DATA with the run and compare with its label: "
            "per case (Dice, IoU, precision, recall, HD95 in mm, false-positive rate on "
            "tumour-free slices) and per ROI-size bucket of the slices (small/medium/large, "
            "by the training split's tertiles). Cases the run trained on are marked. "
            "Lesion-wise scores follow the BraTS 2023 rules (lesions are 26-connected "
            "components; lesion-wise Dice and HD95 with 0 and 374 mm for each missed or false "
            "lesion; detection counts TP/FP/FN and F1) for the run's target region only "
            "(a binary prediction has no sub-regions)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder made by `napari-calf train`")
    p.add_argument("data", metavar="DATA", type=Path, help="dataset or case folder with labels")
    p.add_argument("--batch-size", type=positive_int, default=16, help="slices per batch (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    add_channel_order_arg(p)
    p.add_argument("--hd95", choices=("monai", "brats"), default="monai", help=_HD95_HELP)
    p.add_argument("--lesion-min-volume", type=non_negative, default=50.0, metavar="MM3",
                   help="ground-truth lesions of this volume or less are ignored "
                        "(default 50 as BraTS 2023 glioma; 2 for metastases)")
    p.add_argument("--lesion-dilation", type=non_negative_int, default=3, metavar="N",
                   help="voxels of dilation that merge nearby ground-truth lesions and widen "
                        "matching (default 3 as BraTS 2023 glioma; 1 for meningioma, metastases)")
    p.add_argument("--cases", default=None, metavar="ID,ID",
                   help="only these cases (comma-separated ids), e.g. a run's validation cases")
    p.add_argument("--labels-from", type=Path, default=None, metavar="DIR",
                   help="score against DIR/<case_id>/<label file name> where it exists (an "
                        "audit's corrections/, or a phantom's truth/) instead of DATA's labels")
    add_json_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``evaluate`` reports (JSON-safe), from :func:`evaluation.iter_evaluate_run`
    (the same loop the comparison study uses)."""
    from ..study.evaluation import CASE_METRIC_KEYS, iter_evaluate_run, pooled_lesion_counts
    from ..calf.areas import TARGETS
    from ..calf.metrics import SIZE_BUCKETS
    from . import drain_with_tqdm

    ev = drain_with_tqdm(
        iter_evaluate_run(args.run_dir, args.data, batch_size=args.batch_size, device=args.device,
                          hd95_convention=args.hd95,
                          lesion_min_volume_mm3=args.lesion_min_volume,
                          lesion_dilation_voxels=args.lesion_dilation,
                          channel_order=args.channel_order,
                          labels_from=args.labels_from, case_ids=_case_ids(args.cases)),
        "evaluate", disable=args.no_progress,
    )
    rows = ev.cases
    held_out = [r for r in rows if not r["in_training_split"]]
    return {
        "run": str(args.run_dir),
        "data": ev.data_dir,
        "target": ev.target,
        "hd95_convention": ev.hd95_convention,
        "lesion_wise": {
            "region": ev.target,
            "regions_not_scored": [t for t in TARGETS if t != ev.target],
            "why": (f"the run predicts one binary region ({ev.target}); other regions cannot be "
                    "told apart in its prediction"),
            "rules": "BraTS 2023",
            "hd95_convention": ev.hd95_convention,
            "missed_or_false_lesion_hd95_mm": 374.0,
            **ev.lesion_settings,
        },
        "labels_from": None if args.labels_from is None else str(args.labels_from),
        "cases": rows,
        "mean": _means(rows, CASE_METRIC_KEYS),
        "mean_held_out": (_means(held_out, CASE_METRIC_KEYS)
                          if held_out and len(held_out) < len(rows) else None),
        "lesion_counts": pooled_lesion_counts(rows),
        "n_in_training_split": len(rows) - len(held_out),
        "size_buckets": ev.bucket_summary(),
        "bucket_names": list(SIZE_BUCKETS),
    }


def _case_ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [t.strip() for t in str(text).split(",") if t.strip()]
    if not ids:
        from ..errors import CalfConfigError

        raise CalfConfigError("--cases is empty. Fix: give comma-separated case ids.")
    return ids


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
    print(f"Per case, region {result['target'].upper()} as a whole "
          f"(HD95 convention {result['hd95_convention']}):")
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
    _print_lesions(result)
    b = result["size_buckets"]
    print("Per-slice Dice by tumour size (training-split tertiles "
          f"{b.get('thresholds')} px):")
    for name in result["bucket_names"]:
        print(f"  {name:<7} n = {b[name]['n']:<5} mean Dice {fmt(b[name]['mean'])}")
    print(f"  tumour-free slices: {b['empty']['n']}, with a prediction: "
          f"{b['empty']['with_prediction']} (rate {fmt(b['empty']['fp_rate'])})")
    write_json_output(args.json, clean_json(result), overwrite=args.overwrite)
    return 0


def _print_lesions(result: dict[str, Any]) -> None:
    info = result["lesion_wise"]
    print(f"Lesion-wise {info['region'].upper()} (BraTS 2023 rules: GT lesions > "
          f"{info['min_volume_mm3']:g} mm³, dilation {info['dilation_voxels']}, HD95 "
          f"{info['hd95_convention']}; a missed or false lesion scores Dice 0, HD95 374 mm.\n"
          f"{', '.join(t.upper() for t in info['regions_not_scored'])} not scored: a binary "
          "prediction has no sub-regions):")
    print(f"{'case':<28} {'Dice':>6} {'HD95mm':>7} {'TP':>4} {'FP':>4} {'FN':>4} {'F1':>6}")
    for r in result["cases"]:
        print(f"{r['case_id'][:28]:<28} {fmt(r['lesion_dice']):>6} {fmt(r['lesion_hd95_mm'], 1):>7} "
              f"{r['lesion_tp']:>4} {r['lesion_fp']:>4} {r['lesion_fn']:>4} {fmt(r['lesion_f1']):>6}")
    m, c = result["mean"], result["lesion_counts"]
    print(f"{'mean':<28} {fmt(m['lesion_dice']):>6} {fmt(m['lesion_hd95_mm'], 1):>7} "
          f"{'':>4} {'':>4} {'':>4} {fmt(m['lesion_f1']):>6}")
    print(f"{'all cases (summed counts)':<28} {'':>6} {'':>7} {c['tp']:>4} {c['fp']:>4} "
          f"{c['fn']:>4} {fmt(c['f1']):>6}")

"""``napari-calf analyze DATA``: foreground-size statistics and CALF's loss selection."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._engine import add_filter_args, add_json_arg, add_target_args, non_negative_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="foreground-size statistics (S, K, N) and the loss CALF selects",
        description=(
            "Measure the tumour area of every slice of every labelled case in DATA, filter "
            "the slices as training would, and show the skewness S, excess kurtosis K, N, "
            "the empty slices, the rule table with the matched row marked, and the "
            "selected loss transform with its reason. Training computes the same numbers "
            "on its training split only, so they can differ slightly."
        ),
    )
    parser.add_argument("data", metavar="DATA", type=Path, help="dataset folder (BraTS-style or nnU-Net)")
    add_target_args(parser)
    parser.add_argument("--axis", type=int, choices=(0, 1, 2), default=2,
                        help="slicing axis of the canonical RAS volume (2 = axial, default)")
    parser.add_argument("--unit", choices=("px", "mm2"), default="px",
                        help="area unit: pixels (default) or mm² from the voxel spacing")
    add_filter_args(parser)
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed for sampling the kept empty slices (default 0)")
    add_json_arg(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def analyze(args: argparse.Namespace) -> dict[str, Any]:
    """Compute everything ``analyze`` reports (JSON-safe dict)."""
    from ..io.discovery import discover_cases
    from ..calf.rules import DEFAULT_RULES
    from ..calf.filtering import filter_slices
    from ..calf.areas import iter_dataset_areas
    from ..calf.stats import imbalance_stats
    from ..calf.rules_io import load_rules
    from ..calf.rules import select_transform
    from . import drain_with_tqdm

    rules = tuple(load_rules(args.rules)) if args.rules else tuple(DEFAULT_RULES)
    cases = discover_cases(args.data)
    areas = drain_with_tqdm(
        iter_dataset_areas(cases, target=args.target, axis=args.axis, unit=args.unit),
        "areas", disable=args.no_progress,
    )
    filt = filter_slices(areas, empty_fraction=args.empty_fraction, min_area=args.min_area,
                         outlier_iqr=args.outlier_iqr, drop_outliers=args.drop_outliers,
                         seed=args.seed)
    stats = imbalance_stats(filt.apply(areas))
    selection = select_transform(stats, rules)
    report = filt.report
    return {
        "data": str(Path(args.data).resolve()),
        "cases": int(areas.n_cases),
        "skipped_cases": list(areas.skipped),
        "target": args.target,
        "axis": args.axis,
        "unit": args.unit,
        "slices": int(areas.n_slices),
        "all_slices": {"n_foreground": int(areas.areas.size - areas.n_empty),
                       "n_empty": int(areas.n_empty)},
        "statistics": stats.to_dict(),
        "selection": selection.to_dict(),
        "filtering": filt.summary(),
        "filter_report": report,
        "rules": [r.to_dict() for r in rules],
    }


def format_rule_table(rules: Any, matched: int | None) -> str:
    """The rule table with the matched row marked by an arrow."""
    from ..calf.rules_io import format_rules

    lines = format_rules(rules).splitlines()
    out = []
    for i, line in enumerate(lines):
        row = i - 2  # header and rule line come first
        out.append(("→ " if matched is not None and row == matched else "  ") + line)
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from ..calf.rules import DEFAULT_RULES
    from ..calf.rules_io import load_rules
    from ._engine import check_outputs, clean_json, write_json_output

    json_path = Path(args.json).expanduser() if args.json and args.json != "-" else None
    if json_path is not None and json_path.exists() and not args.overwrite:
        from ..errors import CalfFileExistsError

        raise CalfFileExistsError(json_path)  # before the measuring, not after
    check_outputs({"--json": args.json})
    result = analyze(args)
    stats, sel, filt = result["statistics"], result["selection"], result["filtering"]
    unit = "mm²" if args.unit == "mm2" else "px"
    print(f"{result['cases']} case(s), {result['slices']} slices along axis {args.axis}, "
          f"target {args.target}")
    for line in result["skipped_cases"]:
        print(f"  skipped: {line}")
    print(f"Filtering: kept {filt['kept']} of {filt['slices']} slices "
          f"({filt.get('kept_foreground', '?')} with tumour, {filt.get('kept_empty', '?')} empty); "
          f"dropped {filt['dropped']} ({filt.get('dropped_small', 0)} below --min-area, "
          f"{filt.get('dropped_outliers', 0)} outliers); flagged {filt['flagged']}")
    print(f"N = {stats['n']} slices with tumour, {stats['n_empty']} empty slices kept")
    if stats.get("mean") is not None:
        print(f"area: mean {stats['mean']:.1f} {unit}, median {stats['median']:.1f} {unit}")
    if stats.get("skewness") is not None:
        print(f"S = {stats['skewness']:.3f}, K = {stats['kurtosis']:.3f}")
    else:
        print(f"S and K undefined: {stats.get('undefined_reason')}")
    rules = tuple(load_rules(args.rules)) if args.rules else tuple(DEFAULT_RULES)
    print()
    print(format_rule_table(rules, sel.get("rule_index")))
    print()
    print(f"Selected transform: {sel['transform']}  ({sel['reason']})")
    if result["filter_report"]:
        print(f"{len(result['filter_report'])} slice(s) dropped or flagged for review "
              "(listed in --json output)")
    write_json_output(args.json, clean_json(result), overwrite=args.overwrite)
    return 0

"""``napari-calf phantom OUT_DIR``: write a synthetic BraTS-style dataset to try CALF on."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._engine import non_negative_int, positive_int

# Kept in sync with napari_calf.phantom.dataset.SKEW_PRESETS (not imported here: building the
# parser must stay fast, and the phantom module pulls in scipy and nibabel).
SKEW_CHOICES = ("right", "symmetric", "left")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="write a synthetic brain-tumour dataset (BraTS 2021 layout)",
        description=(
            "Write N synthetic cases (t1, t1ce, t2, flair + BraTS-2021 labels) on MNI152 "
            "anatomy. --skew steers the per-slice tumour-area distribution, so CALF's rule "
            "table picks different losses: right -> ln/log10, symmetric -> bce-dice, "
            "left -> fisher/logit. The data is synthetic: for trying the tools only."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path,
                        help="new or empty folder to write the cases into")
    parser.add_argument("--cases", type=positive_int, default=12, metavar="N",
                        help="number of cases (default 12)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                        help="random seed; the same seed gives identical data (default 0)")
    parser.add_argument("--skew", choices=SKEW_CHOICES, default="right",
                        help="lesion-size preset (default right)")
    parser.add_argument("--full-size", action="store_true",
                        help="BraTS geometry: 240x240x155 voxels of 1 mm (the template "
                             "resampled; ~10 s and ~15 MB per case) instead of the 2 mm grid")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder, replacing files of the same name")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> int:
    from ..phantom.dataset import write_dataset
    from ..calf.areas import dataset_areas
    from ..calf.stats import imbalance_stats
    from ..calf.rules import select_transform
    from . import drain_with_tqdm

    gen = write_dataset(args.out_dir, args.cases, seed=args.seed, skew=args.skew,
                        overwrite=args.overwrite, full_size=args.full_size)
    cases = drain_with_tqdm(gen, "phantom", disable=args.no_progress)
    print(f"Wrote {len(cases)} synthetic cases ({args.skew} preset, seed {args.seed}) "
          f"to {args.out_dir.resolve()}")
    # Measured from the label files just written, by the same code `analyze` uses.
    stats = imbalance_stats(dataset_areas(cases))
    print(f"Whole-tumour area per axial slice: N = {stats.n} non-empty slices "
          f"({stats.n_empty} empty), S = {_fmt(stats.skewness)}, K = {_fmt(stats.kurtosis)}")
    selection = select_transform(stats)
    print(f"CALF's default rules would pick: {selection.transform} ({selection.reason})")
    return 0

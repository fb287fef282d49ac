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
    parser.add_argument("--label-errors", default=None, metavar="SPEC",
                        help="inject known annotation errors into the label files, e.g. "
                             "missed=0.15,erased-slices=0.05,dilate=0.1:2mm,erode=0.1:2mm,"
                             "spurious=0.05,systematic-dilate=2mm (the grid is 2 mm: smaller "
                             "distances change nothing); the clean labels go to OUT_DIR/truth/ "
                             "and every error is listed in OUT_DIR/label_errors.json")
    parser.add_argument("--full-size", action="store_true",
                        help="BraTS geometry: 240x240x155 voxels of 1 mm (the template "
                             "resampled; ~10 s and ~15 MB per case) instead of the 2 mm grid")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder, replacing files of the same name")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


class _FolderSnapshot:
    """What ``folder`` held before a write, so that what the write added can be removed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.existed = folder.is_dir()
        self.before = {p.name for p in folder.iterdir()} if self.existed else set()

    def remove_new(self) -> None:
        import shutil

        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            if entry.name in self.before:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if not self.existed and not any(self.folder.iterdir()):
            self.folder.rmdir()


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def _print_label_errors(out_dir: Path) -> None:
    from ..phantom.noisy import LABEL_ERRORS_JSON, TRUTH_DIR, read_label_errors

    doc = read_label_errors(out_dir)
    counts = ", ".join(f"{kind} {n}" for kind, n in doc["counts"].items()) or "none"
    print(f"Label files carry {len(doc['errors'])} injected error(s) ({counts}; spec "
          f"{doc['spec']}): listed in {out_dir.resolve() / LABEL_ERRORS_JSON}; clean labels "
          f"in {out_dir.resolve() / TRUTH_DIR}/")


def run(args: argparse.Namespace) -> int:
    from ..phantom.dataset import write_dataset
    from ..calf.areas import dataset_areas
    from ..calf.stats import imbalance_stats
    from ..calf.rules import select_transform
    from . import drain_with_tqdm

    gen = write_dataset(args.out_dir, args.cases, seed=args.seed, skew=args.skew,
                        overwrite=args.overwrite, label_errors=args.label_errors, full_size=args.full_size)
    created = _FolderSnapshot(args.out_dir)
    try:
        cases = drain_with_tqdm(gen, "phantom", disable=args.no_progress)
    except BaseException:
        # A full disk or Ctrl-C mid-way: take away what this run created (a half dataset
        # without its dataset.json would look usable); keep everything that was there.
        created.remove_new()
        raise
    print(f"Wrote {len(cases)} synthetic cases ({args.skew} preset, seed {args.seed}) "
          f"to {args.out_dir.resolve()}")
    if args.label_errors is not None:
        _print_label_errors(args.out_dir)
    # Measured from the label files just written, by the same code `analyze` uses.
    stats = imbalance_stats(dataset_areas(cases))
    print(f"Whole-tumour area per axial slice: N = {stats.n} non-empty slices "
          f"({stats.n_empty} empty), S = {_fmt(stats.skewness)}, K = {_fmt(stats.kurtosis)}")
    selection = select_transform(stats)
    print(f"CALF's default rules would pick: {selection.transform} ({selection.reason})")
    return 0

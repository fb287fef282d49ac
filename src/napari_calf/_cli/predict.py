"""``napari-calf predict RUN INPUT --out OUT.nii.gz``: segment one case with a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._engine import add_channel_order_arg, add_json_arg, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment a case with a trained run; writes a label map like the input",
        description=(
            "Predict the tumour of one case with the run's best weights, using the run's own "
            "preprocessing. INPUT is a case folder or the case's NIfTI files (one per "
            "modality, or one 4D file). The label map (0/1) is written in the input file's "
            "orientation and affine, so it overlays the input in any NIfTI viewer."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder made by `napari-calf train`")
    p.add_argument("inputs", metavar="INPUT", type=Path, nargs="+",
                   help="a case folder, or its NIfTI file(s)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT.nii.gz", help="label map to write")
    p.add_argument("--probabilities", type=Path, default=None, metavar="PATH",
                   help="also write the foreground probability map (float32)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability above which a voxel is tumour (default 0.5)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="slices per batch (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    add_channel_order_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_json_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import CalfConfigError, CalfFileExistsError
    from ..engine.inference import iter_predict_volume, load_run
    from . import drain_with_tqdm
    from ._engine import check_outputs, clean_json, write_json_output

    if not 0 < args.threshold < 1:
        raise CalfConfigError(f"--threshold {args.threshold} must be between 0 and 1.")
    outputs = [args.out] + ([args.probabilities] if args.probabilities else [])
    if not args.overwrite:  # refuse before the work, not after
        for path in outputs + ([Path(args.json)] if args.json and args.json != "-" else []):
            if path.exists():
                raise CalfFileExistsError(path)
    check_outputs({"--out": args.out, "--probabilities": args.probabilities, "--json": args.json})
    run_ = load_run(args.run_dir)
    source = args.inputs[0] if len(args.inputs) == 1 else [str(p) for p in args.inputs]
    pred = drain_with_tqdm(
        iter_predict_volume(run_, source, batch_size=args.batch_size, device=args.device,
                            threshold=args.threshold, channel_order=args.channel_order),
        "predict", disable=args.no_progress,
    )
    written = pred.save(args.out, probabilities_path=args.probabilities, overwrite=args.overwrite)
    voxels = int(pred.labels.sum())
    spacing = (1.0, 1.0, 1.0) if pred.reference is None else pred.reference.spacing
    volume_ml = voxels * float(np.prod(spacing)) / 1000.0
    print(f"Predicted {voxels} tumour voxels ({volume_ml:.2f} ml) in {pred.case_id}; wrote "
          + ", ".join(str(p) for p in written))
    write_json_output(args.json, clean_json({
        "run": str(args.run_dir),
        "input": [str(p) for p in args.inputs],
        "case_id": pred.case_id,
        "outputs": [str(p) for p in written],
        "shape": list(pred.labels.shape),
        "affine": None if pred.affine is None else pred.affine.tolist(),
        "tumour_voxels": voxels,
        "tumour_volume_ml": volume_ml,
        "threshold": args.threshold,
    }), overwrite=args.overwrite)
    return 0

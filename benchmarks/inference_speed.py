"""Whole-case inference: ``predict_volume`` vs a bare model forward on the same slices.

(a) bare: the case's slices already preprocessed, padded and on the device; batched
    forward passes only (bf16 autocast + channels-last on CUDA), synchronised.
(b) ours: ``predict_volume`` from the raw canonical arrays: z-score per modality,
    upload, padding, batching, sigmoid, cropping, back to the host.

Prints seconds per case for each and the ratio ours/bare (CUDA goal: <= 1.5 for a
4x240x240x155 BraTS-sized case). ``--small`` uses a 4x120x120x40 case for CPUs.

    python benchmarks/inference_speed.py            # BraTS-sized case, auto device
    python benchmarks/inference_speed.py --device cpu --small
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from napari_calf.engine.data import padding_for, stack_modalities
    from napari_calf.engine.devices import configure_for_speed, select_device
    from napari_calf.engine.inference import LoadedRun, predict_volume
    from napari_calf.engine.models import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--small", action="store_true", help="4x120x120x40 instead of 4x240x240x155")
    p.add_argument("--arch", default="unet")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    device, why = select_device(args.device)
    configure_for_speed(device)
    cuda = device.type == "cuda"
    shape = (120, 120, 40) if args.small else (240, 240, 155)
    rng = np.random.default_rng(0)
    xx, yy, zz = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    brain = xx**2 + yy**2 + zz**2 <= 0.8
    arrays = {m: np.where(brain, rng.normal(400 + 50 * i, 60, size=shape), 0).astype(np.float32)
              for i, m in enumerate(("t1", "t1ce", "t2", "flair"))}
    torch.manual_seed(0)
    model = build_model(args.arch, args.encoder, 4).to(device).eval()
    run = LoadedRun(model=model, card={"preprocessing": {"modalities": list(arrays)}})
    print(f"device {device} ({why}); {args.arch}-{args.encoder}; case 4x{shape[0]}x{shape[1]}x"
          f"{shape[2]}; batch {args.batch_size}")

    # (a) bare forward on prepared slices (only slices with brain, as predict_volume does)
    stack = stack_modalities(arrays)
    pad = padding_for(shape[:2], 32)
    keep = np.flatnonzero(stack.any(axis=(0, 1, 2)))
    slices = torch.from_numpy(pad.pad(np.moveaxis(stack[..., keep], -1, 0))).to(device)
    # channels-last as predict_volume uses it (CUDA and CPU), so the ratio is its overhead
    model = model.to(memory_format=torch.channels_last)
    slices = slices.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast:
            for i in range(0, slices.shape[0], args.batch_size):
                model(slices[i : i + args.batch_size])
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def ours() -> float:
        t0 = time.perf_counter()
        predict_volume(run, arrays, batch_size=args.batch_size, device=str(device))
        return time.perf_counter() - t0

    bare(), ours()  # warm-up (cuDNN autotuning, allocator)
    b = min(bare() for _ in range(args.repeats))
    o = min(ours() for _ in range(args.repeats))
    print(f"bare forward   : {b:7.3f} s per case ({keep.size} slices)")
    print(f"predict_volume : {o:7.3f} s per case (incl. z-score, upload, padding, download)")
    print(f"ratio ours/bare: {o / b:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "device": str(device), "shape": [4, *shape], "slices": int(keep.size),
            "arch": args.arch, "encoder": args.encoder, "batch_size": args.batch_size,
            "bare_s": b, "ours_s": o, "ratio": o / b, "goal": "<= 1.5",
        }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

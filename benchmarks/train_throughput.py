"""Training throughput: napari-calf's trainer vs a bare smp training loop, same process.

(a) bare: one fixed batch already on the device, smp model, AdamW, BCE + smp DiceLoss,
    channels-last; on CUDA also bf16 autocast + fused AdamW.
(b) ours: the napari-calf training loop (slice store → batches → GPU augmentation →
    CALF loss → AdamW/cosine, events, loss read back every few steps) on a store of
    random slices of the same size, same model and batch.

Prints images/s of each and the ratio ours/bare (CUDA goal: >= 0.95 for Unet-resnet34,
batch 32, 4x256x256). The two are run interleaved (bare, ours, bare, ours, ..., bare)
and each run of ours is compared with the mean of the bare runs either side of it, so a
machine that gets busier or quieter during the measurement slows both alike; the median
of those ratios is reported with its spread. On the CPU the default is a tiny
configuration anyone can run:

    python benchmarks/train_throughput.py                 # auto device
    python benchmarks/train_throughput.py --device cpu --size 64 --batch-size 8 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _clock(args) -> float:
    """Seconds by the chosen clock: wall time, or this process's CPU time (``--clock cpu``,
    steadier on a shared machine: other processes' load does not count)."""
    return time.process_time() if args.clock == "cpu" else time.perf_counter()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(args, device) -> float:
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    cuda = device.type == "cuda"
    # the same smp call the trainer makes (build_model only adds checks, and for depths
    # below 5 one decoder stage per encoder stage), so both sides train the same network
    from napari_calf.engine.models import build_model

    model = build_model(args.arch, args.encoder, args.channels,
                        encoder_depth=args.depth).to(device)
    x = torch.randn(args.batch_size, args.channels, args.size, args.size, device=device)
    y = (torch.rand(args.batch_size, 1, args.size, args.size, device=device) > 0.9).float()
    # channels-last like the trainer (on the CPU too, where oneDNN is faster with it), so
    # the ratio measures the trainer's own overhead
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if cuda else {}))
    dice = smp.losses.DiceLoss("binary", from_logits=True)
    bce = torch.nn.BCEWithLogitsLoss()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def step():
        with autocast:
            logits = model(x)
        loss = bce(logits.float(), y) + dice(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    _sync(device)
    t0 = _clock(args)
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch_size / (_clock(args) - t0)


def our_loop(args, device, syncs: list[int] | None = None) -> float:
    """Images/s of the trainer; on CUDA, ``syncs`` (if given) receives the number of
    host-device synchronisations in the timed steps (torch's sync debug mode)."""
    from napari_calf.engine._train_loop import TrainLoop
    from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from napari_calf.engine.data import CaseSplit
    from napari_calf.engine.models import build_model, count_parameters
    from napari_calf.engine.run_card import model_info
    from napari_calf.engine.slice_store import SliceStore
    from napari_calf.calf.rules import DEFAULT_RULES, select_transform
    from napari_calf.calf.stats import imbalance_stats
    from napari_calf.engine.training_data import PreparedData
    from napari_calf.engine.training_events import TrainStep

    import torch

    rng = np.random.default_rng(0)
    n = args.batch_size * (args.steps + args.warmup)
    # 256 distinct random slices, repeated: the content does not change the work, and
    # drawing n x 4 x 256 x 256 normals would take longer than the measurement
    distinct = min(n, 256)
    base = rng.standard_normal((distinct, args.channels, args.size, args.size),
                               dtype=np.float32).astype(np.float16)
    yy, xx = np.mgrid[: args.size, : args.size]
    radii = rng.gamma(2.0, args.size / 20, size=distinct)  # right-skewed blob sizes
    blobs = np.stack([((yy - args.size / 2) ** 2 + (xx - args.size / 2) ** 2) <= r * r
                      for r in radii]).astype(np.uint8)
    images, targets = base[np.arange(n) % distinct], blobs[np.arange(n) % distinct]
    train = SliceStore.from_arrays(images, targets)
    val = SliceStore.from_arrays(images[: args.batch_size], targets[: args.batch_size])
    stats = imbalance_stats(train.areas)
    data = PreparedData(
        split=CaseSplit(train=(), val=(), seed=0, val_fraction=0.2), train=train, val=val,
        stats=stats, selection=select_transform(stats), filter_summary={}, filter_report=[],
        rules=tuple(DEFAULT_RULES), skipped=(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            data=DataConfig("synthetic"), out_dir=tmp,
            model=ModelConfig(args.arch, args.encoder, encoder_depth=args.depth),
            train=TrainConfig(epochs=1, batch_size=args.batch_size, device=str(device),
                              patience=None, augment=True, loss="calf"),
        )
        torch.manual_seed(0)
        model = build_model(args.arch, args.encoder, args.channels, encoder_depth=args.depth)
        loop = TrainLoop(config, Path(tmp), model, model_info(config, args.channels,
                         count_parameters(model)), data, state=None, card_before=None, notes=[])
        t0 = None
        count = syncs is not None and device.type == "cuda"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for ev in loop.run(None):
                if isinstance(ev, TrainStep):
                    if ev.step == args.warmup:
                        _sync(device)
                        t0 = _clock(args)
                        if count:
                            torch.cuda.set_sync_debug_mode("warn")
                    if ev.step == ev.total_steps:
                        if count:
                            torch.cuda.set_sync_debug_mode("default")
                        _sync(device)  # the last step of an epoch reads the loss back anyway
                        elapsed = _clock(args) - t0
                        break
        if count:
            syncs.append(sum("synchroniz" in str(w.message) for w in caught))
    return args.steps * args.batch_size / elapsed


def main() -> None:
    import torch

    from napari_calf.engine.devices import configure_for_speed, select_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--arch", default="unet")
    p.add_argument("--encoder", default=None, help="default resnet34 on CUDA, resnet18 on CPU")
    p.add_argument("--depth", type=int, default=None, help="encoder depth (default 5 CUDA, 3 CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 on CUDA, 8 on CPU")
    p.add_argument("--size", type=int, default=None, help="slice side (default 256 CUDA, 64 CPU)")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 100 CUDA, 10 CPU)")
    p.add_argument("--warmup", type=int, default=20,
                   help="untimed steps first (20: a loss read-back point of the trainer on CUDA)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of ours, each between two bare runs (default 1)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time (default) or process CPU time (CPU device only)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    device, why = select_device(args.device)
    cuda = device.type == "cuda"
    args.encoder = args.encoder or ("resnet34" if cuda else "resnet18")
    args.depth = args.depth or (5 if cuda else 3)
    args.batch_size = args.batch_size or (32 if cuda else 8)
    args.size = args.size or (256 if cuda else 64)
    args.steps = args.steps or (100 if cuda else 10)
    if not cuda:
        args.warmup = min(args.warmup, 3)
    if cuda and args.clock == "cpu":
        p.error("--clock cpu measures host CPU time; on CUDA use the default wall clock")
    configure_for_speed(device)
    print(f"device {device} ({why}), {torch.get_num_threads()} threads, {args.clock} clock; "
          f"torch {torch.__version__}; {args.arch}-{args.encoder} "
          f"depth {args.depth}, batch {args.batch_size} x {args.channels}x{args.size}x{args.size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    bare = [bare_loop(args, device)]
    ours: list[float] = []
    syncs: list[int] = []
    for i in range(max(1, args.repeats)):
        ours.append(our_loop(args, device, syncs if i == 0 else None))
        bare.append(bare_loop(args, device))
    ratios = [o / ((b0 + b1) / 2) for o, b0, b1 in zip(ours, bare, bare[1:])]
    ratio = statistics.median(ratios)
    print(f"bare smp loop      : {statistics.median(bare):8.1f} images/s "
          f"(runs: {', '.join(f'{b:.1f}' for b in bare)})")
    print(f"napari-calf trainer: {statistics.median(ours):8.1f} images/s "
          f"(runs: {', '.join(f'{o:.1f}' for o in ours)}; CALF loss + augmentation + events)")
    print(f"ratio ours/bare    : {ratio:.3f} median of {len(ratios)} "
          f"(spread {min(ratios):.3f} to {max(ratios):.3f})")
    if syncs:
        # the trainer reads the loss back every CUDA_SYNC_EVERY steps on purpose
        print(f"host-device syncs  : {syncs[0]} in {args.steps} timed steps")
    if args.json:
        args.json.write_text(json.dumps({
            "cuda_syncs_in_timed_steps": syncs[0] if syncs else None,
            "device": str(device), "arch": args.arch, "encoder": args.encoder,
            "depth": args.depth, "batch": [args.batch_size, args.channels, args.size, args.size],
            "steps": args.steps, "clock": args.clock, "threads": torch.get_num_threads(),
            "bare_images_per_s": bare, "ours_images_per_s": ours,
            "ratios": ratios, "ratio": ratio, "goal": ">= 0.95",
        }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Training throughput: napari-calf's trainer vs a bare smp training loop, same process.

(a) bare: one fixed batch already on the device, smp model, AdamW, BCE + smp DiceLoss,
    channels-last; on CUDA also bf16 autocast + fused AdamW.
(b) ours: the napari-calf training loop (slice store → batches → GPU augmentation →
    CALF loss → AdamW/cosine, events, loss read back every few steps) on a store of
    random slices of the same size, same model and batch.

Prints images/s of each and the ratio ours/bare (CUDA goal: >= 0.95 for Unet-resnet34,
batch 32, 4x256x256). On the CPU the default is a tiny configuration anyone can run:

    python benchmarks/train_throughput.py                 # auto device
    python benchmarks/train_throughput.py --device cpu --size 64 --batch-size 8
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(args, device) -> float:
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = smp.create_model(args.arch, args.encoder, encoder_weights=None, in_channels=args.channels,
                             classes=1, encoder_depth=args.depth,
                             **({"decoder_channels": (256, 128, 64, 32, 16)[5 - args.depth:]}
                                if args.depth != 5 else {})).to(device)
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
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def our_loop(args, device) -> float:
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
    images = rng.normal(size=(n, args.channels, args.size, args.size)).astype(np.float16)
    yy, xx = np.mgrid[: args.size, : args.size]
    radii = rng.gamma(2.0, args.size / 20, size=n)  # right-skewed blob sizes
    targets = np.stack([((yy - args.size / 2) ** 2 + (xx - args.size / 2) ** 2) <= r * r
                        for r in radii]).astype(np.uint8)
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
        for ev in loop.run(None):
            if isinstance(ev, TrainStep):
                if ev.step == args.warmup:
                    _sync(device)
                    t0 = time.perf_counter()
                if ev.step == ev.total_steps:
                    _sync(device)  # the last step of an epoch reads the loss back anyway
                    elapsed = time.perf_counter() - t0
                    break
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
    configure_for_speed(device)
    print(f"device {device} ({why}); torch {torch.__version__}; {args.arch}-{args.encoder} "
          f"depth {args.depth}, batch {args.batch_size} x {args.channels}x{args.size}x{args.size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    bare = bare_loop(args, device)
    ours = our_loop(args, device)
    bare2 = bare_loop(args, device)  # again, to show the noise of the measurement
    print(f"bare smp loop      : {bare:8.1f} images/s (repeat: {bare2:.1f})")
    print(f"napari-calf trainer: {ours:8.1f} images/s (CALF loss + augmentation + events)")
    print(f"ratio ours/bare    : {ours / max(bare, bare2):.3f} (vs best bare run)")


if __name__ == "__main__":
    main()

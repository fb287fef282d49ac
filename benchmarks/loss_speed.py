"""Forward + backward time of each CALF loss against BCE + smp DiceLoss, in the same run.

The peer is what a user would otherwise train with: ``F.binary_cross_entropy_with_logits``
plus ``segmentation_models_pytorch.losses.DiceLoss(mode="binary", from_logits=True)``.
Each CALF loss (its transformed cross-entropy + batch-pooled Dice, dice_weight 1) is
timed on the same 16×1×256×256 batch, on the CPU and, when present, on CUDA. The
losses are timed in interleaved rounds (peer, then every CALF loss, again and again) so
that a noisy shared machine slows all of them alike. Reported per loss: the median and
the fastest round, each as a ratio to the peer's (on a busy machine the fastest round
is the better estimate of the work itself). Goal: median ratio ≤ 1.5 for every transform.

Usage::

    python benchmarks/loss_speed.py [--rounds 15] [--device cpu|cuda|all] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from napari_calf.calf.losses import TRANSFORMS, CALFLoss

GOAL = 1.5


def _blobs(batch: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Binary targets: one disc per sample with a right-skewed radius, some slices empty."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    target = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        if i % 4 == 3:
            continue  # tumour-free slice
        r = float(torch.empty(1).exponential_(1 / 12, generator=gen)) + 2
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=gen).tolist()
        target[i, 0] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
    return target.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    target: torch.Tensor,
    inner: int,
) -> float:
    device = logits.device
    _sync(device)
    start = time.perf_counter()
    for _ in range(inner):
        logits.grad = None
        fn(logits, target).backward()
    _sync(device)
    return (time.perf_counter() - start) / inner


def run(
    device: torch.device, *, batch: int, size: int, rounds: int, inner: int
) -> dict[str, tuple[float, float]]:
    """(median, min) seconds per forward+backward for the peer and every CALF transform."""
    import segmentation_models_pytorch.losses as smp_losses

    smp_dice = smp_losses.DiceLoss(mode="binary", from_logits=True)

    def peer(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(z, y) + smp_dice(z, y)

    candidates: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "BCE + smp Dice (peer)": peer
    }
    for transform in TRANSFORMS:
        candidates[f"calf {transform}"] = CALFLoss(transform)
    gen = torch.Generator().manual_seed(1)
    logits = (3 * torch.randn(batch, 1, size, size, generator=gen)).to(device).requires_grad_()
    target = _blobs(batch, size, device)
    for fn in candidates.values():  # warm-up: allocator, kernels, lazy inits
        _time_once(fn, logits, target, 2)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            times[name].append(_time_once(fn, logits, target, inner))
    return {name: (statistics.median(v), min(v)) for name, v in times.items()}


def report(
    device: torch.device, timings: dict[str, tuple[float, float]], batch: int, size: int
) -> bool:
    peer_name = next(iter(timings))
    peer_median, peer_min = timings[peer_name]
    if device.type == "cpu":
        where = f"cpu, {torch.get_num_threads()} threads"
    else:
        where = torch.cuda.get_device_name(device)
    print(f"\nforward+backward, batch {batch}x1x{size}x{size}, {where}, torch {torch.__version__}")
    print(f"{'loss':<24}{'median ms':>10}{'ratio':>7}{'min ms':>9}{'ratio':>7}")
    ok = True
    for name, (median, fastest) in timings.items():
        ratio = median / peer_median
        over = name != peer_name and ratio > GOAL
        ok &= not over
        print(f"{name:<24}{median * 1e3:>10.2f}{ratio:>7.2f}{fastest * 1e3:>9.2f}"
              f"{fastest / peer_min:>7.2f}{f'  over the {GOAL} goal' if over else ''}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=2, help="iterations per timing")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        print("CUDA is not available here; nothing timed.")
        return 1
    ok = True
    figures: dict[str, dict] = {}
    for device in devices:
        timings = run(
            device, batch=args.batch, size=args.size, rounds=args.rounds, inner=args.inner
        )
        ok &= report(device, timings, args.batch, args.size)
        figures[device.type] = ratios(timings)
    if args.json:
        args.json.write_text(json.dumps({
            "batch": [args.batch, 1, args.size, args.size], "rounds": args.rounds,
            "devices": figures, "goal": f"<= {GOAL}",  # the median ratio of every transform
            "ratio": max(f["worst_median_ratio"] for f in figures.values()),
        }, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


def ratios(timings: dict[str, tuple[float, float]]) -> dict:
    """Median and fastest-round ratio of every loss to the peer (the first entry)."""
    peer_name = next(iter(timings))
    peer_median, peer_min = timings[peer_name]
    per_loss = {name: {"median_ms": m * 1e3, "median_ratio": m / peer_median,
                       "min_ratio": f / peer_min}
                for name, (m, f) in timings.items() if name != peer_name}
    return {"peer": peer_name, "peer_median_ms": peer_median * 1e3, "losses": per_loss,
            "worst_median_ratio": max(v["median_ratio"] for v in per_loss.values())}


if __name__ == "__main__":
    raise SystemExit(main())

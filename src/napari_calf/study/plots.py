"""Plots of the loss comparison study (PNG, matplotlib's Agg backend, no display needed).

matplotlib is a core dependency but imported here only, when a report is written,
and a missing install is reported with the command that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..calf.metrics import SIZE_BUCKETS

__all__ = ["plot_dice_by_size", "plot_dice_vs_size"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        from ..errors import CalfConfigError

        raise CalfConfigError(
            "The study's plots need matplotlib, which is not installed. Fix: "
            "pip install matplotlib (or napari-calf[gui]), or pass --no-plots."
        ) from None
    # Agg without touching the process-wide backend a GUI may have chosen
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return matplotlib, Figure, FigureCanvasAgg


def _save(fig: Any, canvas_cls: Any, path: Path) -> Path:
    from ..io.files import atomic_path

    canvas_cls(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _colours(losses: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {loss: cmap(i % 10) for i, loss in enumerate(losses)}


def plot_dice_by_size(summary: dict[str, Any], path: str | Path) -> Path:
    """Dice per loss and ROI-size bucket: a bar at the mean over seeds, a point per seed.

    One panel per architecture; buckets small / medium / large and all (case Dice).
    """
    _mpl, Figure, Canvas = _pyplot()
    per_run = summary["per_run"]
    archs = list(dict.fromkeys(r["arch"] for r in per_run))
    losses = list(dict.fromkeys(r["loss"] for r in per_run))
    colours = _colours(losses)
    groups = [*(f"dice_{b}" for b in SIZE_BUCKETS), "dice"]
    labels = [*SIZE_BUCKETS, "all (case Dice)"]
    # one row per architecture, wide enough for every loss's bar in each group
    fig = Figure(figsize=(max(5.0, 1.5 + 0.35 * len(groups) * max(1, len(losses))),
                          3.6 * len(archs)))
    axes = fig.subplots(len(archs), 1, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(losses))
    rng = np.random.default_rng(0)  # jitter only, fixed so the picture is reproducible
    for ax, arch in zip(axes, archs):
        for j, loss in enumerate(losses):
            runs = [r for r in per_run if r["arch"] == arch and r["loss"] == loss]
            for g, key in enumerate(groups):
                vals = np.array([r[key] for r in runs if r[key] is not None], dtype=float)
                x = g - 0.4 + width * (j + 0.5)
                if vals.size:
                    ax.bar(x, vals.mean(), width * 0.9, color=colours[loss], alpha=0.45,
                           label=loss if g == 0 else None)
                    ax.scatter(x + rng.uniform(-width * 0.2, width * 0.2, vals.size), vals,
                               s=14, color=colours[loss], edgecolor="black", linewidth=0.4,
                               zorder=3)
        ax.set_xticks(range(len(groups)), labels)
        ax.set_ylim(0, 1)
        ax.set_ylabel("validation Dice")
        ax.set_title(f"{arch}: Dice by tumour size (bar = mean, dots = seeds)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="loss", fontsize=8, title_fontsize=8, loc="upper left")
    return _save(fig, Canvas, Path(path))


def plot_dice_vs_size(records: Sequence[Any], path: str | Path, *, bins: int = 10,
                      min_per_bin: int = 3) -> Path:
    """Per-slice Dice against ground-truth ROI area (log x), per loss: a faint point per
    slice (all seeds) and the mean in log-spaced bins (of at least ``min_per_bin``
    slices). One panel per architecture."""
    _mpl, Figure, Canvas = _pyplot()
    archs = list(dict.fromkeys(r.arch for r in records))
    losses = list(dict.fromkeys(r.loss for r in records))
    colours = _colours(losses)
    ncols = min(3, len(archs))
    nrows = -(-len(archs) // ncols)
    fig = Figure(figsize=(5.6 * ncols, 4.0 * nrows))
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[len(archs):]:
        ax.set_visible(False)
    axes = grid[: len(archs)]
    areas_all = np.concatenate([r.evaluation.slices["gt_area"] for r in records])
    areas_all = areas_all[areas_all > 0]
    if areas_all.size:
        edges = np.geomspace(max(areas_all.min(), 1.0), areas_all.max() * 1.0001, bins + 1)
    else:
        edges = np.geomspace(1, 10, bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    for ax, arch in zip(axes, archs):
        for loss in losses:
            chosen = [r for r in records if r.arch == arch and r.loss == loss]
            if not chosen:
                continue
            area = np.concatenate([r.evaluation.slices["gt_area"] for r in chosen])
            dice = np.concatenate([r.evaluation.slices["dice"] for r in chosen])
            keep = area > 0
            area, dice = area[keep], dice[keep]
            ax.scatter(area, dice, s=5, alpha=0.18, color=colours[loss], linewidths=0)
            which = np.digitize(area, edges) - 1
            # a bin's mean is drawn only when it holds a few slices (one slice is no trend)
            means = [dice[which == k].mean() if np.count_nonzero(which == k) >= min_per_bin
                     else np.nan for k in range(len(centres))]
            ax.plot(centres, means, "-o", ms=3, color=colours[loss], label=loss)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("ground-truth tumour area per slice (px, log)")
        ax.set_ylabel("slice Dice")
        ax.set_title(f"{arch}: Dice against tumour size (line = binned mean)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(title="loss", fontsize=8, title_fontsize=8, loc="lower right")
    return _save(fig, Canvas, Path(path))

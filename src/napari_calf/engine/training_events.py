"""Events that :func:`napari_calf.engine.training.iter_train` yields, and its result.

Plain frozen data (numbers, strings, tuples, dicts of those): no tensors, no GUI
objects, so the CLI can print them and the napari widget can plot them on the main
thread. Data preparation before training yields the generic
:class:`~napari_calf.events.Progress` (stages ``"areas"`` and ``"prepare"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainStarted:
    """Once, after the data are prepared and the model is built.

    Attributes
    ----------
    device, device_reason : str
        The device used (``"cuda:0"``, ``"cpu"`` …) and why it was chosen.
    train_cases, val_cases : tuple of str
        The split, by case id.
    loss : dict
        ``describe()`` of the loss in force (for CALF: the selection with S, K, reason).
    selection : dict or None
        What CALF's rule selects from the training split's statistics (reported even
        when another loss was asked for).
    filtering : dict
        Counts of the training-slice filter (kept, dropped, flagged).
    notes : tuple of str
        Anything the user should know (resumed, initialised from …, AMP on …).
    """

    run_dir: str
    device: str
    device_reason: str
    resumed: bool
    start_epoch: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    batch_size: int
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    train_slices: int
    val_slices: int
    loss: Mapping[str, Any]
    selection: Mapping[str, Any] | None
    filtering: Mapping[str, Any]
    model: Mapping[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainStep:
    """After every training batch.

    ``loss`` is the mean training loss over the steps since the last host sync (every
    step on the CPU; every few steps on a GPU, where waiting for each value would stall
    it), ``images_per_s`` the throughput over the same window.
    """

    epoch: int
    epochs: int
    step: int
    total_steps: int
    batch: int
    batches: int
    loss: float
    lr: float
    images_per_s: float
    eta_s: float | None


@dataclass(frozen=True)
class EpochEnd:
    """After each epoch's validation.

    Attributes
    ----------
    dice : float
        Validation Dice pooled over all validation slices.
    dice_by_size : dict
        Mean per-slice Dice of the foreground slices in each ROI-size bucket
        (``small``/``medium``/``large``); None for an empty bucket.
    fp_rate_empty : float or None
        Share of tumour-free validation slices with any predicted tumour.
    transform : str
        The loss in force (CALF's selected transform or the named loss).
    """

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    dice: float
    dice_by_size: Mapping[str, float | None]
    fp_rate_empty: float | None
    best_dice: float
    best_epoch: int
    improved: bool
    transform: str
    lr: float
    seconds: float
    epochs_without_improvement: int = 0


@dataclass(frozen=True)
class TrainNotice:
    """Something worth telling the user mid-run (e.g. an out-of-memory retry)."""

    message: str


@dataclass(frozen=True)
class TrainResult:
    """What :func:`~napari_calf.engine.training.iter_train` returns.

    Attributes
    ----------
    run_dir : Path
        The run folder (``model.safetensors`` is the best checkpoint).
    best_dice, best_epoch
        Best validation Dice and its epoch (None if no epoch finished).
    stopped_early : bool
        Early stopping (no improvement for ``patience`` epochs).
    stopped_by_user : bool
        The stop callback asked to stop; ``last.safetensors`` + state allow ``--resume``.
    """

    run_dir: Path
    best_dice: float | None
    best_epoch: int | None
    epochs_done: int
    steps_done: int
    stopped_early: bool = False
    stopped_by_user: bool = False
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    seconds: float = 0.0

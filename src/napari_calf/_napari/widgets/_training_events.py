"""What each event of :func:`napari_calf.engine.training.iter_train` changes in the widget.

A pure mapping from the core's events to a small :class:`UiUpdate` (no Qt here), so the
widget's slot stays short and the wording of the status line lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...events import Progress
from ...engine.training_events import EpochEnd, TrainNotice, TrainStarted, TrainStep
from ._training_curves import DICE_ALL, DICE_SMALL, TRAIN_LOSS, VAL_LOSS


@dataclass
class UiUpdate:
    """The parts of the widget one event changes (empty fields change nothing)."""

    status: str = ""
    current: int = 0
    total: int = 0
    selection: str = ""
    eta_s: float | None = None
    epochs: int = 0
    curves: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    notify: str = ""


def selection_text(started: TrainStarted) -> str:
    """Which loss is in force and, for CALF, which transform, why, and from which slices."""
    loss = dict(started.loss or {})
    selection = dict(started.selection or loss.get("selection") or {})
    name = str(loss.get("name") or loss.get("loss") or "")
    transform = selection.get("transform") or loss.get("transform")
    reason = selection.get("reason")
    if name == "calf" or (transform and not name):
        text = f"CALF selected {transform}"
        text = f"{text}: {reason}" if reason else text
    else:
        text = f"Loss: {name or transform}"
        if transform and reason:
            text += f" (CALF's rule would select {transform}: {reason})"
    if transform:
        text += " " + split_note(started)
    return text


def split_note(started: TrainStarted) -> str:
    """Why S and K here differ from the analysis widget's: they come from the training split."""
    n_train, n_all = len(started.train_cases), len(started.train_cases) + len(started.val_cases)
    return f"(S, K of the training split only, {n_train} of {n_all} cases; the analysis uses all)"


def describe_event(event: Any) -> UiUpdate:
    """The widget update for one event from the training generator."""
    if isinstance(event, TrainStep):
        # x in epochs (fractional), so per-step loss and per-epoch Dice share the axis
        x = event.epoch - 1 + event.batch / max(event.batches, 1)
        return UiUpdate(
            status=(f"Epoch {event.epoch}/{event.epochs}, batch {event.batch}/{event.batches}: "
                    f"loss {event.loss:.4f}, {event.images_per_s:.1f} slices/s"),
            current=event.step,
            total=event.total_steps,
            eta_s=event.eta_s,
            curves={TRAIN_LOSS: (x, event.loss)},
        )
    if isinstance(event, EpochEnd):
        small = (event.dice_by_size or {}).get("small")
        fp = "" if event.fp_rate_empty is None else f", tumour on {event.fp_rate_empty:.0%} of empty slices"
        return UiUpdate(
            status=(f"Epoch {event.epoch}/{event.epochs}: validation Dice {event.dice:.3f}"
                    f"{'' if small is None else f' (small ROIs {small:.3f})'}{fp}; "
                    f"best {event.best_dice:.3f} at epoch {event.best_epoch}"),
            curves={VAL_LOSS: (event.epoch, event.val_loss), DICE_ALL: (event.epoch, event.dice),
                    DICE_SMALL: (event.epoch, small)},
        )
    if isinstance(event, TrainStarted):
        notes = "; ".join(event.notes)
        return UiUpdate(
            status=(f"Training on {event.device} ({event.train_slices} training / "
                    f"{event.val_slices} validation slices, {event.total_steps} steps)"
                    + (f". {notes}" if notes else "")),
            current=0,
            total=event.total_steps,
            epochs=event.epochs,
            selection=selection_text(event),
        )
    if isinstance(event, TrainNotice):
        return UiUpdate(status=event.message, notify=event.message)
    if isinstance(event, Progress):
        what = {"areas": "Measuring tumour sizes", "prepare": "Preparing slices"}.get(
            event.stage, event.stage.capitalize())
        count = f" {event.current}/{event.total}" if event.total else ""
        return UiUpdate(status=f"{what}{count}{': ' + event.message if event.message else ''}")
    return UiUpdate()


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 10 min``: for the progress bar."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"

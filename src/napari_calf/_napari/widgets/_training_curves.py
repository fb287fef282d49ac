"""Live curves of a training run: training loss, validation Dice (all slices, small ROIs).

Two stacked :class:`~._plots.ThemedPlot` canvases sharing the epoch axis, because loss
and Dice live on different scales.

The plots draw in the background (see :mod:`._plots`), so the GUI thread only records
points; redraws are still throttled (:data:`REDRAW_INTERVAL_MS`) so that a fast GPU
yielding many batches per second does not keep a CPU core busy drawing. The epoch axis
spans the whole run from the start, so the curves grow into it.
"""

from __future__ import annotations

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._plots import ThemedPlot

#: Legend names, also used by tests to find the lines.
TRAIN_LOSS = "training loss"
VAL_LOSS = "validation loss"
DICE_ALL = "Dice, all slices"
DICE_SMALL = "Dice, small ROIs"

#: Throttle: at most one redraw of each plot per this many ms.
REDRAW_INTERVAL_MS = 300

_LOSS_SERIES = (TRAIN_LOSS, VAL_LOSS)
_DICE_SERIES = (DICE_ALL, DICE_SMALL)


class TrainingCurves:
    """Holds the series of a run and shows them.

    Parameters
    ----------
    parent : QWidget
    theme : str
        napari theme name.
    """

    def __init__(self, parent: QWidget | None = None, *, theme: str = "dark") -> None:
        self.widget = QWidget(parent)
        self.loss_plot = ThemedPlot(self.widget, theme=theme, height=1.9)
        self.dice_plot = ThemedPlot(self.widget, theme=theme, height=1.9)
        layout = QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.dice_plot)
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.epochs = 1
        self._dirty: set[str] = set()
        self._timer = QTimer(self.widget)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self.draw)
        self.clear()

    # ------------------------------------------------------------------ data

    def clear(self, epochs: int = 1) -> None:
        """Forget the previous run's points and span ``epochs`` on the x axis."""
        self.series = {name: ([], []) for name in _LOSS_SERIES + _DICE_SERIES}
        self.epochs = max(1, int(epochs))
        self._dirty = {"loss", "dice"}
        self.request_draw()

    def set_epochs(self, epochs: int) -> None:
        """The run's length: the epoch axis spans it from the start."""
        if max(1, int(epochs)) != self.epochs:
            self.epochs = max(1, int(epochs))
            self._dirty |= {"loss", "dice"}

    def add(self, **points: tuple[float, float | None]) -> None:
        """Append ``name=(epoch, value)`` points; a ``None`` value (empty bucket) is skipped."""
        for name, (x, y) in points.items():
            if y is None:
                continue
            xs, ys = self.series[name]
            xs.append(float(x))
            ys.append(float(y))
            self._dirty.add("loss" if name in _LOSS_SERIES else "dice")

    def set_theme(self, theme: str) -> None:
        self.loss_plot.set_theme(theme)
        self.dice_plot.set_theme(theme)

    # ------------------------------------------------------------------ drawing

    def request_draw(self) -> None:
        """Show what changed soon (at most once per :data:`REDRAW_INTERVAL_MS`)."""
        if self._dirty and not self._timer.isActive():
            self._timer.start()

    def draw(self) -> None:
        """Hand the changed plots their current data now (they draw in the background)."""
        self._timer.stop()
        xmax = max([self.epochs] + [max(xs, default=0.0) for xs, _ys in self.series.values()]) * 1.04
        if "loss" in self._dirty:
            ys = [y for name in _LOSS_SERIES for y in self.series[name][1]]
            # every loss here is non-negative (CALF_METHOD §4): the axis starts at 0
            top = max(max(ys, default=1.0), 1e-3) * 1.15
            self.loss_plot.curves({n: self.series[n] for n in _LOSS_SERIES}, xlabel="epoch",
                                  ylabel="loss", xlim=(0.0, xmax), ylim=(0.0, top), markers=True)
        if "dice" in self._dirty:
            self.dice_plot.curves({n: self.series[n] for n in _DICE_SERIES}, xlabel="epoch",
                                  ylabel="validation Dice", xlim=(0.0, xmax), ylim=(-0.03, 1.03),
                                  markers=True)
        self._dirty = set()

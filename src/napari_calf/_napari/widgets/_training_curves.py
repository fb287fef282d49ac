"""Live curves of a training run: training loss, validation Dice (all slices, small ROIs).

Two stacked :class:`~._plots.ThemedPlot` canvases sharing the epoch axis, because loss
and Dice live on different scales. Adding points is cheap; :meth:`TrainingCurves.draw`
(the expensive matplotlib part) is called by the widget on a throttle.
"""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._plots import ThemedPlot

#: Legend names, also used by tests to find the lines.
TRAIN_LOSS = "training loss"
VAL_LOSS = "validation loss"
DICE_ALL = "Dice, all slices"
DICE_SMALL = "Dice, small ROIs"


class TrainingCurves:
    """Holds the series of a run and draws them.

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
        self.clear()

    def clear(self) -> None:
        """Forget the previous run's points and show empty axes."""
        self.series = {name: ([], []) for name in (TRAIN_LOSS, VAL_LOSS, DICE_ALL, DICE_SMALL)}
        self.draw()

    def set_epochs(self, epochs: int) -> None:
        """The run's length: the epoch axis spans it from the start, so the curves grow into it."""
        self.epochs = max(1, int(epochs))

    def add(self, **points: tuple[float, float | None]) -> None:
        """Append ``name=(epoch, value)`` points; a ``None`` value (empty bucket) is skipped."""
        for name, (x, y) in points.items():
            if y is None:
                continue
            xs, ys = self.series[name]
            xs.append(float(x))
            ys.append(float(y))

    def set_theme(self, theme: str) -> None:
        self.loss_plot.set_theme(theme)
        self.dice_plot.set_theme(theme)
        self.draw()

    def draw(self) -> None:
        """Redraw both plots from the stored series."""
        self._draw(self.loss_plot, (TRAIN_LOSS, VAL_LOSS), "loss", None)
        self._draw(self.dice_plot, (DICE_ALL, DICE_SMALL), "validation Dice", (0.0, 1.0))

    def _draw(self, plot: ThemedPlot, names: tuple[str, ...], ylabel: str,
              ylim: tuple[float, float] | None) -> None:
        shown = {name: self.series[name] for name in names if self.series[name][0]}
        plot.curves(shown, xlabel="epoch", ylabel=ylabel)
        # per-epoch values are single points early on: markers make them visible
        for line in plot.axes.lines:
            if len(line.get_xdata()) < 30:
                line.set_marker("o")
                line.set_markersize(3.5)
        # a little headroom so markers on the last point are not cut by the frame
        plot.axes.margins(x=0.0, y=0.12)
        plot.axes.autoscale_view()
        if ylim is not None:
            plot.axes.set_ylim(ylim[0] - 0.03, ylim[1] + 0.03)
        xmax = max([self.epochs] + [max(xs) for xs, _ in shown.values()])
        plot.axes.set_xlim(0, xmax + 0.05 * xmax)
        plot.canvas.draw_idle()

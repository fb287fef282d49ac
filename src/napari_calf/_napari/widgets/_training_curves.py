"""Live curves of a training run: training loss, validation Dice (all slices, small ROIs).

Two stacked :class:`~._plots.ThemedPlot` canvases sharing the epoch axis, because loss
and Dice live on different scales.

Drawing is the GUI thread's most expensive job during a run, so it is kept small:
the lines are made once per run and then only given new data; only a plot whose data
changed is redrawn (the loss every few batches, the Dice once per epoch); and the
constrained layout is computed once (per run and per resize) and then frozen, which
halves the cost of a redraw. :meth:`TrainingCurves.draw` is called on a throttle.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._plots import ThemedPlot

#: Legend names, also used by tests to find the lines.
TRAIN_LOSS = "training loss"
VAL_LOSS = "validation loss"
DICE_ALL = "Dice, all slices"
DICE_SMALL = "Dice, small ROIs"

#: Throttle: at most one canvas is redrawn per this many ms. A redraw costs 20-200 ms of
#: GUI-thread time on a busy CPU (more while the training thread competes for the GIL),
#: and one per batch would make napari lag (fast GPUs yield many batches per second).
REDRAW_INTERVAL_MS = 300

_LOSS_SERIES = (TRAIN_LOSS, VAL_LOSS)
_DICE_SERIES = (DICE_ALL, DICE_SMALL)


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
        self.lines: dict[str, Any] = {}
        self.epochs = 1
        self._dirty: list[ThemedPlot] = []  # oldest change first
        self._backgrounds: dict[ThemedPlot, Any] = {}  # axes without lines, for blitting
        self._timer = QTimer(self.widget)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self._draw_next)
        for plot in (self.loss_plot, self.dice_plot):
            plot.canvas.mpl_connect("resize_event", lambda _e, p=plot: self._relayout(p))
            plot.canvas.mpl_connect("draw_event", lambda _e, p=plot: self._on_draw(p))
        self._build_all()
        self.clear()

    # ------------------------------------------------------------------ data

    def clear(self, epochs: int = 1) -> None:
        """Forget the previous run's points (axes, legend and lines stay) and span ``epochs``.

        Knowing the run's length now means the axes need no full redraw mid-run.
        """
        self.series = {name: ([], []) for name in _LOSS_SERIES + _DICE_SERIES}
        for line in self.lines.values():
            line.set_data([], [])
        self.epochs = max(1, int(epochs))
        self._dirty = [self.loss_plot, self.dice_plot]
        self.request_draw()

    def _build_all(self) -> None:
        self._build(self.loss_plot, _LOSS_SERIES, "loss", None)
        self._build(self.dice_plot, _DICE_SERIES, "validation Dice", (0.0, 1.0))

    def set_epochs(self, epochs: int) -> None:
        """The run's length: the epoch axis spans it from the start, so the curves grow into it."""
        if max(1, int(epochs)) != self.epochs:
            self.epochs = max(1, int(epochs))
            self._mark(self.loss_plot)
            self._mark(self.dice_plot)

    def add(self, **points: tuple[float, float | None]) -> None:
        """Append ``name=(epoch, value)`` points; a ``None`` value (empty bucket) is skipped."""
        for name, (x, y) in points.items():
            if y is None:
                continue
            xs, ys = self.series[name]
            xs.append(float(x))
            ys.append(float(y))
            self.lines[name].set_data(xs, ys)
            self._mark(self.loss_plot if name in _LOSS_SERIES else self.dice_plot)

    def set_theme(self, theme: str) -> None:
        self.loss_plot.set_theme(theme)
        self.dice_plot.set_theme(theme)
        self._build_all()  # new lines in the theme's colours, same data
        for name, (xs, ys) in self.series.items():
            self.lines[name].set_data(xs, ys)
        self._dirty = [self.loss_plot, self.dice_plot]
        self.draw()

    # ------------------------------------------------------------------ drawing

    def _build(self, plot: ThemedPlot, names: tuple[str, ...], ylabel: str,
               ylim: tuple[float, float] | None) -> None:
        plot.curves({name: ([], []) for name in names}, xlabel="epoch", ylabel=ylabel)
        for name, line in zip(names, plot.axes.lines):
            line.set_animated(True)  # drawn by _on_draw/_render on top of the saved background
            # per-epoch values are single points early on: markers make them visible
            line.set_marker("o")
            line.set_markersize(3.0)
            self.lines[name] = line
        plot.axes.set_xlim(0, self.epochs)
        if ylim is not None:
            plot.axes.set_ylim(ylim[0] - 0.03, ylim[1] + 0.03)
        self._relayout(plot)

    def _mark(self, plot: ThemedPlot) -> None:
        if plot not in self._dirty:
            self._dirty.append(plot)

    def request_draw(self) -> None:
        """Redraw what changed soon: one canvas per throttle tick, never two in a row."""
        if self._dirty and not self._timer.isActive():
            self._timer.start()

    def draw(self) -> None:
        """Redraw both plots in full, now (e.g. at the end of a run, to fit the final data)."""
        self._timer.stop()
        self._dirty = []
        for plot in (self.loss_plot, self.dice_plot):
            self._render(plot, full=True)

    def _draw_next(self) -> None:
        if self._dirty:
            self._render(self._dirty.pop(0))
        self.request_draw()

    def _render(self, plot: ThemedPlot, *, full: bool = False) -> None:
        """Show the plot's current data.

        When the data fit the axes as drawn last time, only the lines are redrawn onto
        the saved background ("blitting", a few ms); otherwise, or when ``full``, the
        limits are recomputed and the whole figure is redrawn.
        """
        ax = plot.axes
        xmax = max([self.epochs] + [max(line.get_xdata(), default=0) for line in ax.lines])
        xlim = (0.0, xmax * 1.06)
        ylim = ax.get_ylim()
        if plot is self.loss_plot:
            ys = [y for line in ax.lines for y in line.get_ydata()]
            if ys:
                # every loss here is non-negative (CALF_METHOD §4): the axis starts at 0, so a
                # falling loss stays in view and only a new maximum needs a full redraw; the
                # headroom makes that rare (a full redraw costs 10-50x a line update)
                top = max(max(ys), 1e-3)
                if full:
                    ylim = (0.0, top * 1.2)
                elif top > ylim[1] or plot not in self._backgrounds:
                    ylim = (0.0, top * 1.5)
        if (not full and plot in self._backgrounds and tuple(ax.get_xlim()) == xlim
                and tuple(ax.get_ylim()) == tuple(ylim)):
            canvas = plot.canvas
            canvas.restore_region(self._backgrounds[plot])
            for line in ax.lines:
                ax.draw_artist(line)
            canvas.blit(ax.bbox)
            return
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        plot.canvas.draw_idle()  # _on_draw saves the new background and adds the lines

    def _on_draw(self, plot: ThemedPlot) -> None:
        """After a full draw (lines are 'animated', so not in it): keep the background, add the lines."""
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        # keep the axes where the layout put them: recomputing it every redraw doubles the cost
        if isinstance(plot.figure.get_layout_engine(), ConstrainedLayoutEngine):
            plot.figure.set_layout_engine("none")
        ax = plot.axes
        self._backgrounds[plot] = plot.canvas.copy_from_bbox(ax.bbox)
        for line in ax.lines:
            ax.draw_artist(line)

    def _relayout(self, plot: ThemedPlot) -> None:
        # a new size: constrained layout once more at the next (full) draw
        plot.figure.set_layout_engine("constrained")
        self._backgrounds.pop(plot, None)

"""A matplotlib canvas for dock widgets, styled like the napari theme it sits in.

:class:`ThemedPlot` is shared by the napari-calf widgets: the analysis widget
draws histograms, the training widget loss curves, the review widget scatter
plots. It takes its colours from :func:`napari.utils.theme.get_theme` (figure
background, text, accent for the data, a warning colour for a selection) and
re-styles itself when the viewer's theme changes. Clicks are turned into Qt
signals that name *data*, not pixels: ``bin_clicked(int)`` for a histogram bar,
``point_clicked(int)`` for a scatter point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

#: Points for tick labels and titles: napari's 9 pt is too small on a plot.
FONT_SIZE = 9.5


def theme_colours(theme_name: str) -> dict[str, str]:
    """Hex colours of a napari theme by role: ``background``, ``panel``, ``text``, ``grid``,
    ``accent``, ``selection``, ``error``.

    Falls back to the dark theme for an unknown name (e.g. ``"system"`` resolved elsewhere).
    """
    from napari.utils.theme import available_themes, get_theme

    name = theme_name if theme_name in available_themes() else "dark"
    theme = get_theme(name)

    def hex_of(colour: Any) -> str:
        return colour.as_hex() if hasattr(colour, "as_hex") else str(colour)

    return {
        "background": hex_of(theme.background),
        "panel": hex_of(theme.foreground),
        "text": hex_of(theme.text),
        "grid": hex_of(theme.primary),
        "accent": hex_of(theme.current),
        "selection": hex_of(theme.warning),
        "error": hex_of(theme.error),
    }


def histogram_bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value for ``edges`` as :func:`numpy.histogram` counts them.

    Bins are half-open ``[e_i, e_{i+1})`` except the last, which includes its right
    edge; values outside the edges get ``-1``.
    """
    values = np.asarray(values, dtype=float)
    n_bins = len(edges) - 1
    index = np.searchsorted(edges, values, side="right") - 1
    index[values == edges[-1]] = n_bins - 1
    index[(values < edges[0]) | (values > edges[-1])] = -1
    return index


class ThemedPlot(QWidget):
    """One matplotlib axes in a Qt widget, in napari's colours.

    Parameters
    ----------
    theme : str
        napari theme name (``viewer.theme``); change it later with :meth:`set_theme`.
    height : float
        Figure height in inches at creation (the widget resizes freely).
    """

    bin_clicked = Signal(int)
    point_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None, *, theme: str = "dark", height: float = 2.6) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(4.2, height), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(int(height * 72))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.axes = self.figure.add_subplot()
        self.colours = theme_colours(theme)
        self.edges: np.ndarray | None = None  # of the last histogram, for clicks
        self._scatter_xy: np.ndarray | None = None
        self._patches: list[Any] = []
        self.canvas.mpl_connect("button_press_event", self._on_press)
        self._style()

    # -- theme --------------------------------------------------------------------------
    def set_theme(self, theme: str) -> None:
        """Re-colour for a napari theme and redraw."""
        self.colours = theme_colours(theme)
        self._style()
        for patch in self._patches:
            patch.set_facecolor(self.colours["accent"])
        self.canvas.draw_idle()

    def _style(self) -> None:
        c = self.colours
        self.figure.set_facecolor(c["background"])
        ax = self.axes
        ax.set_facecolor(c["panel"])
        for spine in ax.spines.values():
            spine.set_color(c["grid"])
        ax.tick_params(colors=c["text"], labelsize=FONT_SIZE)
        ax.xaxis.label.set_color(c["text"])
        ax.yaxis.label.set_color(c["text"])
        ax.xaxis.label.set_fontsize(FONT_SIZE)
        ax.yaxis.label.set_fontsize(FONT_SIZE)
        ax.title.set_color(c["text"])
        ax.title.set_fontsize(FONT_SIZE + 0.5)

    def _reset(self, title: str, xlabel: str, ylabel: str) -> None:
        self.axes.clear()
        self._patches = []
        self.edges = None
        self._scatter_xy = None
        self._style()
        self.axes.set_title(title)
        self.axes.set_xlabel(xlabel)
        self.axes.set_ylabel(ylabel)

    # -- plots --------------------------------------------------------------------------
    def message(self, text: str) -> None:
        """An empty plot with a centred message (e.g. "Run the analysis to see sizes")."""
        self._reset("", "", "")
        self.axes.set_xticks([])
        self.axes.set_yticks([])
        self.axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True,
                       color=self.colours["text"], fontsize=FONT_SIZE + 1, transform=self.axes.transAxes)
        self.canvas.draw_idle()

    def histogram(
        self,
        values: np.ndarray,
        *,
        bins: int | Sequence[float] = 30,
        log_x: bool = False,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "slices",
        annotation: str | None = None,
        selected_bin: int | None = None,
    ) -> np.ndarray:
        """Draw a histogram; bars are clickable (``bin_clicked``).

        Parameters
        ----------
        values : array of float
            Must be > 0 when ``log_x``.
        bins : int or sequence
            Number of bins (linear or log-spaced between min and max) or the edges.
        log_x : bool
            Log-spaced bins on a log x axis, for right-skewed sizes.
        annotation : str, optional
            Text box in the top-right corner (e.g. ``"S = 2.1\\nK = 5.3\\nN = 800"``).
        selected_bin : int, optional
            Bar drawn in the selection colour.

        Returns
        -------
        ndarray
            The bin edges used (also kept in :attr:`edges`).
        """
        values = np.asarray(values, dtype=float)
        self._reset(title, xlabel, ylabel)
        if values.size == 0:
            self.message("no non-zero values to show")
            return np.array([])
        if isinstance(bins, (int, np.integer)):
            lo, hi = float(values.min()), float(values.max())
            if hi <= lo:
                lo, hi = (lo * 0.9, hi * 1.1) if lo > 0 else (lo - 0.5, hi + 0.5)
            edges = np.geomspace(lo, hi, int(bins) + 1) if log_x else np.linspace(lo, hi, int(bins) + 1)
        else:
            edges = np.asarray(bins, dtype=float)
        counts, edges = np.histogram(values, bins=edges)
        colours = [self.colours["accent"]] * len(counts)
        if selected_bin is not None and 0 <= selected_bin < len(counts):
            colours[selected_bin] = self.colours["selection"]
        bars = self.axes.bar(edges[:-1], counts, width=np.diff(edges), align="edge",
                             color=colours, edgecolor=self.colours["panel"], linewidth=0.5)
        self._patches = list(bars.patches)
        from matplotlib.ticker import MaxNLocator

        self.axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts are whole slices
        if log_x:
            self.axes.set_xscale("log")
        self.axes.set_xlim(edges[0], edges[-1])
        if annotation:
            self.axes.text(0.98, 0.95, annotation, ha="right", va="top", transform=self.axes.transAxes,
                           color=self.colours["text"], fontsize=FONT_SIZE, family="monospace",
                           bbox={"boxstyle": "round,pad=0.35", "facecolor": self.colours["background"],
                                 "edgecolor": self.colours["grid"], "alpha": 0.9})
        self.edges = edges
        self.canvas.draw_idle()
        return edges

    def curves(
        self,
        series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        log_y: bool = False,
    ) -> None:
        """Line plots, one per named (x, y) series, with a legend (e.g. loss per epoch)."""
        self._reset(title, xlabel, ylabel)
        for name, (x, y) in series.items():
            self.axes.plot(x, y, label=name, linewidth=1.5)
        if log_y:
            self.axes.set_yscale("log")
        if series:
            legend = self.axes.legend(fontsize=FONT_SIZE, facecolor=self.colours["background"],
                                      edgecolor=self.colours["grid"])
            for text in legend.get_texts():
                text.set_color(self.colours["text"])
        self.canvas.draw_idle()

    def scatter(
        self,
        x: Sequence[float],
        y: Sequence[float],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        highlight: Sequence[bool] | None = None,
    ) -> None:
        """Points (clickable: ``point_clicked`` with the index of the nearest point)."""
        self._reset(title, xlabel, ylabel)
        xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
        colours = np.array([self.colours["accent"]] * len(xy), dtype=object)
        if highlight is not None:
            colours[np.asarray(highlight, bool)] = self.colours["selection"]
        self.axes.scatter(xy[:, 0], xy[:, 1], s=14, c=list(colours))
        self._scatter_xy = xy
        self.canvas.draw_idle()

    # -- clicks -------------------------------------------------------------------------
    def bin_at(self, x: float) -> int | None:
        """Histogram bin containing data coordinate ``x``, or ``None``."""
        if self.edges is None or self.edges.size < 2:
            return None
        index = int(histogram_bin_of(np.array([x]), self.edges)[0])
        return None if index < 0 else index

    def _on_press(self, event: Any) -> None:
        if event.inaxes is not self.axes or event.xdata is None:
            return
        if self.edges is not None:
            index = self.bin_at(event.xdata)
            if index is not None:
                self.bin_clicked.emit(index)
        elif self._scatter_xy is not None and len(self._scatter_xy):
            # nearest in screen space, so both axes weigh the same
            screen = self.axes.transData.transform(self._scatter_xy)
            d = np.hypot(screen[:, 0] - event.x, screen[:, 1] - event.y)
            self.point_clicked.emit(int(np.argmin(d)))

    def bin_centre_in_widget(self, index: int) -> tuple[int, int]:
        """Qt widget coordinates of the middle of bar ``index`` (for tests and tours)."""
        if self.edges is None:
            raise IndexError("no histogram drawn")
        self.canvas.draw()
        lo, hi = self.edges[index], self.edges[index + 1]
        x = np.sqrt(lo * hi) if self.axes.get_xscale() == "log" else (lo + hi) / 2
        y0, y1 = self.axes.get_ylim()
        px, py = self.axes.transData.transform((x, y0 + 0.02 * (y1 - y0)))
        ratio = self.canvas.device_pixel_ratio or 1.0
        return int(px / ratio), int(self.canvas.height() - py / ratio)

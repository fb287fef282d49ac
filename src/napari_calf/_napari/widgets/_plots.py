"""A matplotlib plot for dock widgets, in napari's colours, drawn off the GUI thread.

:class:`ThemedPlot` is shared by the napari-calf widgets: the analysis widget draws
histograms, the training widget loss curves, the review widget a scatter plot. A
plot method (:meth:`~ThemedPlot.histogram`, :meth:`~ThemedPlot.curves`,
:meth:`~ThemedPlot.scatter`, :meth:`~ThemedPlot.message`) only records *what* to
show, as a small :mod:`scene <._plot_scenes>`; the figure is built and drawn to
pixels in the background (:mod:`._render_thread`) and the GUI thread paints the
finished image. napari's event loop is therefore never blocked by matplotlib,
whose draws cost 80-200 ms each on a laptop-class CPU.

Colours come from :func:`napari.utils.theme.get_theme` (figure background, text,
accent for the data, a warning colour for a selection); :meth:`set_theme` (or
:func:`follow_theme`) re-colours a plot when the viewer's theme changes. Clicks
are turned into Qt signals that name *data*, not pixels: ``bin_clicked(int)`` for
a histogram bar, ``point_clicked(int)`` for a scatter point.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

from ._plot_scenes import (
    CurvesScene,
    HistogramScene,
    MessageScene,
    Scene,
    ScatterScene,
)
from ._plot_drawing import DPI, Bridge, FigureState, Job, Rendered
from ._render_thread import RENDER_QUEUE

#: Smallest useful plot: axes, two ticks each way and a title still fit.
MIN_WIDTH, MIN_HEIGHT = 180, 130
#: A resize redraws after the size has been still this long (a drag resizes many times).
RESIZE_SETTLE_MS = 60

_ids = itertools.count()


def theme_colours(theme_name: str) -> dict[str, str]:
    """Hex colours of a napari theme by role: ``background``, ``panel``, ``text``, ``grid``,
    ``accent``, ``selection``, ``error``.

    ``"system"`` resolves to the theme napari shows; an unknown name falls back to dark.
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


def histogram_edges(values: np.ndarray, bins: int | Sequence[float], log_x: bool) -> np.ndarray:
    """Bin edges: ``bins`` linear (or log-spaced) steps from min to max, or the edges given."""
    if not isinstance(bins, (int, np.integer)):
        return np.asarray(bins, dtype=float)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = (lo * 0.9, hi * 1.1) if lo > 0 else (lo - 0.5, hi + 0.5)
    return np.geomspace(lo, hi, int(bins) + 1) if log_x else np.linspace(lo, hi, int(bins) + 1)


class ThemedPlot(QWidget):
    """One matplotlib axes in a Qt widget, in napari's colours, drawn in the background.

    Parameters
    ----------
    theme : str
        napari theme name (``viewer.theme``); change it later with :meth:`set_theme`.
    height : float
        Preferred height in inches (the widget resizes freely down to ``MIN_HEIGHT`` px).

    Signals
    -------
    bin_clicked(int)
        Index of the histogram bar clicked.
    point_clicked(int)
        Index of the scatter point nearest to the click.
    drawn()
        A new drawing is on screen (tests wait for it).
    """

    bin_clicked = Signal(int)
    point_clicked = Signal(int)
    drawn = Signal()

    def __init__(self, parent: QWidget | None = None, *, theme: str = "dark", height: float = 2.6) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._key = next(_ids)
        self.figure = Figure(figsize=(4.2, height), dpi=DPI, layout="constrained")
        #: The axes. Touch it only while :meth:`is_current` (the render thread owns it otherwise).
        self.axes = self.figure.add_subplot()
        self._bridge = Bridge()
        self._bridge.rendered.connect(self._on_rendered)
        self._figure_state = FigureState(self.figure, FigureCanvasAgg(self.figure), self.axes, self._bridge)
        self.colours = theme_colours(theme)
        self.edges: np.ndarray | None = None  # of the last histogram, for clicks
        self._scatter_xy: np.ndarray | None = None
        self._scene: Scene = MessageScene()
        self._requested = 0
        self._shown: Rendered | None = None
        self._preferred = QSize(420, int(height * 72))
        self.setMinimumSize(MIN_WIDTH, MIN_HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(RESIZE_SETTLE_MS)
        self._resize_timer.timeout.connect(self._request)
        self.destroyed.connect(lambda _o=None, key=self._key: RENDER_QUEUE.cancel(key))

    # -- Qt -----------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return self._preferred

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(MIN_WIDTH, MIN_HEIGHT)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(self.colours["background"]))
        shown = self._shown
        if shown is not None:
            # during a resize the last drawing stays as it was (not stretched, which
            # smears text) until the one at the new size arrives, a moment later
            painter.drawImage(0, 0, shown.image)
        painter.end()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._resize_timer.start()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._shown is None or self._shown.pixel_size != self._pixel_size():
            self._request()

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if event.button() != Qt.MouseButton.LeftButton:
            return
        pos = event.position() if hasattr(event, "position") else event.pos()
        self._click(float(pos.x()), float(pos.y()))

    # -- state --------------------------------------------------------------------------
    def is_current(self) -> bool:
        """Whether the latest scene is drawn and on screen (nothing is being drawn)."""
        shown = self._shown
        return (RENDER_QUEUE.idle(self._key) and shown is not None
                and shown.generation == self._requested)

    def overlapping_ticks(self) -> bool | None:
        """Whether tick labels of the drawing on screen overlap (None before the first one)."""
        return None if self._shown is None else self._shown.overlapping_ticks

    # -- theme --------------------------------------------------------------------------
    def set_theme(self, theme: str) -> None:
        """Re-colour for a napari theme (``"dark"``, ``"light"``, ``"system"``) and redraw."""
        self.colours = theme_colours(theme)
        self._request()

    def on_viewer_theme(self, event: Any) -> None:
        """Slot for ``viewer.events.theme`` (see :func:`follow_theme`)."""
        self.set_theme(str(getattr(event, "value", "dark")))

    # -- plots --------------------------------------------------------------------------
    def show_scene(self, scene: Scene) -> None:
        """Show ``scene`` (drawn in the background; see :mod:`._plot_scenes`)."""
        self._scene = scene
        self.edges = scene.edges if isinstance(scene, HistogramScene) else None
        self._scatter_xy = scene.xy if isinstance(scene, ScatterScene) else None
        self._request()

    def message(self, text: str) -> None:
        """An empty plot with a centred message (e.g. "Run the analysis to see sizes")."""
        self.show_scene(MessageScene(text=text))

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
            The bin edges used (also kept in :attr:`edges`); empty when there are no values.
        """
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            self.message("no non-zero values to show")
            return np.array([])
        edges = histogram_edges(values, bins, log_x)
        counts, edges = np.histogram(values, bins=edges)
        self.show_scene(HistogramScene(
            title=title, xlabel=xlabel, ylabel=ylabel, edges=edges, counts=counts, log_x=log_x,
            annotation=annotation, selected_bin=selected_bin))
        return edges

    def curves(
        self,
        series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        log_y: bool = False,
        xlim: tuple[float, float] | None = None,
        ylim: tuple[float, float] | None = None,
        markers: bool = False,
    ) -> None:
        """Line plots, one per named (x, y) series, with a legend (e.g. loss per epoch).

        Calling it again with the same names and labels only updates the lines (the
        figure is not rebuilt), so a growing curve costs little even in the background.
        """
        frozen = tuple((name, tuple(map(float, x)), tuple(map(float, y))) for name, (x, y) in series.items())
        self.show_scene(CurvesScene(title=title, xlabel=xlabel, ylabel=ylabel, series=frozen,
                                    log_y=log_y, xlim=xlim, ylim=ylim, markers=markers))

    def scatter(
        self,
        x: Sequence[float],
        y: Sequence[float],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        highlight: Sequence[bool] | None = None,
        labels: tuple[str, str] | None = None,
        log_x: bool = False,
        ylim: tuple[float, float] | None = None,
        hline: float | None = None,
    ) -> None:
        """Points (clickable: ``point_clicked`` with the index of the nearest point).

        ``highlight`` marks points in the selection colour; ``labels`` names the two
        groups (plain, highlighted) in a legend, so the colours explain themselves.
        """
        xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
        flags = None if highlight is None else np.asarray(highlight, bool)
        self.show_scene(ScatterScene(title=title, xlabel=xlabel, ylabel=ylabel, xy=xy, highlight=flags,
                                     labels=labels, log_x=log_x, ylim=ylim, hline=hline))

    # -- drawing (GUI side) -------------------------------------------------------------
    def _pixel_size(self) -> tuple[int, int]:
        ratio = self._ratio()
        return max(1, int(round(self.width() * ratio))), max(1, int(round(self.height() * ratio)))

    def _ratio(self) -> float:
        return float(self.devicePixelRatioF() or 1.0)

    def _request(self) -> None:
        """Queue a drawing of the current scene at the current size (newest wins)."""
        self._requested += 1
        job = Job(self._figure_state, self._requested, self._scene, dict(self.colours),
                   self._pixel_size(), self._ratio())
        RENDER_QUEUE.submit(self._key, job.run)

    def _on_rendered(self, result: Rendered) -> None:
        if self._shown is not None and result.generation < self._shown.generation:
            return  # an older drawing arriving late
        self._shown = result
        self.update()
        self.drawn.emit()

    # -- clicks -------------------------------------------------------------------------
    def _data_at(self, x: float, y: float) -> tuple[float, float, float, float] | None:
        """(x data, y data, x fig px, y fig px) at widget position (x, y), or None off the axes."""
        shown = self._shown
        if shown is None:
            return None
        sx = shown.pixel_size[0] / max(self.width(), 1)
        sy = shown.pixel_size[1] / max(self.height(), 1)
        fx, fy = x * sx, shown.pixel_size[1] - y * sy
        x0, y0, x1, y1 = shown.axes_box
        if not (x0 <= fx <= x1 and y0 <= fy <= y1):
            return None
        dx, dy = shown.transform.inverted().transform((fx, fy))
        return float(dx), float(dy), fx, fy

    def _click(self, x: float, y: float) -> None:
        at = self._data_at(x, y)
        if at is None:
            return
        if self.edges is not None:
            index = self.bin_at(at[0])
            if index is not None:
                self.bin_clicked.emit(index)
        elif self._scatter_xy is not None and len(self._scatter_xy) and self._shown is not None:
            # nearest in screen space, so both axes weigh the same
            screen = self._shown.transform.transform(self._scatter_xy)
            d = np.hypot(screen[:, 0] - at[2], screen[:, 1] - at[3])
            self.point_clicked.emit(int(np.argmin(d)))

    def bin_at(self, x: float) -> int | None:
        """Histogram bin containing data coordinate ``x``, or ``None``."""
        if self.edges is None or self.edges.size < 2:
            return None
        index = int(histogram_bin_of(np.array([x]), self.edges)[0])
        return None if index < 0 else index

    def bin_centre_in_widget(self, index: int) -> tuple[int, int]:
        """Widget coordinates of the middle (low part) of bar ``index``, as drawn now.

        Raises
        ------
        IndexError
            No histogram is on screen yet.
        """
        shown = self._shown
        if self.edges is None or shown is None:
            raise IndexError("no histogram drawn")
        lo, hi = self.edges[index], self.edges[index + 1]
        x = np.sqrt(lo * hi) if shown.xscale == "log" else (lo + hi) / 2
        y0, y1 = shown.ylim
        px, py = shown.transform.transform((x, y0 + 0.02 * (y1 - y0)))
        sx = shown.pixel_size[0] / max(self.width(), 1)
        sy = shown.pixel_size[1] / max(self.height(), 1)
        return int(px / sx), int((shown.pixel_size[1] - py) / sy)


def follow_theme(viewer: Any, *plots: ThemedPlot) -> None:
    """Re-colour ``plots`` whenever the viewer's theme changes (and now)."""
    theme = str(getattr(viewer, "theme", "dark"))
    for plot in plots:
        plot.set_theme(theme)
        # a bound method: napari's events hold it weakly, so a closed widget is freed
        viewer.events.theme.connect(plot.on_viewer_theme)

"""What a :class:`~._plots.ThemedPlot` shows, as plain data, and how to draw it.

A scene is a frozen record made on the GUI thread (numbers and words only); the
render thread builds the matplotlib artists from it (:meth:`Scene.build`). When a
new scene has the same :meth:`Scene.key` as the one on the axes, only
:meth:`Scene.update` runs, which moves data into the existing artists: a growing
training curve does not rebuild its axes, legend and ticks every time.

No Qt here, and matplotlib only inside the methods the render thread calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def style_axes(figure: Any, ax: Any, c: dict[str, str], font_size: float) -> None:
    """Colour the figure and axes for a napari theme (``c`` from ``theme_colours``)."""
    figure.set_facecolor(c["background"])
    ax.set_facecolor(c["panel"])
    for spine in ax.spines.values():
        spine.set_color(c["grid"])
    ax.tick_params(colors=c["text"], labelsize=font_size, which="both")
    for label in (ax.xaxis.label, ax.yaxis.label):
        label.set_color(c["text"])
        label.set_fontsize(font_size)
    ax.title.set_color(c["text"])
    ax.title.set_fontsize(font_size + 0.5)


def _legend(ax: Any, c: dict[str, str], font_size: float, **kwargs: Any) -> None:
    legend = ax.legend(fontsize=font_size - 0.5, facecolor=c["background"], edgecolor=c["grid"],
                       framealpha=0.9, **kwargs)
    for text in legend.get_texts():
        text.set_color(c["text"])


@dataclass(frozen=True, kw_only=True)
class Scene:
    """Base: a title and axis labels. Subclasses draw the data."""

    title: str = ""
    xlabel: str = ""
    ylabel: str = ""

    def key(self) -> tuple[Any, ...] | None:
        """Scenes with equal keys differ only in data (:meth:`update` suffices); None: always rebuild."""
        return None

    def build(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        ax.set_title(self.title)
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)

    def update(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        self.build(ax, c, font_size)


@dataclass(frozen=True, kw_only=True)
class MessageScene(Scene):
    """An empty plot with a centred message."""

    text: str = ""

    def build(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, self.text, ha="center", va="center", wrap=True, color=c["text"],
                fontsize=font_size + 1, transform=ax.transAxes)


@dataclass(frozen=True, eq=False, kw_only=True)
class HistogramScene(Scene):
    """Bars of ``counts`` between ``edges``; one bar may be marked as selected."""

    edges: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(1))
    log_x: bool = False
    annotation: str | None = None
    selected_bin: int | None = None

    def build(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        from matplotlib.ticker import MaxNLocator

        super().build(ax, c, font_size)
        colours = [c["accent"]] * len(self.counts)
        if self.selected_bin is not None and 0 <= self.selected_bin < len(self.counts):
            colours[self.selected_bin] = c["selection"]
        ax.bar(self.edges[:-1], self.counts, width=np.diff(self.edges), align="edge",
               color=colours, edgecolor=c["panel"], linewidth=0.5)
        ax.yaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))  # whole slices
        if self.log_x:
            ax.set_xscale("log")
        ax.set_xlim(self.edges[0], self.edges[-1])
        if self.annotation:
            ax.text(0.98, 0.95, self.annotation, ha="right", va="top", transform=ax.transAxes,
                    color=c["text"], fontsize=font_size, family="monospace",
                    bbox={"boxstyle": "round,pad=0.35", "facecolor": c["background"],
                          "edgecolor": c["grid"], "alpha": 0.9})


@dataclass(frozen=True, kw_only=True)
class CurvesScene(Scene):
    """Named line series ``(name, xs, ys)`` with a legend; limits fixed or automatic."""

    series: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...] = ()
    log_y: bool = False
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    markers: bool = False

    def key(self) -> tuple[Any, ...] | None:
        return ("curves", self.title, self.xlabel, self.ylabel, self.log_y, self.markers,
                tuple(name for name, _x, _y in self.series))

    def build(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        super().build(ax, c, font_size)
        for name, xs, ys in self.series:
            ax.plot(xs, ys, label=name, linewidth=1.5,
                    **({"marker": "o", "markersize": 3.0} if self.markers else {}))
        if self.log_y:
            ax.set_yscale("log")
        if self.series:
            _legend(ax, c, font_size, loc="best")
        self._limits(ax)

    def update(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        for line, (_name, xs, ys) in zip(ax.lines, self.series):
            line.set_data(xs, ys)
        self._limits(ax)

    def _limits(self, ax: Any) -> None:
        ax.relim()
        ax.autoscale_view()
        if self.xlim is not None:
            ax.set_xlim(*self.xlim)
        if self.ylim is not None:
            ax.set_ylim(*self.ylim)


@dataclass(frozen=True, eq=False, kw_only=True)
class ScatterScene(Scene):
    """Points, some highlighted; a legend names both groups when ``labels`` is given."""

    xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    highlight: np.ndarray | None = None
    labels: tuple[str, str] | None = None
    log_x: bool = False
    ylim: tuple[float, float] | None = None
    hline: float | None = None

    def build(self, ax: Any, c: dict[str, str], font_size: float) -> None:
        from matplotlib.ticker import LogLocator, NullFormatter

        super().build(ax, c, font_size)
        marked = np.zeros(len(self.xy), bool) if self.highlight is None else self.highlight
        groups = ((~marked, c["accent"], self.labels[0] if self.labels else None),
                  (marked, c["selection"], self.labels[1] if self.labels else None))
        for mask, colour, label in groups:
            if mask.any():
                ax.scatter(self.xy[mask, 0], self.xy[mask, 1], s=14, c=colour, label=label)
        if self.hline is not None:
            ax.axhline(self.hline, color=c["grid"], linewidth=1.0, linestyle="--", zorder=0)
        if self.log_x:
            ax.set_xscale("log")
            # decades only: minor-tick labels of a narrow log range overlap into a smear
            ax.xaxis.set_major_locator(LogLocator(base=10))
            ax.xaxis.set_minor_formatter(NullFormatter())
        if self.ylim is not None:
            ax.set_ylim(*self.ylim)
        if self.labels and len(self.xy):
            _legend(ax, c, font_size, loc="lower right")


# -- tick labels that collide on a narrow plot ------------------------------------------------


def _visible_tick_boxes(axis: Any, renderer: Any) -> list[Any]:
    return [label.get_window_extent(renderer) for label in axis.get_ticklabels(which="both")
            if label.get_visible() and label.get_text()]


def _overlap(boxes: list[Any], horizontal: bool, pad: float = 2.0) -> bool:
    spans = sorted((b.x0, b.x1) if horizontal else (b.y0, b.y1) for b in boxes)
    return any(a[1] + pad > b[0] for a, b in zip(spans, spans[1:]))


def tick_labels_overlap(ax: Any, renderer: Any) -> bool:
    """Whether any two tick labels of the x axis (side by side) or y axis (stacked) touch."""
    return (_overlap(_visible_tick_boxes(ax.xaxis, renderer), True)
            or _overlap(_visible_tick_boxes(ax.yaxis, renderer), False))


class _EveryNth:
    """A tick formatter that labels only every ``step``-th tick of another formatter."""

    def __init__(self, inner: Any, step: int) -> None:
        from matplotlib.ticker import Formatter

        class Thinned(Formatter):
            def set_axis(self, axis: Any) -> None:
                super().set_axis(axis)
                inner.set_axis(axis)

            def set_locs(self, locs: Any) -> None:
                self.locs = locs
                inner.set_locs(locs)

            def __call__(self, x: float, pos: int | None = None) -> str:
                return inner(x, pos) if pos is None or pos % step == 0 else ""

            def get_offset(self) -> str:
                return inner.get_offset()

        self.formatter = Thinned()


def thin_tick_labels(ax: Any, renderer: Any) -> bool:
    """Drop tick labels that collide (minor labels first, then every other one).

    Returns True when something changed (the figure needs drawing again).
    """
    from matplotlib.ticker import NullFormatter

    changed = False
    for axis, horizontal in ((ax.xaxis, True), (ax.yaxis, False)):
        if not _overlap(_visible_tick_boxes(axis, renderer), horizontal):
            continue
        minor = [t for t in axis.get_ticklabels(which="minor") if t.get_text()]
        if minor:
            axis.set_minor_formatter(NullFormatter())
        else:
            axis.set_major_formatter(_EveryNth(axis.get_major_formatter(), 2).formatter)
        changed = True
    return changed


def fit_title(ax: Any, renderer: Any, width_px: float) -> None:
    """Break a title that is wider than the figure onto two lines (at the middle space)."""
    title = ax.title
    text = title.get_text()
    if "\n" in text or " " not in text or title.get_window_extent(renderer).width <= width_px - 8:
        return
    words = text.split(" ")
    half = len(text) / 2
    best = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - half))
    title.set_text(" ".join(words[:best]) + "\n" + " ".join(words[best:]))

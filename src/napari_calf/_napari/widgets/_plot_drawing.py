"""The render-thread side of :class:`~._plots.ThemedPlot`: build a figure, draw it to an image.

A :class:`Job` runs in :data:`._render_thread.RENDER_QUEUE`'s thread. It sizes the
figure to the widget's pixels, (re)builds the axes from the scene (or only updates
their data, see :mod:`._plot_scenes`), lays them out once per build or size, draws,
thins colliding tick labels, and sends a :class:`Rendered` (an image and the
transform clicks need) back through a :class:`Bridge` signal, which Qt delivers on
the GUI thread. ``QImage`` may be made outside the GUI thread; ``QPixmap`` may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtGui import QImage

from ._background import gc_frozen
from ._plot_scenes import Scene, fit_title, style_axes, thin_tick_labels, tick_labels_overlap

#: Points for tick labels and titles: napari's 9 pt is too small on a plot.
FONT_SIZE = 9.5
#: Figure dots per inch at a device pixel ratio of 1.
DPI = 100


@dataclass(frozen=True)
class Rendered:
    """A finished drawing: the image and what clicks need to map pixels to data.

    ``transform`` maps data to figure pixels (origin bottom left) as drawn;
    ``axes_box`` is (x0, y0, x1, y1) of the axes in figure pixels.
    """

    generation: int
    image: QImage
    pixel_size: tuple[int, int]
    ratio: float
    transform: Any
    axes_box: tuple[float, float, float, float]
    ylim: tuple[float, float]
    xscale: str
    overlapping_ticks: bool


class Bridge(QObject):
    """Carries a finished drawing from the render thread to the GUI thread (queued)."""

    rendered = Signal(object)


class FigureState:
    """A plot's figure and what the render thread remembers of its last drawing.

    The job holds this, never the widget: a deleted widget must not be touched from
    the render thread.
    """

    def __init__(self, figure: Any, agg: Any, axes: Any, bridge: Bridge) -> None:
        self.figure, self.agg, self.axes, self.bridge = figure, agg, axes, bridge
        self.built: tuple[Any, ...] | None = None
        self.built_size: tuple[int, int] | None = None


class Job:
    """One drawing of a plot, run in the render thread."""

    def __init__(self, state: FigureState, generation: int, scene: Scene, colours: dict[str, str],
                 pixel_size: tuple[int, int], ratio: float) -> None:
        self.state = state
        self.figure, self.agg, self.axes, self.bridge = state.figure, state.agg, state.axes, state.bridge
        self.generation, self.scene, self.colours = generation, scene, colours
        self.pixel_size, self.ratio = pixel_size, ratio

    def run(self) -> None:
        with gc_frozen():  # a figure is thousands of objects: keep full collections short
            self._draw()

    def _draw(self) -> None:
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        width, height = self.pixel_size
        fig, ax = self.figure, self.axes
        fig.set_dpi(DPI * self.ratio)
        fig.set_size_inches(width / (DPI * self.ratio), height / (DPI * self.ratio), forward=False)
        key = (self.scene.key(), tuple(sorted(self.colours.items())))
        resized = self.state.built_size != self.pixel_size
        if self.state.built != key or self.scene.key() is None:
            ax.clear()
            style_axes(fig, ax, self.colours, FONT_SIZE)
            self.scene.build(ax, self.colours, FONT_SIZE)
            fit_title(ax, self.agg.get_renderer(), width)
            self.state.built = key
            resized = True
        else:
            self.scene.update(ax, self.colours, FONT_SIZE)
        if resized:  # lay out once per build or size, then keep it: a layout doubles a draw
            fig.set_layout_engine("constrained")
        self.agg.draw()
        for _attempt in range(3):  # a narrow plot: fewer tick labels until none collide
            if not thin_tick_labels(ax, self.agg.get_renderer()):
                break
            self.agg.draw()
        if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
            fig.set_layout_engine("none")
        self.state.built_size = self.pixel_size
        overlap = tick_labels_overlap(ax, self.agg.get_renderer())
        buffer = np.asarray(self.agg.buffer_rgba())
        image = QImage(buffer.data, buffer.shape[1], buffer.shape[0], buffer.strides[0],
                       QImage.Format.Format_RGBA8888).copy()  # copy: the buffer is reused
        image.setDevicePixelRatio(self.ratio)
        result = Rendered(
            generation=self.generation, image=image, pixel_size=(buffer.shape[1], buffer.shape[0]),
            ratio=self.ratio, transform=ax.transData.frozen(), axes_box=tuple(ax.bbox.extents),
            ylim=tuple(ax.get_ylim()), xscale=ax.get_xscale(), overlapping_ticks=overlap)
        try:
            self.bridge.rendered.emit(result)
        except RuntimeError:  # the widget was deleted meanwhile
            pass

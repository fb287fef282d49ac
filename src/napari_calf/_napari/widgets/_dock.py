"""Docking helpers: contents that scroll, one dock per widget, the view kept in frame.

- :func:`scrollable` puts a dock widget's contents in a :class:`QScrollArea`, so a dock
  asks the main window for little height: three docks stacked on a 1366x768 screen
  leave the window on the screen, and every control stays reachable by scrolling.
- :func:`open_dock` finds the dock of a widget class that is already open (however it
  was opened) before docking a new one, under the name napari's Plugins menu uses, so
  that menu toggles it instead of opening a second copy.
- :func:`fit_view_soon` re-frames the image once a dock has changed the canvas size.
- :func:`first_shown` does both things a dock needs when it first appears: a short
  tab title (napari's "Imbalance analysis (CALF) (CALF segmentation)" was cut to
  "Imbalance analysis (C…" in tabs) and the image framed again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QVBoxLayout, QWidget

PLUGIN = "napari-calf"
#: Width a dock asks for: the widgets' forms and plots read well from here on; a
#: narrower dock scrolls sideways instead of squeezing them.
DOCK_WIDTH = 430
#: Height a dock asks for before the main window shares out the screen.
DOCK_HEIGHT = 520


class _ScrollArea(QScrollArea):
    """Scrolls up and down freely; never narrower than its contents (no sideways scrolling).

    The height it asks for is small, so stacked docks fit any screen; the width is what
    the contents need (at most :data:`DOCK_WIDTH`), so a dock opened in a small window
    is not squeezed into a strip that has to be scrolled sideways.
    """

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(max(DOCK_WIDTH, self._content_width()), DOCK_HEIGHT)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(min(self._content_width(), DOCK_WIDTH), 120)

    def _content_width(self) -> int:
        content = self.widget()
        if content is None:
            return 160
        scrollbar = self.verticalScrollBar().sizeHint().width()
        return content.minimumSizeHint().width() + scrollbar + 2 * self.frameWidth()


def scrollable(owner: QWidget) -> QWidget:
    """Give ``owner`` a scroll area filling it and return the widget to lay the contents on.

    Shapes: the contents keep their own minimum size (plots and lists do not squash
    below readability); the dock shows as much as fits and scrolls the rest.
    """
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _ScrollArea(owner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    content = QWidget(area)
    content.setObjectName("napari_calf_dock_contents")
    area.setWidget(content)
    outer.addWidget(area)
    owner.scroll_area = area  # type: ignore[attr-defined]
    return content


def main_window_of(widget: QWidget) -> QMainWindow | None:
    """The main window ``widget`` is docked in (floating docks keep it as parent)."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QMainWindow):
        parent = parent.parentWidget()
    return parent


def dock_of(widget: QWidget) -> QDockWidget | None:
    """The dock widget holding ``widget``, if it is docked."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def menu_name(display_name: str) -> str:
    """The dock name napari's Plugins menu gives a widget of this plugin.

    The menu names docks after the manifest's display name ("CALF segmentation"),
    ``add_plugin_dock_widget`` after the package name: a dock opened one way was not
    found the other way, and a second copy opened.
    """
    from napari.plugins import menu_item_template
    from npe2 import PluginManager

    try:
        plugin_title = PluginManager.instance().get_manifest(PLUGIN).display_name
    except KeyError:  # not installed (a test importing the sources): the package name
        plugin_title = PLUGIN
    return menu_item_template.format(plugin_title, display_name)


def find_widget(viewer: Any, widget_class: type) -> QWidget | None:
    """The docked widget of ``widget_class`` in the viewer's window, or None.

    Uses napari's public ``Window.dock_widgets`` (inner widgets by dock name), so a dock
    opened from the Plugins menu, by ``add_plugin_dock_widget`` or by :func:`open_dock`
    is found alike.
    """
    for widget in viewer.window.dock_widgets.values():
        widget = getattr(widget, "native", widget)  # magicgui widgets wrap a QWidget
        if isinstance(widget, widget_class):
            return widget
    return None


def main_window(viewer: Any) -> QMainWindow | None:
    """The viewer's Qt main window, found without napari's private ``_qt_window``."""
    from qtpy.QtWidgets import QApplication

    for widget in viewer.window.dock_widgets.values():
        window = main_window_of(getattr(widget, "native", widget))
        if window is not None:
            return window
    windows = [w for w in QApplication.topLevelWidgets()
               if isinstance(w, QMainWindow) and w.windowTitle() == viewer.title]
    return windows[-1] if windows else None


def open_dock(viewer: Any, widget_class: type, display_name: str, *,
              factory: Callable[[], QWidget] | None = None, tabify: bool = False) -> QWidget:
    """Show the open widget of ``widget_class`` (raising its dock), or dock a new one.

    Parameters
    ----------
    display_name : str
        The widget's display name in the manifest (its Plugins-menu entry).
    factory : callable, optional
        Makes the widget; default ``widget_class(napari_viewer=viewer)``.
    """
    widget = find_widget(viewer, widget_class)
    if widget is None:
        widget = factory() if factory is not None else widget_class(napari_viewer=viewer)
        viewer.window.add_dock_widget(widget, name=menu_name(display_name), tabify=tabify)
    dock = dock_of(widget)
    if dock is not None:
        dock.show()
        dock.raise_()
    return widget


def fit_view_soon(viewer: Any) -> None:
    """Frame the layers in the canvas once Qt has laid out the window anew.

    A dock that opens narrows the canvas without napari re-framing the image, which
    then runs off the canvas edge; two event-loop turns let the new canvas size
    reach the camera first.
    """
    def fit() -> None:
        try:
            if len(viewer.layers):
                viewer.reset_view()
        except RuntimeError:  # the window closed meanwhile
            pass

    QTimer.singleShot(0, lambda: QTimer.singleShot(50, fit))


def first_shown(widget: QWidget, viewer: Any, title: str) -> None:
    """Call from a dock widget's first ``showEvent``: short tab title, image back in frame."""
    from ._activity import warm_up

    dock = dock_of(widget)
    if dock is not None:
        # the tab shows the window title; the dock's name (napari's key) stays as it was
        dock.setWindowTitle(title)
        area = getattr(widget, "scroll_area", None)
        if area is not None:
            # napari sets a 50 px minimum on its docks, which lets a small window squeeze
            # ours into a strip that must be scrolled sideways: the contents' width instead
            dock.setMinimumWidth(area.minimumSizeHint().width() + 4)
    fit_view_soon(viewer)
    QTimer.singleShot(0, warm_up)  # napari's activity widgets, built now rather than mid-job

"""The window with all three docks fits a 1366x768 screen, and every control can be reached.

A user opens the widgets from the Plugins menu (docks stacked on the right) or gets them
tabbed (``make demo``). Before the docks scrolled, their contents' minimum heights
(791 + 774 + 693 px) made the window 2384 px tall: on a laptop screen the image, the
slice slider and the Save/Review buttons were off screen. The checks here are what a
user would see on a 1366x768 screen: the window's size, each button brought into view
by scrolling, the whole image in the canvas, whole tab titles.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import QAbstractButton, QTabBar, QTabWidget

from napari_calf._napari.widgets._dock import menu_name

SCREEN = (1366, 768)
COMMANDS = ("napari-calf.analysis_widget", "napari-calf.training_widget", "napari-calf.review_widget")
WIDGETS = ("Imbalance analysis (CALF)", "Fine-tune (CALF)", "Review predictions (CALF)")
TAB_TITLES = ("CALF analysis", "CALF fine-tune", "CALF review")


def _open_from_plugins_menu(viewer) -> list:
    """Run the Plugins-menu actions, as a click on each menu entry does."""
    from napari._app_model import get_app_model

    app = get_app_model()
    for command in COMMANDS:
        app.commands.execute_command(command).result()
    return [viewer.window._wrapped_dock_widgets[menu_name(name)] for name in WIDGETS]


def _fit(qtbot, viewer, size=SCREEN) -> None:
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(*size)
    qtbot.wait(400)  # layout, then the docks' first show re-frames the image


def _unreachable_buttons(window, dock) -> list[str]:
    """Buttons of ``dock`` that cannot be scrolled (and tabbed) into the window's view."""
    area = dock.widget().scroll_area  # napari docks our widget itself (see _dock.scrollable)
    tab_widgets = area.widget().findChildren(QTabWidget)
    missing: list[str] = []
    pages = [(None, None)] + [(t, i) for t in tab_widgets for i in range(t.count())]
    window_rect = QRect(QPoint(0, 0), window.size())
    for tabs, index in pages:
        if tabs is not None:
            tabs.setCurrentIndex(index)
        for button in area.widget().findChildren(QAbstractButton):
            if not button.isVisibleTo(area.widget()) or button.parent() is None:
                continue
            area.ensureWidgetVisible(button, 4, 4)
            centre = button.rect().center()
            in_view = area.viewport().rect().contains(button.mapTo(area.viewport(), centre))
            in_window = window_rect.contains(button.mapTo(window, centre))
            if not (in_view and in_window and button.isVisible()):
                missing.append(button.text() or button.toolTip() or type(button).__name__)
    return sorted(set(missing))


def _image_in_frame(viewer) -> bool:
    """Whether the displayed extent of the layers fits inside the canvas at the current zoom."""
    extent = np.asarray(viewer.layers.extent.world)[:, list(viewer.dims.displayed)]
    size_world = extent[1] - extent[0] + np.asarray(viewer.layers.extent.step)[list(viewer.dims.displayed)]
    canvas = np.asarray(viewer.canvas.size, dtype=float)  # (height, width) in screen pixels
    on_screen = size_world * viewer.scene.camera.zoom
    centre = (extent[0] + extent[1]) / 2
    return bool(np.all(on_screen <= canvas + 1) and np.allclose(viewer.scene.camera.center[-2:], centre, atol=1.0))


@pytest.mark.parametrize("tabbed", [False, True], ids=["stacked", "tabbed"])
def test_all_docks_fit_1366x768_and_every_button_is_reachable(make_napari_viewer, qtbot, tabbed) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-calf", "brain_tumour_phantom")
    window = viewer.window._qt_window
    if tabbed:
        from napari_calf._napari.demo import dock_plugin_widgets

        docks = dock_plugin_widgets(viewer)
    else:
        docks = _open_from_plugins_menu(viewer)
    assert len(docks) == 3
    _fit(qtbot, viewer)

    hint = window.minimumSizeHint()
    assert hint.width() <= SCREEN[0] and hint.height() <= SCREEN[1], f"window needs {hint.width()}x{hint.height()}"
    assert (window.width(), window.height()) == SCREEN, "the window could not shrink to the screen"
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= 400 and canvas.height() >= 400, (canvas.width(), canvas.height())
    for dock in docks:
        if tabbed:
            dock.raise_()
            qtbot.wait(50)
        assert _unreachable_buttons(window, dock) == []
        area = dock.widget().scroll_area
        assert area.widget().minimumSizeHint().width() <= area.viewport().width(), "scrolls sideways"
    qtbot.waitUntil(lambda: _image_in_frame(viewer), timeout=3000)


def test_tabbed_docks_show_whole_titles(make_napari_viewer, qtbot) -> None:
    from napari_calf._napari.demo import dock_plugin_widgets

    viewer = make_napari_viewer(show=True)
    dock_plugin_widgets(viewer)
    _fit(qtbot, viewer)
    window = viewer.window._qt_window
    bars = [bar for bar in window.findChildren(QTabBar)  # the main window's own: dock tabs
            if bar.parent() is window and bar.isVisible() and bar.count() == 3]
    assert len(bars) == 1
    bar = bars[0]
    assert [bar.tabText(i) for i in range(3)] == list(TAB_TITLES)
    metrics = bar.fontMetrics()
    for i in range(3):  # the text fits its tab: Qt did not cut it to "Imbalance analysis (C…"
        assert metrics.horizontalAdvance(bar.tabText(i)) < bar.tabRect(i).width()


def test_docking_keeps_the_image_in_frame(make_napari_viewer, qtbot) -> None:
    """The sample is framed for the bare canvas; the docks narrow the canvas afterwards."""
    viewer = make_napari_viewer(show=True)
    _fit(qtbot, viewer)
    viewer.open_sample("napari-calf", "brain_tumour_phantom")
    qtbot.wait(200)
    assert _image_in_frame(viewer)
    _open_from_plugins_menu(viewer)
    qtbot.waitUntil(lambda: _image_in_frame(viewer), timeout=3000)


def test_every_plot_follows_napari_theme(make_napari_viewer, qtbot) -> None:
    """Analysis, fine-tuning and review plots all turn light with napari (not only one)."""
    from qtpy.QtGui import QColor

    from napari_calf._napari.widgets._plots import ThemedPlot, theme_colours

    viewer = make_napari_viewer(show=True)
    _open_from_plugins_menu(viewer)
    _fit(qtbot, viewer)
    plots = viewer.window._qt_window.findChildren(ThemedPlot)
    assert len(plots) == 5  # histogram, transform view, loss, Dice, scatter
    for theme in ("light", "dark"):
        viewer.theme = theme
        colours = theme_colours(theme)
        for plot in plots:
            plot.show()  # plots on hidden tabs draw too
        qtbot.waitUntil(lambda: all(plot.is_current() for plot in plots), timeout=30_000)
        for plot in plots:
            assert plot.colours == colours
            corner = plot.grab().toImage().pixelColor(2, 2)
            assert corner.name() == QColor(colours["background"]).name(), (theme, corner.name())

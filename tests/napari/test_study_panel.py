"""The study panel: open a comparison study made by a tiny CPU study, see its losses,
double-click a run to load it into the review widget."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from napari_calf._cli import main as cli

pytestmark = [pytest.mark.gui, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    try:
        from test_cli_compare import TRAIN_OPTS, write_tiny_dataset
    finally:
        sys.path.pop(0)
    root = tmp_path_factory.mktemp("study_panel")
    data = write_tiny_dataset(root / "data", n_cases=4)
    out = root / "study"
    code = cli.main(["compare", str(data), "--out", str(out), "--losses", "calf,bce",
                     "--archs", "unet", "--seeds", "1", "--no-progress", "--bootstrap", "200",
                     *TRAIN_OPTS])
    assert code == 0
    return out


def test_panel_shows_the_losses_and_loads_a_run_into_review(make_napari_viewer, qtbot,
                                                            study_dir: Path) -> None:
    from napari_calf._napari.widgets.review import ReviewWidget
    from napari_calf._napari.widgets.study import StudyPanel

    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review)
    panel = StudyPanel(on_run=review.load_run)
    qtbot.addWidget(panel)
    panel.resize(1100, 520)
    panel.show()
    with qtbot.waitSignal(panel.plots_loaded, timeout=10_000):  # decoded in the background
        panel.open_study(study_dir)

    t = panel.summary_table
    losses = [t.item(r, 1).text() for r in range(t.rowCount())]
    assert losses == ["calf", "bce"]
    assert "±" not in t.item(0, 3).text()  # one seed: a mean, no spread
    assert 0.0 <= float(t.item(0, 3).text()) <= 1.0
    assert "calf vs bce" in panel.paired_label.text()

    runs = panel.runs_table
    names = [runs.item(r, 0).text() for r in range(runs.rowCount())]
    assert names == ["unet__calf__seed0", "unet__bce__seed0"]
    row = names.index("unet__bce__seed0")
    with qtbot.waitSignal(panel.run_activated, timeout=5000) as sig:
        runs.cellDoubleClicked.emit(row, 0)
    assert Path(sig.args[0]) == study_dir / "runs" / "unet__bce__seed0"
    assert review.run_dir == study_dir / "runs" / "unet__bce__seed0"
    assert review.card["config"]["train"]["loss"] == "bce"

    # a summary row opens that loss's first seed
    panel.summary_table.cellDoubleClicked.emit(0, 0)
    assert review.run_dir == study_dir / "runs" / "unet__calf__seed0"

    panel.tabs.setCurrentIndex(2)  # the Dice-by-size plot
    qtbot.wait(50)
    assert panel.plots["dice_by_size"].pixmap() is not None
    panel.tabs.setCurrentIndex(0)
    qtbot.wait(50)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "study.png"
    assert panel.grab().save(str(shot))
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    shutil.copy(shot, shots / "study.png")
    panel.tabs.setCurrentIndex(2)
    qtbot.wait(50)
    panel.grab().save(str(SHOTS / "study_plot.png"))


def test_review_widget_opens_a_study_window(make_napari_viewer, qtbot, study_dir: Path) -> None:
    from napari_calf._napari.widgets.review import ReviewWidget

    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review)
    assert review.study_button.text() == "Open study…"
    review.open_study(study_dir)
    panel = review.study_panel
    assert panel is not None
    qtbot.waitUntil(panel.isVisible, timeout=5000)
    assert panel.windowFlags() & Qt.WindowType.Window
    panel.runs_table.cellDoubleClicked.emit(0, 0)
    assert review.run_dir == study_dir / "runs" / "unet__calf__seed0"
    panel.close()


def test_panel_refuses_a_folder_without_a_report(qtbot, tmp_path: Path) -> None:
    from napari_calf._napari.widgets.study import StudyPanel
    from napari_calf.errors import CalfInputError

    panel = StudyPanel()
    qtbot.addWidget(panel)
    with pytest.raises(CalfInputError, match="summary.json"):
        panel.open_study(tmp_path)


def _contrast(a, b) -> float:
    """WCAG contrast ratio of two sRGB colours (0-255)."""
    def luminance(c):
        c = [v / 255 for v in c]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_every_table_row_is_readable(make_napari_viewer, qtbot, study_dir: Path, theme: str) -> None:
    """Alternating rows were white under napari's near-white text: unreadable."""
    import numpy as np

    from napari_calf._napari.widgets.review import ReviewWidget
    from napari_calf._napari.widgets.study import open_study_window

    viewer = make_napari_viewer(show=True)
    viewer.theme = theme
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review)
    panel = open_study_window(review, study_dir, on_run=review.load_run, theme=theme)
    qtbot.waitUntil(lambda: panel.isVisible(), timeout=5000)
    table = panel.runs_table
    panel.tabs.setCurrentWidget(table)
    qtbot.wait(100)
    image = table.viewport().grab().toImage()
    assert table.rowCount() >= 2
    for row in range(2):  # a plain row and an alternate one
        rect = table.visualItemRect(table.item(row, 0))
        pixels = np.array([[image.pixelColor(x, y).getRgb()[:3]
                            for x in range(rect.left(), rect.right())]
                           for y in range(rect.top() + 1, rect.bottom())])
        flat = pixels.reshape(-1, 3)
        colours, counts = np.unique(flat, axis=0, return_counts=True)
        background = colours[np.argmax(counts)]
        text = max(colours, key=lambda c: np.abs(c.astype(int) - background.astype(int)).sum())
        assert _contrast(background, text) > 3.0, (row, background, text)
    panel.close()


def test_gui_heartbeat_while_a_study_opens(make_napari_viewer, qtbot, heartbeat, study_dir: Path) -> None:
    from conftest import MAX_GAP_S

    from napari_calf._napari.widgets.review import ReviewWidget

    viewer = make_napari_viewer(show=True)
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review)
    qtbot.wait(200)
    start = heartbeat.now()
    review.open_study(study_dir)
    panel = review.study_panel
    with qtbot.waitSignal(panel.plots_loaded, timeout=20_000):
        pass
    for index in range(panel.tabs.count()):  # the user looks at every page, plots included
        panel.tabs.setCurrentIndex(index)
        qtbot.wait(100)
    gap = heartbeat.report("opening a study and looking at its pages", start, heartbeat.now())
    panel.close()
    assert gap < MAX_GAP_S, f"the GUI stalled for {gap * 1000:.0f} ms"

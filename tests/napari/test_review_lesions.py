"""The review widget's lesion table on a crafted case: rows, numbers, clicks that move the view.

No model: a prediction layer and a ground truth are put in the viewer by hand, as the
review shows them after Predict. Canonical (x, y, z) volume 48×48×24 at 1×1×3 mm, so
the layers (z, y, x) have scale (3, 1, 1) and one voxel is 3 mm³:

- a 12×12×6 lesion predicted 2 voxels off along x: found (TP), Dice 2·10/(12+12) = 0.833;
- a 4×4×3 lesion (144 mm³) nobody predicted: missed (FN), Dice 0, HD95 374 mm;
- a 4×4×2 blob with no lesion near it: false (FP), Dice 0, HD95 374 mm.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_calf._napari.reader import canonical_to_layer
from napari_calf._napari.widgets import _review_lesions
from napari_calf.calf.lesions import lesion_wise

WIDGET = ("napari-calf", "Review predictions (CALF)")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SHAPE = (48, 48, 24)
SPACING = (1.0, 1.0, 3.0)


def _crafted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, labels, prediction), canonical RAS."""
    gt = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    gt[8:20, 8:20, 4:10] = 2
    gt[11:17, 11:17, 6:8] = 1
    pred[10:22, 8:20, 4:10] = 1
    gt[34:38, 34:38, 16:19] = 2        # missed
    pred[34:38, 6:10, 4:6] = 1         # false blob
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    brain = (x**2 + y**2 + 0.6 * z**2) <= 0.95
    rng = np.random.default_rng(0)
    image = (brain * (300 + 30 * rng.standard_normal(SHAPE)) + 250 * (gt > 0)).astype(np.float32)
    return image, gt, pred


@pytest.fixture
def reviewed(make_napari_viewer, qtbot, monkeypatch):
    """The review widget showing the crafted case; records the thread lesions were scored on."""
    threads: list[threading.Thread] = []
    real = _review_lesions.compute_lesions

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(_review_lesions, "compute_lesions", recording)
    image, gt, pred = _crafted()
    viewer = make_napari_viewer(show=True)  # shown: a hidden window's grab has a stale canvas
    scale = SPACING[::-1]
    viewer.add_image(canonical_to_layer(image), name="case flair", scale=scale)
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    viewer.add_labels(canonical_to_layer(gt), name="case seg", scale=scale)
    widget.prediction_name = "case prediction"
    viewer.add_labels(canonical_to_layer(pred), name="case prediction", scale=scale)
    widget.truth_combo.choose("case seg")
    widget.update_review()
    panel = widget.lesions
    qtbot.waitUntil(lambda: panel.worker is None and panel.review is not None, timeout=20_000)
    return viewer, widget, panel, threads, (gt, pred)


def _rows(table) -> list[tuple[str, ...]]:
    return [tuple(table.item(r, c).text() for c in range(table.columnCount()))
            for r in range(table.rowCount())]


def test_lesion_table_lists_each_lesion_with_the_core_numbers(reviewed) -> None:
    _viewer, _widget, panel, threads, (gt, pred) = reviewed
    # scored off the GUI thread
    assert threads and all(t is not threading.main_thread() for t in threads)
    expected = lesion_wise(pred, gt > 0, SPACING, hd95_convention="monai")
    r = panel.review.result
    assert (r.tp, r.fp, r.fn) == (1, 1, 1) and r.f1 == pytest.approx(0.5)
    assert r.dice == pytest.approx((20 / 24) / 3) == expected.dice
    assert r.hd95_mm == pytest.approx(expected.hd95_mm)

    rows = _rows(panel.table)
    # worst Dice first, bigger lesion first among equals: FN 144 mm³, FP 96 mm³, then the TP
    assert [row[1] for row in rows] == ["FN missed", "FP false", "TP found"]
    assert [row[2] for row in rows] == ["144", "96", f"{12 * 12 * 6 * 3:,}"]
    assert [row[3] for row in rows] == ["0.000", "0.000", f"{20 / 24:.3f}"]
    tp = next(les for les in expected.lesions if les.kind == "tp")
    assert [row[4] for row in rows] == ["374.0", "374.0", f"{tp.hd95_mm:.1f}"]
    assert [row[5] for row in rows] == ["17", "4", "6"]  # centre slices (axial = canonical z)
    text = panel.summary.text()
    assert "Region WT" in text and "HD95 monai" in text and "TP 1, FP 1, FN 1, F1 0.50" in text


def test_clicking_a_lesion_moves_the_slice_and_centres_the_camera(reviewed, qtbot) -> None:
    viewer, widget, panel, _threads, _masks = reviewed
    table = panel.table
    viewer.dims.set_point(0, 0.0)
    assert viewer.dims.current_step[0] == 0
    rect = table.visualItemRect(table.item(0, 0))  # the missed lesion
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    # its centre voxel is canonical (35, 35, 17): layer (17, 47 - 35, 47 - 35), in mm (×3, ×1, ×1)
    assert viewer.dims.current_step[0] == 17
    assert viewer.dims.point[0] == pytest.approx(51.0)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert tuple(camera.center[-2:]) == pytest.approx((12.0, 12.0))

    # the HD95 convention can be switched: the found lesion is 2 voxels (2 mm) off in brats
    panel.convention.setCurrentText("brats")
    qtbot.waitUntil(lambda: panel.worker is None and panel.review.convention == "brats",
                    timeout=20_000)
    rows = _rows(panel.table)
    assert rows[-1][1] == "TP found" and rows[-1][4] == "2.0"
    assert "HD95 brats" in panel.summary.text()

    rect = table.visualItemRect(table.item(1, 0))  # the false blob, on slices 4-5
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewer.dims.current_step[0] in (4, 5)
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window.resize(1500, 1000)
    rect = table.visualItemRect(table.item(0, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    camera.zoom = 8
    qtbot.wait(200)
    from imageio.v3 import imwrite

    imwrite(SHOTS / "review_lesions.png", viewer.screenshot(canvas_only=False))

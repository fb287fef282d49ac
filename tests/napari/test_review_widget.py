"""The review widget: prediction overlay, TP/FP/FN layer, metrics, per-slice table, export."""

from __future__ import annotations

import numpy as np
import pytest

from napari_calf._napari.widgets._review_analysis import FN, FP, TP, error_counts, error_map, slice_rows


def test_error_map_classes_match_a_hand_worked_example() -> None:
    pred = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    truth = np.array([[1, 0, 1, 0]], dtype=np.uint8)
    assert error_map(pred, truth).tolist() == [[TP, FP, FN, 0]]
    assert error_counts(error_map(pred, truth)) == {"tp": 1, "fp": 1, "fn": 1}


def test_error_map_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        error_map(np.zeros((2, 3)), np.zeros((3, 2)))


def test_slice_rows_list_tumour_slices_worst_first_with_per_slice_dice() -> None:
    truth = np.zeros((4, 5, 5), dtype=np.uint8)
    pred = np.zeros_like(truth)
    truth[0, :2, :2] = 1          # 4 px, predicted exactly -> Dice 1
    pred[0, :2, :2] = 1
    truth[1, :2, :2] = 1          # 4 px, half predicted -> Dice 2*2/(2+4)
    pred[1, :1, :2] = 1
    pred[2, 0, 0] = 1             # false positive only -> Dice 0
    # slice 3 empty in both: not listed
    rows = slice_rows(pred, truth, axis=0)
    assert [r.index for r in rows] == [2, 1, 0]
    assert [r.dice for r in rows] == pytest.approx([0.0, 4 / 6, 1.0])
    assert [(r.truth_area, r.pred_area) for r in rows] == [(0, 1), (4, 2), (4, 4)]
    # the slicing axis is honoured
    moved = slice_rows(np.moveaxis(pred, 0, 2), np.moveaxis(truth, 0, 2), axis=2)
    assert moved == rows


# --------------------------------------------------------------------------- the widget

import csv  # noqa: E402
from pathlib import Path  # noqa: E402

from qtpy.QtCore import Qt  # noqa: E402

from napari_calf.errors import CalfFileExistsError  # noqa: E402

WIDGET = ("napari-calf", "Review predictions (CALF)")


@pytest.fixture
def dataset(review_dataset: Path) -> Path:
    return review_dataset


@pytest.fixture
def run_dir(review_run: Path) -> Path:
    return review_run


def _case_id(dataset: Path) -> str:
    from napari_calf.io.discovery import discover_cases

    return discover_cases(dataset)[0].case_id


def _case_folder(dataset: Path) -> Path:
    from napari_calf.io.discovery import discover_cases

    return discover_cases(dataset)[0].folder


def _reviewed(widget) -> bool:
    """Prediction and its review are computed and shown (both run in workers)."""
    return widget.worker is None and widget._review_worker is None and not widget._edit_timer.isActive()


def _predicted(qtbot, make_napari_viewer, dataset: Path, run_dir: Path, *, show: bool = False):
    viewer = make_napari_viewer(show=show)
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.open_case(_case_folder(dataset))
    widget.load_run(run_dir)
    assert widget.predict_button.isEnabled(), widget.status.text()
    qtbot.mouseClick(widget.predict_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _reviewed(widget) and widget.review is not None, timeout=120_000)
    assert widget.review is not None, widget.status.text()
    return viewer, widget


def test_widget_opens_from_the_manifest_and_reports_a_bad_run_folder(
    make_napari_viewer, tmp_path: Path
) -> None:
    from napari_calf._napari.widgets.review import ReviewWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    assert isinstance(widget, ReviewWidget)
    widget.load_run(tmp_path)  # no run.json there
    assert widget.status.text().startswith("Error:") and "run.json" in widget.status.text()
    assert not widget.predict_button.isEnabled()


def test_review_overlays_the_prediction_and_counts_errors_like_the_core(
    make_napari_viewer, qtbot, dataset: Path, run_dir: Path, tmp_path: Path, window_shot
) -> None:
    import nibabel as nib

    from napari_calf.engine import inference
    from napari_calf.calf import metrics
    from napari_calf._napari.reader import canonical_to_layer, layer_to_canonical
    from napari_calf.io.discovery import discover_cases
    from napari_calf.io.volumes import load_volume

    viewer, widget = _predicted(qtbot, make_napari_viewer, dataset, run_dir, show=True)
    case = discover_cases(dataset)[0]
    # every modality of the run found its layer, by the reader's metadata
    assert list(widget.image_combos) == ["t1", "t1ce", "t2", "flair"]
    image = widget.image_combos["flair"].layer()
    assert image.metadata["napari_calf"]["modality"] == "flair"
    pred = viewer.layers[widget.prediction_name]
    errors = viewer.layers[widget.errors_name]
    truth = viewer.layers[widget.truth_combo.currentText()]
    assert truth.name == f"{case.case_id} seg"

    # same grid as the images: same world extent, voxel for voxel
    for layer in (pred, errors):
        np.testing.assert_allclose(layer.extent.world, image.extent.world)
        np.testing.assert_allclose(layer.scale, image.scale)
    # the prediction is what the core predicts from the files themselves
    reference = inference.predict_volume(run_dir, case.folder, device="cpu")
    np.testing.assert_array_equal(np.asarray(pred.data), canonical_to_layer(reference.canonical_labels))

    # TP/FP/FN voxels agree with the core's confusion counts on the canonical arrays
    gt = load_volume(case.label).data > 0
    tp, fp, fn, _tn = metrics.confusion_counts(reference.canonical_labels, gt)
    classes = layer_to_canonical(np.asarray(errors.data))
    assert [(classes == k).sum() for k in (TP, FP, FN)] == [tp, fp, fn]
    # the metrics shown are the core's case metrics
    expected = metrics.case_metrics(reference.canonical_labels, gt, load_volume(case.label).spacing)
    assert widget.metric_labels["dice"].text() == f"{expected['dice']:.3f}"
    assert widget.metric_labels["hd95_mm"].text() == f"{expected['hd95_mm']:.1f}"
    # the run segments this (training) case, so the screenshot below is worth looking at
    assert expected["dice"] > 0.5, expected

    # the table starts with the worst slice; a click shows that slice
    table = widget.table
    assert table.rowCount() == len(widget.review.rows) > 0
    dices = [float(table.item(r, 1).text()) for r in range(table.rowCount())]
    assert dices == sorted(dices)
    row = min(2, table.rowCount() - 1)
    target = table.slice_at(row)
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewer.dims.current_step[0] == target
    assert round(pred.world_to_data(viewer.dims.point)[0]) == target

    # exports: NIfTI on the source file's grid, CSV with the shown numbers, no clobbering
    out = widget.save_prediction(tmp_path / "pred.nii.gz")
    img = nib.load(out)
    source = nib.load(case.images["flair"])
    np.testing.assert_allclose(img.affine, source.affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), reference.labels)
    with pytest.raises(CalfFileExistsError):
        widget.save_prediction(out)
    csv_path = widget.save_metrics_csv(tmp_path / "metrics.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[0]["scope"] == "case" and float(rows[0]["dice"]) == pytest.approx(expected["dice"], abs=1e-5)
    assert len(rows) == 1 + table.rowCount()
    with pytest.raises(CalfFileExistsError):
        widget.save_metrics_csv(csv_path)

    widget.go_to_slice(widget.review.rows[-1].index)  # a slice the model got best
    window_shot(viewer, "review", plots=(widget.scatter,))
    assert widget.scatter.overlapping_ticks() is False
    # filled with a case's numbers, the dock still needs no sideways scrolling at 1366x768
    area = widget.scroll_area
    assert area.widget().minimumSizeHint().width() <= area.viewport().width()


def test_predict_shows_the_slice_with_most_tumour_and_errors_in_their_own_colours(
    make_napari_viewer, qtbot, dataset: Path, run_dir: Path
) -> None:
    from napari_calf._napari.widgets._review_analysis import ERROR_COLOURS
    from napari.utils.colormaps.standardize_color import transform_color

    viewer, widget = _predicted(qtbot, make_napari_viewer, dataset, run_dir)
    pred = np.asarray(viewer.layers[widget.prediction_name].data)
    # not left on a tumour-free slice: on the one with the most predicted tumour
    areas = np.count_nonzero(pred, axis=(1, 2))
    assert areas[viewer.dims.current_step[0]] == areas.max() > 0

    # under the error layer, neither the ground truth nor the prediction shows its own colours
    truth = viewer.layers[widget.truth_combo.currentText()]
    assert viewer.layers[widget.errors_name].visible
    assert not truth.visible and not viewer.layers[widget.prediction_name].visible
    # and the error colours are far from the BraTS label colours, should a user turn both on
    brats = [transform_color(c)[0][:3] for label, c in truth.colormap.color_dict.items()
             if label not in (None, 0)]
    assert brats, "the ground truth has BraTS colours"
    for colour in ERROR_COLOURS.values():
        rgb = transform_color(colour)[0][:3]
        assert min(np.abs(rgb - b).sum() for b in brats) > 0.6, colour

    # the scatter plot explains its two colours
    qtbot.waitUntil(widget.scatter.is_current, timeout=30_000)
    legend = widget.scatter.axes.get_legend()
    assert legend is not None
    rows = [r for r in widget.review.rows if r.truth_area > 0]
    groups = [name for name, present in (("Dice ≥ 0.5", any(r.dice >= 0.5 for r in rows)),
                                         ("Dice < 0.5", any(r.dice < 0.5 for r in rows))) if present]
    assert [t.get_text() for t in legend.get_texts()] == groups


def test_editing_the_ground_truth_updates_the_review(
    make_napari_viewer, qtbot, dataset: Path, run_dir: Path
) -> None:
    """A reviewer corrects the annotation in napari: metrics and error layer follow."""
    from napari_calf.calf import metrics
    from napari_calf._napari.reader import layer_to_canonical

    viewer, widget = _predicted(qtbot, make_napari_viewer, dataset, run_dir)
    truth = viewer.layers[widget.truth_combo.currentText()]
    pred = np.asarray(viewer.layers[widget.prediction_name].data) > 0
    worst = max(widget.review.rows, key=lambda r: r.truth_area).index
    before = widget.review
    # erase the tumour on the slice with the most of it, as the eraser would (one stroke)
    z, y, x = np.nonzero(np.asarray(truth.data) > 0)
    on_slice = z == worst
    truth.data_setitem((z[on_slice], y[on_slice], x[on_slice]), 0)
    qtbot.waitUntil(lambda: widget.review is not before and _reviewed(widget), timeout=60_000)

    edited = np.asarray(truth.data) > 0
    expected = metrics.case_metrics(layer_to_canonical(pred), layer_to_canonical(edited),
                                    tuple(np.asarray(truth.scale)[::-1]))
    assert widget.metric_labels["dice"].text() == f"{expected['dice']:.3f}"
    errors = np.asarray(viewer.layers[widget.errors_name].data)
    assert not np.any(errors[worst] == FN)  # nothing left to miss on the erased slice
    assert np.array_equal(errors[worst] == FP, pred[worst])

"""The fine-tuning widget, driven as a user would: viewer first, then Start from the widget.

Runs are tiny (three phantom cases, eight slices per case, a U-Net with a three-stage
ResNet-18 encoder, CPU) so each takes seconds; what is checked is what a user sees:
progress, curves with data, a checkpoint, Stop keeping the best model, errors in the
status line, and no training thread left behind when the viewer closes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from napari_calf.engine.checkpoints import BEST_WEIGHTS, RUN_CARD, read_run_card
from napari_calf.engine.training_events import EpochEnd, TrainStep

WIDGET = ("napari-calf", "Fine-tune (CALF)")
RUN_TIMEOUT_MS = 240_000  # generous: CI cores are shared


def _open(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    return viewer, widget


def _fill_tiny(widget, data: Path, out: Path, *, epochs: int = 1) -> None:
    f = widget.form
    f.data_dir.setText(str(data))
    f.out_dir.setText(str(out))
    f.arch.setCurrentText("Unet")
    f.encoder.setCurrentText("resnet18")
    f.depth.setValue(3)
    f.epochs.setValue(epochs)
    f.batch_size.setValue(4)
    f.max_slices.setValue(6)
    f.val_fraction.setValue(0.34)
    f.device.setCurrentText("cpu")


def _wait_done(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.running and widget.start_button.isEnabled(),
                    timeout=RUN_TIMEOUT_MS)


def test_widget_opens_from_the_manifest_with_the_core_choices(make_napari_viewer) -> None:
    import torch

    from napari_calf.calf.losses import LOSS_NAMES
    from napari_calf.engine.models import ARCHITECTURES

    _viewer, widget = _open(make_napari_viewer)
    f = widget.form
    assert [f.loss.itemText(i) for i in range(f.loss.count())] == list(LOSS_NAMES)
    assert f.loss.currentText() == "calf"
    assert [f.arch.itemText(i) for i in range(f.arch.count())] == list(ARCHITECTURES)
    expected = "GPU:" if torch.cuda.is_available() else "CPU only"
    assert f.device_label.text().startswith(expected)
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled()


def test_training_from_the_widget_shows_progress_curves_and_writes_a_checkpoint(
    make_napari_viewer, qtbot, dataset: Path, tmp_path: Path, window_shot
) -> None:
    viewer, widget = _open(make_napari_viewer)  # the user's order: canvas first, then torch
    out = tmp_path / "run"
    _fill_tiny(widget, dataset, out)
    events: list = []
    qtbot.mouseClick(widget.start_button, Qt.MouseButton.LeftButton)
    assert widget.running
    assert not widget.start_button.isEnabled() and widget.stop_button.isEnabled()
    worker = widget.worker
    worker.yielded.connect(events.append)
    _wait_done(qtbot, widget)
    worker.yielded.disconnect(events.append)

    assert widget.result is not None, widget.status.text()
    assert not widget.result.stopped_by_user
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps and widget.progress.value() == widget.progress.maximum() == steps[-1].total_steps
    # the curves hold what the run reported
    loss_x, loss_y = widget.curves.series["training loss"]
    assert loss_y == pytest.approx([e.loss for e in steps])
    dice_x, dice_y = widget.curves.series["Dice, all slices"]
    assert dice_y == pytest.approx([e.dice for e in events if isinstance(e, EpochEnd)])
    assert any(len(line.get_xdata()) for line in widget.curves.loss_plot.axes.lines)
    # the selection CALF made is shown, as the run card records it
    card = read_run_card(out)
    transform = card["loss"]["selection"]["transform"]
    assert f"CALF selected {transform}" in widget.form.selection.text()
    assert "training split only" in widget.form.selection.text()  # why S differs from the analysis
    assert (out / BEST_WEIGHTS).is_file() and (out / RUN_CARD).is_file()
    assert str(out) in widget.result_label.text()
    assert f"{widget.result.best_dice:.3f}" in widget.result_label.text()
    assert widget.review_button.isEnabled() and not widget.stop_button.isEnabled()

    from napari_calf.io.discovery import discover_cases
    viewer.open(str(discover_cases(dataset)[0].folder), plugin="napari-calf")
    plots = (widget.curves.loss_plot, widget.curves.dice_plot)
    window_shot(viewer, "training", plots=plots)
    assert not any(plot.overlapping_ticks() for plot in plots)
    selection = widget.form.selection  # a fixed-height label: at 1366x768 its whole text shows
    assert selection.heightForWidth(selection.width()) <= selection.height(), selection.text()

    # "Review this model" hands the run to the review widget
    qtbot.mouseClick(widget.review_button, Qt.MouseButton.LeftButton)
    from napari_calf._napari.widgets.review import ReviewWidget

    reviews = viewer.window._qt_window.findChildren(ReviewWidget)
    assert reviews and reviews[0].run_dir == out


def test_stop_ends_the_run_at_the_next_batch_keeping_the_best_checkpoint(
    make_napari_viewer, qtbot, dataset: Path, tmp_path: Path
) -> None:
    _viewer, widget = _open(make_napari_viewer)
    out = tmp_path / "run"
    _fill_tiny(widget, dataset, out, epochs=3)
    widget.start(overwrite=False)
    seen: list = []
    after_stop: list[str] = []

    def on_event(event) -> None:
        seen.append(event)
        if not widget.stop_button.isEnabled():  # stopped: what does the status line say now?
            after_stop.append(widget.status.text())
        if isinstance(event, EpochEnd) and widget.stop_button.isEnabled():
            qtbot.mouseClick(widget.stop_button, Qt.MouseButton.LeftButton)
            # the batch running when Stop was clicked still reports: replay such a report
            widget._on_event(next(e for e in reversed(seen) if isinstance(e, TrainStep)))
            after_stop.append(widget.status.text())

    worker = widget.worker
    worker.yielded.connect(on_event)
    _wait_done(qtbot, widget)
    # the test's own slot closes over the widget; unhook it so the viewer can be freed
    worker.yielded.disconnect(on_event)
    assert widget.result is not None and widget.result.stopped_by_user
    assert widget.result.epochs_done == 1
    assert sum(isinstance(e, EpochEnd) for e in seen) == 1
    assert (out / BEST_WEIGHTS).is_file()
    assert read_run_card(out)["status"] == "stopped"
    assert "stopped" in widget.status.text()
    # the batches still reported after Stop did not hide that the run is stopping
    assert after_stop and all(text.startswith("Stopping after the current batch") for text in after_stop)
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled()
    assert widget.form.isEnabled()


def test_errors_show_in_the_status_line_and_the_widget_can_start_again(
    make_napari_viewer, qtbot, tmp_path: Path
) -> None:
    _viewer, widget = _open(make_napari_viewer)
    # a setting refused before any thread starts
    widget.form.data_dir.setText("")
    assert not widget.start()
    assert "No dataset folder" in widget.status.text()
    # bad data, found by the core in the worker
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no cases here")
    _fill_tiny(widget, empty, tmp_path / "run")
    assert widget.start()
    _wait_done(qtbot, widget)
    first = widget.status.text()
    assert first.startswith("Error:") and str(empty) in first
    assert widget.result is None
    # ready again: a second run starts, and its own error is reported
    widget.form.data_dir.setText(str(tmp_path / "missing"))
    assert widget.start()
    _wait_done(qtbot, widget)
    assert widget.status.text().startswith("Error:") and "missing" in widget.status.text()
    assert widget.start_button.isEnabled() and widget.form.isEnabled()


def test_closing_the_viewer_during_a_run_ends_the_training_thread(
    make_napari_viewer, qtbot, dataset: Path, tmp_path: Path
) -> None:
    viewer, widget = _open(make_napari_viewer)
    _fill_tiny(widget, dataset, tmp_path / "run", epochs=50)
    assert widget.start()
    worker = widget.worker
    started: list = []
    worker.started.connect(lambda: started.append(True))
    qtbot.waitUntil(lambda: worker.is_running, timeout=30_000)
    viewer.close()
    assert not widget.running  # the close waited for the thread
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5_000)


def _menu(*commands: str) -> None:
    """Run Plugins-menu entries, as a user clicking them."""
    from napari._app_model import get_app_model

    for command in commands:
        get_app_model().commands.execute_command(command).result()


def test_review_this_model_reuses_the_review_dock_opened_from_the_plugins_menu(
    make_napari_viewer, qtbot, tmp_path: Path
) -> None:
    from napari_calf._napari.widgets.review import ReviewWidget
    from napari_calf._napari.widgets.training import TrainingWidget

    viewer = make_napari_viewer(show=True)
    _menu("napari-calf.review_widget", "napari-calf.training_widget")
    window = viewer.window._qt_window
    (training,) = window.findChildren(TrainingWidget)
    training.run_dir = tmp_path  # as if a run had ended there (it has no run.json)
    training.review_model()
    reviews = window.findChildren(ReviewWidget)
    assert len(reviews) == 1, "a second review dock was opened"
    assert "run.json" in reviews[0].status.text()  # the run went to the one dock there is
    training.review_model()
    assert len(window.findChildren(ReviewWidget)) == 1


def test_use_analysed_works_when_the_analysis_is_opened_after_fine_tuning(
    make_napari_viewer, qtbot, dataset: Path
) -> None:
    from napari_calf._napari.widgets.analysis import AnalysisWidget
    from napari_calf._napari.widgets.training import TrainingWidget

    viewer = make_napari_viewer(show=True)
    _menu("napari-calf.training_widget")
    window = viewer.window._qt_window
    (training,) = window.findChildren(TrainingWidget)
    qtbot.wait(50)
    assert training.form.use_analysed.isEnabled()
    _menu("napari-calf.analysis_widget")
    (analysis,) = window.findChildren(AnalysisWidget)
    analysis.set_dataset_folder(dataset)
    qtbot.mouseClick(training.form.use_analysed, Qt.MouseButton.LeftButton)
    assert training.form.data_dir.text() == str(dataset)

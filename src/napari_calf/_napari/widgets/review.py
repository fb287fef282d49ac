"""The review dock widget: predict a case with a trained run and see where it is wrong.

- Pick a run folder and the image layers of a case (one per modality the run was
  trained on, matched by the reader's metadata or by name), or open a case folder.
- Predict runs the core's slice-wise inference in a worker; the prediction is added as
  a Labels layer on the image layers' grid (same scale and translate, the reader's
  display convention), so it overlays them exactly and saves back onto the source file.
- With a ground-truth Labels layer: an error layer (TP blue, FP magenta, FN aquamarine; the
  ground truth and the prediction are hidden under it so their colours do not mix),
  the core's per-case metrics, a per-lesion table (BraTS 2023 lesion-wise scores of the
  run's target region, computed in a worker; a click goes to the lesion), a per-slice
  table (worst first; a click shows the slice) and a Dice-vs-ROI-size scatter. Editing the
  ground truth (or the prediction) in napari updates all of them a moment after the stroke.
- Prediction and review are computed in workers; the GUI thread only adds layers and
  fills the table, so napari stays responsive.
- Exports: the prediction as NIfTI in the source orientation, the metrics as CSV.

All arrays handed to the core are canonical RAS (``reader.layer_to_canonical``);
everything shown is in the layers' display layout (``reader.canonical_to_layer``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...errors import CalfError, CalfInputError
from ..reader import METADATA_KEY, canonical_to_layer, layer_to_canonical
from ._activity import Activity
from ._background import gc_frozen
from ._dock import first_shown, scrollable
from ._layer_combo import ERRORS_ROLE, PREDICTION_ROLE, LayerCombo, made_by_plugin
from ._plots import ThemedPlot, follow_theme
from ._review_analysis import ERROR_COLOURS
from ._review_export import ReviewExportsMixin
from ._review_inputs import ReviewInputsMixin
from ._review_layers import put_class_image, put_labels, show_layer_slice
from ._review_lesions import LesionPanel
from ._review_state import CaseReview, ReviewResult, legend_html, most_tumour_slice, review_case
from ._review_table import SliceTable
from ._training_form import PathField

log = logging.getLogger(__name__)

#: The widget's display name in the manifest (its Plugins-menu entry).
REVIEW_DISPLAY_NAME = "Review predictions (CALF)"
#: Title of the dock's tab when docks are tabbed (napari's own name is cut off there).
TAB_TITLE = "CALF review"
#: An edit of the ground truth is reviewed again after the labels are still this long.
EDIT_SETTLE_MS = 400
#: Dice below this marks a slice as poorly segmented (highlighted in the scatter plot).
POOR_DICE = 0.5

METRIC_NAMES = (("dice", "Dice"), ("iou", "IoU"), ("precision", "Precision"),
                ("recall", "Recall"), ("hd95_mm", "HD95\n(mm)"))  # two lines: a narrow dock


def _predict(run_dir: Path, images: list[np.ndarray]):
    """Worker generator: canonical images in the run's modality order -> 0/1 mask as shown.

    Returns the mask in the layers' (z, y, x) layout, contiguous (napari slices it
    faster), and the slice with the most tumour, so the GUI thread has nothing to compute.
    """
    from .._gl_safety import ensure_torch_safe_with_gl

    ensure_torch_safe_with_gl()
    from ...engine import inference

    # a (C, X, Y, Z) stack in the run's modality order: the combos follow that order
    with gc_frozen():
        stack = np.stack([np.asarray(a, dtype=np.float32) for a in images])
        prediction = yield from inference.iter_predict_volume(run_dir, stack)
        mask = np.ascontiguousarray(canonical_to_layer((np.asarray(prediction.canonical_labels) > 0)
                                                       .astype(np.uint8)))
        return mask, most_tumour_slice(mask)


class ReviewWidget(ReviewInputsMixin, ReviewExportsMixin, QWidget):
    """Review predictions (CALF).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.run_dir: Path | None = None
        self.card: dict[str, Any] | None = None
        self.modalities: tuple[str, ...] = ()
        self.worker: Any = None
        self.prediction_name: str | None = None
        self.errors_name: str | None = None
        self.review: ReviewResult | None = None
        self.image_combos: dict[str, LayerCombo] = {}
        self.activity = Activity("CALF prediction")
        self.destroyed.connect(self.activity.close)  # no bar left behind by a closed dock
        self._review_worker: Any = None
        self._review_again = False
        self._best_slice: int | None = None
        self._computed: ReviewResult | None = None
        self._framed = False
        self._edit_timer = QTimer(self)
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(EDIT_SETTLE_MS)
        self._edit_timer.timeout.connect(self.update_review)

        self.run_field = PathField("napari-calf run folder")
        self.run_field.edit.setPlaceholderText("run folder (holds run.json)")
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(lambda: self.load_run(self.run_field.text()))
        self.study_button = QPushButton("Open study…")  # a comparison study's runs (study.py)
        self.study_button.clicked.connect(lambda: self.open_study())
        run_buttons = QHBoxLayout()  # a row of their own: the dock stays narrow
        run_buttons.addWidget(self.load_button)
        run_buttons.addWidget(self.study_button)
        run_buttons.addStretch(1)
        self.study_panel: Any = None
        self.run_label = QLabel("No model loaded.")
        self.run_label.setWordWrap(True)

        self.images_box = QGroupBox("Case")
        self.images_form = QFormLayout(self.images_box)
        self.open_case_button = QPushButton("Open case folder…")
        self.open_case_button.clicked.connect(self._browse_case)
        self.truth_combo = LayerCombo(napari_viewer, "labels", optional=True, exclude=made_by_plugin)
        self.truth_combo.currentTextChanged.connect(lambda _t: self.update_review())
        self.images_form.addRow(self.open_case_button)
        self.images_form.addRow("Ground truth", self.truth_combo)

        self.predict_button = QPushButton("Predict")
        self.predict_button.setEnabled(False)
        self.predict_button.clicked.connect(self.predict)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        predict_row = QHBoxLayout()
        predict_row.addWidget(self.predict_button)
        predict_row.addWidget(self.progress, 1)

        self.metric_labels: dict[str, QLabel] = {}
        metrics_box = QGroupBox("Case metrics (3D)")
        grid = QGridLayout(metrics_box)
        for i, (key, title) in enumerate(METRIC_NAMES):
            value = QLabel("–")
            value.setAlignment(Qt.AlignmentFlag.AlignCenter)
            value.setStyleSheet("font-size: 13pt; font-weight: bold;")
            self.metric_labels[key] = value
            heading = QLabel(title)
            heading.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(heading, 0, i, Qt.AlignmentFlag.AlignCenter | Qt.AlignmentFlag.AlignBottom)
            grid.addWidget(value, 1, i)
        self.counts_label = QLabel(legend_html(None))
        self.counts_label.setWordWrap(True)
        grid.addWidget(self.counts_label, 2, 0, 1, len(METRIC_NAMES))

        self.lesions = LesionPanel(napari_viewer, self._prediction_layer)
        self.table = SliceTable()
        self.table.slice_activated.connect(self.go_to_slice)
        self.scatter = ThemedPlot(self, theme=str(getattr(napari_viewer, "theme", "dark")), height=2.2)
        self.scatter.point_clicked.connect(self._on_point)
        self.scatter.message("Predict a case with ground truth\nto see Dice against tumour size")
        follow_theme(napari_viewer, self.scatter)

        self.save_pred_button = QPushButton("Save prediction…")
        self.save_pred_button.clicked.connect(self._save_prediction_dialog)
        self.save_csv_button = QPushButton("Save metrics CSV…")
        self.save_csv_button.clicked.connect(self._save_metrics_dialog)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_pred_button)
        save_row.addWidget(self.save_csv_button)
        self.status = QLabel("Load a run folder to start.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(scrollable(self))  # the dock scrolls: it fits any screen
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.run_field)
        layout.addLayout(run_buttons)
        layout.addWidget(self.run_label)
        layout.addWidget(self.images_box)
        layout.addLayout(predict_row)
        layout.addWidget(self.status)
        layout.addWidget(metrics_box)
        layout.addWidget(self.lesions, 1)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.scatter, 1)
        layout.addLayout(save_row)
        self._update_buttons()

        events = napari_viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._framed:  # just docked: short tab title, and the narrower canvas re-framed
            self._framed = True
            first_shown(self, self.viewer, TAB_TITLE)

    # ------------------------------------------------------------------ prediction

    def _prediction_layer(self) -> Any | None:
        name = self.prediction_name
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _reference_layer(self) -> Any | None:
        combos = list(self.image_combos.values())
        return combos[0].layer() if combos else None

    def predict(self) -> bool:
        """Predict the chosen case in a worker; returns False when it cannot start."""
        if self.worker is not None or self.run_dir is None:
            return False
        layers = [combo.layer() for combo in self.image_combos.values()]
        if not layers or any(layer is None for layer in layers):
            self._set_status("Choose an image layer for every modality first.")
            return False
        shapes = {np.shape(layer.data) for layer in layers}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            self._report_error(CalfInputError(
                None, f"the chosen image layers differ in shape or are not 3D ({sorted(shapes)}).",
                "choose the modalities of one case."))
            return False
        from napari.qt.threading import create_worker

        images = [layer_to_canonical(np.asarray(layer.data)) for layer in layers]
        self.progress.setRange(0, 0)
        self.predict_button.setEnabled(False)
        self._set_status("Predicting…")
        self.activity.start("predicting slices")
        worker = create_worker(_predict, self.run_dir, images, _start_thread=False,
                               _ignore_errors=True)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_prediction)
        worker.errored.connect(self._report_error)
        worker.finished.connect(self._on_predict_finished)
        self.worker = worker
        worker.start()
        return True

    def _on_progress(self, event: Any) -> None:
        total = getattr(event, "total", None)
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(getattr(event, "current", 0)))
            self.activity.update(int(getattr(event, "current", 0)), int(total))

    def _on_predict_finished(self) -> None:
        self.worker = None
        self.activity.close()
        self.progress.setRange(0, 1)
        self._update_buttons()

    def _on_prediction(self, result: tuple[np.ndarray, int | None]) -> None:
        mask, best = result
        reference = self._reference_layer()
        if reference is None:
            self._set_status("The image layers were removed before the prediction finished.")
            return
        self.progress.setValue(1)
        info = dict((reference.metadata or {}).get(METADATA_KEY) or {})
        info.update(source="prediction", role=PREDICTION_ROLE, run_dir=str(self.run_dir), modality=None)
        name = f"{info.get('case_id') or reference.name} prediction"
        self.prediction_name = name  # known before the layer exists: never offered as truth
        put_labels(self.viewer, name, mask, reference, {METADATA_KEY: info},
                   {None: "transparent", 0: "transparent", 1: "#00bfff"})
        self._watch_edits(self.viewer.layers[name])
        self._set_status(f"Predicted {int(np.count_nonzero(mask))} tumour voxels.")
        # the rest in the next turn of the event loop: napari repaints its window after each
        # turn, and a new layer plus a new slice in one turn make one long pause
        self._best_slice = best
        QTimer.singleShot(0, self._after_prediction)

    def _after_prediction(self) -> None:
        if self._best_slice is not None:  # where the model sees the most tumour, not an empty slice
            self.go_to_slice(self._best_slice)
        self.update_review()

    # ------------------------------------------------------------------ review against truth

    def _watch_edits(self, layer: Any) -> None:
        """Review again when this Labels layer is painted or replaced (a bound method:
        napari holds it weakly, and connecting twice is ignored)."""
        layer.events.paint.connect(self._on_labels_edited)
        layer.events.data.connect(self._on_labels_edited)

    def _on_labels_edited(self, event: Any) -> None:
        name = getattr(getattr(event, "source", None), "name", None)
        if name in (self.prediction_name, self.truth_combo.currentText()):
            self._edit_timer.start()  # after the stroke settles, not at every dab

    def update_review(self) -> None:
        """Recompute errors, metrics, table and scatter for the current prediction and truth.

        The arrays are copied here (a user may keep painting) and compared in a worker;
        :meth:`_show_review` shows the result.
        """
        self._edit_timer.stop()
        pred_layer = self.viewer.layers[self.prediction_name] if (
            self.prediction_name in self.viewer.layers) else None
        truth_layer = self.truth_combo.layer()
        if pred_layer is None or truth_layer is None or made_by_plugin(truth_layer):
            return
        if self._review_worker is not None:
            self._review_again = True  # the running one compares older data: again after it
            return
        from ...calf.areas import binary_target

        self._watch_edits(truth_layer)
        pred = np.array(pred_layer.data) > 0
        labels = np.array(truth_layer.data)
        if labels.shape != pred.shape:
            self._report_error(CalfInputError(
                None, f"ground truth '{truth_layer.name}' {labels.shape} and the prediction "
                f"{pred.shape} differ in shape.", "choose the label layer of the same case."))
            return
        from napari.qt.threading import create_worker

        info = (truth_layer.metadata or {}).get(METADATA_KEY) or {}
        target = str((self.card or {}).get("preprocessing", {}).get("target", "wt"))
        convention = info.get("label_convention") or "brats2021"
        spacing = tuple(float(s) for s in np.asarray(pred_layer.scale)[::-1])  # (x, y, z) mm
        case = str(info.get("case_id") or truth_layer.name)
        self._review_again = False
        self._review_names = (pred_layer.name, truth_layer.name)
        self._lesion_context = (spacing, target)

        def compute() -> CaseReview:
            with gc_frozen():
                truth = binary_target(labels, target, convention)
                return review_case(pred, truth, spacing_xyz=spacing, case=case)

        self._review_worker = create_worker(
            compute, _connect={"returned": self._on_reviewed, "errored": self._report_error,
                               "finished": self._on_review_finished})

    def _on_review_finished(self) -> None:
        self._review_worker = None
        if self._review_again:
            self.update_review()

    def _on_reviewed(self, computed: CaseReview) -> None:
        pred_name, truth_name = self._review_names
        if self._review_again or pred_name not in self.viewer.layers or truth_name not in self.viewer.layers:
            return  # stale, or its layers were removed meanwhile
        pred_layer = self.viewer.layers[pred_name]
        spacing, target = self._lesion_context
        self.lesions.start(layer_to_canonical(computed.pred), layer_to_canonical(computed.truth),
                           spacing, target)
        self.errors_name = f"{computed.result.case} errors"
        info = {**((pred_layer.metadata or {}).get(METADATA_KEY) or {}),
                "source": "errors (1 TP, 2 FP, 3 FN)", "role": ERRORS_ROLE}
        put_class_image(self.viewer, self.errors_name, computed.errors, pred_layer, {METADATA_KEY: info},
                        ERROR_COLOURS)
        # the error layer shows both (TP = both): their own colours underneath would mix
        # with its blue/magenta/aquamarine (the BraTS green especially)
        pred_layer.visible = False
        self.viewer.layers[truth_name].visible = False
        # numbers, table and plot in the next turn (see _on_prediction)
        self._computed = computed.result
        QTimer.singleShot(0, self._finish_review)

    def _finish_review(self) -> None:
        self.review = self._computed
        self._show_review()

    def _show_review(self) -> None:
        review = self.review
        if review is None:
            return
        for key, label in self.metric_labels.items():
            value = review.metrics.get(key)
            label.setText("–" if value is None else f"{value:.1f}" if key == "hd95_mm" else f"{value:.3f}")
        self.counts_label.setText(legend_html(review.counts))
        self.table.set_rows(review.rows)
        with_truth = [r for r in review.rows if r.truth_area > 0]
        if with_truth:
            self._scatter_rows = with_truth
            self.scatter.scatter(
                [r.truth_area for r in with_truth], [r.dice for r in with_truth],
                title="Dice per slice against tumour size", xlabel="ground-truth area (px, log)",
                ylabel="Dice", highlight=[r.dice < POOR_DICE for r in with_truth],
                labels=(f"Dice ≥ {POOR_DICE:g}", f"Dice < {POOR_DICE:g}"), log_x=True,
                ylim=(-0.05, 1.05), hline=POOR_DICE)
        else:
            self.scatter.message("No tumour in the ground truth")
        self._update_buttons()

    def _on_point(self, index: int) -> None:
        rows = getattr(self, "_scatter_rows", [])
        if 0 <= index < len(rows):
            self.go_to_slice(rows[index].index)

    def go_to_slice(self, index: int) -> None:
        """Show axial slice ``index`` (of the prediction's layer data) in the viewer."""
        if self.prediction_name is not None:
            show_layer_slice(self.viewer, self.prediction_name, index)

    # ------------------------------------------------------------------ helpers

    def _try(self, action: Any, done: str) -> None:
        try:
            written = action()
        except CalfError as exc:
            self._report_error(exc)
            return
        self._set_status(f"{done} {written}")

    def _update_buttons(self) -> None:
        ready = self.run_dir is not None and self.worker is None and bool(self.image_combos) and all(
            combo.layer() is not None for combo in self.image_combos.values())
        self.predict_button.setEnabled(ready)
        self.save_pred_button.setEnabled(self.prediction_name in self.viewer.layers)
        self.save_csv_button.setEnabled(self.review is not None)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _report_error(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, CalfError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CalfError):
            log.error("review failed", exc_info=exc)
        self._set_status(f"Error: {text}")
        from napari.utils.notifications import show_error

        show_error(text)

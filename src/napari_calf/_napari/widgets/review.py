"""The review dock widget: predict a case with a trained run and see where it is wrong.

- Pick a run folder and the image layers of a case (one per modality the run was
  trained on, matched by the reader's metadata or by name), or open a case folder.
- Predict runs the core's slice-wise inference in a worker; the prediction is added as
  a Labels layer on the image layers' grid (same scale and translate, the reader's
  display convention), so it overlays them exactly and saves back onto the source file.
- With a ground-truth Labels layer: an error layer (TP green, FP magenta, FN yellow),
  the core's per-case metrics, a per-lesion table (BraTS 2023 lesion-wise scores of the
  run's target region, computed in a worker; a click goes to the lesion), a per-slice
  table (worst first; a click shows the slice) and a Dice-vs-ROI-size scatter.
- Exports: the prediction as NIfTI in the source orientation, the metrics as CSV.

All arrays handed to the core are canonical RAS (``reader.layer_to_canonical``);
everything shown is in the layers' display layout (``reader.canonical_to_layer``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
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
from ._layer_combo import LayerCombo
from ._plots import ThemedPlot
from ._review_analysis import ERROR_COLOURS, error_counts, error_map, slice_rows
from ._review_export import ReviewExportsMixin
from ._review_lesions import LesionPanel
from ._review_state import ReviewResult, legend_html, run_summary
from ._review_table import SliceTable
from ._training_form import PathField

log = logging.getLogger(__name__)

METRIC_NAMES = (("dice", "Dice"), ("iou", "IoU"), ("precision", "Precision"),
                ("recall", "Recall"), ("hd95_mm", "HD95 (mm)"))


def _predict(run_dir: Path, images: list[np.ndarray]):
    """Worker generator: canonical images in the run's modality order -> canonical 0/1 mask."""
    from .._gl_safety import ensure_torch_safe_with_gl

    ensure_torch_safe_with_gl()
    from ...engine import inference

    # a (C, X, Y, Z) stack in the run's modality order: the combos follow that order
    stack = np.stack([np.asarray(a, dtype=np.float32) for a in images])
    prediction = yield from inference.iter_predict_volume(run_dir, stack)
    return prediction.canonical_labels


class ReviewWidget(ReviewExportsMixin, QWidget):
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

        self.run_field = PathField("napari-calf run folder")
        self.run_field.edit.setPlaceholderText("run folder (holds run.json)")
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(lambda: self.load_run(self.run_field.text()))
        self.run_field.layout().addWidget(self.load_button)
        self.study_button = QPushButton("Open study…")  # a comparison study's runs (study.py)
        self.study_button.clicked.connect(lambda: self.open_study())
        self.run_field.layout().addWidget(self.study_button)
        self.study_panel: Any = None
        self.run_label = QLabel("No model loaded.")
        self.run_label.setWordWrap(True)

        self.images_box = QGroupBox("Case")
        self.images_form = QFormLayout(self.images_box)
        self.open_case_button = QPushButton("Open case folder…")
        self.open_case_button.clicked.connect(self._browse_case)
        self.truth_combo = LayerCombo(napari_viewer, "labels", optional=True)
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
            value.setStyleSheet("font-size: 14pt; font-weight: bold;")
            self.metric_labels[key] = value
            grid.addWidget(QLabel(title), 0, i, Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(value, 1, i)
        self.counts_label = QLabel(legend_html(None))
        grid.addWidget(self.counts_label, 2, 0, 1, len(METRIC_NAMES))

        self.lesions = LesionPanel(napari_viewer, self._prediction_layer)
        self.table = SliceTable()
        self.table.slice_activated.connect(self.go_to_slice)
        self.scatter = ThemedPlot(self, theme=str(getattr(napari_viewer, "theme", "dark")), height=2.2)
        self.scatter.point_clicked.connect(self._on_point)
        self.scatter.message("Predict a case with ground truth\nto see Dice against tumour size")

        self.save_pred_button = QPushButton("Save prediction…")
        self.save_pred_button.clicked.connect(self._save_prediction_dialog)
        self.save_csv_button = QPushButton("Save metrics CSV…")
        self.save_csv_button.clicked.connect(self._save_metrics_dialog)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_pred_button)
        save_row.addWidget(self.save_csv_button)
        self.status = QLabel("Load a run folder to start.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.run_field)
        layout.addWidget(self.run_label)
        layout.addWidget(self.images_box)
        layout.addLayout(predict_row)
        layout.addWidget(metrics_box)
        layout.addWidget(self.lesions, 1)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.scatter, 1)
        layout.addLayout(save_row)
        layout.addWidget(self.status)
        self._update_buttons()

        events = napari_viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)

    # ------------------------------------------------------------------ run and case

    def load_run(self, run_dir: str | Path) -> None:
        """Load a run folder (made by the fine-tuning widget or ``napari-calf train``)."""
        from ...engine.checkpoints import BEST_WEIGHTS, read_run_card, resolve_weights

        try:
            run_dir = Path(run_dir).expanduser()
            card = read_run_card(run_dir)
            if run_dir.is_file():
                run_dir = run_dir.parent
            resolve_weights(run_dir / BEST_WEIGHTS)
        except CalfError as exc:
            self._report_error(exc)
            return
        self.run_dir, self.card = run_dir, card
        self.run_field.setText(str(run_dir))
        self.modalities = tuple((card.get("preprocessing") or {}).get("modalities") or ())
        self.run_label.setText(run_summary(card))
        self._rebuild_image_combos()
        self._set_status(f"Loaded {run_dir.name}. Choose the case's images and Predict.")

    def open_study(self, folder: str | Path | None = None) -> None:
        """Show a comparison study (``napari-calf compare``); double-click a run to load it."""
        from .study import open_study_window

        self.study_panel = open_study_window(self, folder, on_run=self.load_run)

    def _rebuild_image_combos(self) -> None:
        for combo in self.image_combos.values():
            self.images_form.removeRow(combo)
        self.image_combos = {}
        for row, modality in enumerate(self.modalities):
            combo = LayerCombo(self.viewer, "image")
            combo.currentTextChanged.connect(lambda _t: self._update_buttons())
            self.images_form.insertRow(row, modality, combo)
            self.image_combos[modality] = combo
        self.match_layers()

    def match_layers(self) -> None:
        """Pick, for each modality of the run, the newest image layer that is that modality."""
        for modality, combo in self.image_combos.items():
            combo.refresh()
            for layer in reversed(self.viewer.layers):
                if getattr(layer, "_type_string", "") != "image":
                    continue
                info = (layer.metadata or {}).get(METADATA_KEY) or {}
                name = layer.name.lower()
                if info.get("modality") == modality or name.endswith(
                    (f" {modality}", f"_{modality}", f"-{modality}")) or name == modality:
                    combo.choose(layer.name)
                    break
        if self.truth_combo.currentText() in ("", "(none)"):
            candidates = [n for n in self.truth_combo.names()
                          if n not in (self.prediction_name, self.errors_name)]
            if candidates:
                self.truth_combo.choose(candidates[0])
        self._update_buttons()

    def open_case(self, folder: str | Path) -> None:
        """Open a case folder with the napari-calf reader and use its layers."""
        try:
            self.viewer.open(str(folder), plugin="napari-calf")
        except Exception as exc:  # napari wraps reader errors; show them, never die
            self._report_error(exc)
            return
        self.match_layers()

    def _browse_case(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Case folder", str(Path.home()))
        if folder:
            self.open_case(folder)

    def _on_layers_changed(self, _event: Any = None) -> None:
        if self.image_combos:
            self.match_layers()
        else:
            self.truth_combo.refresh()

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

    def _on_predict_finished(self) -> None:
        self.worker = None
        self.progress.setRange(0, 1)
        self._update_buttons()

    def _on_prediction(self, canonical: np.ndarray) -> None:
        reference = self._reference_layer()
        if reference is None:
            self._set_status("The image layers were removed before the prediction finished.")
            return
        self.progress.setValue(1)
        mask = (np.asarray(canonical) > 0).astype(np.uint8)
        info = dict((reference.metadata or {}).get(METADATA_KEY) or {})
        info.update(source="prediction", run_dir=str(self.run_dir), modality=None)
        name = f"{info.get('case_id') or reference.name} prediction"
        self.prediction_name = name  # known before the layer exists: never offered as truth
        self._put_labels(
            name, canonical_to_layer(mask), reference, {METADATA_KEY: info},
            {None: "transparent", 0: "transparent", 1: "#00bfff"})
        self._set_status(f"Predicted {int(mask.sum())} tumour voxels.")
        self.update_review()

    def _put_labels(self, name: str, data: np.ndarray, reference: Any, metadata: dict[str, Any],
                    colours: dict[Any, str]) -> str:
        """Add (or replace the data of) a Labels layer on ``reference``'s grid."""
        from napari.utils.colormaps import DirectLabelColormap

        colormap = DirectLabelColormap(color_dict=colours)
        grid = {"scale": reference.scale, "translate": reference.translate,
                "rotate": reference.rotate, "shear": reference.shear,
                "affine": reference.affine.affine_matrix}
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.metadata = metadata
            layer.colormap = colormap
            for key, value in grid.items():
                setattr(layer, key, value)
        else:
            self.viewer.add_labels(data, name=name, metadata=metadata, colormap=colormap,
                                   opacity=0.7, **grid)
        return name

    # ------------------------------------------------------------------ review against truth

    def update_review(self) -> None:
        """Recompute errors, metrics, table and scatter for the current prediction and truth."""
        pred_layer = self.viewer.layers[self.prediction_name] if (
            self.prediction_name in self.viewer.layers) else None
        truth_layer = self.truth_combo.layer()
        if pred_layer is None or truth_layer is None or truth_layer.name == self.errors_name:
            return
        from ...calf.areas import binary_target
        from ...calf.metrics import case_metrics

        pred = np.asarray(pred_layer.data) > 0
        labels = np.asarray(truth_layer.data)
        if labels.shape != pred.shape:
            self._report_error(CalfInputError(
                None, f"ground truth '{truth_layer.name}' {labels.shape} and the prediction "
                f"{pred.shape} differ in shape.", "choose the label layer of the same case."))
            return
        info = (truth_layer.metadata or {}).get(METADATA_KEY) or {}
        target = str((self.card or {}).get("preprocessing", {}).get("target", "wt"))
        truth = binary_target(labels, target, info.get("label_convention") or "brats2021")
        spacing = tuple(float(s) for s in np.asarray(pred_layer.scale)[::-1])  # (x, y, z) mm
        metrics = case_metrics(layer_to_canonical(pred), layer_to_canonical(truth), spacing, axis=2)
        self.lesions.start(layer_to_canonical(pred), layer_to_canonical(truth), spacing, target)
        errors = error_map(pred, truth)
        counts = error_counts(errors)
        rows = slice_rows(pred, truth, axis=0)
        self.review = ReviewResult(metrics=metrics, counts=counts, rows=tuple(rows),
                                   case=str(info.get("case_id") or truth_layer.name))
        self.errors_name = f"{self.review.case} errors"
        self._put_labels(
            self.errors_name, errors, pred_layer,
            {METADATA_KEY: {**((pred_layer.metadata or {}).get(METADATA_KEY) or {}),
                            "source": "errors (1 TP, 2 FP, 3 FN)"}},
            {None: "transparent", 0: "transparent", **ERROR_COLOURS})
        pred_layer.visible = False  # the error layer shows the prediction, coloured by truth
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
            self.scatter.scatter([r.truth_area for r in with_truth], [r.dice for r in with_truth],
                                 title="Dice per slice against tumour size",
                                 xlabel="ground-truth area (px, log)", ylabel="Dice",
                                 highlight=[r.dice < 0.5 for r in with_truth])
            from matplotlib.ticker import LogLocator, NullFormatter

            ax = self.scatter.axes
            ax.set_xscale("log")
            # decades only: minor-tick labels of a narrow log range overlap into a smear
            ax.xaxis.set_major_locator(LogLocator(base=10))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylim(-0.05, 1.05)
            self.scatter.canvas.draw_idle()
        else:
            self.scatter.message("No tumour in the ground truth")
        self._update_buttons()

    def _on_point(self, index: int) -> None:
        rows = getattr(self, "_scatter_rows", [])
        if 0 <= index < len(rows):
            self.go_to_slice(rows[index].index)

    def go_to_slice(self, index: int) -> None:
        """Show axial slice ``index`` (of the prediction's layer data) in the viewer."""
        name = self.prediction_name
        if name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        world = layer.data_to_world((index, 0, 0))
        axis = self.viewer.dims.ndim - layer.ndim  # layers may have fewer dims than the viewer
        self.viewer.dims.set_point(axis, float(world[0]))

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

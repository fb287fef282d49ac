"""The review widget's exports: the prediction as NIfTI, the metrics as CSV (no silent overwrite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog

from ...errors import CalfFileExistsError, CalfInputError
from ._review_state import metrics_rows


class ReviewExportsMixin:
    """Save methods of :class:`~.review.ReviewWidget` (tests call them directly; the buttons
    go through a file dialog, which asks before replacing a file)."""

    viewer: Any
    _try: Any  # ReviewWidget._try: run, report a CalfError in the status line
    prediction_name: str | None
    review: Any
    run_dir: Path | None

    def save_prediction(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the prediction as NIfTI in the source file's orientation and affine.

        Raises
        ------
        CalfFileExistsError
            ``path`` exists and ``overwrite`` is False.
        CalfInputError
            No prediction yet.
        """
        from ..writer import write_labels

        path = Path(path).expanduser()
        if self.prediction_name not in self.viewer.layers:
            raise CalfInputError(path, "cannot be written: there is no prediction yet.", "Predict first.")
        if path.exists() and not overwrite:
            raise CalfFileExistsError(path)
        layer = self.viewer.layers[self.prediction_name]
        meta = {"metadata": layer.metadata, "scale": layer.scale, "translate": layer.translate}
        return Path(write_labels(str(path), layer.data, meta)[0])

    def save_metrics_csv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the case metrics and the per-slice table as one CSV (a ``scope`` column tells them apart)."""
        from ...engine.checkpoints import write_csv_atomic

        path = Path(path).expanduser()
        if self.review is None:
            raise CalfInputError(path, "cannot be written: no metrics yet.",
                                 "Predict a case and choose its ground truth first.")
        if path.exists() and not overwrite:
            raise CalfFileExistsError(path)
        return write_csv_atomic(path, metrics_rows(self.review, self.run_dir))

    def _save_prediction_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save prediction", "prediction.nii.gz",
                                              "NIfTI (*.nii.gz *.nii)")
        if path:  # the dialog has asked before replacing a file
            self._try(lambda: self.save_prediction(path, overwrite=True), "Saved prediction to")

    def _save_metrics_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save metrics", "metrics.csv", "CSV (*.csv)")
        if path:
            self._try(lambda: self.save_metrics_csv(path, overwrite=True), "Saved metrics to")


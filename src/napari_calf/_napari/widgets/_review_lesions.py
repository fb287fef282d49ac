"""The review widget's lesion panel: BraTS-2023 lesion-wise scores, one table row per lesion.

A missed lesion costs as much as a badly segmented big one in the BraTS 2023 ranking, so
the reviewer sees every lesion of the run's target region: kind (TP found, FN missed,
FP false blob), volume, Dice and HD95 (:func:`napari_calf.calf.lesions.lesion_wise`).
A click on a row moves the viewer to the lesion: its centre slice, and the camera centred
on it.

The scores are computed in a napari worker, on canonical RAS arrays as
``napari-calf evaluate`` computes them (same numbers); the table shows lesion centres in
the layers' display layout (``reader.canonical_to_layer``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from ._analysis_data import layer_slice
from ._review_analysis import ERROR_COLOURS, FN, FP, TP
from ._review_table import _SORT_ROLE, _NumberItem, setup_row_table

COLUMNS = ("#", "kind", "vol. mm³", "Dice", "HD95 mm", "slice")
#: Row text of each lesion kind, and its colour in the error layer.
KIND_TEXT = {"fn": "FN missed", "fp": "FP false", "tp": "TP found"}
KIND_COLOUR = {"tp": ERROR_COLOURS[TP], "fp": ERROR_COLOURS[FP], "fn": ERROR_COLOURS[FN]}
_KIND_ORDER = {"fn": 0, "fp": 1, "tp": 2}  # how "kind" sorts: misses first
#: BraTS 2023 glioma rules, as ``napari-calf evaluate`` uses by default.
MIN_VOLUME_MM3, DILATION_VOXELS = 50.0, 3


@dataclass(frozen=True)
class LesionReview:
    """A case's lesion-wise scores, as the worker hands them to the panel.

    Attributes
    ----------
    result : napari_calf.calf.lesions.LesionWiseResult
    case_hd95_mm : float
        Whole-case HD95 in ``convention`` (the metrics row above shows the monai one).
    convention : str
    region : str
        The run's target (``wt``, ``tc``, ``et``): the only region a binary prediction has.
    canonical_shape : tuple of int
        (X, Y, Z) of the arrays scored, to map lesion centres to layer indices.
    """

    result: Any
    case_hd95_mm: float
    convention: str
    region: str
    canonical_shape: tuple[int, int, int]


def compute_lesions(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], *,
                    convention: str, region: str) -> LesionReview:
    """Lesion-wise scores of canonical masks (runs in a worker; numpy/scipy only).

    Shapes: ``pred`` and ``truth`` are (X, Y, Z) canonical RAS; ``spacing`` is (x, y, z) mm.
    """
    from ...calf.lesions import lesion_wise
    from ...calf.surface_distance import surface_distance_hd95

    result = lesion_wise(pred, truth, spacing, min_volume_mm3=MIN_VOLUME_MM3,
                         dilation_voxels=DILATION_VOXELS, hd95_convention=convention)
    case_hd95 = surface_distance_hd95(pred, truth, spacing, convention=convention)
    return LesionReview(result, case_hd95, convention, region,
                        tuple(int(n) for n in np.shape(pred)))  # type: ignore[arg-type]


def layer_index(centre_vox: Sequence[int], canonical_shape: Sequence[int]) -> tuple[int, int, int]:
    """Layer-data index (z, y', x') of a canonical voxel (x, y, z) (``canonical_to_layer``)."""
    layer_shape = tuple(canonical_shape[::-1])
    out = [0, 0, 0]
    for axis, index in enumerate(centre_vox):
        layer_axis, layer_idx = layer_slice(axis, int(index), layer_shape)
        out[layer_axis] = layer_idx
    return tuple(out)  # type: ignore[return-value]


def summary_text(review: LesionReview | None) -> str:
    """The line above the table: region, convention and the case's lesion-wise scores."""
    if review is None:
        return "Lesion-wise scores appear once a prediction and its ground truth are shown."
    r = review.result
    ignored = (f", {r.ignored_gt_lesions} GT lesion(s) ≤ {MIN_VOLUME_MM3:g} mm³ ignored"
               if r.ignored_gt_lesions else "")
    return (f"Region {review.region.upper()} (the run's target; a binary prediction has no "
            f"other region), BraTS 2023 rules, HD95 {review.convention}.<br>"
            f"<b>Lesion-wise Dice {r.dice:.3f}, HD95 {r.hd95_mm:.1f} mm</b>; "
            f"TP {r.tp}, FP {r.fp}, FN {r.fn}, F1 {r.f1:.2f}{ignored}; "
            f"case HD95 ({review.convention}) {review.case_hd95_mm:.1f} mm.")


def jump_to(viewer: Any, layer: Any, index: Sequence[int]) -> None:
    """Show layer-data voxel ``index``: sliders on its slices, camera centred on it."""
    world = np.asarray(layer.data_to_world(tuple(float(i) for i in index)), dtype=float)
    lead = viewer.dims.ndim - layer.ndim  # layers may have fewer dims than the viewer
    axes = list(range(lead, lead + layer.ndim))
    viewer.dims.set_point(axes, tuple(world))
    point = viewer.dims.point
    # napari 0.9 moved the camera to viewer.scene; older versions only have viewer.camera
    scene = getattr(viewer, "scene", None)
    camera = scene.camera if scene is not None else viewer.camera
    camera.center = tuple(float(point[d]) for d in viewer.dims.displayed)


class LesionTable(QTableWidget):
    """One row per lesion; ``lesion_activated(i)`` gives the lesion's index in the result."""

    lesion_activated = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        setup_row_table(self, COLUMNS,
                        {2: "ground-truth lesion volume (TP, FN); the predicted component's volume (FP)",
                         5: "axial slice of the lesion's centre"},
                        "Click a lesion to go to it. Click a header to sort.", 110)
        self.cellClicked.connect(lambda row, _c: self._emit(row))
        self.currentCellChanged.connect(lambda row, _c, _pr, _pc: self._emit(row))

    def set_review(self, review: LesionReview | None) -> None:
        """Fill the table, worst Dice first (larger lesions first among equals)."""
        lesions = () if review is None else review.result.lesions
        self.setSortingEnabled(False)  # sorting while inserting moves rows under our feet
        self.blockSignals(True)
        self.clearContents()
        self.setRowCount(len(lesions))
        order = sorted(range(len(lesions)), key=lambda i: (
            lesions[i].dice, -max(lesions[i].gt_volume_mm3, lesions[i].pred_volume_mm3), i))
        for row, i in enumerate(order):
            les = lesions[i]
            volume = les.pred_volume_mm3 if les.kind == "fp" else les.gt_volume_mm3
            z = les.centre_vox[2]  # canonical z is the layer's axial index
            kind = _NumberItem(_KIND_ORDER[les.kind], KIND_TEXT[les.kind])
            kind.setForeground(QColor(KIND_COLOUR[les.kind]))
            kind.setTextAlignment(int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter))
            items = (_NumberItem(i, str(i + 1)), kind, _NumberItem(volume, f"{volume:,.0f}"),
                     _NumberItem(les.dice, f"{les.dice:.3f}"),
                     _NumberItem(les.hd95_mm, f"{les.hd95_mm:.1f}"), _NumberItem(z, str(z)))
            for col, item in enumerate(items):
                self.setItem(row, col, item)
        self.blockSignals(False)
        # enabling sorting sorts by the indicator's column; Qt's sort is stable, so sorting
        # by Dice keeps the volume order above among equal Dice
        self.horizontalHeader().setSortIndicator(3, Qt.SortOrder.AscendingOrder)
        self.setSortingEnabled(True)

    def lesion_at(self, row: int) -> int | None:
        """Index in the result's ``lesions`` of table row ``row`` (current sort order)."""
        item = self.item(row, 0)
        return None if item is None else int(item.data(_SORT_ROLE))

    def _emit(self, row: int) -> None:
        index = self.lesion_at(row)
        if index is not None:
            self.lesion_activated.emit(index)


class LesionPanel(QGroupBox):
    """Lesion-wise scores and table of the case under review.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    reference_layer : callable
        Returns the layer whose grid the lesion centres refer to (the prediction), or
        None; called on each click, so no layer is held here.
    """

    def __init__(self, viewer: Any, reference_layer: Callable[[], Any | None],
                 parent: QWidget | None = None) -> None:
        super().__init__("Lesions (BraTS 2023 lesion-wise)", parent)
        self.viewer = viewer
        self.reference_layer = reference_layer
        self.review: LesionReview | None = None
        self.worker: Any = None
        self._inputs: tuple[np.ndarray, np.ndarray, tuple[float, ...], str] | None = None
        self._token: object | None = None

        self.convention = QComboBox()
        self.convention.addItems(["monai", "brats"])  # monai: as `napari-calf evaluate`
        self.convention.setToolTip(
            "HD95 convention. monai: surface voxels (napari-calf's default); brats: BraTS 2023 "
            "area-weighted surface. A missed or false lesion scores 374 mm in both.")
        self.convention.currentTextChanged.connect(lambda _t: self._restart())
        self.summary = QLabel(summary_text(None))
        self.summary.setWordWrap(True)
        self.table = LesionTable()
        self.table.setMinimumWidth(160)  # scrolls sideways itself rather than widening the dock
        self.table.lesion_activated.connect(self.go_to_lesion)

        row = QHBoxLayout()
        row.addWidget(QLabel("HD95"))
        row.addWidget(self.convention)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    def start(self, pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
              region: str) -> None:
        """Score canonical (X, Y, Z) masks in a worker; a newer call supersedes older ones."""
        self._inputs = (np.array(pred, dtype=bool), np.array(truth, dtype=bool),
                        tuple(float(s) for s in spacing), str(region))
        self._restart()

    def _restart(self) -> None:
        if self._inputs is None:
            return
        from napari.qt.threading import create_worker

        pred, truth, spacing, region = self._inputs
        token = object()
        self._token = token
        self.summary.setText("Scoring lesions…")
        worker = create_worker(compute_lesions, pred, truth, spacing,
                               convention=self.convention.currentText(), region=region,
                               _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda review: self._on_review(review, token))
        worker.errored.connect(lambda exc: self._on_error(exc, token))
        worker.finished.connect(lambda: self._on_finished(token))
        self.worker = worker
        worker.start()

    def _on_review(self, review: LesionReview, token: object) -> None:
        if token is not self._token:
            return  # an older request: its masks are no longer the ones shown
        self.review = review
        try:
            self.summary.setText(summary_text(review))
            self.table.set_review(review)
        except RuntimeError:  # the dock was closed while the worker ran
            return

    def _on_error(self, exc: BaseException, token: object) -> None:
        if token is self._token:
            try:
                self.summary.setText(f"Lesion scores failed: {exc}")
            except RuntimeError:  # the dock was closed while the worker ran
                pass

    def _on_finished(self, token: object) -> None:
        if token is self._token:
            self.worker = None

    def go_to_lesion(self, index: int) -> None:
        """Move the viewer to lesion ``index`` of the current result."""
        layer = self.reference_layer()
        if self.review is None or layer is None or not 0 <= index < len(self.review.result.lesions):
            return
        centre = self.review.result.lesions[index].centre_vox
        jump_to(self.viewer, layer, layer_index(centre, self.review.canonical_shape))

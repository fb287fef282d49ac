"""Imbalance analysis dock widget: the size distribution, the rule, the chosen transform.

The user points it at a dataset folder (any layout ``io.discover_cases`` finds)
or at Labels layers in the viewer. A worker measures the tumour area of every
slice with the core's ``calf.areas.iter_dataset_areas``. Everything after that
(filtering, S and K, the rule, the lists) is recomputed in a worker too, a moment
after a threshold, a rule or a filter setting stops changing
(:func:`._analysis_data.prepare_view`): napari never waits for it. The same numbers
come out of ``napari-calf analyze`` on the command line.

Slices reviewed here are shown in the viewer as the napari-calf reader shows
volumes: canonical (x, y, z) arrays transposed to (z, y, x), so axial slice ``k``
is step ``k`` of the first dims slider. A slice is opened from the file it was
measured in, never by case id alone (:mod:`._navigation`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QFileDialog, QWidget

from ...calf.areas import DatasetAreas
from ...calf.filtering import FilterResult
from ...calf.rules import Selection
from ...calf.stats import ImbalanceStats
from ...errors import CalfError
from ._activity import Activity
from ._analysis_data import (
    AnalysisView,
    measure_folder,
    measure_layers,
    prepare_view,
    slice_entry,
    transform_view_title,
    unit_text,
)
from ._analysis_files import AnalysisFilesMixin
from ._analysis_ui import ALL_LAYERS, build_analysis_ui
from ._background import frozen_call, frozen_generator
from ._dock import first_shown
from ._layer_combo import made_by_plugin
from ._plots import follow_theme, histogram_bin_of, theme_colours

N_BINS = 30
#: Title of the dock's tab when docks are tabbed (napari's own name is cut off there).
TAB_TITLE = "CALF analysis"
#: A setting must be still this long before the statistics are recomputed (typing "0.25"
#: is three edits; spin-box arrows held down are many).
RECOMPUTE_DELAY_MS = 150


class AnalysisWidget(AnalysisFilesMixin, QWidget):
    """Dock widget: size histogram, S/K, the editable rule table, filtering and review.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari (the parameter name is what napari looks for).
    """

    #: Emitted after new statistics are shown (analysis finished or a setting changed).
    updated = Signal()

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: Any = None
        self.areas: DatasetAreas | None = None
        self.view: AnalysisView | None = None
        self.selected_bin: int | None = None
        self._case_folders: dict[str, Path] = {}
        self._source = ""
        self._measured_axis = 2
        self._stopping = False
        self._compute_worker: Any = None
        self._compute_again = False
        self.activity = Activity("CALF analysis")
        self.destroyed.connect(self.activity.close)  # no bar left behind by a closed dock
        build_analysis_ui(self, napari_viewer.theme)
        self._recompute_timer = QTimer(self)
        self._recompute_timer.setSingleShot(True)
        self._recompute_timer.setInterval(RECOMPUTE_DELAY_MS)
        self._recompute_timer.timeout.connect(self.recompute)
        self._connect()
        follow_theme(napari_viewer, self.histogram, self.transform_plot)
        self.refresh_layers()
        (self.layers_radio if self.layer_combo.count() > 1 else self.folder_radio).setChecked(True)
        self._show_empty()
        self._framed = False

    # -- the last results, by name ----------------------------------------------------------
    @property
    def filter_result(self) -> FilterResult | None:
        return None if self.view is None else self.view.filter_result

    @property
    def stats(self) -> ImbalanceStats | None:
        return None if self.view is None else self.view.stats

    @property
    def selection(self) -> Selection | None:
        return None if self.view is None else self.view.selection

    @property
    def busy(self) -> bool:
        """Measuring, or recomputing after a change: the numbers shown may be about to change."""
        return (self.worker is not None or self._compute_worker is not None
                or self._recompute_timer.isActive())

    # -- wiring ---------------------------------------------------------------------------
    def _connect(self) -> None:
        self.browse_button.clicked.connect(self._browse_folder)
        self.folder_edit.textEdited.connect(lambda _t: self.folder_radio.setChecked(True))
        self.layer_combo.activated.connect(lambda _i: self.layers_radio.setChecked(True))
        self.run_button.clicked.connect(self.run_analysis)
        self.stop_button.clicked.connect(self.stop_analysis)
        self.log_x_check.toggled.connect(lambda _b: self._draw_histograms())
        self.rules_table.rules_changed.connect(lambda _r: self.recompute())
        self.rules_table.error.connect(lambda msg: self._status(msg, error=True, notify=False))
        for spin in (self.empty_fraction_spin, self.min_area_spin, self.outlier_spin):
            spin.valueChanged.connect(lambda _v: self._recompute_timer.start())
        self.histogram.bin_clicked.connect(self.select_bin)
        self.bin_list.slice_chosen.connect(self.go_to_slice)
        self.flagged_list.slice_chosen.connect(self.go_to_slice)
        self.load_rules_button.clicked.connect(self._load_rules_dialog)
        self.save_rules_button.clicked.connect(self._save_rules_dialog)
        self.export_stats_button.clicked.connect(lambda: self._export_dialog("json"))
        self.export_slices_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._framed:  # just docked: short tab title, and the narrower canvas re-framed
            self._framed = True
            first_shown(self, self.viewer, TAB_TITLE)

    def analysable_layers(self) -> list[Any]:
        """The Labels layers a user can analyse (not the prediction/error layers napari-calf made)."""
        from napari.layers import Labels

        return [layer for layer in self.viewer.layers
                if isinstance(layer, Labels) and not made_by_plugin(layer)]

    def refresh_layers(self, *_args: Any) -> None:
        """List the Labels layers by name (names only: no Layer object is held)."""
        current = self.layer_combo.currentText()
        names = [layer.name for layer in self.analysable_layers()]
        self.layer_combo.clear()
        self.layer_combo.addItems([ALL_LAYERS, *names] if names else [])
        if current in names or current == ALL_LAYERS:
            self.layer_combo.setCurrentText(current)

    # -- source ---------------------------------------------------------------------------
    def dataset_folder(self) -> str | None:
        """The dataset folder this widget measures, or None when it measures Labels layers."""
        folder = self.folder_edit.text().strip()
        return folder if self.folder_radio.isChecked() and folder else None

    def set_dataset_folder(self, folder: str | Path) -> None:
        """Measure ``folder`` (a dataset in any layout the core discovers) on the next run."""
        self.folder_edit.setText(str(folder))
        self.folder_radio.setChecked(True)

    # -- running --------------------------------------------------------------------------
    def _status(self, message: str, *, error: bool = False, notify: bool = True) -> None:
        """Status line; errors are red and also a napari notification."""
        colour = theme_colours(self.viewer.theme)["error"] if error else ""
        self.status_label.setStyleSheet(f"color: {colour}; font-weight: bold;" if error else "")
        self.status_label.setText(message)
        if error and notify:
            from napari.utils.notifications import show_error

            show_error(message)

    def run_analysis(self) -> None:
        """Measure every slice of the chosen source in a worker thread."""
        from napari.qt.threading import create_worker

        if self.worker is not None:
            return
        target = self.target_combo.currentData()
        axis = int(self.axis_combo.currentData())
        unit = self.unit_combo.currentData()
        if self.folder_radio.isChecked():
            folder = self.folder_edit.text().strip()
            if not folder:
                self._status("Choose a dataset folder first (Browse…).", error=True)
                return
            func, arg, source = measure_folder, Path(folder).expanduser(), f"folder {folder}"
        else:
            chosen = self.layer_combo.currentText()
            items = [(layer.name, layer.data, tuple(layer.scale),
                      (layer.metadata.get("napari_calf") or {}).get("label_convention"))
                     for layer in self.analysable_layers() if chosen in (ALL_LAYERS, layer.name)]
            if not items:
                self._status("No Labels layer is open: open a segmentation, or choose a dataset "
                             "folder.", error=True)
                return
            func, arg, source = measure_layers, items, f"layers {', '.join(i[0] for i in items)}"
        self._pending = (source, axis)
        self._stopping = False
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self._status("Measuring slice areas…")
        self.activity.start("measuring slice areas")
        self.worker = create_worker(
            frozen_generator, func, arg, target=target, axis=axis, unit=unit,
            _connect={"yielded": self._on_progress, "returned": self._on_measured,
                      "errored": self._on_error, "finished": self._on_finished},
        )

    def stop_analysis(self) -> None:
        if self.worker is not None:
            self._stopping = True
            self.worker.quit()  # takes effect at the next case
            self._status("Stopping after the current case…")

    def _on_progress(self, event: Any) -> None:
        if getattr(event, "total", None):
            self.progress.setRange(0, int(event.total))
            self.progress.setValue(int(event.current))
        self.progress.setFormat(f"%v/%m {event.message}" if event.total else event.message)
        self.activity.update(getattr(event, "current", None), getattr(event, "total", None) or 0)

    def _on_measured(self, result: tuple[DatasetAreas, dict[str, Path]]) -> None:
        self.areas, self._case_folders = result
        self._source, self._measured_axis = self._pending
        self.selected_bin = None
        skipped = f" ({len(self.areas.skipped)} case(s) skipped: no label)" if self.areas.skipped else ""
        self._status(f"{self.areas.n_cases} case(s), {self.areas.n_slices} slices measured{skipped}.")
        self.recompute()

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, CalfError):
            self._status(str(exc), error=True)
        else:  # a bug, but the widget must stay alive
            self._status(f"Unexpected error ({type(exc).__name__}: {exc}). Please report it.", error=True)

    def _on_finished(self) -> None:
        self.worker = None
        self.activity.close()
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.areas is not None else 0)
        self.progress.setFormat("done" if self.areas is not None else "")
        if self._stopping:
            self._stopping = False
            self.progress.setFormat("stopped")
            self._status("Analysis stopped by you"
                         + ("; the previous results are still shown." if self.view else "."))

    # -- filter, statistics, rule: in a worker ------------------------------------------
    def filter_settings(self) -> dict[str, Any]:
        """The filtering controls as :func:`~napari_calf.calf.filtering.filter_slices` arguments."""
        min_area, k = self.min_area_spin.value(), self.outlier_spin.value()
        return {"empty_fraction": float(self.empty_fraction_spin.value()),
                "min_area": float(min_area) if min_area > 0 else None,
                "outlier_iqr": float(k) if k > 0 else None}

    def recompute(self) -> None:
        """Filter, compute S/K on the kept slices, select the transform (in a worker), then show."""
        self._recompute_timer.stop()
        if self.areas is None:
            return
        if self._compute_worker is not None:
            self._compute_again = True  # the running one uses old settings: go again after it
            return
        from napari.qt.threading import create_worker

        self._compute_again = False
        self._compute_worker = create_worker(
            frozen_call, prepare_view, self.areas, self.filter_settings(), self.rules_table.rules,
            _connect={"returned": self._on_view, "errored": self._on_compute_error,
                      "finished": self._on_compute_finished})

    def _on_view(self, view: AnalysisView) -> None:
        if self._compute_again:
            return  # stale: newer settings are on their way
        self.view = view
        self._refresh_views()
        self.updated.emit()

    def _on_compute_error(self, exc: BaseException) -> None:
        self._on_error(exc)

    def _on_compute_finished(self) -> None:
        self._compute_worker = None
        if self._compute_again:
            self.recompute()

    def kept_nonzero(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(case_ids, slices, areas) of the kept slices with tumour: the histogram's data."""
        if self.view is None:
            empty = np.array([])
            return empty, empty, empty
        return self.view.kept_ids, self.view.kept_slices, self.view.kept_areas

    def _unit_text(self) -> str:
        return "px" if self.areas is None else unit_text(self.areas)

    def _show_empty(self) -> None:
        self.histogram.message("Run the analysis to see the tumour-size distribution")
        self.transform_plot.message("The selected transform's view of the sizes appears here")

    def _refresh_views(self) -> None:
        view = self.view
        if view is None:
            return
        sel = view.selection
        self.transform_label.setText(f"Loss transform: {sel.transform}")
        self.reason_label.setText(sel.reason)
        self.reason_label.setToolTip(f"Chosen by row {sel.row} of the rule table (Rule table tab)."
                                     if sel.row else "")
        self.rules_table.highlight(sel.rule_index, theme_colours(self.viewer.theme)["accent"])
        self.min_area_spin.setSuffix(f" {self._unit_text()}")
        self.empty_label.setText(view.empty_text)
        self.filter_counts_label.setText(view.counts_text)
        self.flagged_caption.setText(view.listed_caption)
        self.flagged_list.set_rows(view.listed)
        self._draw_histograms()

    def _draw_histograms(self) -> None:
        view = self.view
        if view is None:
            return
        st = view.stats
        if st.defined:
            note = f"S = {st.skewness:.2f}\nK = {st.kurtosis:.2f}\nN = {st.n}"
        else:
            note = f"S, K undefined\nN = {st.n}"
        log_x = self.log_x_check.isChecked()
        self.histogram.histogram(view.kept_areas, bins=N_BINS, log_x=log_x,
                                 title="Tumour area per slice (non-zero)",
                                 xlabel=f"area ({self._unit_text()})", annotation=note,
                                 selected_bin=self.selected_bin)
        self.transform_plot.histogram(view.transform_values, bins=N_BINS,
                                      title=transform_view_title(view.selection.transform), xlabel="T(p)")
        if self.selected_bin is not None:
            self.select_bin(self.selected_bin, redraw=False)

    # -- review ---------------------------------------------------------------------------
    def slices_in_bin(self, index: int) -> list[tuple[str, int, float]]:
        """(case, slice, area) of the kept slices in histogram bin ``index``."""
        edges = self.histogram.edges
        if edges is None or self.view is None:
            return []
        ids, slices, values = self.kept_nonzero()
        hit = histogram_bin_of(values, edges) == index
        return [(str(c), int(s), float(a)) for c, s, a in zip(ids[hit], slices[hit], values[hit])]

    def select_bin(self, index: int, *, redraw: bool = True) -> None:
        """List the slices of a histogram bar (what a click on the bar does)."""
        self.selected_bin = index
        rows = sorted(self.slices_in_bin(index), key=lambda r: r[2])
        unit = self._unit_text()
        self.bin_list.set_rows([slice_entry(c, s, a, unit) for c, s, a in rows])
        edges = self.histogram.edges
        if edges is not None and index < len(edges) - 1:
            self.bin_label.setText(f"{len(rows)} slice(s) with area {edges[index]:.4g}–{edges[index + 1]:.4g} "
                                   f"{unit}; click one to show it:")
        if redraw:
            self._draw_histograms()

    def go_to_slice(self, case_id: str, index: int) -> None:
        """Show slice ``index`` of ``case_id``: open the case's files if needed, move the slider."""
        from ._navigation import show_case_slice

        try:
            note = show_case_slice(self.viewer, case_id, index, axis=self._measured_axis,
                                   case_folder=self._case_folders.get(case_id))
        except CalfError as exc:
            self._status(str(exc), error=True)
            return
        except Exception as exc:  # noqa: BLE001 - a reader failure must not kill the dock
            self._status(f"Could not show {case_id} slice {index}: {type(exc).__name__}: {exc}", error=True)
            return
        if note:
            self._status(note)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.folder_radio.setChecked(True)

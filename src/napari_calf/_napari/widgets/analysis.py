"""Imbalance analysis dock widget: the size distribution, the rule, the chosen transform.

The user points it at a dataset folder (any layout ``io.discover_cases`` finds)
or at Labels layers in the viewer. A worker measures the tumour area of every
slice with the core's ``stats.iter_dataset_areas``; everything after that
(filtering, S and K, the rule) is cheap and recomputed on the main thread the
moment a threshold, a rule or a filter setting changes. The same numbers come out
of ``napari-calf analyze`` on the command line.

Slices reviewed here are shown in the viewer as the napari-calf reader shows
volumes: canonical (x, y, z) arrays transposed to (z, y, x), so axial slice ``k``
is step ``k`` of the first dims slider.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QFileDialog, QListWidgetItem, QMessageBox, QWidget

from ...errors import CalfError
from ...io.files import write_text_atomic
from ...calf.areas import DatasetAreas
from ...calf.filtering import FilterResult, filter_slices
from ...calf.stats import ImbalanceStats, imbalance_stats
from ...calf.rules import Selection, select_transform
from ...calf.rules_io import rules_to_json
from ._analysis_data import measure_folder, measure_layers, slices_csv_text, stats_payload, transform_view, transform_view_title
from ._analysis_ui import ALL_LAYERS, build_analysis_ui
from ._plots import histogram_bin_of, theme_colours

_ROLE = Qt.ItemDataRole.UserRole
N_BINS = 30


class AnalysisWidget(QWidget):
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
        self.filter_result: FilterResult | None = None
        self.stats: ImbalanceStats | None = None
        self.selection: Selection | None = None
        self.selected_bin: int | None = None
        self._case_folders: dict[str, Path] = {}
        self._source = ""
        self._measured_axis = 2
        build_analysis_ui(self, napari_viewer.theme)
        self.setMinimumWidth(560)
        self._connect()
        self.refresh_layers()
        (self.layers_radio if self.layer_combo.count() > 1 else self.folder_radio).setChecked(True)
        self._show_empty()

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
            spin.valueChanged.connect(lambda _v: self.recompute())
        self.histogram.bin_clicked.connect(self.select_bin)
        self.bin_list.itemClicked.connect(self._item_chosen)
        self.flagged_list.itemClicked.connect(self._item_chosen)
        self.load_rules_button.clicked.connect(self._load_rules_dialog)
        self.save_rules_button.clicked.connect(self._save_rules_dialog)
        self.export_stats_button.clicked.connect(lambda: self._export_dialog("json"))
        self.export_slices_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)
        self.viewer.events.theme.connect(self._on_theme)

    def refresh_layers(self, *_args: Any) -> None:
        """List the Labels layers by name (names only: no Layer object is held)."""
        from napari.layers import Labels

        current = self.layer_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)]
        self.layer_combo.clear()
        self.layer_combo.addItems([ALL_LAYERS, *names] if names else [])
        if current in names or current == ALL_LAYERS:
            self.layer_combo.setCurrentText(current)

    def _on_theme(self, event: Any) -> None:
        theme = getattr(event, "value", self.viewer.theme)
        self.histogram.set_theme(theme)
        self.transform_plot.set_theme(theme)
        self._refresh_views()

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
            from napari.layers import Labels

            chosen = self.layer_combo.currentText()
            items = [(layer.name, layer.data, tuple(layer.scale),
                      (layer.metadata.get("napari_calf") or {}).get("label_convention"))
                     for layer in self.viewer.layers
                     if isinstance(layer, Labels) and chosen in (ALL_LAYERS, layer.name)]
            if not items:
                self._status("No Labels layer is open: open a segmentation, or choose a dataset "
                             "folder.", error=True)
                return
            func, arg, source = measure_layers, items, f"layers {', '.join(i[0] for i in items)}"
        self._pending = (source, axis)
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self._status("Measuring slice areas…")
        self.worker = create_worker(
            func, arg, target=target, axis=axis, unit=unit,
            _connect={"yielded": self._on_progress, "returned": self._on_measured,
                      "errored": self._on_error, "finished": self._on_finished},
        )

    def stop_analysis(self) -> None:
        if self.worker is not None:
            self.worker.quit()  # takes effect at the next case
            self._status("Stopping after the current case…")

    def _on_progress(self, event: Any) -> None:
        if getattr(event, "total", None):
            self.progress.setRange(0, int(event.total))
            self.progress.setValue(int(event.current))
        self.progress.setFormat(f"%v/%m {event.message}" if event.total else event.message)

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
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.areas is not None else 0)
        self.progress.setFormat("done" if self.areas is not None else "")

    # -- the cheap part: filter, statistics, rule ---------------------------------------
    def filter_settings(self) -> dict[str, Any]:
        """The filtering controls as :func:`~napari_calf.calf.stats.filter_slices` arguments."""
        min_area, k = self.min_area_spin.value(), self.outlier_spin.value()
        return {"empty_fraction": float(self.empty_fraction_spin.value()),
                "min_area": float(min_area) if min_area > 0 else None,
                "outlier_iqr": float(k) if k > 0 else None}

    def recompute(self) -> None:
        """Filter, compute S/K on the kept slices, select the transform, redraw."""
        if self.areas is None:
            return
        try:
            self.filter_result = filter_slices(self.areas, **self.filter_settings())
            self.stats = imbalance_stats(self.filter_result.apply(self.areas))
            self.selection = select_transform(self.stats, self.rules_table.rules)
        except CalfError as exc:
            self._status(str(exc), error=True)
            return
        self._refresh_views()
        self.updated.emit()

    def kept_nonzero(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(case_ids, slices, areas) of the kept slices with tumour: the histogram's data."""
        assert self.areas is not None and self.filter_result is not None  # noqa: S101 - internal
        mask = self.filter_result.keep & (self.areas.areas > 0)
        return self.areas.case_ids[mask], self.areas.slices[mask], self.areas.areas[mask]

    def _unit_text(self) -> str:
        return "mm²" if self.areas is not None and self.areas.unit == "mm2" else "px"

    def _show_empty(self) -> None:
        self.histogram.message("Run the analysis to see the tumour-size distribution")
        self.transform_plot.message("The selected transform's view of the sizes appears here")

    def _refresh_views(self) -> None:
        if self.selection is None or self.stats is None or self.filter_result is None:
            return
        sel, st = self.selection, self.stats
        self.transform_label.setText(f"Loss transform: {sel.transform}"
                                     + (f"   (rule row {sel.row})" if sel.row else ""))
        self.reason_label.setText(sel.reason)
        self.rules_table.highlight(sel.rule_index, theme_colours(self.viewer.theme)["accent"])
        summary = self.filter_result.summary()
        assert self.areas is not None  # noqa: S101 - set before selection
        self.min_area_spin.setSuffix(f" {self._unit_text()}")
        self.empty_label.setText(f"Empty slices: {self.areas.n_empty} of {self.areas.n_slices} "
                                 f"({summary.get('kept_empty', 0)} kept)")
        self.filter_counts_label.setText(f"Kept: {summary['kept']}   Dropped: {summary['dropped']}   "
                                         f"Flagged: {summary['flagged']}")
        self.flagged_list.clear()
        for row in self.filter_result.report:
            if row["area"] > 0:
                self._add_item(self.flagged_list, row["case_id"], row["slice"], row["area"],
                               f"  [{row['action']}]", row["reason"])
        self._draw_histograms()

    def _draw_histograms(self) -> None:
        if self.selection is None:
            return
        _ids, _slices, values = self.kept_nonzero()
        st = self.stats
        assert st is not None  # noqa: S101
        if st.defined:
            note = f"S = {st.skewness:.2f}\nK = {st.kurtosis:.2f}\nN = {st.n}"
        else:
            note = f"S, K undefined\nN = {st.n}"
        log_x = self.log_x_check.isChecked()
        self.histogram.histogram(values, bins=N_BINS, log_x=log_x, title="Tumour area per slice (non-zero)",
                                 xlabel=f"area ({self._unit_text()})", annotation=note,
                                 selected_bin=self.selected_bin)
        transform = self.selection.transform
        self.transform_plot.histogram(transform_view(values, transform), bins=N_BINS,
                                      title=transform_view_title(transform), xlabel="T(p)")
        if self.selected_bin is not None:
            self.select_bin(self.selected_bin, redraw=False)

    # -- review ---------------------------------------------------------------------------
    def _add_item(self, widget: Any, case_id: str, index: int, area: float, suffix: str = "",
                  tip: str = "") -> None:
        item = QListWidgetItem(f"{case_id}   slice {index}   {area:g} {self._unit_text()}{suffix}")
        item.setData(_ROLE, (str(case_id), int(index)))
        if tip:
            item.setToolTip(tip)
        widget.addItem(item)

    def slices_in_bin(self, index: int) -> list[tuple[str, int, float]]:
        """(case, slice, area) of the kept slices in histogram bin ``index``."""
        edges = self.histogram.edges
        if edges is None or self.areas is None:
            return []
        ids, slices, values = self.kept_nonzero()
        hit = histogram_bin_of(values, edges) == index
        return [(str(c), int(s), float(a)) for c, s, a in zip(ids[hit], slices[hit], values[hit])]

    def select_bin(self, index: int, *, redraw: bool = True) -> None:
        """List the slices of a histogram bar (what a click on the bar does)."""
        self.selected_bin = index
        rows = self.slices_in_bin(index)
        self.bin_list.clear()
        for case_id, s, area in sorted(rows, key=lambda r: r[2]):
            self._add_item(self.bin_list, case_id, s, area)
        edges = self.histogram.edges
        if edges is not None and index < len(edges) - 1:
            self.bin_label.setText(f"{len(rows)} slice(s) with area {edges[index]:.4g}–{edges[index + 1]:.4g} "
                                   f"{self._unit_text()}; click one to show it:")
        if redraw:
            self._draw_histograms()

    def _item_chosen(self, item: QListWidgetItem) -> None:
        case_id, index = item.data(_ROLE)
        self.go_to_slice(case_id, index)

    def go_to_slice(self, case_id: str, index: int) -> None:
        """Show slice ``index`` of ``case_id``: open the case if needed, move the slider."""
        from ._navigation import show_case_slice

        try:
            show_case_slice(self.viewer, case_id, index, axis=self._measured_axis,
                            case_folder=self._case_folders.get(case_id))
        except CalfError as exc:
            self._status(str(exc), error=True)
        except Exception as exc:  # noqa: BLE001 - a reader failure must not kill the dock
            self._status(f"Could not show {case_id} slice {index}: {type(exc).__name__}: {exc}", error=True)

    # -- files ----------------------------------------------------------------------------
    def export_statistics(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the statistics, the choice, the filter summary and the table as JSON."""
        if self.selection is None or self.areas is None:
            raise _nothing_to_export()
        payload = stats_payload(
            source=self._source, areas=self.areas, selection=self.selection, result=self.filter_result,
            settings={"target": self.areas.target, "axis": self.areas.axis, "unit": self.areas.unit,
                      "filtering": self.filter_settings()},
            rules_json=rules_to_json(self.rules_table.rules),
        )
        return write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
                                 overwrite=overwrite)

    def export_slices(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write one CSV row per slice: case, slice, area, unit, kept, flagged, action, reason."""
        if self.areas is None:
            raise _nothing_to_export()
        return write_text_atomic(path, slices_csv_text(self.areas, self.filter_result), overwrite=overwrite)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.folder_radio.setChecked(True)

    def _save_path(self, caption: str, filters: str) -> tuple[str, bool] | None:
        """Ask for a path; confirm before replacing a file. None if cancelled."""
        path, _ = QFileDialog.getSaveFileName(self, caption, "", filters,
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if not path:
            return None
        if Path(path).exists():
            answer = QMessageBox.question(self, caption, f"{path} exists. Replace it?")
            if answer != QMessageBox.StandardButton.Yes:
                return None
            return path, True
        return path, False

    def _export_dialog(self, kind: str) -> None:
        chosen = self._save_path("Export statistics" if kind == "json" else "Export slice list",
                                 "JSON (*.json)" if kind == "json" else "CSV (*.csv)")
        if chosen is None:
            return
        try:
            write = self.export_statistics if kind == "json" else self.export_slices
            done = write(chosen[0], overwrite=chosen[1])
            self._status(f"Saved {done}.")
        except CalfError as exc:
            self._status(str(exc), error=True)

    def _load_rules_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load rule table", "", "JSON (*.json)")
        if path:
            self.rules_table.load_json(path)

    def _save_rules_dialog(self) -> None:
        chosen = self._save_path("Save rule table", "JSON (*.json)")
        if chosen is None:
            return
        try:
            self._status(f"Saved {self.rules_table.save_json(chosen[0], overwrite=chosen[1])}.")
        except CalfError as exc:
            self._status(str(exc), error=True)


def _nothing_to_export() -> CalfError:
    from ...errors import CalfConfigError

    return CalfConfigError("nothing to export yet. Fix: run the analysis (Analyse sizes) first.")

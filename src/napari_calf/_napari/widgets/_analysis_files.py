"""The analysis widget's files: statistics (JSON), slice list (CSV), rule tables.

A mixin of :class:`~.analysis.AnalysisWidget` (tests call the export methods
directly; the buttons go through file dialogs that ask before replacing a file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QMessageBox

from ...calf.rules_io import rules_to_json
from ...errors import CalfError
from ...io.files import write_text_atomic
from ._analysis_data import slices_csv_text, stats_payload


class AnalysisFilesMixin:
    """Export and rule-table file methods; expects the analysis widget's attributes."""

    areas: Any
    selection: Any
    filter_result: Any
    rules_table: Any
    folder_edit: Any
    folder_radio: Any
    _source: str
    _status: Any
    filter_settings: Any

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

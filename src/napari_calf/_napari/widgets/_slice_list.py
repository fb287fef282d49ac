"""A list of (case, slice) entries that fills instantly, however many there are.

The analysis widget lists the slices of a histogram bar and the slices the filter
dropped or flagged: on a BraTS-sized dataset that is thousands of rows. A
``QListWidget`` makes one item object per row on the GUI thread (tens of ms per
thousand); this list is a view on a plain Python list (:class:`SliceListModel`),
so filling it costs next to nothing and rows are only formatted when shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import QAbstractListModel, QModelIndex, QRect, Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QListView, QWidget

from ._analysis_data import SliceEntry


class SliceListModel(QAbstractListModel):
    """Rows of :class:`SliceEntry`; ``UserRole`` gives ``(case_id, index)``."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[SliceEntry] = []

    def set_rows(self, rows: Sequence[SliceEntry]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def entry(self, row: int) -> SliceEntry:
        return self._rows[row]

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        entry = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.text
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry.tip or None
        if role == Qt.ItemDataRole.UserRole:
            return (entry.case_id, entry.index)
        return None


class SliceList(QListView):
    """A list of slices; clicking (or moving to) a row emits ``slice_chosen(case_id, index)``."""

    slice_chosen = Signal(str, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list_model = SliceListModel(self)
        self.setModel(self.list_model)
        self.setUniformItemSizes(True)  # no per-row size query: long lists lay out at once
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.clicked.connect(self._chosen)
        self.activated.connect(self._chosen)

    def set_rows(self, rows: Sequence[SliceEntry]) -> None:
        """Replace the rows."""
        self.list_model.set_rows(rows)

    def count(self) -> int:
        """Number of rows."""
        return self.list_model.rowCount()

    def entry(self, row: int) -> SliceEntry:
        """The row ``row`` (0-based)."""
        return self.list_model.entry(row)

    def row_rect(self, row: int) -> QRect:
        """Where row ``row`` is drawn in the viewport (scrolled into view first)."""
        index = self.list_model.index(row)
        self.scrollTo(index)
        return self.visualRect(index)

    def _chosen(self, index: QModelIndex) -> None:
        if index.isValid():
            entry = self.list_model.entry(index.row())
            self.slice_chosen.emit(entry.case_id, entry.index)

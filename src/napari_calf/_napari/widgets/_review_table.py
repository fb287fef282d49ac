"""The review widget's per-slice table: sortable, worst slice first, a click jumps to it."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ._review_analysis import SliceRow

#: Short headers: the dock is narrow. Areas are in pixels (the header tooltips say so).
COLUMNS = ("slice", "Dice", "truth px", "predicted px")
_SORT_ROLE = Qt.ItemDataRole.UserRole


def setup_row_table(table: QTableWidget, columns: Sequence[str], header_tips: dict[int, str],
                    tooltip: str, min_height: int) -> None:
    """The review's tables: whole rows selected one at a time, read-only, columns sharing
    the width, sortable by a header click; ``header_tips`` explain columns by index."""
    table.setHorizontalHeaderLabels(list(columns))
    for column, tip in header_tips.items():
        table.horizontalHeaderItem(column).setToolTip(tip)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.setSortingEnabled(True)
    table.setToolTip(tooltip)
    table.setMinimumHeight(min_height)


class _NumberItem(QTableWidgetItem):
    """A read-only cell showing formatted text that sorts by its number, not its text."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.setData(_SORT_ROLE, float(value))
        self.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        self.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.data(_SORT_ROLE), other.data(_SORT_ROLE)
        if mine is None or theirs is None:
            return super().__lt__(other)
        return float(mine) < float(theirs)


class SliceTable(QTableWidget):
    """Slices with tumour in the ground truth or the prediction.

    Signals
    -------
    slice_activated(int)
        The slice index of a row the user clicked (or moved to with the keyboard).
    """

    slice_activated = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        setup_row_table(self, COLUMNS, {2: "Tumour area of the ground truth on this slice, in pixels",
                                        3: "Tumour area of the prediction on this slice, in pixels"},
                        "Click a row to show that slice. Click a header to sort.", 140)
        self.cellClicked.connect(self._on_cell)
        self.currentCellChanged.connect(lambda row, _c, _pr, _pc: self._on_cell(row, 0))

    def set_rows(self, rows: Sequence[SliceRow]) -> None:
        """Fill the table and sort it by Dice, worst first."""
        # sorting while inserting would move rows under our feet
        self.setSortingEnabled(False)
        self.blockSignals(True)
        self.clearContents()
        self.setRowCount(len(rows))
        for i, row in enumerate(rows):
            self.setItem(i, 0, _NumberItem(row.index, str(row.index)))
            self.setItem(i, 1, _NumberItem(row.dice, f"{row.dice:.3f}"))
            self.setItem(i, 2, _NumberItem(row.truth_area, str(row.truth_area)))
            self.setItem(i, 3, _NumberItem(row.pred_area, str(row.pred_area)))
        self.blockSignals(False)
        self.setSortingEnabled(True)
        self.sortItems(1, Qt.SortOrder.AscendingOrder)

    def slice_at(self, row: int) -> int | None:
        """The slice index shown in table row ``row`` (in the current sort order)."""
        item = self.item(row, 0)
        return None if item is None else int(item.data(_SORT_ROLE))

    def _on_cell(self, row: int, _column: int) -> None:
        index = self.slice_at(row)
        if index is not None:
            self.slice_activated.emit(index)

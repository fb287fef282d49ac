"""The annotation-review dock's queue: the audit's issues, highest score first, filterable by kind."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ("#", "case", "kind", "score", "slices", "")
ALL_KINDS = "All kinds"
_ID_ROLE = Qt.ItemDataRole.UserRole
_DONE = "\u2713"  # a check mark: reviewed


class IssueQueue(QWidget):
    """A kind filter, a "hide reviewed" switch and the table of issues.

    Signals
    -------
    issue_chosen(str)
        The id of the issue the user clicked or moved to with the keyboard.
    """

    issue_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._issues: tuple[Any, ...] = ()
        self._reviewed: set[str] = set()
        self.kind = QComboBox()
        self.kind.setToolTip("Show one kind of issue only.")
        self.kind.currentIndexChanged.connect(lambda _i: self._fill())
        self.hide_reviewed = QCheckBox("Hide reviewed")
        self.hide_reviewed.toggled.connect(lambda _on: self._fill())
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.kind, 1)
        top.addWidget(self.hide_reviewed)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Issues, highest score first. Click one to open its case there.")
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setMinimumHeight(90)
        self.table.cellClicked.connect(lambda row, _c: self._emit(row))
        self.table.currentCellChanged.connect(lambda row, _c, _pr, _pc: self._emit(row))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table)

    # ------------------------------------------------------------------ content

    def set_issues(self, issues: Sequence[Any], reviewed: Collection[str], counts: dict[str, int]) -> None:
        """Show ``issues`` (:class:`~napari_calf.audit.review.ReviewIssue`, in queue order)."""
        self._issues = tuple(issues)
        self._reviewed = set(reviewed)
        chosen = self.chosen_kind()
        self.kind.blockSignals(True)
        self.kind.clear()
        self.kind.addItem(f"{ALL_KINDS} ({len(self._issues)})", None)
        for kind, n in counts.items():
            self.kind.addItem(f"{kind} ({n})", kind)
        index = self.kind.findData(chosen) if chosen else 0
        self.kind.setCurrentIndex(max(index, 0))
        self.kind.blockSignals(False)
        self._fill()

    def set_reviewed(self, reviewed: Collection[str]) -> None:
        self._reviewed = set(reviewed)
        current = self.current_id()
        self._fill()
        if current is not None:
            self.select(current, emit=False)

    def chosen_kind(self) -> str | None:
        return self.kind.currentData()

    def choose_kind(self, kind: str | None) -> None:
        index = self.kind.findData(kind) if kind else 0
        if index >= 0:
            self.kind.setCurrentIndex(index)

    def shown(self) -> list[Any]:
        """The issues the filter lets through, in queue order."""
        kind = self.chosen_kind()
        return [i for i in self._issues if (kind is None or i.kind == kind)
                and not (self.hide_reviewed.isChecked() and i.id in self._reviewed)]

    def _fill(self) -> None:
        rows = self.shown()
        current = self.current_id()
        self.table.blockSignals(True)
        self.table.clearContents()
        self.table.setRowCount(len(rows))
        for r, issue in enumerate(rows):
            first, last = issue.issue.slices
            cells = (str(issue.rank), issue.case_id, issue.kind, f"{issue.score:.2f}",
                     str(first) if first == last else f"{first}-{last}",
                     _DONE if issue.id in self._reviewed else "")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(_ID_ROLE, issue.id)
                if c in (0, 3, 4):
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                if issue.id in self._reviewed:
                    item.setForeground(QColor("#8a8a8a"))
                if issue.in_sample:
                    item.setToolTip("In-sample: the models trained on this label, so they agree "
                                    "with it more easily; weaker evidence.")
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        self._fit_height(len(rows))
        if current is not None:
            self.select(current, emit=False)

    def _fit_height(self, n_rows: int) -> None:
        """As tall as the rows, at most eight: the dock must fit a 1366x768 screen."""
        row = self.table.verticalHeader().defaultSectionSize()
        header = self.table.horizontalHeader().sizeHint().height()
        self.table.setFixedHeight(header + row * min(max(n_rows, 3), 8) + 2 * self.table.frameWidth() + 2)

    # ------------------------------------------------------------------ selection

    def current_id(self) -> str | None:
        item = self.table.item(self.table.currentRow(), 0) if self.table.currentRow() >= 0 else None
        return None if item is None else str(item.data(_ID_ROLE))

    def select(self, issue_id: str, *, emit: bool = True) -> bool:
        """Highlight ``issue_id`` if it is shown; emit ``issue_chosen`` when asked."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(_ID_ROLE) == issue_id:
                self.table.blockSignals(True)
                self.table.setCurrentCell(row, 0)
                self.table.blockSignals(False)
                self.table.scrollToItem(item)
                if emit:
                    self.issue_chosen.emit(issue_id)
                return True
        return False

    def _emit(self, row: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.issue_chosen.emit(str(item.data(_ID_ROLE)))

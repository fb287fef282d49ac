"""The CALF selection rule table as an editable Qt table (CALF_METHOD §3).

Rows are :class:`napari_calf.calf.stats.Rule` objects; columns are the transform, the
eight optional bounds (S, |S|, K, |K|, each from below and above) and the source.
A bound cell holds a number with an optional comparison: ``≥ -1`` / ``> -1`` in a
"from" column, ``≤ -0.5`` / ``< -0.5`` in an "up to" column; a bare number means
the inclusive comparison; an empty cell means no bound. Every edit is turned
back into Rules by the core (which validates them); a valid table is emitted
with ``rules_changed``, an invalid one shows the core's message and the table
returns to the last valid state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...errors import CalfConfigError, CalfError
from ...calf.rules import DEFAULT_RULES, RULE_BOUNDS, RULE_SOURCES, RULE_TRANSFORMS, Rule
from ...calf.rules_io import load_rules, save_rules, validate_rules

# (Rule field, its inclusive flag, header text, "min"|"max"), one per bound the core knows
BOUND_COLUMNS: tuple[tuple[str, str, str, str], ...] = tuple(
    (bound, flag, f"{symbol} {'from' if kind == 'min' else 'up to'}", kind)
    for bound, flag, symbol, kind in RULE_BOUNDS
)
#: The transform comes first so it stays in view when the bounds scroll sideways.
TRANSFORM_COLUMN = 0
BOUND_OFFSET = 1  # table column of BOUND_COLUMNS[0]
SOURCE_COLUMN = BOUND_OFFSET + len(BOUND_COLUMNS)

_BOUND_RE = re.compile(r"^\s*(>=|<=|≥|≤|>|<)?\s*([+\-\u2212]?\s*[0-9.eE+\-]+)\s*$")


def format_bound(value: float | None, inclusive: bool, kind: str) -> str:
    """Cell text of a bound: ``""``, ``"≥ -1"``, ``"> -1"``, ``"≤ 0.5"`` or ``"< 0.5"``."""
    if value is None:
        return ""
    op = ("≥" if inclusive else ">") if kind == "min" else ("≤" if inclusive else "<")
    return f"{op} {value:g}"


def parse_bound(text: str, kind: str, header: str) -> tuple[float | None, bool]:
    """Inverse of :func:`format_bound`; a bare number is inclusive.

    Raises
    ------
    CalfError
        Text that is not a number, or a comparison that points the wrong way.
    """
    text = text.strip()
    if not text:
        return None, True
    match = _BOUND_RE.match(text)
    if match is None:
        raise CalfConfigError(
            f"'{text}' in column '{header}' is not a number. Fix: write e.g. 0.5, ≥ 0.5 or > 0.5, "
            "or clear the cell for no bound."
        )
    op, number = match.group(1), match.group(2).replace("\u2212", "-").replace(" ", "")
    try:
        value = float(number)
    except ValueError:
        raise CalfConfigError(f"'{text}' in column '{header}' is not a number.") from None
    if op is None:
        return value, True
    wrong = {"min": ("<", "<=", "≤"), "max": (">", ">=", "≥")}[kind]
    if op in wrong:
        raise CalfConfigError(
            f"'{text}' in column '{header}': a '{'from' if kind == 'min' else 'up to'}' bound "
            f"takes {'≥ or >' if kind == 'min' else '≤ or <'}. Fix: use the other column."
        )
    return value, op in ("≥", ">=", "≤", "<=")


class RulesTable(QWidget):
    """Editable rule table with Reset / Load / Save / Add / Remove.

    Signals
    -------
    rules_changed(tuple)
        A new valid table (tuple of Rule).
    error(str)
        The core refused an edit or a file; the message is also shown under the table.
    """

    rules_changed = Signal(object)
    error = Signal(str)

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rules: tuple[Rule, ...] = tuple(rules)
        self._matched: int | None = None
        self._filling = False
        self.table = QTableWidget(0, SOURCE_COLUMN + 1)
        headers = ["transform"] + [c[2] for c in BOUND_COLUMNS] + ["source"]
        self.table.setHorizontalHeaderLabels(headers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setToolTip(
            "First matching row wins. Bounds: a number means ≥ (from) or ≤ (up to); "
            "prefix > or < for a strict bound; empty = no bound."
        )
        self.table.cellChanged.connect(self._on_cell_changed)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e0525f;")
        self.error_label.hide()

        buttons = QHBoxLayout()
        for text, slot, tip in (
            ("Reset to defaults", self.reset_to_defaults,
             "Put back the default table: row 1 from the CALF paper, the rest this tool's assumptions"),
            ("Add row", self.add_row, "Insert an 'otherwise → bce-dice' row above the selected one"),
            ("Remove row", self.remove_selected_row, "Delete the selected row"),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.error_label)
        layout.addLayout(buttons)
        self._fill()

    # -- public -------------------------------------------------------------------------
    @property
    def rules(self) -> tuple[Rule, ...]:
        """The last valid table."""
        return self._rules

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Replace the table (validated by the core) and emit ``rules_changed``."""
        try:
            table = validate_rules(rules)
        except CalfError as exc:
            self._show_error(str(exc))
            return
        self._rules = table
        self._show_error("")
        self._fill()
        self.rules_changed.emit(self._rules)

    def reset_to_defaults(self) -> None:
        self.set_rules(DEFAULT_RULES)

    def add_row(self) -> None:
        row = self.table.currentRow()
        at = row if row >= 0 else len(self._rules)
        rules = list(self._rules)
        rules.insert(at, Rule("bce-dice", source="assumption", note="added in the widget"))
        self.set_rules(rules)

    def remove_selected_row(self) -> None:
        row = self.table.currentRow()
        if row < 0 or len(self._rules) <= 1:
            self._show_error("Select a row to remove (the table keeps at least one row).")
            return
        self.set_rules(self._rules[:row] + self._rules[row + 1:])

    def load_json(self, path: str | Path) -> None:
        """Load a table written by ``save_rules`` (or the CLI); errors are shown, not raised."""
        try:
            self.set_rules(load_rules(path))
        except CalfError as exc:
            self._show_error(str(exc))

    def save_json(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the current table with the core's ``save_rules`` (atomic, no clobber)."""
        return save_rules(self._rules, path, overwrite=overwrite)

    def set_cell(self, row: int, column: int, text: str) -> None:
        """Edit a cell as a user would (bound text, transform or source name)."""
        if column in (TRANSFORM_COLUMN, SOURCE_COLUMN):
            combo = self.table.cellWidget(row, column)
            combo.setCurrentText(text)
        else:
            self.table.item(row, column).setText(text)

    def highlight(self, index: int | None, colour: str = "#4560c4") -> None:
        """Mark the matched row (0-based), or none."""
        self._matched = index
        self._filling = True
        bold, normal = QFont(), QFont()
        bold.setBold(True)
        for row in range(self.table.rowCount()):
            hit = row == index
            brush = QBrush(QColor(colour)) if hit else QBrush()
            for column in range(self.table.columnCount()):
                item = self.table.item(row, column)
                if item is not None:
                    item.setBackground(brush)
                    item.setFont(bold if hit else normal)
            header = self.table.verticalHeaderItem(row)
            if header is not None:
                header.setText(f"▶ {row + 1}" if hit else str(row + 1))
        self._filling = False

    # -- internals ----------------------------------------------------------------------
    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        if message:
            self.error.emit(message)

    def _combo(self, choices: Sequence[str], current: str) -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(choices))
        combo.setCurrentText(current)
        combo.currentTextChanged.connect(self._on_table_edited)
        return combo

    def _fill(self) -> None:
        self._filling = True
        self.table.setRowCount(len(self._rules))
        for row, rule in enumerate(self._rules):
            for column, (bound, flag, _header, kind) in enumerate(BOUND_COLUMNS, start=BOUND_OFFSET):
                item = QTableWidgetItem(format_bound(getattr(rule, bound), getattr(rule, flag), kind))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, column, item)
            # An item under each combo carries the highlight colour.
            self.table.setItem(row, TRANSFORM_COLUMN, QTableWidgetItem(""))
            self.table.setItem(row, SOURCE_COLUMN, QTableWidgetItem(""))
            self.table.setCellWidget(row, TRANSFORM_COLUMN, self._combo(RULE_TRANSFORMS, rule.transform))
            self.table.setCellWidget(row, SOURCE_COLUMN, self._combo(RULE_SOURCES, rule.source))
            header = QTableWidgetItem(str(row + 1))
            header.setToolTip(f"{rule.describe()} → {rule.transform}" + (f"\n{rule.note}" if rule.note else ""))
            self.table.setVerticalHeaderItem(row, header)
        self._filling = False
        self.highlight(self._matched if self._matched is not None and self._matched < len(self._rules) else None)

    def _row_rule(self, row: int) -> Rule:
        kwargs: dict[str, Any] = {}
        for column, (bound, flag, header, kind) in enumerate(BOUND_COLUMNS, start=BOUND_OFFSET):
            value, inclusive = parse_bound(self.table.item(row, column).text(), kind, header)
            kwargs[bound], kwargs[flag] = value, inclusive
        transform = self.table.cellWidget(row, TRANSFORM_COLUMN).currentText()
        source = self.table.cellWidget(row, SOURCE_COLUMN).currentText()
        return Rule(transform, source=source, note=self._rules[row].note, **kwargs)

    def _on_cell_changed(self, _row: int, _column: int) -> None:
        self._on_table_edited()

    def _on_table_edited(self, *_args: Any) -> None:
        if self._filling:
            return
        try:
            rules = []
            for row in range(self.table.rowCount()):
                try:
                    rules.append(self._row_rule(row))
                except CalfError as exc:
                    raise CalfConfigError(f"Row {row + 1}: {exc}") from None
            table = validate_rules(rules)
        except CalfError as exc:
            self._fill()  # back to the last valid table
            self._show_error(f"{exc} The table was left as it was.")
            return
        self._rules = table
        self._show_error("")
        self._fill()  # normalised text (e.g. "0.50" -> "≥ 0.5")
        self.rules_changed.emit(self._rules)

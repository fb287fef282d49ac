"""The annotation-review dock's face: its controls in a scroll area, and how issues, metrics and
progress are written. Behaviour lives in :mod:`.audit_review`, which subclasses this panel."""

from __future__ import annotations

import logging
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ...audit.review import LABEL_VALUES
from ...errors import CalfError
from ._audit_queue import IssueQueue
from ._training_form import PathField

log = logging.getLogger(__name__)


def _button(text: str, tip: str, slot: Any) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda _checked=False: slot())
    return button


class AuditReviewPanel(QWidget):
    """Controls of the dock; the subclass provides the slots the buttons call."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder_field = PathField("Audit folder (holds audit.json)")
        self.folder_field.edit.setPlaceholderText("audit folder")
        self.open_button = _button("Open", "Read the audit folder.",
                                   lambda: self.open_folder(self.folder_field.text()))
        self.folder_field.layout().addWidget(self.open_button)
        self.summary = QLabel("Open the folder written by `napari-calf audit`.")
        self.summary.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v of %m reviewed")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.queue = IssueQueue()
        self.queue.issue_chosen.connect(self.select_issue)

        self.detail = QLabel("No issue chosen.")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        issue_box = QGroupBox("Issue")
        issue_layout = QVBoxLayout(issue_box)
        issue_layout.addWidget(self.detail)
        issue_layout.addWidget(self.metrics_label)

        self.right_button = _button("Label is right", "Keep the annotation as it is here and "
                                    "record that it was checked.", self.label_is_right)
        self.suggest_button = _button("Use the models' suggestion here", "Copy the models' "
                                      "consensus into the annotation inside the issue's box; "
                                      "saved to AUDIT/corrections.", self.use_suggestion)
        self.value_combo = QComboBox()
        self.value_combo.setToolTip("Label value given to tumour the annotation lacked "
                                    "(and the brush's value when editing).")
        self.value_combo.currentIndexChanged.connect(lambda _i: self._sync_brush())
        self.edit_button = _button("Edit", "Paint, fill or erase on the annotation with napari's "
                                   "tools.", self.edit)
        self.save_button = _button("Save edit", "Record the painted annotation for this issue.",
                                   self.save_edit)
        self.next_button = _button("Next \u25b8", "Save any edit, then open the next unreviewed "
                                   "issue.", self.next_issue)
        self.undo_button = _button("Undo last decision", "Take back the latest decision recorded "
                                   "in this audit: its corrected label returns to what it was "
                                   "before (the original, for a first correction).", self.undo_last)
        decide = QGroupBox("Decision")
        rows = QVBoxLayout(decide)
        for widgets in ((self.right_button, self.suggest_button),
                        (QLabel("New tumour as"), self.value_combo),
                        (self.edit_button, self.save_button, self.next_button),
                        (self.undo_button,)):
            row = QHBoxLayout()
            for widget in widgets:
                row.addWidget(widget, 1 if widget in (self.suggest_button, self.value_combo) else 0)
            rows.addLayout(row)

        self.fine_tune_button = _button("Fine-tune on corrections\u2026", "Open the fine-tune dock "
                                        "with the audited dataset and labels taken from "
                                        "AUDIT/corrections where corrected.", self.open_fine_tune)
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 1)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumHeight(6)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        content = QWidget()
        layout = QVBoxLayout(content)
        for widget in (self.folder_field, self.summary, self.progress_bar, self.queue, issue_box,
                       decide, self.busy_bar, self.status, self.fine_tune_button):
            layout.addWidget(widget)
        layout.addStretch(1)
        # scrolls rather than squeezes: the dock must fit a 1366x768 screen
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(320)

    # ------------------------------------------------------------------ slots (the subclass's)

    def open_folder(self, path: Any) -> None:
        raise NotImplementedError

    def select_issue(self, issue_id: str) -> None:
        raise NotImplementedError

    def label_is_right(self) -> None:
        raise NotImplementedError

    def use_suggestion(self) -> None:
        raise NotImplementedError

    def edit(self) -> None:
        raise NotImplementedError

    def save_edit(self) -> None:
        raise NotImplementedError

    def next_issue(self) -> None:
        raise NotImplementedError

    def undo_last(self) -> None:
        raise NotImplementedError

    def open_fine_tune(self) -> None:
        raise NotImplementedError

    def _sync_brush(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ writing things down

    def show_issue_text(self, issue: Any, reviewed: bool) -> None:
        first, last = issue.issue.slices
        where = f"slice {first}" if first == last else f"slices {first}\u2013{last}"
        note = ("<br><i>In-sample: the models trained on this label; weaker evidence.</i>"
                if issue.in_sample else "")
        decided = " \u00b7 <b>reviewed</b>" if reviewed else ""
        self.detail.setText(f"<b>#{issue.rank} {issue.kind}</b> \u00b7 score {issue.score:.2f} \u00b7 "
                            f"{issue.case_id}, axial {where}{decided}<br>{issue.issue.detail}{note}")

    def show_metrics(self, metrics: dict[str, Any]) -> None:
        change = metrics["change_mm3"] or 0.0
        self.metrics_label.setText(
            f"In the box: Dice {metrics['dice']:.2f} (annotation vs models), annotation "
            f"{metrics['label_mm3']:.0f} mm\u00b3, models {metrics['consensus_mm3']:.0f} mm\u00b3. "
            f"Case label {metrics['case_mm3'] / 1000:.2f} mL ({change / 1000:+.2f} mL since the original).")

    def show_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_bar.setFormat(f"{done} of {total} reviewed")

    def fill_values(self, convention: str, binary: bool) -> None:
        """Label values for new tumour: oedema (2) by default, 1 for a plain 0/1 mask."""
        self.value_combo.blockSignals(True)
        self.value_combo.clear()
        for value, name in LABEL_VALUES.get(convention, LABEL_VALUES["brats2021"]).items():
            self.value_combo.addItem(f"{value} {name}", value)
        self.value_combo.setCurrentIndex(max(self.value_combo.findData(1 if binary else 2), 0))
        self.value_combo.blockSignals(False)

    def set_busy(self, busy: bool, text: str | None = None) -> None:
        self.busy_bar.setRange(0, 0 if busy else 1)
        if text:
            self._set_status(text)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _report_error(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, CalfError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CalfError):
            log.error("annotation review failed", exc_info=exc)
        self._set_status(f"Error: {text}")
        from napari.utils.notifications import show_error

        show_error(text)


def fill_fine_tune(viewer: Any, folder: Any, dock: tuple[str, str]) -> tuple[str, bool]:
    """Open the fine-tune dock filled for training on ``folder``'s corrections: the audited
    data, labels from ``AUDIT/corrections`` and (when empty) a run folder inside the audit.

    Returns the message and whether there is a saved correction to train on.
    """
    corrections = folder.corrections_dir
    _dock, widget = viewer.window.add_plugin_dock_widget(*dock)
    form = widget.form
    form.data_dir.setText(str(folder.data_dir))
    form.labels_from.setText(str(corrections))
    if not form.out_dir.text():
        form.out_dir.setText(str(folder.root / "finetune-corrections"))
    if not any(not f.parent.name.startswith(".") for f in corrections.glob("*/*.nii*")):  # not .history/
        return ("Fine-tune filled in, but no corrected label has been saved yet: review some "
                "issues first (the run would train on the original labels).", False)
    return (f"Fine-tune filled in: labels from {corrections} where corrected; press Start "
            "(set 'Start from' to fine-tune a trained model).", True)

"""The annotation-review dock: go through an audit's suspected label errors and correct them.

Open an audit folder (``napari-calf audit DATA --out AUDIT``); the queue lists its issues,
highest score first, filterable by kind, with how many are reviewed. Choosing one opens that
case's files (by path: a layer of the same case id from another file is never reused), shows
the slice, the image, the annotation, the models' consensus contour and the issue's box.
Decisions: *Label is right*, *Use the models' suggestion here* (the core's
:func:`~napari_calf.audit.review.suggest_label`, new tumour as the chosen label value),
*Edit* (napari's paint/fill/erase on the annotation, then *Save edit* or *Next*). Every
decision is recorded by :class:`~napari_calf.audit.review.CorrectionStore`: corrected label
maps go to ``AUDIT/corrections/`` on the source grid, never over the original.

Loading, suggesting and writing run in napari workers; the GUI thread only moves arrays into
layers. The widget keeps file paths and layer roles, never Layer objects.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from ...audit.review import AuditFolder, ReviewIssue, load_audit_folder, review_metrics, suggest_label
from ...errors import CalfError
from ..reader import layer_to_canonical
from ._audit_layers import CaseData, add_case_layers, displayed, find_layer, go_to, load_case, remove_owned, show_region
from ._audit_panel import AuditReviewPanel, fill_fine_tune
from ._one_job import OneJobAtATime

log = logging.getLogger(__name__)

FINE_TUNE_WIDGET = ("napari-calf", "Fine-tune (CALF)")
#: Metrics wait this long after the last brush stroke, so painting stays fluid.
METRICS_DELAY_MS = 150


def _release(box: list[Any], *_signal_args: object) -> None:
    """Drop the audit folder lock held in ``box`` (also a dock's ``destroyed`` slot)."""
    lock, box[0] = box[0], None
    if lock is not None:
        lock.release()


def _undo(store: Any) -> tuple[dict[str, Any] | None, set[str]]:
    entry = store.undo_last()
    return entry, store.reviewed_ids()


def _decide(store: Any, issue: ReviewIssue, data: CaseData, shown: np.ndarray, decision: str,
            new_value: int, confident: float) -> tuple[dict, np.ndarray | None]:
    """Worker: compute the suggestion if asked, record the decision, return the label to show.

    ``shown`` is a copy of the annotation layer's data (display layout).
    """
    label = np.ascontiguousarray(layer_to_canonical(shown))  # ~60 ms on a BraTS case: not on the GUI
    corrected = None
    if decision == "use-suggestion":
        corrected = suggest_label(issue, label, data.prob, new_value=new_value,
                                  convention=data.convention, confident=confident)
    elif decision == "edited":
        corrected = label
    adds = decision == "use-suggestion" and issue.kind != "spurious"
    entry = store.record(issue.id, issue.case_id, decision, label_file=data.label_path,
                         corrected=corrected, reference=data.reference,
                         new_label_value=new_value if adds else None)
    return entry, None if corrected is None or decision == "edited" else displayed(corrected)


class AuditReviewWidget(OneJobAtATime, AuditReviewPanel):
    """Annotation review (CALF).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.folder: AuditFolder | None = None
        self.reviewed: set[str] = set()
        self.current: ReviewIssue | None = None
        self.case: CaseData | None = None
        self.last_metrics: dict[str, Any] | None = None
        self._owned: dict[str, bool] = {}
        self._saved: np.ndarray | None = None  # the annotation as last loaded or saved
        self._painted = False
        self._worker: Any = None
        self._pending: Callable[[], None] | None = None  # what to do once the worker ends
        self._metrics_timer = QTimer(self)
        self._metrics_timer.setSingleShot(True)
        self._metrics_timer.setInterval(METRICS_DELAY_MS)
        self._metrics_timer.timeout.connect(self.update_metrics)
        #: why decisions cannot be recorded here ('' when they can): another process (a
        #: second napari, a running `napari-calf audit`) holds the audit folder
        self.read_only = ""
        self._next_status: str | None = None  # said once the case being opened is shown
        self._audit_lock: list[Any] = [None]  # a box, so a closed dock can drop the lock
        self.destroyed.connect(functools.partial(_release, self._audit_lock))
        self._update_buttons()

    # ------------------------------------------------------------------ the audit folder

    def open_folder(self, path: str | Path) -> None:
        """Read an audit folder in a worker and fill the queue."""
        if not str(path).strip():
            self._set_status("Choose an audit folder first.")
            return
        if self._when_idle(lambda: self.open_folder(path)) or self._save_pending_then(
                lambda: self.open_folder(path)):
            return
        self._close_case()
        region = find_layer(self.viewer, "region", None, self.folder.root) if self.folder else None
        if region is not None:  # the previous audit's box means nothing in the next one
            self.viewer.layers.remove(region)
        self._run(load_audit_folder, (Path(str(path)).expanduser(),), self._on_folder, "Reading the audit\u2026")

    def _hold(self, root: Path) -> str:
        """Hold the audit folder while it is open here; '' or why it is read-only."""
        from ...engine.run_lock import lock_folder

        _release(self._audit_lock)
        try:
            self._audit_lock[0] = lock_folder(
                root, doing="has this audit open (napari reviewing it, or `napari-calf audit` "
                            "computing it)",
                fix="close it there, or wait until the audit ends, then open it here again; "
                    "two places recording decisions would overwrite each other's.")
        except CalfError as exc:
            return str(exc)
        return ""

    def _on_folder(self, folder: AuditFolder) -> None:
        self.folder, self.current = folder, None
        self.read_only = self._hold(folder.root)
        self.reviewed = set(folder.reviewed)
        self.folder_field.setText(str(folder.root))
        in_sample = sum(1 for i in folder.issues if i.in_sample)
        self.summary.setText(f"{len(folder.issues)} issues in {len(folder.cases)} cases of "
                             f"{folder.data_dir}" + (f" ({in_sample} in-sample)" if in_sample else "") + ".")
        self.queue.set_issues(folder.issues, self.reviewed, folder.counts())
        self._update_progress()
        self.detail.setText("Choose an issue in the list, or press Next.")
        self.metrics_label.setText("")
        if self.read_only:
            self._set_status(f"Opened read-only (decisions are off): {self.read_only}")
        else:
            self._set_status(f"Opened {folder.root}.")

    def _issue(self, issue_id: str) -> ReviewIssue | None:
        if self.folder is None:
            return None
        return next((i for i in self.folder.issues if i.id == issue_id), None)

    # ------------------------------------------------------------------ choosing an issue

    def select_issue(self, issue_id: str) -> None:
        """Open the issue's case (if not open), show its slice and region."""
        issue = self._issue(issue_id)
        if issue is None or self.folder is None:
            return
        if self._when_idle(lambda: self.select_issue(issue_id)):
            return
        if self.current is not None and self.current.id != issue_id and self._save_pending_then(
                lambda: self.select_issue(issue_id)):
            return
        self.current = issue
        self.queue.select(issue.id, emit=False)
        case = self.folder.cases[issue.case_id]
        if self._annotation() is not None and self.case is not None and self.case.case_id == case.case_id \
                and Path(self.case.label_path) == Path(case.label):
            self._show_issue()
            return
        self._close_case()
        self._run(load_case, (self.folder.root, case, self.folder.store(), self.folder.confident),
                  self._on_case, f"Opening {case.case_id}\u2026")

    def _on_case(self, data: CaseData) -> None:
        if self.folder is None:
            return
        self._owned = add_case_layers(self.viewer, data, self.folder.root)
        self.case = data
        layer = self._annotation()
        if layer is None:
            return
        self._saved = np.array(layer.data, copy=True)
        self._painted = False
        layer.events.paint.connect(self._on_paint)
        layer.events.data.connect(self._schedule_metrics)
        self.fill_values(data.convention, data.binary)
        self.viewer.reset_view()  # fit the new case; other layers may have set the zoom
        self._show_issue()
        note, self._next_status = self._next_status, None
        self._set_status(note or f"Opened {data.case_id}" + (" (with earlier corrections)." if data.corrected else "."))

    def _show_issue(self) -> None:
        issue, data, layer = self.current, self.case, self._annotation()
        if issue is None or data is None or layer is None or self.folder is None:
            return
        show_region(self.viewer, issue, data, self.folder.root, layer)
        go_to(self.viewer, layer, issue, data.canonical_shape)
        self.viewer.layers.selection.active = layer
        self.show_issue_text(issue, issue.id in self.reviewed)
        self.update_metrics()
        self._update_buttons()

    def _close_case(self) -> None:
        if self.case is not None and self.folder is not None:
            paths = {"image": self.case.image_path, "annotation": self.case.label_path,
                     "consensus": self.case.prediction_path}
            remove_owned(self.viewer, paths, self._owned, self.folder.root)
        self.case, self._owned, self._saved, self._painted = None, {}, None, False

    # ------------------------------------------------------------------ decisions

    def label_is_right(self) -> None:
        """Record that the annotation is right here (as edited, if it was edited)."""
        self._record("edited" if self._dirty() else "label-right")

    def use_suggestion(self) -> None:
        """Copy the models' consensus into the annotation in the issue's box and save it."""
        self._record("use-suggestion")

    def edit(self) -> None:
        """Select the annotation in paint mode, brush value from the combo box."""
        layer = self._annotation()
        if layer is None:
            self._set_status("Choose an issue first.")
            return
        self.viewer.layers.selection.active = layer
        layer.visible = True
        layer.mode = "paint"
        self._sync_brush()
        self._set_status("Paint, fill or erase on the annotation (napari's layer controls); "
                         "then Save edit, or Next, which saves it.")

    def save_edit(self) -> None:
        """Record the painted annotation as the decision for the current issue."""
        if self._dirty():
            self._record("edited")
        else:
            self._set_status("Nothing painted since the last save.")

    def next_issue(self) -> None:
        """Save a pending edit, then open the next unreviewed issue shown in the queue."""
        if self._save_pending_then(self.next_issue):
            return
        shown = self.queue.shown()
        if not shown:
            return
        ids = [i.id for i in shown]
        start = ids.index(self.current.id) + 1 if self.current is not None and self.current.id in ids else 0
        ordered = shown[start:] + shown[:start]
        target = next((i for i in ordered if i.id not in self.reviewed and
                       (self.current is None or i.id != self.current.id)), ordered[0])
        self.select_issue(target.id)

    def _save_pending_then(self, then: Callable[[], None]) -> bool:
        """Save unsaved painting as an "edited" decision, then call ``then``; False if none."""
        if self.current is None or not self._dirty():
            return False
        self._record("edited", then=then)
        return True

    def _record(self, decision: str, then: Callable[[], None] | None = None) -> None:
        if self.read_only:
            self._set_status(f"Not recorded, the audit is open read-only: {self.read_only}")
            return
        issue, data, layer = self.current, self.case, self._annotation()
        if issue is None or data is None or layer is None or self.folder is None or self.busy:
            self._set_status("Choose an issue first." if issue is None else "The case is not open.")
            return
        snapshot = np.array(layer.data, copy=True)
        value = int(self.value_combo.currentData() or 2)

        def done(result: tuple[dict, np.ndarray | None]) -> None:
            entry, shown = result
            current = self._annotation()
            if shown is not None and current is not None:
                current.data = shown
                self._saved = shown.copy()
            else:
                self._saved = snapshot
            self._painted = False
            self.reviewed.add(entry["issue_id"])
            self.queue.set_reviewed(self.reviewed)
            self._update_progress()
            where = f" Saved to {entry['corrected_file']}." if entry["corrected_file"] else ""
            self._set_status(f"{issue.id}: {entry['decision']}, {entry['voxels_changed']} voxels "
                             f"changed.{where}")
            self._show_issue()
            if then is not None:
                then()

        self._run(_decide, (self.folder.store(), issue, data, snapshot, decision, value,
                            self.folder.confident), done, "Saving\u2026")

    def undo_last(self) -> None:
        """Take back the latest decision of this audit and show its issue as it is again."""
        if self.folder is None:
            return
        if self.read_only:
            self._set_status(f"Nothing undone, the audit is open read-only: {self.read_only}")
            return
        if self._when_idle(self.undo_last):
            return
        if self._dirty():
            self._set_status("Unsaved painting here: save it (Save edit) or undo the strokes "
                             "first (Ctrl+Z); this button takes back recorded decisions.")
            return

        def done(result: tuple[dict[str, Any] | None, set[str]]) -> None:
            entry, reviewed = result
            if entry is None:
                self._set_status("Nothing to undo: no decision recorded here since the "
                                 "audit's corrections began keeping a history.")
                return
            self.reviewed = reviewed
            self.queue.set_reviewed(self.reviewed)
            self._update_progress()
            message = (f"Took back '{entry['decision']}' on {entry['issue_id']}: its label is "
                       "as it was before.")
            self._set_status(message)
            self._next_status = message
            self.current = None
            self._close_case()  # reopened from disk, with the label as it is now
            self.select_issue(entry["issue_id"])

        self._run(_undo, (self.folder.store(),), done, "Undoing\u2026")

    # ------------------------------------------------------------------ metrics and state

    def _annotation(self) -> Any | None:
        if self.case is None or self.folder is None:
            return None
        return find_layer(self.viewer, "annotation", self.case.label_path, self.folder.root)

    def _on_paint(self, _event: Any = None) -> None:
        self._painted = True
        self._schedule_metrics()
        self.save_button.setEnabled(not self.busy)

    def _schedule_metrics(self, _event: Any = None) -> None:
        self._metrics_timer.start()

    def _dirty(self) -> bool:
        layer = self._annotation()
        if not self._painted or layer is None or self._saved is None:
            return False
        self._painted = not np.array_equal(np.asarray(layer.data), self._saved)
        return self._painted

    def update_metrics(self) -> None:
        """Dice of annotation vs consensus in the issue's box, and the label's volume change.

        Runs on the GUI thread: it reads the box only, plus one count over the label.
        """
        issue, data, layer = self.current, self.case, self._annotation()
        if issue is None or data is None or layer is None or issue.case_id != data.case_id:
            return
        label = layer_to_canonical(np.asarray(layer.data))
        metrics = review_metrics(issue, label, data.prob, spacing=data.spacing,
                                 confident=self.folder.confident if self.folder else 0.5,
                                 original_voxels=data.original_voxels)
        self.last_metrics = metrics
        self.show_metrics(metrics)

    def _sync_brush(self) -> None:
        layer = self._annotation()
        value = self.value_combo.currentData()
        if layer is not None and value is not None and layer.mode in ("paint", "fill"):
            layer.selected_label = int(value)

    def _update_progress(self) -> None:
        issues = {i.id for i in self.folder.issues} if self.folder else set()
        self.show_progress(len(self.reviewed & issues), len(issues))

    def _update_buttons(self) -> None:
        ready = (self.current is not None and self.case is not None and not self.busy
                 and not self.read_only)
        for button in (self.right_button, self.suggest_button, self.edit_button):
            button.setEnabled(ready)
        self.save_button.setEnabled(ready and self._painted)
        self.next_button.setEnabled(self.folder is not None and not self.busy)
        self.undo_button.setEnabled(self.folder is not None and not self.busy and not self.read_only)
        self.open_button.setEnabled(not self.busy)
        self.fine_tune_button.setEnabled(self.folder is not None)

    # ------------------------------------------------------------------ fine-tuning

    def open_fine_tune(self) -> None:
        """Open the fine-tune dock with the audited data and labels from AUDIT/corrections."""
        if self.folder is None:
            return
        from napari.utils.notifications import show_info, show_warning

        message, filled = fill_fine_tune(self.viewer, self.folder, FINE_TUNE_WIDGET)
        (show_info if filled else show_warning)(message)
        self._set_status(message)

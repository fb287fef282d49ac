"""The fine-tuning dock widget: train a segmentation network on a dataset, watching it learn.

The run is the core's :func:`napari_calf.engine.training.iter_train` generator driven by a napari
generator worker (STYLE.md, "One generator, two drivers"): the worker thread only steps
the generator; every event is handled here on the main thread, which updates the
progress bar, the status line and the curves. Stop asks the core to stop at the next
batch (it then saves and returns, keeping the best checkpoint); closing the widget or
the viewer does the same and waits, bounded, for the thread to end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...errors import CalfError
from ._activity import Activity
from ._dock import first_shown, main_window_of, open_dock, scrollable
from ._plots import follow_theme
from ._training_curves import TrainingCurves
from ._training_events import describe_event
from ._training_events import duration_text as _duration
from ._training_form import TrainingForm
from ._training_run import ViewerCloseFilter, run_training, start_preload

log = logging.getLogger(__name__)

#: Longest wait for the training thread when the widget or the viewer closes. The core
#: checks its stop callback at every batch, so this only runs out if one batch takes longer.
CLOSE_WAIT_S = 30.0
#: Title of the dock's tab when docks are tabbed (napari's own name is cut off there).
TAB_TITLE = "CALF fine-tune"
#: Status while a stop request waits for the batch that is running.
STOPPING = "Stopping after the current batch…"


class TrainingWidget(QWidget):
    """Fine-tune (CALF): settings, Start/Stop, progress with ETA, live curves, result.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari passes it by this parameter name).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: Any = None
        self.result: Any = None
        self.run_dir: Path | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._t0 = 0.0
        self._last_error: str | None = None
        #: Set once torch, smp and the engine are imported (see ``_training_run.start_preload``).
        self.preloaded = threading.Event()
        start_preload(self.preloaded)
        self.activity = Activity("CALF fine-tuning")
        self.destroyed.connect(self.activity.close)  # no bar left behind by a closed dock
        self._framed = False

        self.form = TrainingForm(self)
        self.form.use_analysed.clicked.connect(self.use_analysed_dataset)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.status = QLabel("Choose a dataset and an output folder, then Start.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Labels whose text changes during a run keep a fixed height: a label growing by a
        # line would resize the plots below, and a resized plot is a full (slow) redraw.
        lines = self.status.fontMetrics().lineSpacing()
        self.status.setFixedHeight(3 * lines + 4)
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.curves = TrainingCurves(self, theme=str(getattr(napari_viewer, "theme", "dark")))
        follow_theme(napari_viewer, self.curves.loss_plot, self.curves.dice_plot)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.setFixedHeight(2 * lines + 4)
        self.review_button = QPushButton("Review this model")
        self.review_button.setEnabled(False)
        self.review_button.clicked.connect(self.review_model)

        layout = QVBoxLayout(scrollable(self))  # the dock scrolls: it fits any screen
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.curves.widget, 1)
        layout.addWidget(self.result_label)
        layout.addWidget(self.review_button)

        self._close_filter = ViewerCloseFilter(self)
        self._watched_window: weakref.ref[QMainWindow] | None = None  # weak: never keep a closed window alive
        # napari docks the widget right after constructing it: look for the main window then
        QTimer.singleShot(0, self._watch_main_window)
        QTimer.singleShot(0, self._offer_analysed_dataset)

    def _main_window(self) -> QMainWindow | None:
        """The napari main window this widget is docked in (floating docks keep it as parent)."""
        return main_window_of(self)

    def _watch_main_window(self) -> None:
        window = self._main_window()
        watched = self._watched_window() if self._watched_window is not None else None
        if window is not None and window is not watched:
            window.installEventFilter(self._close_filter)
            self._watched_window = weakref.ref(window)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self._watch_main_window()
        self._offer_analysed_dataset()  # the analysis may have been opened since
        super().showEvent(event)
        if not self._framed:  # just docked: short tab title, and the narrower canvas re-framed
            self._framed = True
            first_shown(self, self.viewer, TAB_TITLE)

    # ------------------------------------------------------------------ data from analysis

    def _analysed_folder(self) -> str | None:
        """The dataset folder of a docked analysis widget, if one is open and has one."""
        window = self._main_window()
        if window is None:
            return None
        try:
            from .analysis import AnalysisWidget
        except ImportError:  # the analysis widget is optional for training
            return None
        for widget in window.findChildren(AnalysisWidget):
            folder = widget.dataset_folder()
            if folder and Path(folder).expanduser().is_dir():
                return str(folder)
        return None

    def _offer_analysed_dataset(self) -> None:
        """Fill an empty data field with the analysed dataset, if there is one now."""
        folder = self._analysed_folder()
        if folder and not self.form.data_dir.text() and not self.running:
            self.form.data_dir.setText(folder)

    def use_analysed_dataset(self) -> None:
        """Fill the data field with the analysis widget's dataset folder.

        The button is always enabled: the analysis widget may be opened, or pointed at
        a folder, after this widget (it is looked up at the click).
        """
        folder = self._analysed_folder()
        if folder is None:
            self._set_status("No analysed dataset yet: open Plugins > CALF segmentation > "
                             "Imbalance analysis (CALF) and choose a dataset folder there.")
            return
        self.form.data_dir.setText(folder)
        self._set_status(f"Dataset from the analysis: {folder}")

    # ------------------------------------------------------------------ run control

    @property
    def running(self) -> bool:
        """True from Start until the training thread has ended."""
        return not self._done.is_set()

    def start(self, *, overwrite: bool | None = None) -> bool:
        """Start a run with the form's settings.

        Parameters
        ----------
        overwrite : bool, optional
            Replace a non-empty run folder. ``None`` (the Start button) asks the user.

        Returns
        -------
        bool
            Whether a run was started (False when the settings were refused).
        """
        if self.running:
            return False
        out = Path(self.form.out_dir.text()).expanduser() if self.form.out_dir.text() else None
        if overwrite is None:
            overwrite = False
            if out is not None and out.is_dir() and any(out.iterdir()):
                answer = QMessageBox.question(
                    self,
                    "Replace run folder?",
                    f"{out} already holds files. Replace the run files in it?",
                )
                if answer != QMessageBox.StandardButton.Yes:
                    self._set_status(f"{out} holds files; choose another output folder.")
                    return False
                overwrite = True
        try:
            config = self.form.run_config(overwrite=overwrite)
        except CalfError as exc:
            self._report_error(exc)
            return False
        from napari.qt.threading import create_worker

        from .._gl_safety import ensure_torch_safe_with_gl

        ensure_torch_safe_with_gl()  # again here: the user's order is viewer first, then torch
        self._watch_main_window()  # sure to be docked by now
        self.result = None
        self.run_dir = None
        self._last_error = None
        self._stop.clear()
        self._done.clear()
        self.curves.clear(config.train.epochs)
        self.form.selection.setText("")
        self.result_label.setText("")
        self.review_button.setEnabled(False)
        self._set_running(True)
        self.progress.setRange(0, 0)  # busy until the core reports a total
        self.progress.setFormat("preparing data…")
        self._set_status("Preparing the dataset…")
        self.activity.start("preparing data")
        self._t0 = time.monotonic()
        worker = create_worker(run_training, config, self._stop, _start_thread=False,
                               _ignore_errors=True)  # errors go to _on_errored, not re-raised
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        # set in the worker thread as its very last act (a queued slot would need the
        # event loop, which a closing window may not run again)
        worker.finished.connect(self._done.set, Qt.ConnectionType.DirectConnection)
        self.worker = worker
        worker.start()
        return True

    def stop(self) -> None:
        """Ask the run to stop after the current batch (the best checkpoint is kept)."""
        if self.running:
            self._stop.set()
            self.stop_button.setEnabled(False)
            self._set_status(STOPPING)
            self.activity.update(message="stopping after the current batch")

    def stop_and_wait(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Stop the run and wait (bounded) until its thread has ended; True if it has."""
        if not self.running:
            return True
        self._stop.set()
        if self.worker is not None:
            # quit() also ends the worker loop at its next yield, should the core be
            # between two stop checks for long
            self.worker.quit()
        ended = self._done.wait(timeout)
        if ended and self.worker is not None:
            # the worker ended at a yield: close the core's generator here, so it saves its
            # resume point now rather than whenever the generator is garbage-collected
            gen = getattr(self.worker, "_gen", None)
            if gen is not None:
                with contextlib.suppress(Exception):
                    gen.close()
        if not ended:
            log.warning("training thread still running %.0f s after the stop request", timeout)
        return ended

    # ------------------------------------------------------------------ worker slots (main thread)

    def _on_event(self, event: Any) -> None:
        update = describe_event(event)
        if update.epochs:
            self.curves.set_epochs(update.epochs)
        if update.selection:
            self.form.selection.setText(update.selection)
            self.form.selection.setToolTip(update.selection)
        if update.total:
            self.progress.setRange(0, update.total)
            self.progress.setValue(min(update.current, update.total))
            self.progress.setFormat(f"%p%  {self._eta(update)}")
            self.activity.update(min(update.current, update.total), update.total,
                                 None if self._stop.is_set() else "training")
        if update.status:
            # after Stop, the batch still running reports too: keep saying that it stops
            self._set_status(f"{STOPPING} ({update.status})" if self._stop.is_set() else update.status)
        if update.notify:
            from napari.utils.notifications import show_info

            show_info(update.notify)
        if update.curves:
            self.curves.add(**update.curves)
            self.curves.request_draw()  # throttled: see _training_curves

    @staticmethod
    def _eta(update: Any) -> str:
        if update.current >= update.total:
            return "validating…"
        if update.eta_s is None:  # before the first batch
            return ""
        return f"{_duration(update.eta_s)} left"

    def _on_returned(self, result: Any) -> None:
        self.result = result
        self.curves.draw()
        if result is None:  # the worker was quit before the core returned
            self._set_status("Run ended before it finished.")
            return
        self.run_dir = Path(getattr(result, "run_dir", self.form.out_dir.text()))
        best = getattr(result, "best_dice", None)
        best_text = "n/a" if best is None else f"{best:.3f}"
        how = "stopped by you" if getattr(result, "stopped_by_user", False) else "finished"
        self.result_label.setText(f"Run folder: {self.run_dir}\nBest validation Dice: {best_text}")
        self._set_status(f"Training {how}.")
        from ...engine.checkpoints import BEST_WEIGHTS

        self.review_button.setEnabled((self.run_dir / BEST_WEIGHTS).is_file())
        self.progress.setFormat(f"{how}, {_duration(time.monotonic() - self._t0)}")
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.progress.setValue(self.progress.maximum())

    def _on_errored(self, exc: BaseException) -> None:
        self._report_error(exc)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("failed")

    def _on_finished(self) -> None:
        self.activity.close()
        # drop the worker: its signal connections would otherwise keep this widget (and
        # through it the viewer) alive after the window closes
        self.worker = None
        self._set_running(False)

    # ------------------------------------------------------------------ helpers

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.form.setEnabled(not running)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _report_error(self, exc: BaseException) -> None:
        """Show an error in the status line and as a napari notification; never raise."""
        if isinstance(exc, CalfError):
            text = str(exc)
        else:  # a bug or an unexpected library error: keep the type for the report
            text = f"{type(exc).__name__}: {exc}"
            log.error("training failed", exc_info=exc)
        self._last_error = text
        self._set_status(f"Error: {text}")
        from napari.utils.notifications import show_error

        show_error(text)

    def review_model(self) -> None:
        """Open the review widget (docking it if needed) and load this run's best model."""
        if self.run_dir is None:
            return
        from .review import REVIEW_DISPLAY_NAME, ReviewWidget

        # the review dock may already be open (from the Plugins menu, or an earlier click):
        # reuse it, never open a second one
        widget = open_dock(self.viewer, ReviewWidget, REVIEW_DISPLAY_NAME)
        widget.load_run(self.run_dir)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self.stop_and_wait()
        super().closeEvent(event)

    def event(self, event: QEvent) -> bool:
        # napari's dock close button detaches the widget (setParent(None)) rather than
        # deleting it: a run nobody can see or stop any more must end too.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.stop_and_wait()
        return super().event(event)


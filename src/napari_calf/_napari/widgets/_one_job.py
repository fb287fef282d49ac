"""One background job at a time for a dock: loading, suggesting, saving, undoing.

:class:`OneJobAtATime` runs a function in a napari worker, shows the dock busy meanwhile,
turns errors into notifications (never a crash) and keeps the user's latest request for
when the job ends (:meth:`~OneJobAtATime._when_idle`). The dock provides ``set_busy``,
``_update_buttons`` and ``_report_error``, and starts with ``_worker`` and ``_pending`` None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OneJobAtATime:
    """Mixin of a dock that runs at most one background job."""

    _worker: Any
    _pending: Callable[[], None] | None

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self._worker is not None

    def _run(self, function: Callable[..., Any], args: tuple, on_done: Callable[[Any], None], text: str) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(function, *args, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda result: self._guarded(on_done, result))
        worker.errored.connect(self._report_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.set_busy(True, text)
        self._update_buttons()
        worker.start()

    def _guarded(self, callback: Callable[[Any], None], result: Any) -> None:
        """Run a worker's result handler; its errors become notifications, never a crash."""
        try:
            callback(result)
        except Exception as exc:  # the GUI must survive any failure in a handler
            self._report_error(exc)

    def _on_finished(self) -> None:
        self._worker = None
        self.set_busy(False)
        self._update_buttons()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()

    def _when_idle(self, action: Callable[[], None]) -> bool:
        """While a worker runs, keep ``action`` (the latest wins) for when it ends; True if kept."""
        if not self.busy:
            return False
        self._pending = action
        return True

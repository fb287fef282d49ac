"""Long jobs shown in napari's own activity dock (bottom right), next to the widgets' bars.

A user who closed or scrolled away from a dock still sees, in napari's status bar
and activity dock, that an analysis, a training run or a prediction is going, how
far it is, and when it ends. :class:`Activity` wraps one
:class:`napari.utils.progress` per job; it is driven from the GUI thread only (the
widgets' worker slots), like every other widget update.

napari's activity bars call ``QApplication.processEvents()`` at every change (they
were made for loops running on the GUI thread). From a worker's slot that repaints
the window there and then, and lets the next worker events in re-entrantly: one
update per batch froze napari for seconds. So:

- the bar appears only once a job has run :data:`SHOW_AFTER_S` (napari lays out its
  status bar and repaints the window when the first bar appears: a short job, such as
  most predictions, is over before that is worth it);
- it moves at most every :data:`UPDATE_INTERVAL_S`, and its text changes only when the
  job's phase does;
- napari builds its activity widgets when a dock first opens (:func:`warm_up`), not
  in the middle of the user's first job.
"""

from __future__ import annotations

import time
from typing import Any

#: Least time between two moves of napari's activity bar.
UPDATE_INTERVAL_S = 1.0
#: A job shows in the activity dock once it has run this long.
SHOW_AFTER_S = 1.5

_warmed = False


def warm_up() -> None:
    """Let napari build its activity widgets now (once per session), not during a job."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    from napari.utils import progress

    progress(total=0, desc="napari-calf").close()


class Activity:
    """One job in napari's activity dock.

    Parameters
    ----------
    title : str
        Shown before the job's phase, e.g. ``"CALF analysis"``.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.bar: Any = None
        self._started: float | None = None
        self._moved = 0.0
        self._text_now = title
        self._total = 0
        self._busy = False
        self._flush_pending = False
        self._current: int | None = None

    @property
    def running(self) -> bool:
        """A job is going (whether or not its bar is shown yet)."""
        return self._started is not None

    def start(self, message: str = "", total: int = 0) -> None:
        """A job begins (``total`` 0: no known length yet, a busy bar)."""
        self.close()
        self._started = time.monotonic()
        self._text_now = self._text(message)
        self._total = int(total)

    def update(self, current: int | None = None, total: int | None = None, message: str | None = None) -> None:
        """Move the bar to ``current`` of ``total`` (at most once per interval); a new
        ``message`` (a new phase of the job) is shown at once."""
        if self._started is None:
            return
        if total is not None:
            self._total = int(total)
        if message is not None:
            self._text_now = self._text(message)
        if current is not None:
            self._current = int(current)
        if not self._flush_pending:
            # napari's bar processes events: never from inside the caller's slot, where
            # the job's next (or last) slot would run before this one has finished
            from qtpy.QtCore import QTimer

            self._flush_pending = True
            QTimer.singleShot(0, self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._started is None or self._busy:
            return  # ended meanwhile, or called again from inside napari's processEvents
        self._busy = True
        try:
            self._move(self._current)
        finally:
            self._busy = False

    def _move(self, current: int | None) -> None:
        from napari.utils import progress

        now = time.monotonic()
        bar = self.bar
        if bar is None:
            if self._started is None or now - self._started < SHOW_AFTER_S:
                return
            bar = progress(total=self._total, desc=self._text_now)
            if self._started is None:  # the job ended while napari built its bar
                bar.close()
                return
            self.bar = bar
        elif self._text_now != bar.desc:
            bar.set_description(self._text_now)
        if now - self._moved < UPDATE_INTERVAL_S or self.bar is None:
            return
        self._moved = now
        if self._total != bar.total:
            bar.total = self._total
        if current is not None and int(current) != bar.n:
            bar.update(int(current) - bar.n)

    def close(self, *_signal_args: object) -> None:
        """The job ended: remove it from the activity dock (safe to call twice, and from
        inside :meth:`update`, where napari may run this job's last slot re-entrantly).
        Also a slot for a dock's ``destroyed`` signal, whose argument it ignores."""
        bar, self.bar, self._started = self.bar, None, None
        if bar is not None:
            bar.close()

    def _text(self, message: str) -> str:
        return f"{self.title}: {message}" if message else self.title

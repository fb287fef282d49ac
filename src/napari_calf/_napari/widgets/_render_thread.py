"""One background thread that draws the widgets' matplotlib figures.

Drawing a small figure with matplotlib's Agg backend costs 80-200 ms of CPU on a
laptop-class core, and building it (``axes.clear()``, bars, ticks) as much again.
Done on the GUI thread, every redraw froze napari for that long. Here each plot
hands over a *job* (build the figure if needed, draw it to pixels) and gets an
image back; the GUI thread only paints that image (about a millisecond).

Jobs are keyed by plot and only the newest job of a plot is kept: a plot asked to
redraw ten times while one draw runs is drawn once more, with its latest data.
One thread serves every plot, so the figures never compete with each other for
the CPU, and a figure is only ever touched by this thread once it has been handed
over (that is what makes matplotlib, which is not thread-safe, safe here).

No Qt here: results travel back through the callback the job itself carries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class RenderQueue:
    """Newest-job-per-key queue served by one daemon thread (started on first use)."""

    def __init__(self, name: str = "napari-calf-plots") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._pending: dict[Hashable, Callable[[], None]] = {}
        self._busy: Hashable | None = None
        self._thread: threading.Thread | None = None

    def submit(self, key: Hashable, job: Callable[[], None]) -> None:
        """Run ``job`` in the render thread, replacing a not-yet-started job of ``key``."""
        with self._cond:
            self._pending.pop(key, None)  # re-insert: a replaced job goes to the back
            self._pending[key] = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def cancel(self, key: Hashable) -> None:
        """Forget the pending job of ``key`` (a plot being deleted); a running one finishes."""
        with self._cond:
            self._pending.pop(key, None)

    def idle(self, key: Hashable | None = None) -> bool:
        """No job of ``key`` (of any key when None) is waiting or running."""
        with self._cond:
            if key is None:
                return not self._pending and self._busy is None
            return key not in self._pending and self._busy != key

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                key = next(iter(self._pending))
                job = self._pending.pop(key)
                self._busy = key
            try:
                job()
            except Exception:  # a broken plot must not end the thread for the others
                log.exception("drawing a plot failed")
            finally:
                with self._cond:
                    self._busy = None


#: The queue every :class:`~._plots.ThemedPlot` uses.
RENDER_QUEUE = RenderQueue()

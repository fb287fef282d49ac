"""Long jobs shown in napari's own activity dock (bottom right), next to the widgets' bars.

A user who closed or scrolled away from a dock still sees, in napari's status bar
and activity dock, that an analysis, a training run or a prediction is going, how
far it is, and when it ends. :class:`Activity` wraps one
:class:`napari.utils.progress` per job; it is driven from the GUI thread only (the
widgets' worker slots), like every other widget update.
"""

from __future__ import annotations

from typing import Any


class Activity:
    """One job in napari's activity dock.

    Parameters
    ----------
    title : str
        Shown before the job's current message, e.g. ``"CALF analysis"``.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.bar: Any = None

    @property
    def running(self) -> bool:
        return self.bar is not None

    def start(self, message: str = "", total: int = 0) -> None:
        """Show the job (``total`` 0: no known length yet, a busy bar)."""
        from napari.utils import progress

        self.close()
        self.bar = progress(total=int(total), desc=self._text(message))

    def update(self, current: int | None = None, total: int | None = None, message: str | None = None) -> None:
        """Move the bar to ``current`` of ``total`` and/or change its message."""
        bar = self.bar
        if bar is None:
            return
        if total is not None and int(total) != bar.total:
            bar.total = int(total)
        if current is not None and int(current) != bar.n:
            bar.update(int(current) - bar.n)
        if message is not None and self._text(message) != bar.desc:
            bar.set_description(self._text(message))

    def close(self) -> None:
        """Remove the job from the activity dock (safe to call twice)."""
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()

    def _text(self, message: str) -> str:
        return f"{self.title}: {message}" if message else self.title

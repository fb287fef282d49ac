"""Progress events yielded by the core's long-running generators.

Long work in the core is a generator that yields small frozen events and
``return``s its result (see STYLE.md, "One generator, two drivers"). The CLI
feeds them to tqdm; the napari widgets update progress bars and plots from them
on the main thread. Events are plain data: no GUI objects, no tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")

#: Asked between units of work (a case, a batch); returning True ends the work cleanly.
StopCallback = Callable[[], bool]


@dataclass(frozen=True)
class Progress:
    """One unit of a long task is done.

    Attributes
    ----------
    stage : str
        What is running, e.g. ``"areas"``, ``"prepare"``, ``"predict"``.
    current : int
        Units done so far (1-based after the first unit).
    total : int | None
        Units in all, when known.
    message : str
        A short line for a status bar, e.g. the case id just finished.
    """

    stage: str
    current: int
    total: int | None = None
    message: str = ""


def drain(gen: Generator[Any, None, R], on_event: Callable[[Any], None] | None = None) -> R:
    """Run a core generator to the end and return its result.

    Parameters
    ----------
    gen : generator
        A generator from the core that yields events and returns a result.
    on_event : callable, optional
        Called with every event (e.g. to update a progress bar).
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)

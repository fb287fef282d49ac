"""Background work that does not make napari stutter.

- :func:`gc_frozen`: Python's full garbage collections stay short while a job runs.
- :func:`frozen_call` / :func:`frozen_generator`: run a function or a generator (a
  worker's body) inside it.

Every worker of the widgets (measuring, statistics, training, prediction, review) and
every plot drawing runs inside :func:`gc_frozen`; no Qt here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_frozen_jobs = 0
_frozen_lock = threading.Lock()


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Keep Python's full garbage collections short while background work runs.

    With torch, smp and napari loaded the heap holds millions of objects, and a full
    (generation 2) collection walks them all with the GIL held: 300-450 ms in which
    napari cannot draw, triggered at random by a job's allocations. ``gc.freeze()``
    moves what exists at the start of the first job out of the collector's sight; ``unfreeze``
    hands it back when the last job ends, so cyclic garbage from before is only
    collected later, never leaked.
    """
    import gc

    global _frozen_jobs
    with _frozen_lock:
        if _frozen_jobs == 0:
            gc.freeze()
        _frozen_jobs += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_jobs -= 1
            if _frozen_jobs == 0:
                gc.unfreeze()


def frozen_call(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` inside :func:`gc_frozen` (for ``create_worker``)."""
    with gc_frozen():
        return func(*args, **kwargs)


def frozen_generator(func: Callable[..., Generator[Any, Any, T]], *args: Any,
                     **kwargs: Any) -> Generator[Any, Any, T]:
    """The generator ``func(*args, **kwargs)``, driven inside :func:`gc_frozen`."""
    with gc_frozen():
        return (yield from func(*args, **kwargs))

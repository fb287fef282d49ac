"""Subcommands of ``napari-calf``: one module each, with ``register`` and ``run``."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

R = TypeVar("R")


def drain_with_tqdm(gen: Generator[Any, None, R], desc: str, *, disable: bool = False) -> R:
    """Drive a core generator, showing its :class:`~napari_calf.events.Progress` events in tqdm.

    Events other than ``Progress`` are ignored here; subcommands that want them
    (e.g. training) drive the generator themselves.
    """
    from tqdm.auto import tqdm

    from ..events import Progress

    bar = None
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(event, Progress):
                if bar is None:
                    bar = tqdm(total=event.total, desc=desc, unit=event.stage, disable=disable)
                bar.total = event.total
                bar.n = event.current
                if event.message:
                    bar.set_postfix_str(event.message, refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()

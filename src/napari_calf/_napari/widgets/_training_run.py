"""What runs behind the fine-tuning widget: the training generator, the preload, the close guard.

- :func:`run_training`: the generator the widget's worker drives (the core's
  ``iter_train`` with a core left to the GUI and full garbage collections kept short).
- :func:`start_preload`: imports torch, smp and the engine in a thread when the widget
  opens, so that Start does not import ~1,200 modules while napari draws.
- :class:`ViewerCloseFilter`: stops the run when napari's main window closes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from qtpy.QtCore import QEvent, QObject

from ._background import gc_frozen

log = logging.getLogger(__name__)


def run_training(config: Any, stop: threading.Event):
    """Generator the worker drives: the core's training, with a core left to the GUI."""
    # The guard must be in place before the first optimizer exists (Mesa/triton).
    from .._gl_safety import ensure_torch_safe_with_gl

    ensure_torch_safe_with_gl()
    import torch

    from ...engine import training

    # torch's intra-op pool would take every core; leave one to the GUI thread so napari
    # stays responsive during CPU training.
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(threads - 1)
    try:
        with gc_frozen():
            return (yield from training.iter_train(config, stop=stop.is_set))
    finally:
        torch.set_num_threads(threads)




def _import_training_stack() -> None:
    """Import torch, smp and the engine in a background thread when the widget opens.

    Importing a module holds the GIL for long stretches (unmarshalling bytecode, loading
    extension modules): done by the training thread at Start, the ~1,200 modules of
    torch/smp/timm froze napari's GUI for 150-300 ms at a time. Done here, while the user
    fills in the form, the run itself starts warm.
    """
    from .._gl_safety import ensure_torch_safe_with_gl

    ensure_torch_safe_with_gl()  # before anything could pull in triton
    from ...engine import training

    training.import_engine()


def start_preload(done: threading.Event) -> None:
    def work() -> None:
        try:
            _import_training_stack()
        except Exception:  # a broken install shows up, with a message, when training starts
            log.debug("preloading the training stack failed", exc_info=True)
        finally:
            done.set()

    threading.Thread(target=work, name="napari-calf-preload", daemon=True).start()


class ViewerCloseFilter(QObject):
    """Stops the run when the viewer's main window closes (before Qt tears it down)."""

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self._widget = widget

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Close:
            self._widget.stop_and_wait()
        return False

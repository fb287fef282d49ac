"""A combo box listing the viewer's layers of one type, by name (never holding a layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QComboBox

NONE_TEXT = "(none)"
#: ``layer.metadata["napari_calf"]["role"]`` of the layers the review widget makes.
PREDICTION_ROLE = "prediction"
ERRORS_ROLE = "errors"


def made_by_plugin(layer: Any) -> bool:
    """Whether ``layer`` is a prediction or error map napari-calf made (not data to analyse)."""
    info = (getattr(layer, "metadata", None) or {}).get("napari_calf") or {}
    return info.get("role") in (PREDICTION_ROLE, ERRORS_ROLE)


class LayerCombo(QComboBox):
    """Layer names of one kind (``"image"`` or ``"labels"``), refreshed when opened.

    Only names are kept, so deleting a layer frees its memory (STYLE.md).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    kind : str
        napari layer type name, as ``layer._type_string``: ``"image"``, ``"labels"``.
    optional : bool
        Offer "(none)" first.
    exclude : callable, optional
        Layers for which it returns True are not offered (e.g. :func:`made_by_plugin`).
    """

    def __init__(self, viewer: Any, kind: str, *, optional: bool = False,
                 exclude: Callable[[Any], bool] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.kind = kind
        self.optional = optional
        self.exclude = exclude
        self.setMinimumContentsLength(14)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.refresh()

    def names(self) -> list[str]:
        """Names of the viewer's layers of this kind, top of the layer list first."""
        return [layer.name for layer in reversed(self.viewer.layers)
                if getattr(layer, "_type_string", "") == self.kind
                and not (self.exclude is not None and self.exclude(layer))]

    def refresh(self) -> None:
        """Re-list the layers, keeping the current choice when it still exists."""
        current = self.currentText()
        items = ([NONE_TEXT] if self.optional else []) + self.names()
        if [self.itemText(i) for i in range(self.count())] == items:
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(items)
        if current in items:
            self.setCurrentText(current)
        self.blockSignals(False)
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self.refresh()
        super().showPopup()

    def layer(self) -> Any | None:
        """The chosen layer, looked up by name now (None for "(none)" or a deleted layer)."""
        name = self.currentText()
        if not name or name == NONE_TEXT or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def choose(self, name: str) -> None:
        """Select the layer called ``name`` (listing it first if it is new)."""
        self.refresh()
        if self.findText(name) >= 0:
            self.setCurrentText(name)

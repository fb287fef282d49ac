"""The review widget's inputs: the run folder, the case's image layers, the ground truth.

A mixin of :class:`~.review.ReviewWidget`: loading a run (or a run of a comparison
study), opening a case folder, and matching each modality the run was trained on
to an image layer (by the reader's metadata, else by name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog

from ...errors import CalfError
from ..reader import METADATA_KEY
from ._dock import fit_view_soon
from ._layer_combo import LayerCombo, made_by_plugin
from ._review_state import run_summary


class ReviewInputsMixin:
    """Run and case methods; expects the review widget's attributes."""

    viewer: Any
    run_dir: Path | None
    card: dict[str, Any] | None
    modalities: tuple[str, ...]
    image_combos: dict[str, LayerCombo]
    images_form: Any
    truth_combo: LayerCombo
    run_field: Any
    run_label: Any
    study_panel: Any
    _report_error: Any
    _set_status: Any
    _update_buttons: Any

    def load_run(self, run_dir: str | Path) -> None:
        """Load a run folder (made by the fine-tuning widget or ``napari-calf train``)."""
        from ...engine.checkpoints import BEST_WEIGHTS, read_run_card, resolve_weights

        try:
            run_dir = Path(run_dir).expanduser()
            card = read_run_card(run_dir)
            if run_dir.is_file():
                run_dir = run_dir.parent
            resolve_weights(run_dir / BEST_WEIGHTS)
        except CalfError as exc:
            self._report_error(exc)
            return
        self.run_dir, self.card = run_dir, card
        self.run_field.setText(str(run_dir))
        self.modalities = tuple((card.get("preprocessing") or {}).get("modalities") or ())
        self.run_label.setText(run_summary(card))
        self._rebuild_image_combos()
        self._set_status(f"Loaded {run_dir.name}. Choose the case's images and Predict.")

    def open_study(self, folder: str | Path | None = None) -> None:
        """Show a comparison study (``napari-calf compare``); double-click a run to load it."""
        from .study import open_study_window

        self.study_panel = open_study_window(self, folder, on_run=self.load_run,
                                             theme=str(getattr(self.viewer, "theme", "dark")))

    def _rebuild_image_combos(self) -> None:
        for combo in self.image_combos.values():
            self.images_form.removeRow(combo)
        self.image_combos = {}
        for row, modality in enumerate(self.modalities):
            combo = LayerCombo(self.viewer, "image", exclude=made_by_plugin)  # not the error map
            combo.currentTextChanged.connect(lambda _t: self._update_buttons())
            self.images_form.insertRow(row, modality, combo)
            self.image_combos[modality] = combo
        self.match_layers()

    def match_layers(self) -> None:
        """Pick, for each modality of the run, the newest image layer that is that modality."""
        for modality, combo in self.image_combos.items():
            combo.refresh()
            for layer in reversed(self.viewer.layers):
                if getattr(layer, "_type_string", "") != "image" or made_by_plugin(layer):
                    continue
                info = (layer.metadata or {}).get(METADATA_KEY) or {}
                name = layer.name.lower()
                if info.get("modality") == modality or name.endswith(
                    (f" {modality}", f"_{modality}", f"-{modality}")) or name == modality:
                    combo.choose(layer.name)
                    break
        if self.truth_combo.currentText() in ("", "(none)"):
            candidates = self.truth_combo.names()
            if candidates:
                self.truth_combo.choose(candidates[0])
        self._update_buttons()

    def open_case(self, folder: str | Path) -> None:
        """Open a case folder with the napari-calf reader and use its layers."""
        try:
            self.viewer.open(str(folder), plugin="napari-calf")
        except Exception as exc:  # napari wraps reader errors; show them, never die
            self._report_error(exc)
            return
        self.match_layers()
        fit_view_soon(self.viewer)

    def _browse_case(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Case folder", str(Path.home()))
        if folder:
            self.open_case(folder)

    def _on_layers_changed(self, _event: Any = None) -> None:
        if self.image_combos:
            self.match_layers()
        else:
            self.truth_combo.refresh()


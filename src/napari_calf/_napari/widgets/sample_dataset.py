"""Dock widget: write a synthetic BraTS-style dataset, optionally with known annotation errors.

A magicgui form over :func:`napari_calf.phantom.write_dataset` (the same core as
``napari-calf phantom``): the cases are written in a napari worker with a progress bar,
then the first case opens in the viewer. With label errors the clean truth goes to
``OUT/truth/`` and every injected error to ``OUT/label_errors.json``, so an annotation
audit can be checked against known answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from ...errors import CalfError

#: A starting point for the errors field: each kind the audit should find.
EXAMPLE_ERRORS = "missed=0.15,erased-slices=0.1,dilate=0.1:4mm,erode=0.1:4mm,spurious=0.1"


class SampleDatasetWidget(Container):
    """Form: output folder, cases, size skew, seed, label errors; *Write dataset*."""

    def __init__(self, napari_viewer: Any) -> None:
        from ...phantom.dataset import SKEW_PRESETS

        self._viewer = napari_viewer
        self._worker: Any = None
        self.out_dir = FileEdit(mode="d", label="Output folder",
                                value=Path.home() / "calf-phantom")
        self.cases = SpinBox(label="Cases", value=8, min=1, max=500)
        self.skew = ComboBox(label="Tumour sizes", choices=list(SKEW_PRESETS), value="right",
                             tooltip="right: many small tumours and a few large ones "
                                     "(the imbalance CALF is for); symmetric; left")
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.label_errors = LineEdit(
            label="Label errors", value="",
            tooltip="Empty for clean labels, or e.g. " + EXAMPLE_ERRORS +
                    " (fractions of cases/lesions; sizes in mm; systematic-dilate=Kmm "
                    "grows every label: an annotator's style)",
        )
        self.overwrite = CheckBox(label="Replace a non-empty folder", value=False)
        self.write_button = PushButton(text="Write dataset")
        self.progress = ProgressBar(label="", value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        super().__init__(widgets=[
            self.out_dir, self.cases, self.skew, self.seed, self.label_errors,
            self.overwrite, self.write_button, self.progress, self.status,
        ])
        # long paths and messages wrap instead of widening the dock over the canvas
        self.status.native.setWordWrap(True)
        self.native.setMaximumWidth(480)
        self.write_button.changed.connect(self.write)
        self.label_errors.changed.connect(self._check_errors)

    # ------------------------------------------------------------------ actions
    def _check_errors(self, *_: Any) -> bool:
        """Say at once what is wrong with the errors field (the core's own message)."""
        from ...phantom.label_errors import parse_label_error_spec

        text = self.label_errors.value.strip()
        if not text:
            self.status.value = ""
            return True
        try:
            spec = parse_label_error_spec(text)
        except CalfError as exc:
            self.status.value = str(exc)
            return False
        self.status.value = f"Errors to inject: {spec.describe()}"
        return True

    def write(self, *_: Any) -> None:
        """Start writing in a worker; the form stays usable, the button waits."""
        from napari.qt.threading import create_worker

        from ...phantom.dataset import write_dataset

        if self._worker is not None or not self._check_errors():
            return
        out = Path(self.out_dir.value).expanduser()
        errors = self.label_errors.value.strip() or None
        try:  # arguments are checked on the call, before any work
            gen = write_dataset(out, int(self.cases.value), seed=int(self.seed.value),
                                skew=self.skew.value, overwrite=bool(self.overwrite.value),
                                label_errors=errors)
        except CalfError as exc:
            self._fail(str(exc))
            return
        self.progress.visible = True
        self.progress.max = int(self.cases.value)
        self.progress.value = 0
        self.write_button.enabled = False
        self.status.value = f"Writing {self.cases.value} cases to {out} …"
        def drive() -> Any:  # a generator function, so napari relays each Progress
            return (yield from gen)

        worker = create_worker(drive, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda cases: self._on_done(out, cases))
        worker.errored.connect(lambda exc: self._fail(str(exc)))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _on_progress(self, event: Any) -> None:
        self.progress.max = max(int(event.total), 1)
        self.progress.value = int(event.current)

    def _on_done(self, out: Path, cases: list[Any]) -> None:
        from napari.utils.notifications import show_info

        from ..reader import read_case

        truth = " Clean labels are in truth/, the errors in label_errors.json." \
            if (out / "label_errors.json").is_file() else ""
        self.status.value = f"Wrote {len(cases)} cases to {out}.{truth}"
        if cases:
            for data, kwargs, kind in read_case(cases[0]):
                getattr(self._viewer, f"add_{kind}")(data, **kwargs)
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self._viewer.reset_view)  # after the dock has its size
        show_info(f"napari-calf: {len(cases)} synthetic cases in {out}. Analyse the folder "
                  f"with the Imbalance analysis dock.{truth}")

    def _fail(self, text: str) -> None:
        from napari.utils.notifications import show_error

        self.status.value = text
        show_error(text)

    def _on_finished(self) -> None:
        self._worker = None
        self.write_button.enabled = True
        self.progress.visible = False

    @property
    def busy(self) -> bool:
        return self._worker is not None

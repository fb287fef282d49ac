"""The magicgui dock that writes a synthetic dataset (with known label errors) from napari."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_calf.io.discovery import discover_cases
from napari_calf.io.volumes import load_volume

pytestmark = pytest.mark.gui

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
def widget(make_napari_viewer):
    from napari_calf._napari.widgets.sample_dataset import SampleDatasetWidget

    viewer = make_napari_viewer()
    w = SampleDatasetWidget(viewer)
    viewer.window.add_dock_widget(w, name="Sample dataset (CALF)")
    return viewer, w


def test_writes_cases_with_known_errors_and_opens_the_first(widget, qtbot, tmp_path) -> None:
    viewer, w = widget
    out = tmp_path / "phantom"
    w.out_dir.value = out
    w.cases.value = 3
    w.label_errors.value = "spurious=1"
    assert w.status.value.startswith("Errors to inject: spurious=1")
    w.write()
    assert w.busy and not w.write_button.enabled  # the work runs in a worker
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)

    cases = discover_cases(out)
    assert len(cases) == 3
    errors = json.loads((out / "label_errors.json").read_text())
    records = errors["errors"] if isinstance(errors, dict) else errors
    spurious = [r for r in records if r["kind"] == "spurious"]
    assert len(spurious) == 3  # a fraction of 1: every case got one
    # the written label differs from the clean truth exactly by the recorded voxels
    case = cases[0]
    noisy = load_volume(case.label, label=True).data
    truth_file = out / "truth" / case.label.relative_to(out)
    clean = load_volume(truth_file, label=True).data
    recorded = sum(r["voxels"] for r in spurious if r["case_id"] == case.case_id)
    assert int(np.count_nonzero(noisy != clean)) == recorded > 0

    # the first case is open, with its labels, and the status says where the truth is
    assert any(layer.metadata.get("napari_calf", {}).get("case_id") == case.case_id
               for layer in viewer.layers)
    assert "truth/" in w.status.value
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    from imageio import imwrite  # napari's own dependency

    qtbot.wait(200)  # the view is re-framed once the dock has its size
    imwrite(SCREENSHOTS / "sample_dataset.png", viewer.screenshot(canvas_only=False, flash=False))


def test_bad_error_spec_is_named_before_anything_is_written(widget, tmp_path) -> None:
    _, w = widget
    w.out_dir.value = tmp_path / "never"
    w.label_errors.value = "dilate=0.1:2cm"
    assert "dilate=0.1:2cm" in w.status.value  # the core's message names the bad part
    w.write()
    assert not w.busy
    assert not (tmp_path / "never").exists()


def test_a_folder_with_files_is_not_replaced_unless_asked(widget, tmp_path) -> None:
    _, w = widget
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    w.out_dir.value = out
    w.write()
    assert not w.busy
    assert "already exists" in w.status.value
    assert (out / "notes.txt").read_text() == "my notes"

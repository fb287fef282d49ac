"""The napari sample (through npe2, as the menu opens it) and the ``make demo`` launcher."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_calf.phantom import dataset as phantom
from napari_calf._napari import demo
from napari_calf._napari.reader import layer_to_canonical
from napari_calf._napari.sample_data import LABELS_NAME

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("NAPARI_CALF_TEST_SHOTS", "/tmp/shots"))


def test_open_sample_gives_four_overlaid_modalities_and_labels(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-calf", "brain_tumour_phantom")

    images = [layer for layer in viewer.layers if layer._type_string == "image"]
    labels = [layer for layer in viewer.layers if layer._type_string == "labels"]
    assert [layer.name for layer in images] == list(phantom.MODALITIES)
    assert [layer.name for layer in labels] == [LABELS_NAME]
    extents = {tuple(map(tuple, np.round(layer.extent.world, 6))) for layer in viewer.layers}
    assert len(extents) == 1, f"layers do not overlay: {extents}"
    assert [layer.name for layer in images if layer.visible] == ["flair"]

    # what is on screen is the phantom, in the reader's display convention
    case = phantom.sample_case()
    assert np.array_equal(layer_to_canonical(labels[0].data), case.label)
    assert np.array_equal(layer_to_canonical(viewer.layers["t1ce"].data), case.images["t1ce"])
    assert set(np.unique(labels[0].data).tolist()) == {0, 1, 2, 4}
    # anterior is up: the first displayed rows hold the front of the brain (largest y)
    brain_rows = np.flatnonzero(viewer.layers["t1"].data.any(axis=(0, 2)))
    front_row = brain_rows[0]
    canonical_y = case.label.shape[1] - 1 - front_row
    assert case.brain[:, canonical_y, :].any() and not case.brain[:, canonical_y + 1:, :].any()


def test_show_tumour_slice_moves_to_the_core(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-calf", "brain_tumour_phantom")
    index = demo.show_tumour_slice(viewer, LABELS_NAME)
    data = np.asarray(viewer.layers[LABELS_NAME].data)
    assert index is not None
    shown = data[viewer.dims.current_step[0]]
    assert viewer.dims.current_step[0] == index
    assert np.isin(shown, (1, 4)).sum() == np.isin(data, (1, 4)).sum(axis=(1, 2)).max()


def test_dock_plugin_widgets_follows_the_manifest_and_survives_a_broken_widget(
    make_napari_viewer, monkeypatch, capsys
) -> None:
    from npe2 import PluginManager
    from npe2.manifest.contributions import WidgetContribution

    from napari_calf._napari.widgets._dock import menu_name

    declared = [w.display_name for w in
                PluginManager.instance().get_manifest("napari-calf").contributions.widgets or []
                if w.display_name in demo.MAIN_JOB_WIDGETS]
    assert len(declared) == 3
    original = WidgetContribution.get_callable

    def get_callable(self, *args, **kwargs):
        if self.plugin_name == "napari-calf" and self.display_name == declared[-1]:
            raise RuntimeError("widget failed to import")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WidgetContribution, "get_callable", get_callable)
    viewer = make_napari_viewer()
    docks = demo.dock_plugin_widgets(viewer)

    # every declared widget but the broken one, tabbed, named as the Plugins menu names them
    # (so the menu toggles these docks rather than opening second copies)
    assert [d.name for d in docks] == [menu_name(name) for name in declared[:-1]]
    assert all(viewer.window._wrapped_dock_widgets[d.name] is d for d in docks)
    window = viewer.window._qt_window
    assert set(window.tabifiedDockWidgets(docks[0])) == set(docks[1:])
    assert f"could not open the widget {declared[-1]!r}" in capsys.readouterr().err


def _run_demo(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_calf._napari.demo", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def test_demo_headless_saves_a_screenshot_with_the_tumour(tmp_path) -> None:
    from skimage.io import imread

    shot = tmp_path / "shot.png"
    result = _run_demo(["--screenshot", str(shot), "--no-widgets"], dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(shot) in result.stdout
    image = imread(shot)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 600
    rgb = image[..., :3].astype(int)
    assert rgb.std() > 20, "blank screenshot"
    # the labels overlay is drawn: BraTS colours red (necrosis), green (oedema), yellow (rim)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)
    green = (rgb[..., 1] > 120) & (rgb[..., 0] < 150) & (rgb[..., 2] < 150)
    assert red.sum() > 200 and green.sum() > 200
    try:  # keep a copy to look at (CI artefact / reviewer)
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "demo_test.png").write_bytes(shot.read_bytes())
    except OSError:
        pass


def _canvas_and_brain(rgb: np.ndarray) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Bounding boxes (top, bottom, left, right) of the black canvas and of the brain on it."""
    black = rgb.max(axis=2) < 8
    rows = np.flatnonzero(black.mean(axis=1) > 0.15)
    cols = np.flatnonzero(black.mean(axis=0) > 0.3)
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    canvas = rgb[top:bottom + 1, left:right + 1]
    brain = canvas.max(axis=2) > 40
    b_rows, b_cols = np.flatnonzero(brain.any(axis=1)), np.flatnonzero(brain.any(axis=0))
    return (top, bottom, left, right), (top + b_rows[0], top + b_rows[-1], left + b_cols[0], left + b_cols[-1])


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run for a 1366x768 screen")
def test_demo_on_a_1366x768_screen_shows_the_whole_window_and_brain(tmp_path) -> None:
    """`xvfb-run -s "-screen 0 1366x768x24" make demo`: the window fits the screen, the brain
    is framed inside the canvas (not cut by docks that were opened after it was framed)."""
    from skimage.io import imread

    shot = tmp_path / "demo_1366.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY")}
    env["NAPARI_CALF_DEMO_DIR"] = str(tmp_path / "demo")
    result = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1366x768x24", sys.executable, "-m",
         "napari_calf._napari.demo", "--no-dataset", "--screenshot", str(shot)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rgb = imread(shot)[..., :3].astype(int)
    assert rgb.shape[:2] == (768, 1366), "the window is not the screen's size"
    (top, bottom, left, right), (b_top, b_bottom, b_left, b_right) = _canvas_and_brain(rgb)
    assert right - left > 400, "the canvas is squeezed by the docks"
    margin = 3
    assert top + margin < b_top and b_bottom < bottom - margin, "brain cut at the top or bottom"
    assert left + margin < b_left and b_right < right - margin, "brain cut at the sides"
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "demo_1366x768.png").write_bytes(shot.read_bytes())
    except OSError:
        pass


def test_demo_without_display_explains_and_exits_1() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = _run_demo([], env)
    assert result.returncode == 1
    assert "xvfb-run -a make demo" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XAUTHORITY": "/tmp/xvfb-run.Ab12/Xauthority"}, True),
        ({"NAPARI_CALF_DEMO_HEADLESS": "1"}, True),
        ({"XAUTHORITY": "/home/me/.Xauthority"}, False),
    ],
)
def test_headless_detection(monkeypatch, env, expected) -> None:
    monkeypatch.delenv("XAUTHORITY", raising=False)
    monkeypatch.delenv("NAPARI_CALF_DEMO_HEADLESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert demo.running_headless() is expected


def test_demo_sets_up_the_main_job_on_its_embedded_dataset(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
) -> None:
    """`make demo`: the analysis runs on the demo dataset, fine-tuning is filled in."""
    from napari_calf import calf
    from napari_calf.io.discovery import discover_cases

    monkeypatch.setenv("NAPARI_CALF_DEMO_DIR", str(tmp_path))
    dataset = demo.ensure_demo_dataset()
    assert len(discover_cases(dataset)) == demo.DEMO_CASES
    written = (dataset / "dataset.json").stat().st_mtime_ns
    assert demo.ensure_demo_dataset() == dataset  # reused, not rewritten
    assert (dataset / "dataset.json").stat().st_mtime_ns == written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".phantom-")]

    viewer = make_napari_viewer()
    widgets: dict = {}
    demo.dock_plugin_widgets(viewer, widgets)
    analysis = demo.prime_main_job(widgets, dataset, tmp_path / "runs")
    qtbot.waitUntil(lambda: analysis.worker is None and analysis.selection is not None,
                    timeout=120_000)
    expected = calf.select_transform(calf.imbalance_stats(calf.dataset_areas(discover_cases(dataset))))
    assert analysis.selection.transform == expected.transform
    assert analysis.stats.skewness == pytest.approx(expected.stats.skewness)

    form = widgets[demo.TRAINING_WIDGET].form
    assert form.data_dir.text() == str(dataset)
    run_dir = Path(form.out_dir.text())
    assert run_dir.parent == tmp_path / "runs" and not run_dir.exists()
    assert form.encoder.currentText() == demo.DEMO_TRAINING["encoder"]
    assert form.epochs.value() == demo.DEMO_TRAINING["epochs"]

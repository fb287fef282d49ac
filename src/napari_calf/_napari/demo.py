"""``make demo``: napari with the phantom case and the plugin's widgets, in one command.

Run as ``python -m napari_calf._napari.demo [--screenshot PATH] [--no-widgets]``.

- With a display it opens napari on the brain-tumour phantom (four modalities and the
  tumour labels, axial, on a slice through the tumour core) with every dock widget the
  plugin's manifest declares, tabbed on the right, and waits for the user.
- The main job is set up on an embedded default: a small right-skewed phantom dataset
  (written once to ``~/.cache/napari-calf/demo/``, reused later) is analysed in the
  imbalance widget, and the fine-tuning widget is filled in with it and a small model
  that reaches a useful Dice on a laptop CPU in a few minutes (the README's CLI recipe);
  pressing Start trains it into a new run folder, and "Review this model" shows the result.
- Headless (under ``xvfb-run``, with ``NAPARI_CALF_DEMO_HEADLESS=1``, or with
  ``--screenshot``) it draws the same window, saves a screenshot of it
  (``demo_screenshot.png`` by default), prints the path and exits.
- Without any display (Linux with neither ``$DISPLAY`` nor ``$WAYLAND_DISPLAY``) it says
  how to run headless and exits with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLUGIN = "napari-calf"
SAMPLE_KEY = "brain_tumour_phantom"
DEFAULT_SCREENSHOT = "demo_screenshot.png"
HEADLESS_ENV = "NAPARI_CALF_DEMO_HEADLESS"
#: How long the headless run lets Qt draw before the screenshot (seconds).
SETTLE_S = 1.5

NO_DISPLAY_MESSAGE = (
    "No display found: neither $DISPLAY nor $WAYLAND_DISPLAY is set, so napari cannot open "
    "a window here.\n"
    "Run `xvfb-run -a make demo` to run headless and save a screenshot "
    f"({DEFAULT_SCREENSHOT}), or run `make demo` on a desktop session."
)


def has_display() -> bool:
    """Whether a window can be opened: always on macOS/Windows; on Linux, X11 or Wayland."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def running_headless() -> bool:
    """True under ``xvfb-run`` (its XAUTHORITY lives in a ``xvfb-run.*`` folder) or when asked."""
    if os.environ.get(HEADLESS_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return "xvfb-run" in os.environ.get("XAUTHORITY", "")


def _make_torch_safe() -> None:
    """Load order that keeps torch from crashing next to Mesa's OpenGL (see ``_gl_safety``)."""
    try:
        from ._gl_safety import ensure_torch_safe_with_gl
    except ImportError:  # the guard module is optional: fall back to the known-safe order
        try:
            import torch._dynamo  # noqa: F401
        except Exception:  # pragma: no cover - torch broken: the demo still shows images
            pass
        return
    ensure_torch_safe_with_gl(preload=True)


def show_tumour_slice(viewer: Any, labels_name: str) -> int | None:
    """Move the axial slider to the slice with most tumour core (else most tumour).

    Returns the slice index shown, or None when the layer has no tumour.
    """
    import numpy as np

    layer = viewer.layers[labels_name]
    data = np.asarray(layer.data)
    core = np.count_nonzero(np.isin(data, (1, 3, 4)), axis=(1, 2))
    whole = np.count_nonzero(data, axis=(1, 2))
    areas = core if core.any() else whole
    if not areas.any():
        return None
    index = int(np.argmax(areas))
    world = float(layer.translate[0] + layer.scale[0] * index)
    viewer.dims.set_point(0, world)
    return index


#: The main job's docks, which the demo opens tabbed; the others (annotation review,
#: sample dataset) are one click away in the Plugins menu, so the window keeps its room.
MAIN_JOB_WIDGETS = ("Imbalance analysis (CALF)", "Fine-tune (CALF)", "Review predictions (CALF)")


def dock_plugin_widgets(viewer: Any, widgets_out: dict[str, Any] | None = None) -> list[Any]:
    """Dock the main job's widgets the manifest declares, tabbed; returns the dock widgets.

    ``widgets_out``, when given, receives each docked widget under its display name.

    Widgets are found through npe2, so ones added to ``napari.yaml`` later appear here
    without touching the demo. A widget that fails to load is reported and skipped.
    """
    from npe2 import PluginManager

    try:
        manifest = PluginManager.instance().get_manifest(PLUGIN)
    except KeyError:
        print(f"napari-calf demo: the {PLUGIN} plugin is not registered with napari; "
              "no widgets docked (is the package installed? `pip install -e .`)", file=sys.stderr)
        return []
    from .widgets._dock import menu_name

    docked: list[Any] = []
    for contribution in manifest.contributions.widgets or []:
        name = contribution.display_name
        if name not in MAIN_JOB_WIDGETS:
            continue
        try:
            widget = contribution.get_callable()(napari_viewer=viewer)
            # named as the Plugins menu names it: the menu then toggles this dock
            dock = viewer.window.add_dock_widget(widget, name=menu_name(name), tabify=bool(docked))
        except Exception as exc:  # a broken widget must not take the demo down
            print(f"napari-calf demo: could not open the widget {name!r} "
                  f"({type(exc).__name__}: {exc}); skipped.", file=sys.stderr)
            continue
        docked.append(dock)
        if widgets_out is not None:
            widgets_out[name] = widget
    _raise_first(docked)
    # tabs settle only once the window has laid them out: raise the first again then
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: _raise_first(docked))
    return docked


def _raise_first(docks: list[Any]) -> None:
    """Put the first declared widget (the analysis: where a user starts) on top of the tabs."""
    if docks:
        docks[0].raise_()


#: The demo dataset: small enough to write in seconds, skewed enough for CALF to matter.
DEMO_CASES = 8
DEMO_SEED = 0
DEMO_SKEW = "right"
ANALYSIS_WIDGET = "Imbalance analysis (CALF)"
TRAINING_WIDGET = "Fine-tune (CALF)"
#: The README's five-minute CPU recipe (``napari-calf train … --encoder resnet18 …``).
DEMO_TRAINING = {"encoder": "resnet18", "depth": 3, "epochs": 8, "batch_size": 16, "lr": 3e-3}


def demo_root() -> Path:
    """Where the demo keeps its dataset and runs (``NAPARI_CALF_DEMO_DIR`` overrides)."""
    override = os.environ.get("NAPARI_CALF_DEMO_DIR")
    return Path(override).expanduser() if override else Path("~/.cache/napari-calf/demo").expanduser()


def ensure_demo_dataset(root: Path | None = None) -> Path:
    """The demo's phantom dataset, written on first use and reused afterwards.

    Written into a temporary sibling folder and renamed when complete, so an
    interrupted first run never leaves a half dataset that later runs would trust.
    """
    import shutil
    import tempfile

    from ..phantom import dataset as phantom
    from ..events import Progress

    root = root or demo_root()
    folder = root / f"phantom-{DEMO_SKEW}-{DEMO_CASES}cases-seed{DEMO_SEED}"
    if (folder / "dataset.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".phantom-", dir=root))
    try:
        gen = phantom.write_dataset(tmp, DEMO_CASES, seed=DEMO_SEED, skew=DEMO_SKEW, overwrite=True)
        for event in gen:
            if isinstance(event, Progress):
                print(f"napari-calf demo: writing the sample dataset, case {event.current}/{event.total}",
                      file=sys.stderr)
        if folder.exists():  # another demo finished first: keep theirs
            return folder
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def prime_main_job(widgets: dict[str, Any], dataset: Path, runs_root: Path) -> Any:
    """Point the analysis and fine-tuning widgets at ``dataset``; start the analysis.

    Returns the analysis widget (or None when it is not docked).
    """
    analysis = widgets.get(ANALYSIS_WIDGET)
    if analysis is not None:
        analysis.set_dataset_folder(dataset)
        analysis.run_analysis()
    training = widgets.get(TRAINING_WIDGET)
    if training is not None:
        form = training.form
        form.data_dir.setText(str(dataset))
        form.out_dir.setText(str(runs_root / time.strftime("run-%Y%m%d-%H%M%S")))
        form.encoder.setCurrentText(DEMO_TRAINING["encoder"])
        form.depth.setValue(DEMO_TRAINING["depth"])
        form.epochs.setValue(DEMO_TRAINING["epochs"])
        form.batch_size.setValue(DEMO_TRAINING["batch_size"])
        form.lr.setValue(DEMO_TRAINING["lr"])
    return analysis


def _settle(seconds: float) -> None:
    """Let Qt process events (layout, first draw of the canvas) for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def build_viewer(*, widgets: bool = True, main_job: bool = True) -> tuple[Any, Any]:
    """A napari viewer with the phantom sample loaded (and the widgets docked).

    With ``main_job`` the widgets are set up on the demo dataset (see module docstring).
    Returns the viewer and the analysis widget running on the demo dataset (or None).
    """
    _make_torch_safe()
    import napari

    from .sample_data import LABELS_NAME

    viewer = napari.Viewer(title="napari-calf demo: brain-tumour phantom")
    fit_window_to_screen(viewer)
    # Through npe2, exactly as File > Open Sample does: proves the manifest entry works.
    viewer.open_sample(PLUGIN, SAMPLE_KEY)
    viewer.dims.ndisplay = 2
    viewer.reset_view()
    show_tumour_slice(viewer, LABELS_NAME)
    by_name: dict[str, Any] = {}
    if widgets:
        dock_plugin_widgets(viewer, by_name)
    analysis = None
    if widgets and main_job:
        try:
            dataset = ensure_demo_dataset()
            analysis = prime_main_job(by_name, dataset, demo_root() / "runs")
        except Exception as exc:  # the demo still shows the sample case
            print(f"napari-calf demo: could not prepare the demo dataset ({type(exc).__name__}: "
                  f"{exc}); the widgets start empty.", file=sys.stderr)
    from .widgets._dock import fit_view_soon

    fit_view_soon(viewer)  # the docks narrowed the canvas: frame the whole brain again
    return viewer, analysis


#: Window size on screens that have room for it; smaller screens get all they have.
PREFERRED_SIZE = (1560, 960)


def fit_window_to_screen(viewer: Any) -> tuple[int, int]:
    """Size the main window to :data:`PREFERRED_SIZE`, or to the screen's free area if smaller.

    Returns the size set (the window's inside, without the frame a window manager adds).
    """
    from .widgets._dock import main_window

    window = main_window(viewer)
    if window is None:
        return PREFERRED_SIZE
    screen = window.screen()
    width, height = PREFERRED_SIZE
    if screen is not None:
        free = screen.availableGeometry()
        frame_w = max(0, window.frameGeometry().width() - window.geometry().width())
        frame_h = max(0, window.frameGeometry().height() - window.geometry().height())
        width, height = min(width, free.width() - frame_w), min(height, free.height() - frame_h)
        window.move(free.topLeft())
    window.resize(width, height)
    return width, height


def _wait_for_analysis(analysis: Any, timeout_s: float = 120.0) -> None:
    """Headless: let the analysis worker finish so the screenshot shows its histogram."""
    if analysis is None:
        return
    end = time.monotonic() + timeout_s

    def drawing() -> bool:  # measuring, recomputing, or plots still being drawn
        plots = (getattr(analysis, "histogram", None), getattr(analysis, "transform_plot", None))
        return bool(getattr(analysis, "busy", False)) or any(
            p is not None and not p.is_current() for p in plots)

    while drawing() and time.monotonic() < end:
        _settle(0.1)
    _settle(0.5)


def _wait_for_plots(viewer: Any, timeout_s: float = 60.0) -> None:
    """Headless: let every plot draw at its final size (plots draw in the background)."""
    from .widgets._dock import main_window
    from .widgets._plots import ThemedPlot

    window = main_window(viewer)
    plots = window.findChildren(ThemedPlot) if window is not None else []
    end = time.monotonic() + timeout_s
    _settle(0.2)  # resize timers fire first
    while any(not plot.is_current() for plot in plots if plot.isVisible()) and time.monotonic() < end:
        _settle(0.1)


def save_screenshot(viewer: Any, path: Path) -> Path:
    """Screenshot of the whole window (widgets included) to ``path``, written atomically."""
    from napari.utils.io import imsave

    from ..io.files import atomic_path

    image = viewer.screenshot(canvas_only=False, flash=False)
    with atomic_path(path) as tmp:
        imsave(str(tmp), image)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m napari_calf._napari.demo",
        description="Open napari with the napari-calf phantom case and widgets.",
    )
    parser.add_argument("--screenshot", metavar="PATH", type=Path,
                        help="save a screenshot of the window to PATH and exit (headless use)")
    parser.add_argument("--no-widgets", action="store_true",
                        help="do not dock the plugin's widgets")
    parser.add_argument("--no-dataset", action="store_true",
                        help="do not write/analyse the demo dataset; widgets start empty")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not has_display():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return 1
    headless = args.screenshot is not None or running_headless()
    viewer, analysis = build_viewer(widgets=not args.no_widgets, main_job=not args.no_dataset)
    if not headless:
        import napari

        napari.run()
        return 0
    shot = (args.screenshot or Path(DEFAULT_SCREENSHOT)).expanduser().resolve()
    shot.parent.mkdir(parents=True, exist_ok=True)
    viewer.window.show()
    fit_window_to_screen(viewer)  # show() restores napari's saved window size, maybe too big here
    _settle(SETTLE_S)
    _wait_for_analysis(analysis)
    viewer.reset_view()  # the final canvas size is known now
    _wait_for_plots(viewer)
    _settle(0.3)
    save_screenshot(viewer, shot)
    print(f"napari-calf demo: screenshot saved to {shot}")
    viewer.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

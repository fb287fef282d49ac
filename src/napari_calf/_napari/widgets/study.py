"""A panel that opens a loss comparison study (``napari-calf compare --out STUDY``).

Shows the study's summary (mean ± sd over seeds per loss × architecture), its runs,
the paired comparisons in words and the plots. Double-clicking a run (or a summary row:
its first seed) hands that run folder to a callback; the review widget uses it to load
the run, so any run of a study can be looked at case by case.

Reads only files the study wrote (``summary.json``, ``plots/*.png``); nothing here
trains or evaluates. The plot images are decoded in a background thread, so opening a
study never makes napari wait. Tables take their colours from napari's theme, every
row (the alternating ones too), so text stays readable in the dark and light themes.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...errors import CalfInputError

SUMMARY_COLUMNS = (("arch", "Architecture"), ("loss", "Loss"), ("n_seeds", "Seeds"),
                   ("dice", "Dice"), ("iou", "IoU"), ("hd95_mm", "HD95 (mm)"),
                   ("fp_rate_empty", "FP rate, tumour-free"), ("dice_small", "Dice small"),
                   ("dice_medium", "Dice medium"), ("dice_large", "Dice large"),
                   ("lesion_dice", "Lesion-wise Dice"), ("lesion_f1", "Lesion F1"))
RUN_COLUMNS = (("run", "Run"), ("seed", "Seed"), ("dice", "Dice"), ("hd95_mm", "HD95 (mm)"),
               ("fp_rate_empty", "FP rate"), ("dice_small", "Dice small"),
               ("lesion_dice", "Lesion-wise Dice"), ("lesion_f1", "Lesion F1"))
PLOTS = (("dice_by_size", "Dice by size"), ("dice_vs_size", "Dice vs size"))


def _pm(row: dict[str, Any], key: str) -> str:
    if key in ("arch", "loss", "n_seeds"):
        return str(row.get(key, ""))
    mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
    digits = 1 if key == "hd95_mm" else 3
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def _value(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if isinstance(v, float):
        return f"{v:.1f}" if key == "hd95_mm" else f"{v:.3f}"
    return "—" if v is None else str(v)


def table_style(colours: dict[str, str]) -> str:
    """Qt style sheet giving a table the theme's colours on *every* row.

    With alternating row colours on, Qt paints every second row in the palette's
    ``AlternateBase``, which napari's style sheet does not set: white rows with napari's
    near-white text. Both row colours and the text colour come from the theme here.
    """
    return (f"QTableWidget {{ background-color: {colours['panel']}; "
            f"alternate-background-color: {colours['background']}; color: {colours['text']}; "
            f"gridline-color: {colours['grid']}; }}")


def _table(headers: list[str], colours: dict[str, str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setStyleSheet(table_style(colours))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setAlternatingRowColors(True)
    return table


class _ScaledImage(QLabel):
    """A PNG that scales with the panel, keeping its aspect ratio."""

    def __init__(self) -> None:
        super().__init__()
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(200, 120)

    def set_image(self, image: QImage | None) -> None:
        """Show a decoded image (None: say that the study has no such plot)."""
        self._pixmap = None if image is None or image.isNull() else QPixmap.fromImage(image)
        if self._pixmap is None:
            self.setText("No plot (written by napari-calf compare unless --no-plots).")
        self._rescale()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._rescale()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None and self.isVisible():  # hidden tabs scale when shown
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))


class StudyPanel(QWidget):
    """Open a study folder: summary table, runs, paired comparisons, plots.

    Parameters
    ----------
    on_run : callable, optional
        Called with a run folder (``Path``) when a run is double-clicked; the signal
        ``run_activated`` carries the same path as text.
    window : bool
        A top-level window of its own (given at construction: changing a widget's window
        flags later makes Qt build its native window twice).
    """

    run_activated = Signal(str)
    #: Emitted when the study's plot images are on screen (they load in the background).
    plots_loaded = Signal()

    def __init__(self, on_run: Callable[[Path], Any] | None = None,
                 parent: QWidget | None = None, *, theme: str | None = None, window: bool = False) -> None:
        super().__init__(parent, Qt.WindowType.Window if window else Qt.WindowType.Widget)
        from ._plots import theme_colours

        self.on_run = on_run
        self.colours = theme_colours(theme or _napari_theme())
        self._images = _ImageBridge()
        self._images.loaded.connect(self._on_images)
        self._load_generation = 0
        self.study_dir: Path | None = None
        self.summary: dict[str, Any] = {}
        self._summary_runs: list[str | None] = []
        self._run_dirs: list[str] = []

        self.open_button = QPushButton("Open study…")
        self.open_button.clicked.connect(self._browse)
        self.folder_label = QLabel("No study open. A study is the --out folder of "
                                   "`napari-calf compare`.")
        self.folder_label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.folder_label, 1)

        self.summary_table = _table([t for _k, t in SUMMARY_COLUMNS] + ["CALF selection"], self.colours)
        self.summary_table.cellDoubleClicked.connect(self._summary_double_clicked)
        self.runs_table = _table([t for _k, t in RUN_COLUMNS], self.colours)
        self.runs_table.cellDoubleClicked.connect(self._run_double_clicked)
        self.paired_label = QLabel()
        self.paired_label.setWordWrap(True)
        self.paired_label.setTextFormat(Qt.TextFormat.RichText)
        self.paired_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        paired_scroll = QScrollArea()
        paired_scroll.setWidgetResizable(True)
        paired_scroll.setWidget(self.paired_label)

        # the table and, under it, what the paired statistics say about it
        summary_page = QSplitter(Qt.Orientation.Vertical)
        summary_page.addWidget(self.summary_table)
        summary_page.addWidget(paired_scroll)
        summary_page.setSizes([220, 160])
        self.tabs = QTabWidget()
        self.tabs.addTab(summary_page, "Summary")
        self.tabs.addTab(self.runs_table, "Runs")
        self.plots: dict[str, _ScaledImage] = {}
        for key, title in PLOTS:
            self.plots[key] = _ScaledImage()
            self.tabs.addTab(self.plots[key], title)
        self.hint = QLabel("Double-click a run (or a summary row: its first seed) to open it "
                           "in the review widget.")
        self.hint.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.hint)

    # ------------------------------------------------------------------ loading

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a napari-calf study folder")
        if folder:
            self.open_study(folder)

    def open_study(self, folder: str | Path) -> None:
        """Show the study in ``folder`` (raises CalfInputError when it has no report)."""
        folder = Path(folder).expanduser()
        path = folder / "summary.json"
        if not path.is_file():
            raise CalfInputError(folder, "has no summary.json, so it is not a finished study "
                                 "report.", "open the --out folder of `napari-calf compare`, or "
                                 "write its report with `napari-calf compare --collect FOLDER`.")
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CalfInputError(path, f"cannot be read ({exc}).",
                                 "write it again with `napari-calf compare --collect`.") from None
        self.study_dir, self.summary = folder, summary
        self.folder_label.setText(f"<b>{folder.name}</b> — {folder}")
        self._fill_summary()
        self._fill_runs()
        self._fill_paired()
        self._load_plots(folder)

    def _load_plots(self, folder: Path) -> None:
        """Decode the plot PNGs in a thread (QImage may be made off the GUI thread)."""
        self._load_generation += 1
        generation, bridge = self._load_generation, self._images
        paths = {key: folder / "plots" / f"{key}.png" for key, _title in PLOTS}

        def work() -> None:
            images = {key: QImage(str(path)) if path.is_file() else None for key, path in paths.items()}
            try:
                bridge.loaded.emit(generation, images)
            except RuntimeError:  # the panel was closed meanwhile
                pass

        threading.Thread(target=work, name="napari-calf-study-plots", daemon=True).start()

    def _on_images(self, generation: int, images: dict[str, QImage | None]) -> None:
        if generation != self._load_generation:
            return  # another study was opened meanwhile
        for key, image in images.items():
            self.plots[key].set_image(image)
        self.plots_loaded.emit()

    def _fill_summary(self) -> None:
        rows = self.summary.get("rows") or []
        per_run = self.summary.get("per_run") or []
        t = self.summary_table
        t.setRowCount(len(rows))
        self._summary_runs = []
        for i, row in enumerate(rows):
            for j, (key, _title) in enumerate(SUMMARY_COLUMNS):
                item = QTableWidgetItem(_pm(row, key))
                if j >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                t.setItem(i, j, item)
            t.setItem(i, len(SUMMARY_COLUMNS), QTableWidgetItem(str(row.get("calf_selection", ""))))
            first = next((r["run"] for r in per_run
                          if r["arch"] == row["arch"] and r["loss"] == row["loss"]), None)
            self._summary_runs.append(first)

    def _fill_runs(self) -> None:
        per_run = self.summary.get("per_run") or []
        t = self.runs_table
        t.setRowCount(len(per_run))
        self._run_dirs = []
        for i, row in enumerate(per_run):
            for j, (key, _title) in enumerate(RUN_COLUMNS):
                t.setItem(i, j, QTableWidgetItem(_value(row, key)))
            self._run_dirs.append(row["run"])

    def _fill_paired(self) -> None:
        paired = self.summary.get("paired") or []
        if not paired:
            self.paired_label.setText("No paired comparison (one loss only).")
            return
        items = "".join(f"<li><b>{html.escape(p['arch'])}</b>: {html.escape(p['verdict'])}</li>"
                        for p in paired)
        self.paired_label.setText(f"<b>Paired comparisons</b> (same validation cases and "
                                  f"seeds; bootstrap 95% interval, Wilcoxon):<ul>{items}</ul>")

    # ------------------------------------------------------------------ runs

    def run_folder(self, name: str) -> Path:
        """The folder of run ``name`` in the open study."""
        if self.study_dir is None:
            raise CalfInputError(None, "no study is open.", "open a study folder first.")
        return self.study_dir / "runs" / name

    def _activate(self, name: str | None) -> None:
        if not name:
            return
        folder = self.run_folder(name)
        self.run_activated.emit(str(folder))
        if self.on_run is not None:
            self.on_run(folder)

    def _run_double_clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._run_dirs):
            self._activate(self._run_dirs[row])

    def _summary_double_clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._summary_runs):
            self._activate(self._summary_runs[row])


class _ImageBridge(QObject):
    """Carries decoded plot images from the loading thread to the GUI thread."""

    loaded = Signal(int, object)


def _napari_theme() -> str:
    try:
        from napari.settings import get_settings

        return str(get_settings().appearance.theme)
    except Exception:  # noqa: BLE001 - settings unreadable: the default theme
        return "dark"


def open_study_window(parent: QWidget, folder: str | Path | None = None,
                      on_run: Callable[[Path], Any] | None = None,
                      theme: str | None = None) -> StudyPanel | None:
    """Ask for a study folder (unless given) and show it in its own window.

    Used by the review widget's "Open study…" button: double-clicking a run there loads
    it into the review widget (``on_run``). Errors come back as a napari notification.
    """
    if folder is None:
        folder = QFileDialog.getExistingDirectory(parent, "Open a napari-calf study folder")
        if not folder:
            return None
    panel = StudyPanel(on_run=on_run, parent=parent, theme=theme, window=True)
    panel.setWindowTitle("napari-calf: loss comparison study")
    try:
        panel.open_study(folder)
    except CalfInputError as exc:
        from napari.utils.notifications import show_error

        show_error(str(exc))
        panel.deleteLater()
        return None
    panel.resize(1000, 640)
    # shown in the next turn of the event loop: building the panel and laying out and
    # painting a new window in one turn would pause napari for their sum
    QTimer.singleShot(0, panel.show)
    return panel

"""The analysis widget's controls, laid out once (no behaviour here).

:func:`build_analysis_ui` creates every control as an attribute of the widget,
so :mod:`.analysis` reads as behaviour only.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._dock import scrollable
from ._plots import ThemedPlot
from ._slice_list import SliceList
from ._rules_table import RulesTable

TARGET_CHOICES = (("Whole tumour", "wt"), ("Tumour core", "tc"), ("Enhancing", "et"))
AXIS_CHOICES = (("Axial (z)", 2), ("Coronal (y)", 1), ("Sagittal (x)", 0))
UNIT_CHOICES = (("pixels", "px"), ("mm²", "mm2"))
ALL_LAYERS = "All Labels layers"


def _spin(maximum: float, step: float, decimals: int, special: str | None, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, maximum)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    if special:
        spin.setSpecialValueText(special)  # shown at the minimum (0): the option is off
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)  # recompute when the number is complete, not per keystroke
    return spin


def build_analysis_ui(w: Any, theme: str) -> None:
    """Create and lay out the analysis widget's controls on ``w``."""
    root = QVBoxLayout(scrollable(w))  # the dock scrolls: it fits any screen
    root.setContentsMargins(6, 6, 6, 6)

    # -- source ---------------------------------------------------------------------
    source = QGroupBox("Data")
    grid = QGridLayout(source)
    w.folder_radio = QRadioButton("Dataset folder")
    w.layers_radio = QRadioButton("Labels layers")
    w.source_group = QButtonGroup(w)
    w.source_group.addButton(w.folder_radio)
    w.source_group.addButton(w.layers_radio)
    w.folder_edit = QLineEdit()
    w.folder_edit.setPlaceholderText("BraTS- or nnU-Net-style folder with label files")
    w.browse_button = QPushButton("Browse…")
    w.layer_combo = QComboBox()
    w.layer_combo.setToolTip("Labels layers open in the viewer, shown as (z, y, x)")
    grid.addWidget(w.folder_radio, 0, 0)
    grid.addWidget(w.folder_edit, 0, 1)
    grid.addWidget(w.browse_button, 0, 2)
    grid.addWidget(w.layers_radio, 1, 0)
    grid.addWidget(w.layer_combo, 1, 1, 1, 2)
    w.target_combo, w.axis_combo, w.unit_combo = QComboBox(), QComboBox(), QComboBox()
    for combo, choices in ((w.target_combo, TARGET_CHOICES), (w.axis_combo, AXIS_CHOICES),
                           (w.unit_combo, UNIT_CHOICES)):
        for text, value in choices:
            combo.addItem(text, value)
    w.target_combo.setToolTip("Whole tumour: label > 0; core: necrosis + enhancing; enhancing: "
                              "label 4 (BraTS 2017–2021) or 3 (2023+)")
    # one setting per row: the dock stays narrow (long layer names scroll in their combo)
    for row, (label, combo) in enumerate(
            (("Target", w.target_combo), ("Slices", w.axis_combo), ("Unit", w.unit_combo)), start=2):
        grid.addWidget(QLabel(label), row, 0)
        grid.addWidget(combo, row, 1, 1, 2)
    w.layer_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    w.layer_combo.setMinimumContentsLength(12)
    grid.setColumnStretch(1, 1)
    root.addWidget(source)

    run_row = QHBoxLayout()
    w.run_button = QPushButton("Analyse sizes")
    w.run_button.setToolTip("Measure the tumour area of every slice (in the background)")
    w.stop_button = QPushButton("Stop")
    w.stop_button.setEnabled(False)
    w.progress = QProgressBar()
    w.progress.setTextVisible(True)
    w.progress.setValue(0)
    run_row.addWidget(w.run_button)
    run_row.addWidget(w.stop_button)
    run_row.addWidget(w.progress, 1)
    root.addLayout(run_row)
    w.status_label = QLabel("Choose a dataset folder or a Labels layer, then Analyse sizes.")
    w.status_label.setWordWrap(True)
    root.addWidget(w.status_label)

    # -- the answer, prominent ---------------------------------------------------------
    w.transform_label = QLabel("Loss transform: –")
    w.transform_label.setStyleSheet("font-size: 14pt; font-weight: bold;")
    w.transform_label.setWordWrap(True)
    w.transform_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    w.reason_label = QLabel("")
    w.reason_label.setWordWrap(True)
    w.reason_label.setStyleSheet("font-weight: bold;")
    w.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    w.split_note = QLabel(
        "S and K here describe every analysed slice. Fine-tuning measures them again on its "
        "training cases only (validation cases are held out), so its numbers can differ a little."
    )
    w.split_note.setWordWrap(True)
    w.split_note.setEnabled(False)  # drawn in the theme's muted text colour: a side note
    root.addWidget(w.transform_label)
    root.addWidget(w.reason_label)
    root.addWidget(w.split_note)

    w.tabs = QTabWidget()
    w.tabs.tabBar().setElideMode(Qt.TextElideMode.ElideNone)  # whole titles; arrows if needed
    w.tabs.tabBar().setUsesScrollButtons(True)
    root.addWidget(w.tabs, 1)

    # -- distribution tab ----------------------------------------------------------------
    dist = QWidget()
    dist_layout = QVBoxLayout(dist)
    dist_layout.setContentsMargins(2, 4, 2, 2)
    row = QHBoxLayout()
    w.log_x_check = QCheckBox("Log size axis")
    w.log_x_check.setToolTip("Log-spaced bins: right-skewed sizes become readable")
    w.empty_label = QLabel("Empty slices: –")
    row.addWidget(w.log_x_check)
    row.addStretch(1)
    row.addWidget(w.empty_label)
    dist_layout.addLayout(row)
    w.histogram = ThemedPlot(theme=theme, height=2.7)
    w.histogram.setToolTip("Click a bar to list its slices below")
    dist_layout.addWidget(w.histogram, 3)
    w.transform_plot = ThemedPlot(theme=theme, height=1.9)
    dist_layout.addWidget(w.transform_plot, 2)
    w.bin_label = QLabel("Click a bar to list its slices; click a slice to show it.")
    dist_layout.addWidget(w.bin_label)
    w.bin_list = SliceList()
    w.bin_list.setMinimumHeight(80)
    dist_layout.addWidget(w.bin_list, 1)
    w.tabs.addTab(dist, "Distribution")

    # -- rules tab -----------------------------------------------------------------------
    rules = QWidget()
    rules_layout = QVBoxLayout(rules)
    rules_layout.setContentsMargins(2, 4, 2, 2)
    hint = QLabel("The table is read from the top: the first row whose conditions hold for "
                  "this dataset's S and K chooses the transform. Row 1 comes from the CALF paper; "
                  "the other thresholds are this tool's assumptions. Edit them and the choice "
                  "follows.")
    hint.setWordWrap(True)
    rules_layout.addWidget(hint)
    w.rules_table = RulesTable()
    rules_layout.addWidget(w.rules_table, 1)
    files = QHBoxLayout()
    w.load_rules_button = QPushButton("Load table…")
    w.save_rules_button = QPushButton("Save table…")
    files.addWidget(w.load_rules_button)
    files.addWidget(w.save_rules_button)
    files.addStretch(1)
    rules_layout.addLayout(files)
    w.tabs.addTab(rules, "Rule table")

    # -- filtering & review tab ----------------------------------------------------------
    review = QWidget()
    review_layout = QVBoxLayout(review)
    review_layout.setContentsMargins(2, 4, 2, 2)
    form = QFormLayout()
    w.empty_fraction_spin = _spin(1.0, 0.05, 2, None, "Share of empty slices kept for training")
    w.empty_fraction_spin.setValue(0.1)
    w.min_area_spin = _spin(1e7, 1.0, 1, "off", "Drop (and list) slices with a smaller tumour area")
    w.outlier_spin = _spin(100.0, 0.5, 1, "off", "Flag sizes above Q3 + k·IQR for review")
    form.addRow("Empty slices kept (fraction)", w.empty_fraction_spin)
    form.addRow("Minimum area", w.min_area_spin)
    form.addRow("Outlier flag, IQR k", w.outlier_spin)
    review_layout.addLayout(form)
    w.filter_counts_label = QLabel("Kept: –   Dropped: –   Flagged: –")
    w.filter_counts_label.setStyleSheet("font-weight: bold;")
    review_layout.addWidget(w.filter_counts_label)
    w.flagged_caption = QLabel("Slices with tumour that were dropped or flagged (click one to show it):")
    w.flagged_caption.setWordWrap(True)
    review_layout.addWidget(w.flagged_caption)
    w.flagged_list = SliceList()
    w.flagged_list.setMinimumHeight(80)
    review_layout.addWidget(w.flagged_list, 1)
    w.tabs.addTab(review, "Filtering")

    export = QHBoxLayout()
    w.export_stats_button = QPushButton("Export statistics (JSON)…")
    w.export_slices_button = QPushButton("Export slice list (CSV)…")
    export.addWidget(w.export_stats_button)
    export.addWidget(w.export_slices_button)
    root.addLayout(export)

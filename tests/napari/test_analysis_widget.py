"""The imbalance analysis dock widget, driven as a user would, checked against the core.

References are computed independently of the widget: scipy's moments and the core
functions (``dataset_areas``, ``imbalance_stats``, ``select_transform``,
``filter_slices``) called directly on the same data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from scipy import stats as sps

from napari_calf.phantom import dataset as phantom
from napari_calf.errors import CalfFileExistsError
from napari_calf.io.discovery import discover_cases
from napari_calf.calf.rules import DEFAULT_RULES, select_transform
from napari_calf.calf.areas import dataset_areas
from napari_calf.calf.filtering import filter_slices
from napari_calf.calf.stats import imbalance_stats
from napari_calf.calf.rules_io import rules_from_json

WIDGET = ("napari-calf", "Imbalance analysis (CALF)")


@pytest.fixture
def dataset(phantom6: Path) -> Path:
    """Six right-skewed phantom cases on disk (BraTS-2021 layout), shared by the session."""
    return phantom6


@pytest.fixture
def reference_areas(dataset: Path):
    return dataset_areas(discover_cases(dataset))


def _open(make_napari_viewer, *, show: bool = False):
    viewer = make_napari_viewer(show=show)
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    return viewer, widget


def _analyse(qtbot, widget, folder: Path) -> None:
    widget.folder_edit.setText(str(folder))
    widget.folder_radio.setChecked(True)
    with qtbot.waitSignal(widget.updated, timeout=60_000):
        qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    _settled(qtbot, widget)


def _settled(qtbot, widget) -> None:
    """Wait until the numbers and both plots on screen are the latest (all are computed off the GUI thread)."""
    qtbot.waitUntil(lambda: not widget.busy and widget.histogram.is_current()
                    and widget.transform_plot.is_current(), timeout=30_000)


def test_widget_opens_from_the_manifest(make_napari_viewer) -> None:
    from napari_calf._napari.widgets.analysis import AnalysisWidget

    _viewer, widget = _open(make_napari_viewer)
    assert isinstance(widget, AnalysisWidget)
    assert widget.rules_table.rules == DEFAULT_RULES


def test_shows_the_statistics_and_transform_the_core_computes(
    make_napari_viewer, qtbot, dataset, reference_areas
) -> None:
    _viewer, widget = _open(make_napari_viewer)
    _analyse(qtbot, widget, dataset)

    sizes = reference_areas.nonzero()
    reference = imbalance_stats(sizes)
    chosen = select_transform(reference)
    assert widget.stats.n == sizes.size == reference.n
    assert widget.stats.skewness == pytest.approx(sps.skew(sizes, bias=True), rel=1e-9)
    assert widget.stats.kurtosis == pytest.approx(sps.kurtosis(sizes, fisher=True, bias=True), rel=1e-9)
    assert widget.selection.transform == chosen.transform
    assert chosen.transform in widget.transform_label.text()
    assert widget.reason_label.text() == chosen.reason
    # S, K and N printed on the plot itself
    texts = " ".join(t.get_text() for t in widget.histogram.axes.texts)
    assert f"S = {reference.skewness:.2f}" in texts
    assert f"K = {reference.kurtosis:.2f}" in texts
    assert f"N = {reference.n}" in texts
    assert f"Empty slices: {reference_areas.n_empty} of {reference_areas.n_slices}" in widget.empty_label.text()
    # the matched row is marked in the table
    assert widget.rules_table.table.verticalHeaderItem(chosen.rule_index).text().startswith("▶")


def test_editing_the_rule_table_changes_the_shown_transform(make_napari_viewer, qtbot, dataset) -> None:
    _viewer, widget = _open(make_napari_viewer)
    _analyse(qtbot, widget, dataset)
    s = widget.stats.skewness
    before = widget.selection.transform
    assert before != "fisher"

    from napari_calf._napari.widgets._rules_table import BOUND_COLUMNS, BOUND_OFFSET

    S_UP_TO = BOUND_OFFSET + [c[0] for c in BOUND_COLUMNS].index("s_max")  # noqa: N806
    # Row 1 (fisher, S ≤ −1): move its upper bound above this dataset's S, so row 1 matches.
    with qtbot.waitSignal(widget.updated):
        widget.rules_table.set_cell(0, S_UP_TO, f"{s + 0.5:.2f}")
    assert widget.selection.transform == "fisher"
    assert widget.selection.rule_index == 0
    assert "fisher" in widget.transform_label.text()
    assert widget.selection.transform == select_transform(widget.stats, widget.rules_table.rules).transform

    # An invalid edit: the core's message is shown, the last valid table stays.
    valid = widget.rules_table.rules
    widget.rules_table.set_cell(0, S_UP_TO, "lots")
    assert widget.rules_table.rules == valid
    assert widget.rules_table.error_label.isVisibleTo(widget.rules_table)
    assert "not a number" in widget.rules_table.error_label.text()
    assert widget.rules_table.table.item(0, S_UP_TO).text() == f"≤ {float(f'{s + 0.5:.2f}'):g}"

    # Reset to defaults brings the original choice back.
    with qtbot.waitSignal(widget.updated):
        widget.rules_table.reset_to_defaults()
    assert widget.selection.transform == before


def test_clicking_a_bar_lists_its_slices_and_choosing_one_moves_the_viewer(
    make_napari_viewer, qtbot, dataset, reference_areas
) -> None:
    viewer, widget = _open(make_napari_viewer, show=True)
    _analyse(qtbot, widget, dataset)
    edges = widget.histogram.edges
    counts, _ = np.histogram(reference_areas.nonzero(), bins=edges)
    bin_index = int(np.flatnonzero(counts)[len(np.flatnonzero(counts)) // 2])

    x, y = widget.histogram.bin_centre_in_widget(bin_index)
    qtbot.mouseClick(widget.histogram, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
    qtbot.waitUntil(lambda: widget.bin_list.count() == counts[bin_index], timeout=5_000)

    lo, hi = edges[bin_index], edges[bin_index + 1]
    a = reference_areas.areas
    in_bin = (a > 0) & (a >= lo) & ((a < hi) | ((a == hi) & (bin_index == len(edges) - 2)))
    expected = {(str(c), int(s)) for c, s in zip(reference_areas.case_ids[in_bin], reference_areas.slices[in_bin])}
    listed = {(e.case_id, e.index) for e in map(widget.bin_list.entry, range(widget.bin_list.count()))}
    assert listed == expected

    case_id, slice_index = widget.bin_list.entry(0).case_id, widget.bin_list.entry(0).index
    rect = widget.bin_list.row_rect(0)
    qtbot.mouseClick(widget.bin_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: any(layer.name.startswith(case_id) for layer in viewer.layers), timeout=30_000)
    # Axial slice k of the canonical volume is step k of the first slider (reader convention).
    assert viewer.dims.current_step[0] == slice_index
    seg = next(layer for layer in viewer.layers if layer.name == f"{case_id} seg")
    assert np.count_nonzero(seg.data[slice_index]) == reference_areas.areas[
        (reference_areas.case_ids == case_id) & (reference_areas.slices == slice_index)
    ][0]


def test_filter_counts_match_filter_slices(make_napari_viewer, qtbot, dataset, reference_areas) -> None:
    _viewer, widget = _open(make_napari_viewer)
    _analyse(qtbot, widget, dataset)
    min_area = float(np.percentile(reference_areas.nonzero(), 20))
    with qtbot.waitSignal(widget.updated):
        widget.empty_fraction_spin.setValue(0.25)
    with qtbot.waitSignal(widget.updated):
        widget.min_area_spin.setValue(min_area)
    with qtbot.waitSignal(widget.updated):
        widget.outlier_spin.setValue(0.3)

    expected = filter_slices(reference_areas, empty_fraction=0.25, min_area=round(min_area, 1), outlier_iqr=0.3)
    summary = expected.summary()
    assert summary["dropped_small"] > 0 and summary["flagged"] > 0  # the test exercises both
    text = widget.filter_counts_label.text()
    assert f"Kept: {summary['kept']}" in text and f"Flagged: {summary['flagged']}" in text
    # "Dropped" adds up: the empty slices left out plus the too-small ones, each named
    assert (f"Dropped: {summary['dropped']} ({summary['dropped_empty']} empty, "
            f"{summary['dropped_small']} too small)") in text
    assert summary["dropped"] == summary["dropped_empty"] + summary["dropped_small"]
    # the list holds exactly the slices with tumour that were dropped or flagged, and says so
    listed = widget.flagged_list.count()
    assert listed == sum(1 for row in expected.report if row["area"] > 0)
    assert listed == summary["dropped_small"] + summary["flagged"]
    assert f"The {listed} slice(s) with tumour" in widget.flagged_caption.text()
    # statistics follow the filter: S over the kept slices only
    kept = expected.apply(reference_areas).nonzero()
    assert widget.stats.skewness == pytest.approx(sps.skew(kept, bias=True), rel=1e-9)


def test_exports_round_trip_and_never_overwrite_unasked(
    make_napari_viewer, qtbot, dataset, reference_areas, tmp_path
) -> None:
    _viewer, widget = _open(make_napari_viewer)
    _analyse(qtbot, widget, dataset)
    stats_path = widget.export_statistics(tmp_path / "stats.json")
    csv_path = widget.export_slices(tmp_path / "slices.csv")

    payload = json.loads(stats_path.read_text())
    assert payload["selection"]["transform"] == widget.selection.transform
    assert payload["selection"]["stats"]["skewness"] == pytest.approx(widget.stats.skewness)
    assert payload["empty_slices"] == reference_areas.n_empty
    assert rules_from_json(json.dumps(payload["rules"])) == widget.rules_table.rules

    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == reference_areas.n_slices
    assert [float(r["area"]) for r in rows] == reference_areas.areas.tolist()
    assert [(r["case_id"], int(r["slice"])) for r in rows] == list(
        zip(reference_areas.case_ids.tolist(), reference_areas.slices.tolist())
    )
    assert sum(r["kept"] == "True" for r in rows) == int(widget.filter_result.keep.sum())
    # every dropped row says why, the empty slices outside the sample included
    dropped = [r for r in rows if r["kept"] == "False"]
    assert dropped and all(r["action"] == "dropped" and r["reason"] for r in dropped)
    assert any(float(r["area"]) == 0 and "empty slice" in r["reason"] for r in dropped)

    # the rule table round-trips through the core's JSON files
    table = widget.rules_table
    table.save_json(tmp_path / "rules.json")
    table.set_cell(1, table.table.columnCount() - 1, "paper")  # source of row 2 edited
    assert table.rules != DEFAULT_RULES
    table.load_json(tmp_path / "rules.json")
    assert table.rules == DEFAULT_RULES

    before = stats_path.read_text()
    with pytest.raises(CalfFileExistsError):
        widget.export_statistics(stats_path)
    assert stats_path.read_text() == before
    widget.export_slices(csv_path, overwrite=True)  # asked: replaced, still valid
    assert csv_path.read_text().startswith("case_id,slice,area")


def test_labels_layers_as_source_give_the_same_numbers(make_napari_viewer, qtbot) -> None:
    """A Labels layer (shown as z, y, x) is measured like the canonical volume it came from."""
    from napari_calf._napari.reader import canonical_to_layer

    labels = phantom.make_labels(3, skew="right")
    viewer, widget = _open(make_napari_viewer)
    viewer.add_labels(canonical_to_layer(labels), name="case-a")
    widget.layers_radio.setChecked(True)
    with qtbot.waitSignal(widget.updated, timeout=30_000):
        widget.run_analysis()
    reference = dataset_areas([("case-a", labels, (1.0, 1.0, 1.0))])
    assert widget.areas.areas.tolist() == reference.areas.tolist()
    assert widget.stats.n == imbalance_stats(reference).n


def test_errors_show_in_the_widget_and_never_crash(make_napari_viewer, qtbot, tmp_path) -> None:
    _viewer, widget = _open(make_napari_viewer)
    widget.layers_radio.setChecked(True)
    widget.run_analysis()  # no Labels layer open
    assert "No Labels layer" in widget.status_label.text()
    assert "color" in widget.status_label.styleSheet()

    empty = tmp_path / "nothing-here"
    empty.mkdir()
    widget.folder_edit.setText(str(empty))
    widget.folder_radio.setChecked(True)
    widget.run_analysis()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert str(empty) in widget.status_label.text()
    assert widget.run_button.isEnabled()


def test_screenshot_at_1366x768_with_data_and_readable_ticks(
    make_napari_viewer, qtbot, dataset, window_shot
) -> None:
    from napari_calf._napari.demo import dock_plugin_widgets

    viewer = make_napari_viewer(show=True)
    widgets: dict = {}
    dock_plugin_widgets(viewer, widgets)
    widget = widgets[WIDGET[1]]
    _analyse(qtbot, widget, dataset)
    counts, _ = np.histogram(widget.kept_nonzero()[2], bins=widget.histogram.edges)
    widget.select_bin(int(np.argmax(counts)))
    entry = widget.bin_list.entry(0)
    widget.go_to_slice(entry.case_id, entry.index)
    shot = window_shot(viewer, "analysis", plots=(widget.histogram, widget.transform_plot))
    assert shot.shape[:2] == (768, 1366)
    # at this size the plots thinned their tick labels until none collide
    assert widget.histogram.overlapping_ticks() is False
    assert widget.transform_plot.overlapping_ticks() is False
    widget.log_x_check.setChecked(True)  # log axis: minor labels are the usual smear
    qtbot.waitUntil(widget.histogram.is_current, timeout=30_000)
    assert widget.histogram.overlapping_ticks() is False


def test_plain_words_on_screen(make_napari_viewer) -> None:
    """No internal references ("CALF_METHOD §3", "rule row 6") in what a user reads."""
    from qtpy.QtWidgets import QAbstractButton, QLabel

    _viewer, widget = _open(make_napari_viewer)
    texts = [w.text() for w in widget.findChildren(QLabel)] + [
        w.text() for w in widget.findChildren(QAbstractButton)]
    texts += [w.toolTip() for w in widget.findChildren(QAbstractButton)]
    joined = " ".join(texts)
    assert "CALF_METHOD" not in joined and "§" not in joined and "rule row" not in joined
    assert "training cases only" in widget.split_note.text()  # why fine-tuning's S differs


def test_all_labels_layers_leaves_out_the_plugins_own_layers(make_napari_viewer, qtbot) -> None:
    """A prediction or error map made by the review widget is not a case to analyse."""
    from napari_calf._napari.reader import canonical_to_layer

    labels = phantom.make_labels(3, skew="right")
    viewer, widget = _open(make_napari_viewer)
    viewer.add_labels(canonical_to_layer(labels), name="case-a")
    for role in ("prediction", "errors"):
        viewer.add_labels(canonical_to_layer(labels), name=f"case-a {role}",
                          metadata={"napari_calf": {"role": role}})
    assert [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())] == [
        "All Labels layers", "case-a"]
    widget.layers_radio.setChecked(True)
    widget.layer_combo.setCurrentText("All Labels layers")
    with qtbot.waitSignal(widget.updated, timeout=30_000):
        widget.run_analysis()
    assert widget.areas.n_cases == 1
    assert set(widget.areas.case_ids.tolist()) == {"case-a"}


def _one_case_dataset(root: Path, labels: np.ndarray) -> Path:
    """A dataset holding one BraTS-2021 case, ``BraTS2021_00001``, with these labels."""
    import nibabel as nib

    folder = root / "BraTS2021_00001"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for modality in ("t1", "t1ce", "t2", "flair"):
        image = rng.normal(100, 10, labels.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(folder / f"BraTS2021_00001_{modality}.nii.gz"))
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(folder / "BraTS2021_00001_seg.nii.gz"))
    return root


def test_a_slice_opens_from_its_own_folder_when_another_case_has_its_id(
    make_napari_viewer, qtbot, tmp_path
) -> None:
    """Two datasets share a case id (an original and a re-annotated copy). Choosing a slice
    of the analysed one must show that one's labels, not the other's already open."""
    original = np.zeros((16, 16, 8), np.uint8)
    original[4:12, 4:12, 2:6] = 2
    revised = original.copy()
    revised[4:12, 4:12, 3] = 0  # the re-annotation removed slice 3's tumour...
    revised[6:8, 6:8, 3] = 1    # ...except a 2x2 core
    first = _one_case_dataset(tmp_path / "original", original)
    second = _one_case_dataset(tmp_path / "revised", revised)
    viewer, widget = _open(make_napari_viewer)
    viewer.open(str(first / "BraTS2021_00001"), plugin="napari-calf")  # already open
    _analyse(qtbot, widget, second)

    widget.go_to_slice("BraTS2021_00001", 3)
    active = viewer.layers.selection.active
    assert Path(active.metadata["napari_calf"]["path"]).parent == second / "BraTS2021_00001"
    assert viewer.dims.current_step[0] == 3
    assert np.count_nonzero(active.data[3]) == 4  # the revised labels: the 2x2 core
    # the namesake from the other folder is hidden, and the user is told
    others = [layer for layer in viewer.layers
              if str(first) in str(layer.metadata.get("napari_calf", {}).get("path", ""))]
    assert others and not any(layer.visible for layer in others)
    assert "same id" in widget.status_label.text()


def test_napari_activity_bar_follows_a_job(make_napari_viewer, qtbot, monkeypatch) -> None:
    """napari's activity dock shows a long job, moves with it and loses it when it ends."""
    from napari.utils import progress

    from napari_calf._napari.widgets import _activity

    monkeypatch.setattr(_activity, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(_activity, "UPDATE_INTERVAL_S", 0.0)
    make_napari_viewer(show=True)
    job = _activity.Activity("CALF analysis")
    job.start("measuring slice areas")
    job.update(1, 4)

    def bars():
        return [p for p in progress._all_instances if p.desc == "CALF analysis: measuring slice areas"]

    qtbot.waitUntil(lambda: len(bars()) == 1, timeout=5000)
    (bar,) = bars()
    assert (bar.n, bar.total) == (1, 4)
    job.update(3, 4)
    qtbot.waitUntil(lambda: bar.n == 3, timeout=5000)
    job.close()
    assert not bars()


def test_analysis_reports_to_napari_activity_and_leaves_no_bar(
    make_napari_viewer, qtbot, dataset, monkeypatch
) -> None:
    from napari.utils import progress

    from napari_calf._napari.widgets import _activity

    monkeypatch.setattr(_activity, "SHOW_AFTER_S", 0.0)
    calls: list[str] = []
    for name in ("start", "update", "close"):
        original = getattr(_activity.Activity, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            if self.title == "CALF analysis":
                calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(_activity.Activity, name, spy)
    _viewer, widget = _open(make_napari_viewer)
    _analyse(qtbot, widget, dataset)
    qtbot.wait(100)
    assert calls[0] == "start" and "update" in calls and calls[-1] == "close"
    assert not [p for p in progress._all_instances if p.desc.startswith("CALF analysis")]

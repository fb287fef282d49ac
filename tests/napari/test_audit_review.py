"""The annotation-review dock on a hand-built audit folder: a phantom case whose label was
corrupted (a spurious blob, a skipped slice) and a "prediction" that is the clean label."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_calf.audit.scoring import score_case
from napari_calf.events import drain
from napari_calf.io.volumes import load_volume, save_like
from napari_calf.phantom import dataset as phantom

WIDGET = ("napari-calf", "Annotation review (CALF)")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _contract_issue(issue, rank: int, n: int) -> dict:
    """An AuditIssue as issues.json stores it (the contract: boxes stop-exclusive)."""
    entry = issue.as_dict()
    entry.update(id=f"{issue.case_id}/{issue.kind}/{n}", rank=rank, in_sample=False,
                 bbox=[[lo, hi + 1] for lo, hi in issue.bbox])
    return entry


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """AUDIT/ for one phantom case; returns the paths and what the corruption was."""
    base = tmp_path_factory.mktemp("audit-review")
    data = base / "data"
    drain(phantom.write_dataset(data, 1, seed=0, skew="symmetric"))
    case_id = "CALF-Phantom-00000"
    folder = data / case_id
    label_file = folder / f"{case_id}_seg.nii.gz"
    clean = load_volume(label_file, label=True)
    truth = clean.data != 0

    corrupted = clean.data.copy()
    xs, ys, zs = np.nonzero(truth)
    cx, cy, cz = (int(round(v.mean())) for v in (xs, ys, zs))
    bx = clean.data.shape[0] - 1 - cx  # the other hemisphere, same height
    blob = np.zeros(truth.shape, bool)
    blob[bx - 2:bx + 2, cy - 2:cy + 2, cz - 1:cz + 2] = True
    assert not (blob & truth).any()
    corrupted[blob] = 2
    gap = int(np.median(zs))
    corrupted[:, :, gap] = np.where(blob[:, :, gap], 2, 0)  # the annotator skipped a slice
    save_like(corrupted, clean, label_file, overwrite=True)

    root = base / "AUDIT"
    (root / "predictions").mkdir(parents=True)
    prob = np.where(truth, 0.95, 0.02).astype(np.float32)
    save_like(prob, clean, root / "predictions" / f"{case_id}_prob.nii.gz")
    scored = score_case(case_id, corrupted, prob, clean.spacing)
    issues = [_contract_issue(issue, rank, rank) for rank, issue in enumerate(scored.issues, start=1)]
    images = {m: str(folder / f"{case_id}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair")}
    (root / "audit.json").write_text(json.dumps({
        "version": 1, "data_dir": str(data), "folds": 2, "seed": 0, "created": "2025-01-01T00:00:00",
        "command": f"napari-calf audit {data} --out {root} --folds 2", "settings": {"confident": 0.5},
        "runs": {"0": "runs/fold0"},
        "cases": {case_id: {"fold": 0, "in_sample": False, "label": str(label_file), "images": images,
                            "layout": "brats2021", "label_convention": "brats2021",
                            "prediction": f"predictions/{case_id}_prob.nii.gz"}}}))
    (root / "issues.json").write_text(json.dumps({"issues": issues, "dataset_bias": {}}))
    return {"root": root, "case_id": case_id, "label_file": label_file, "flair": Path(images["flair"]),
            "blob": blob, "gap": gap, "issues": issues, "truth": truth, "data": data}


@pytest.fixture
def fresh_audit(audit: dict, tmp_path: Path) -> dict:
    """The audit without corrections (each test starts its review afresh)."""
    shutil.rmtree(audit["root"] / "corrections", ignore_errors=True)
    return audit


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _info(layer) -> dict:
    return layer.metadata.get("napari_calf", {})


def _open(make_napari_viewer, qtbot, audit: dict):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.open_folder(audit["root"])
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    return viewer, widget


def _choose(qtbot, widget, kind: str) -> dict:
    entry = next(e for e in widget.folder.issues if e.kind == kind)
    widget.queue.choose_kind(kind)
    table = widget.queue.table
    rect = table.visualItemRect(table.item(0, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: not widget.busy and widget.case is not None, timeout=30_000)
    assert widget.current.id == entry.id, widget.status.text()
    return entry


def test_the_scored_corruption_is_what_the_queue_lists(audit: dict) -> None:
    kinds = [e["kind"] for e in audit["issues"]]
    assert "spurious" in kinds and "slice-gap" in kinds, kinds


def test_choosing_an_issue_opens_that_file_on_its_slice_and_the_suggestion_fixes_it(
    make_napari_viewer, qtbot, fresh_audit: dict
) -> None:
    audit = fresh_audit
    label_before = _sha(audit["label_file"])
    viewer = make_napari_viewer()
    # the same case id opened from another copy of the data: never to be reused or closed
    decoy_path = audit["root"].parent / "elsewhere" / audit["flair"].name
    decoy = viewer.add_image(np.zeros((4, 4, 4), np.float32), name=f"{audit['case_id']} flair",
                             metadata={"napari_calf": {"path": str(decoy_path), "case_id": audit["case_id"]}})
    decoy_labels = viewer.add_labels(
        np.zeros((4, 4, 4), np.uint8), name=f"{audit['case_id']} annotation (review)",
        metadata={"napari_calf": {"path": str(decoy_path.with_name(audit["label_file"].name)),
                                  "review_role": "annotation", "audit": str(audit["root"])}})
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.open_folder(audit["root"])
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    n = len(audit["issues"])
    assert widget.progress_bar.text() == f"0 of {n} reviewed"

    entry = _choose(qtbot, widget, "spurious")
    images = [layer for layer in viewer.layers if _info(layer).get("review_role") == "image"]
    assert len(images) == 1 and Path(_info(images[0])["path"]) == audit["flair"]
    assert images[0] is not decoy and decoy in viewer.layers
    labels = widget._annotation()
    assert Path(_info(labels)["path"]) == audit["label_file"]
    assert labels is not decoy_labels and labels.data.shape != decoy_labels.data.shape
    consensus = [layer for layer in viewer.layers if _info(layer).get("review_role") == "consensus"]
    assert len(consensus) == 1 and consensus[0].contour == 1
    region = [layer for layer in viewer.layers if _info(layer).get("review_role") == "region"]
    first, last = entry.issue.slices
    assert len(region) == 1 and len(region[0].data) == last - first + 1
    # the viewer shows the issue's slice (layer axis 0 is canonical z)
    z = round(labels.world_to_data(viewer.dims.point)[0])
    assert z == entry.focus_slice and first <= z <= last
    blob = audit["blob"]
    from napari_calf._napari.reader import layer_to_canonical

    assert (layer_to_canonical(np.asarray(labels.data))[blob] == 2).all()
    assert widget.last_metrics["dice"] == pytest.approx(0.0)  # the blob: the models see nothing

    qtbot.mouseClick(widget.suggest_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    shown = layer_to_canonical(np.asarray(widget._annotation().data))
    assert not shown[blob].any()                       # the blob is gone from the layer
    corrected_file = audit["root"] / "corrections" / audit["case_id"] / audit["label_file"].name
    corrected = load_volume(corrected_file, label=True)
    np.testing.assert_array_equal(corrected.data, shown)
    original = nib.load(audit["label_file"])
    assert nib.load(corrected_file).get_data_dtype() == original.get_data_dtype()
    np.testing.assert_allclose(nib.load(corrected_file).affine, original.affine)
    assert _sha(audit["label_file"]) == label_before    # the original is untouched
    assert decoy_labels in viewer.layers and not decoy_labels.data.any()
    decisions = json.loads((audit["root"] / "corrections" / "corrections.json").read_text())["decisions"]
    assert [(d["issue_id"], d["decision"], d["voxels_changed"]) for d in decisions] == [
        (entry.id, "use-suggestion", int(blob.sum()))]
    assert widget.progress_bar.text() == f"1 of {n} reviewed"
    assert widget.last_metrics["dice"] == pytest.approx(1.0)  # both empty in the box now

    # the slice-gap: Edit paints with the chosen value; Next saves it as "edited"
    gap_entry = _choose(qtbot, widget, "slice-gap")
    assert widget._annotation() is not None and widget.case.case_id == audit["case_id"]
    qtbot.mouseClick(widget.edit_button, Qt.MouseButton.LeftButton)
    layer = widget._annotation()
    assert layer.mode == "paint" and layer.selected_label == 2
    assert viewer.layers.selection.active is layer
    x, y, _ = gap_entry.issue.centre_vox
    shape = widget.case.canonical_shape
    before = widget.last_metrics["label_mm3"]
    layer.paint((audit["gap"], shape[1] - 1 - y, shape[0] - 1 - x), 2)
    qtbot.waitUntil(lambda: widget.save_button.isEnabled(), timeout=5_000)
    # the metrics follow the brush (after a short pause)
    qtbot.waitUntil(lambda: widget.last_metrics["label_mm3"] > before, timeout=5_000)
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    decisions = json.loads((audit["root"] / "corrections" / "corrections.json").read_text())["decisions"]
    assert [d["decision"] for d in decisions] == ["use-suggestion", "edited"]
    assert decisions[1]["issue_id"] == gap_entry.id and decisions[1]["voxels_changed"] > 0
    after_edit = load_volume(corrected_file, label=True).data
    assert after_edit[x, y, audit["gap"]] == 2 and not after_edit[blob].any()

    # back to the slice-gap for the screenshot: the box on the skipped slice
    widget.queue.choose_kind(None)
    widget.select_issue(gap_entry.id)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window.resize(1366, 768)
    qtbot.wait(300)
    from imageio.v3 import imwrite

    imwrite(SCREENSHOTS / "audit_review.png", viewer.screenshot(canvas_only=False))


def test_reopening_the_audit_remembers_what_was_reviewed_and_fine_tune_is_filled(
    make_napari_viewer, qtbot, fresh_audit: dict
) -> None:
    from napari_calf.audit.review import CorrectionStore

    audit = fresh_audit
    first = audit["issues"][0]
    CorrectionStore(audit["root"]).record(first["id"], audit["case_id"], "label-right",
                                          label_file=audit["label_file"])
    viewer, widget = _open(make_napari_viewer, qtbot, audit)
    assert widget.progress_bar.text() == f"1 of {len(audit['issues'])} reviewed"
    widget.queue.hide_reviewed.setChecked(True)
    assert first["id"] not in [i.id for i in widget.queue.shown()]
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)  # the first unreviewed
    qtbot.waitUntil(lambda: not widget.busy and widget.current is not None, timeout=30_000)
    assert widget.current.id != first["id"]

    widget.open_fine_tune()
    from napari_calf._napari.widgets.training import TrainingWidget

    trainers = viewer.window._qt_window.findChildren(TrainingWidget)
    assert len(trainers) == 1
    form = trainers[0].form
    corrections = audit["root"] / "corrections"
    assert form.data_dir.text() == str(audit["data"])
    assert form.labels_from.text() == str(corrections)
    assert "no corrected label has been saved yet" in widget.status.text()  # only 'label is right'

    # once a corrected label exists, the run the dock would start trains on it
    corrected = corrections / audit["case_id"] / audit["label_file"].name
    corrected.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(audit["label_file"], corrected)
    widget.open_fine_tune()
    assert len(viewer.window._qt_window.findChildren(TrainingWidget)) == 1
    assert widget.status.text().startswith("Fine-tune filled in: labels from")
    config = form.run_config()
    assert config.data.labels_from == str(corrections)
    assert config.data.data_dir == str(audit["data"])


def test_a_folder_without_an_audit_is_reported_not_fatal(make_napari_viewer, qtbot, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.open_folder(tmp_path)
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    assert widget.status.text().startswith("Error:") and "audit.json" in widget.status.text()
    assert widget.folder is None and not widget.suggest_button.isEnabled()


def test_an_audit_open_elsewhere_opens_read_only_and_records_nothing(
    make_napari_viewer, qtbot, fresh_audit: dict
) -> None:
    """A second napari (or a running `napari-calf audit`) holds the folder: decisions made
    in two places would overwrite each other's, so this dock only shows the issues."""
    import signal

    from _engine_data import hold_in_another_process  # tests/_engine_data.py

    audit = fresh_audit
    holder = hold_in_another_process(audit["root"])
    try:
        viewer, widget = _open(make_napari_viewer, qtbot, audit)
        assert "read-only" in widget.status.text() and f"pid {holder.pid}" in widget.status.text()
        assert len(widget.queue.shown()) == len(audit["issues"])  # the issues are there to look at
        _choose(qtbot, widget, "spurious")
        assert not widget.suggest_button.isEnabled() and not widget.right_button.isEnabled()
        widget.use_suggestion()  # even when called directly: nothing is written
        qtbot.wait(200)
        assert not (audit["root"] / "corrections").exists()
        assert "Not recorded" in widget.status.text()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    widget.open_folder(audit["root"])  # the other one has gone: decisions are on again
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert widget.read_only == "" and widget.status.text().startswith("Opened")


def test_undo_takes_back_a_suggestion_and_shows_the_label_as_it_was(
    make_napari_viewer, qtbot, fresh_audit: dict
) -> None:
    from napari_calf._napari.reader import layer_to_canonical

    audit = fresh_audit
    viewer, widget = _open(make_napari_viewer, qtbot, audit)
    n = len(audit["issues"])
    entry = _choose(qtbot, widget, "spurious")
    blob = audit["blob"]
    qtbot.mouseClick(widget.suggest_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    corrected_file = audit["root"] / "corrections" / audit["case_id"] / audit["label_file"].name
    assert corrected_file.is_file() and widget.progress_bar.text() == f"1 of {n} reviewed"

    qtbot.mouseClick(widget.undo_button, Qt.MouseButton.LeftButton)  # a mis-click, taken back
    qtbot.waitUntil(lambda: not widget.busy and widget.case is not None, timeout=30_000)
    assert not corrected_file.exists()  # the case is back on its original label
    shown = layer_to_canonical(np.asarray(widget._annotation().data))
    assert (shown[blob] == 2).all()     # the blob shows again, for a second look
    assert widget.current.id == entry.id and widget.progress_bar.text() == f"0 of {n} reviewed"
    assert widget.status.text().startswith(f"Took back 'use-suggestion' on {entry.id}")
    assert json.loads((audit["root"] / "corrections" / "corrections.json").read_text())["decisions"] == []

    qtbot.mouseClick(widget.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert widget.status.text().startswith("Nothing to undo")

"""Review of an audit: suggestions fix each kind of issue on crafted arrays, corrections land in
AUDIT/corrections on the source grid and never touch the original, decisions are replaced, and
the audit folder reads as the contract writes it."""

from __future__ import annotations

import hashlib
import json
import pathlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf.audit.review import (
    CorrectionStore,
    ReviewIssue,
    load_audit_folder,
    review_metrics,
    suggest_label,
)
from napari_calf.audit.scoring import AuditIssue, score_case
from napari_calf.errors import CalfConfigError, CalfInputError

from _engine_data import write_lps_case  # tests/_engine_data.py

SHAPE = (24, 24, 12)


def _issue(kind: str, mask: np.ndarray, case_id: str = "case") -> AuditIssue:
    """An issue whose region is ``mask`` (inclusive bbox), as the scoring would report it."""
    idx = np.nonzero(mask)
    bbox = tuple((int(i.min()), int(i.max())) for i in idx)
    centre = tuple(int(round(float(i.mean()))) for i in idx)
    return AuditIssue(case_id=case_id, kind=kind, score=0.9, slices=bbox[2],
                      volume_mm3=float(mask.sum()), centre_vox=centre, centre_mm=centre,
                      component=1, magnitude_mm=None, detail="crafted", bbox=bbox)


def _ball(centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE)
    return sum((grid[a] - centre[a]) ** 2 for a in range(3)) <= radius**2


def _lesion(centre: tuple[int, int, int], radius: float) -> np.ndarray:
    """BraTS-2021 lesion: oedema 2 outside, necrotic core 1 inside half the radius."""
    label = np.zeros(SHAPE, np.uint8)
    label[_ball(centre, radius)] = 2
    label[_ball(centre, radius / 2)] = 1
    return label


# --------------------------------------------------------------------------- suggestions


def test_spurious_component_is_removed_and_everything_else_kept() -> None:
    label = _lesion((8, 8, 6), 4)
    blob = np.zeros(SHAPE, bool)
    blob[17:20, 17:20, 5:7] = True
    label[blob] = 2
    prob = (label != 0).astype(np.float32) * 0.9
    prob[blob] = 0.05  # the models see nothing where the blob is drawn
    expected = label.copy()
    expected[blob] = 0
    result = suggest_label(_issue("spurious", blob), label, prob)
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == label.dtype and label[blob].all()  # input untouched


def test_spurious_keeps_a_supported_lesion_that_crosses_the_box() -> None:
    lesion = _lesion((10, 10, 6), 4)
    blob = np.zeros(SHAPE, bool)
    blob[12:16, 12:16, 6] = True  # box of the blob overlaps the lesion's edge
    label = lesion.copy()
    label[blob & (lesion == 0)] = 2
    prob = (lesion != 0).astype(np.float32)
    # the blob touches the lesion, so it is one component that leaves the box: nothing goes
    np.testing.assert_array_equal(suggest_label(_issue("spurious", blob), label, prob), label)


@pytest.mark.parametrize("value", [2, 4])
def test_missed_lesion_is_added_with_the_chosen_value(value: int) -> None:
    label = _lesion((8, 8, 6), 4)
    missed = _ball((17, 17, 6), 3)
    prob = ((label != 0) | missed).astype(np.float32) * 0.8
    expected = label.copy()
    expected[missed] = value
    result = suggest_label(_issue("missed", missed), label, prob, new_value=value)
    np.testing.assert_array_equal(result, expected)


def test_new_value_must_belong_to_the_convention() -> None:
    label = _lesion((8, 8, 6), 4)
    missed = _ball((17, 17, 6), 3)
    with pytest.raises(CalfConfigError, match="brats2021"):
        suggest_label(_issue("missed", missed), label, missed.astype(np.float32), new_value=3)
    result = suggest_label(_issue("missed", missed), label, missed.astype(np.float32),
                           new_value=3, convention="brats2023")
    assert set(np.unique(result[missed])) == {3}


def test_slice_gap_is_filled_on_the_gap_slices_only() -> None:
    truth = _lesion((12, 12, 6), 4)
    label = truth.copy()
    label[:, :, 6] = 0  # the annotator skipped slice 6
    prob = (truth != 0).astype(np.float32)
    gap = (truth != 0) & (label == 0)
    result = suggest_label(_issue("slice-gap", gap), label, prob)
    expected = label.copy()
    expected[gap] = 2
    np.testing.assert_array_equal(result, expected)


def test_too_large_is_trimmed_to_the_consensus_keeping_sub_labels() -> None:
    label = _lesion((12, 12, 6), 5)
    consensus = _ball((12, 12, 6), 3)
    prob = consensus.astype(np.float32) * 0.9
    excess = (label != 0) & ~consensus
    result = suggest_label(_issue("too-large", excess), label, prob)
    np.testing.assert_array_equal(result != 0, consensus)
    np.testing.assert_array_equal(result[consensus], label[consensus])  # core stays 1


def test_too_small_grows_to_the_consensus_with_new_voxels_as_oedema() -> None:
    label = _lesion((12, 12, 6), 3)
    consensus = _ball((12, 12, 6), 5)
    prob = consensus.astype(np.float32)
    deficit = consensus & (label == 0)
    result = suggest_label(_issue("too-small", deficit), label, prob)
    np.testing.assert_array_equal(result != 0, consensus)
    np.testing.assert_array_equal(result[label != 0], label[label != 0])
    assert set(np.unique(result[deficit])) == {2}


def test_accepting_every_scored_issue_leaves_no_issue() -> None:
    """End to end with the scoring: a corrupted label, fixed by its own suggestions."""
    truth = (_lesion((8, 8, 6), 4) | _lesion((16, 16, 6), 3)).astype(np.uint8)
    prob = (truth != 0).astype(np.float32) * 0.95
    label = truth.copy()
    label[19:22, 3:6, 4:8] = 2          # spurious blob
    label[_ball((16, 16, 6), 3.5)] = 0  # a lesion left out
    audit = score_case("case", label, prob, (1.0, 1.0, 1.0))
    assert {i.kind for i in audit.issues} == {"spurious", "missed"}
    for issue in audit.issues:
        label = suggest_label(issue, label, prob)
    assert score_case("case", label, prob, (1.0, 1.0, 1.0)).issues == ()
    np.testing.assert_array_equal(label != 0, truth != 0)


def test_review_metrics_match_a_hand_count() -> None:
    label = np.zeros(SHAPE, np.uint8)
    prob = np.zeros(SHAPE, np.float32)
    label[5:9, 5:7, 5] = 2   # 8 voxels
    prob[5:9, 6:8, 5] = 0.9  # 8 voxels, 4 shared
    region = np.zeros(SHAPE, bool)
    region[5:9, 5:8, 5] = True
    metrics = review_metrics(_issue("too-large", region), label, prob, spacing=(1.0, 1.0, 2.0),
                             original_voxels=10)
    assert metrics["dice"] == pytest.approx(2 * 4 / 16)
    assert metrics["label_mm3"] == metrics["consensus_mm3"] == pytest.approx(16.0)
    assert metrics["change_mm3"] == pytest.approx((8 - 10) * 2.0)


# --------------------------------------------------------------------------- corrections


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def lps(tmp_path: Path):
    data = tmp_path / "data"
    _ras, label, affine = write_lps_case(data, "Case-LPS", seed=0)
    return data / "Case-LPS" / "Case-LPS_seg.nii.gz", label, affine


def test_correction_is_written_on_the_source_grid_and_the_original_is_untouched(tmp_path: Path, lps) -> None:
    label_file, label, lps_affine = lps
    before = _sha(label_file)
    store = CorrectionStore(tmp_path / "AUDIT")
    corrected = label.copy()
    corrected[30:34, 2:6, 8] = 2  # canonical (RAS) indices: right-posterior, far from the blob
    entry = store.record("Case-LPS/missed/1", "Case-LPS", "use-suggestion", label_file=label_file,
                         corrected=corrected, new_label_value=2)

    target = tmp_path / "AUDIT" / "corrections" / "Case-LPS" / "Case-LPS_seg.nii.gz"
    assert store.corrected_label_path("Case-LPS") == target.resolve()
    img = nib.load(target)
    np.testing.assert_allclose(img.affine, lps_affine)          # the file's own (LPS) affine
    assert img.get_data_dtype() == np.uint8                       # the original's dtype
    np.testing.assert_array_equal(np.asarray(img.dataobj), corrected[::-1, ::-1])  # as stored: LPS
    assert _sha(label_file) == before
    assert entry["voxels_changed"] == 16
    assert entry["corrected_file"] == "corrections/Case-LPS/Case-LPS_seg.nii.gz"
    assert entry["label_file"] == str(label_file.resolve())
    _, current = store.current_label("Case-LPS", label_file)
    np.testing.assert_array_equal(current.data, corrected)


def test_float_labels_stay_float_on_disk(tmp_path: Path) -> None:
    label = np.zeros((6, 6, 4), np.float64)
    label[1:3, 1:3, 1] = 2.0
    label_file = tmp_path / "c_seg.nii.gz"
    nib.save(nib.Nifti1Image(label, np.eye(4)), label_file)
    corrected = label.astype(np.uint8)
    corrected[4, 4, 2] = 1
    CorrectionStore(tmp_path / "A").record("c/x/1", "c", "edited", label_file=label_file,
                                           corrected=corrected)
    img = nib.load(tmp_path / "A" / "corrections" / "c" / "c_seg.nii.gz")
    assert img.get_data_dtype() == np.float64
    np.testing.assert_array_equal(np.asarray(img.dataobj), corrected)


def test_a_decision_replaces_the_earlier_one_for_the_same_issue(tmp_path: Path, lps) -> None:
    label_file, label, _ = lps
    store = CorrectionStore(tmp_path / "AUDIT")
    store.record("Case-LPS/spurious/1", "Case-LPS", "label-right", label_file=label_file)
    store.record("Case-LPS/missed/2", "Case-LPS", "label-right", label_file=label_file)
    removed = label.copy()
    removed[removed == 4] = 0
    store.record("Case-LPS/spurious/1", "Case-LPS", "use-suggestion", label_file=label_file,
                 corrected=removed)
    decisions = store.decisions()
    assert [(d["issue_id"], d["decision"]) for d in decisions] == [
        ("Case-LPS/missed/2", "label-right"), ("Case-LPS/spurious/1", "use-suggestion")]
    assert decisions[0]["corrected_file"] is None and decisions[0]["voxels_changed"] == 0
    assert decisions[1]["voxels_changed"] == int((label == 4).sum())
    on_disk = json.loads(store.index_path.read_text())
    assert on_disk["version"] == 1 and on_disk["audit"] == ".."
    assert store.reviewed_ids() == {"Case-LPS/spurious/1", "Case-LPS/missed/2"}


def test_undo_takes_decisions_back_newest_first_restoring_each_label(tmp_path: Path, lps) -> None:
    """A mis-click is taken back: the corrected file returns to what it was before that
    decision (gone, for the first), the decision it replaced comes back, the original is
    never touched."""
    label_file, label, _ = lps
    before = _sha(label_file)
    store = CorrectionStore(tmp_path / "AUDIT")
    first = label.copy()
    first[first == 4] = 0
    second = first.copy()
    second[30:34, 2:6, 8] = 2
    store.record("Case-LPS/spurious/1", "Case-LPS", "use-suggestion", label_file=label_file, corrected=first)
    store.record("Case-LPS/missed/2", "Case-LPS", "edited", label_file=label_file, corrected=second)
    store.record("Case-LPS/spurious/1", "Case-LPS", "label-right", label_file=label_file)
    assert store.can_undo()

    undone = store.undo_last()  # 'label-right' replaced 'use-suggestion': it comes back
    assert undone["decision"] == "label-right"
    assert {d["issue_id"]: d["decision"] for d in store.decisions()} == {
        "Case-LPS/spurious/1": "use-suggestion", "Case-LPS/missed/2": "edited"}
    np.testing.assert_array_equal(store.current_label("Case-LPS", label_file)[1].data, second)

    assert store.undo_last()["decision"] == "edited"  # the label as after the first decision
    np.testing.assert_array_equal(store.current_label("Case-LPS", label_file)[1].data, first)
    assert store.reviewed_ids() == {"Case-LPS/spurious/1"}

    assert store.undo_last()["decision"] == "use-suggestion"  # back on the original label
    assert store.corrected_label_path("Case-LPS") is None and store.decisions() == []
    assert store.undo_last() is None and not store.can_undo()
    assert _sha(label_file) == before
    assert not any((tmp_path / "AUDIT" / "corrections" / ".history").iterdir())  # no copies left


def test_a_crash_while_writing_leaves_the_previous_corrections_file(tmp_path: Path, lps, monkeypatch) -> None:
    label_file, _, _ = lps
    store = CorrectionStore(tmp_path / "AUDIT")
    store.record("Case-LPS/a/1", "Case-LPS", "label-right", label_file=label_file)
    before = store.index_path.read_bytes()
    real = pathlib.Path.write_text

    def crash(self: Path, text: str, *args, **kwargs) -> int:
        real(self, text[: len(text) // 2], *args, **kwargs)  # half written, then the disk fails
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_text", crash)
    with pytest.raises(OSError, match="disk full"):
        store.record("Case-LPS/b/2", "Case-LPS", "label-right", label_file=label_file)
    monkeypatch.undo()
    assert store.index_path.read_bytes() == before
    assert [p.name for p in store.folder.iterdir()] == ["corrections.json"]  # no temp file left


def test_a_correction_never_lands_on_the_original_file(tmp_path: Path) -> None:
    audit = tmp_path / "AUDIT"
    # a dataset kept, unwisely, where the corrections would go
    _, label, _ = write_lps_case(audit / "corrections", "Case-LPS", seed=0)
    label_file = audit / "corrections" / "Case-LPS" / "Case-LPS_seg.nii.gz"
    before = _sha(label_file)
    changed = label.copy()
    changed[0, 0, 0] = 2
    with pytest.raises(CalfInputError, match="original label file"):
        CorrectionStore(audit).record("Case-LPS/a/1", "Case-LPS", "edited", label_file=label_file,
                                      corrected=changed)
    assert _sha(label_file) == before


def test_bad_decisions_and_case_ids_are_refused(tmp_path: Path, lps) -> None:
    label_file, _, _ = lps
    store = CorrectionStore(tmp_path / "AUDIT")
    with pytest.raises(CalfInputError, match="label-right"):
        store.record("x", "Case-LPS", "maybe", label_file=label_file)
    with pytest.raises(CalfInputError, match="cannot name a folder"):
        store.record("x", "../evil", "label-right", label_file=label_file)


# --------------------------------------------------------------------------- the audit folder


def _write_audit(root: Path, label_file: Path, issues: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predictions").mkdir(exist_ok=True)
    audit = {"version": 1, "data_dir": str(label_file.parent.parent), "folds": 2, "seed": 0,
             "created": "2025-01-01T00:00:00", "command": "napari-calf audit data --out AUDIT",
             "settings": {"confident": 0.6}, "runs": {"0": "runs/fold0"},
             "cases": {"Case-LPS": {"fold": 0, "in_sample": False, "label": str(label_file),
                                    "images": {"flair": str(label_file.parent / "Case-LPS_flair.nii.gz")},
                                    "layout": "brats2021", "label_convention": "brats2021",
                                    "prediction": "predictions/Case-LPS_prob.nii.gz"}}}
    (root / "audit.json").write_text(json.dumps(audit))
    (root / "issues.json").write_text(json.dumps({"issues": issues, "dataset_bias": {}}))


def _entry(n: int, score: float, bbox: list[list[int]], slices: list[int]) -> dict:
    return {"id": f"Case-LPS/missed/{n}", "rank": n, "case_id": "Case-LPS", "kind": "missed",
            "score": score, "slices": slices, "volume_mm3": 12.0, "centre_vox": [10, 10, 5],
            "centre_mm": [20.0, 20.0, 15.0], "component": None, "magnitude_mm": None,
            "detail": "The models see an unlabelled lesion.", "bbox": bbox, "in_sample": False}


def test_audit_folder_reads_the_contract_and_knows_what_was_reviewed(tmp_path: Path, lps) -> None:
    label_file, _, _ = lps
    root = tmp_path / "AUDIT"
    _write_audit(root, label_file, [
        _entry(2, 0.4, [[8, 12], [9, 11], [4, 7]], [4, 6]),    # stop-exclusive, as the contract says
        _entry(1, 0.8, [[8, 11], [9, 10], [4, 6]], [4, 6]),    # an inclusive writer is understood too
    ])
    CorrectionStore(root).record("Case-LPS/missed/2", "Case-LPS", "label-right", label_file=label_file)
    folder = load_audit_folder(root / "audit.json")
    assert [i.id for i in folder.issues] == ["Case-LPS/missed/1", "Case-LPS/missed/2"]  # by score
    assert all(i.issue.bbox == ((8, 11), (9, 10), (4, 6)) for i in folder.issues)
    assert isinstance(folder.issues[0], ReviewIssue) and folder.issues[0].focus_slice == 5
    case = folder.cases["Case-LPS"]
    assert case.label == label_file and case.prediction == (root / "predictions" / "Case-LPS_prob.nii.gz")
    assert case.images["flair"].name == "Case-LPS_flair.nii.gz" and case.fold == 0
    assert folder.confident == 0.6 and folder.reviewed == {"Case-LPS/missed/2"}
    assert folder.counts()["missed"] == 2 and folder.counts()["spurious"] == 0


def test_audit_folder_errors_say_what_to_do(tmp_path: Path, lps) -> None:
    label_file, _, _ = lps
    with pytest.raises(CalfInputError, match="napari-calf audit"):
        load_audit_folder(tmp_path)  # no audit.json
    root = tmp_path / "AUDIT"
    bad = _entry(1, 0.5, [[0, 1], [0, 1], [0, 1]], [0, 0])
    bad["case_id"] = "Nobody"
    _write_audit(root, label_file, [bad])
    with pytest.raises(CalfInputError, match="Nobody"):
        load_audit_folder(root)

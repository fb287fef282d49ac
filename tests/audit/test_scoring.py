"""Annotation audit on crafted cases: each injected label error comes out on top, as the right
kind on the right slices; clean labels stay quiet; a systematic style is a dataset bias.

The out-of-sample probability is simulated as the true mask blurred by 1 mm plus seeded
noise: a model that is right but soft at boundaries.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_calf.audit.scoring import (
    ISSUE_KINDS,
    AuditIssue,
    AuditSettings,
    apply_dataset_bias,
    dataset_bias,
    match_injected,
    rank_issues,
    region_mask,
    score_case,
    signed_surface_distance,
)
from napari_calf.errors import CalfConfigError, CalfInputError

SHAPE = (64, 64, 32)
SPACING = (1.0, 1.0, 2.0)


def _ellipsoid(shape, centre, semi_mm, spacing):
    grid = np.indices(shape, dtype=float)
    return sum(((grid[a] - centre[a]) * spacing[a] / semi_mm[a]) ** 2 for a in range(3)) <= 1.0


def _probability(truth, spacing, seed):
    rng = np.random.default_rng(seed)
    blurred = ndi.gaussian_filter(truth.astype(float), sigma=[1.0 / s for s in spacing])
    return np.clip(blurred + rng.normal(0.0, 0.03, truth.shape), 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def case():
    """Three lesions: large (A), medium (B), small (C), and the models' probability."""
    lesions = {
        "A": _ellipsoid(SHAPE, (22, 24, 14), (9, 8, 10), SPACING),
        "B": _ellipsoid(SHAPE, (44, 42, 18), (6, 6, 8), SPACING),
        "C": _ellipsoid(SHAPE, (44, 14, 8), (4, 4, 4), SPACING),
    }
    truth = lesions["A"] | lesions["B"] | lesions["C"]
    return lesions, truth, _probability(truth, SPACING, seed=0)


def _z_extent(mask):
    z = np.flatnonzero(mask.any(axis=(0, 1)))
    return int(z[0]), int(z[-1])


def _component_of(label, lesion):
    components, _ = ndi.label(label, structure=np.ones((3, 3, 3)))
    return int(np.bincount(components[lesion & label]).argmax())


def _grow_mm(mask, mm, spacing):
    return ndi.distance_transform_edt(~mask, sampling=spacing) <= mm


def _shrink_mm(mask, mm, spacing):
    return ndi.distance_transform_edt(mask, sampling=spacing) > mm


# --------------------------------------------------------------------------- one case


def test_clean_label_raises_no_confident_issue(case):
    _, truth, prob = case
    audit = score_case("clean", truth, prob, SPACING)
    assert all(issue.score < 0.1 for issue in audit.issues)
    assert all(abs(record.ssd_mm) < 0.5 for record in audit.boundaries)
    assert len(audit.boundaries) == 3
    assert audit.label_volume_mm3 == pytest.approx(truth.sum() * 2.0)


def test_missed_lesion_is_the_top_issue(case):
    lesions, truth, prob = case
    audit = score_case("c", (truth & ~lesions["C"]).astype(np.uint8), prob, SPACING)
    top = audit.issues[0]
    assert top.kind == "missed" and top.component is None
    # the blurred models see slightly less than the lesion at its poles: +-1 slice
    first, last = _z_extent(lesions["C"])
    assert abs(top.slices[0] - first) <= 1 and abs(top.slices[1] - last) <= 1
    assert lesions["C"][top.centre_vox]
    assert top.centre_mm == pytest.approx(tuple(c * s for c, s in zip(top.centre_vox, SPACING)))
    assert top.score > 0.5
    assert all(issue.score < 0.1 for issue in audit.issues[1:])


def test_erased_slices_are_a_slice_gap_on_exactly_those_slices(case):
    lesions, truth, prob = case
    label = truth.copy()
    label[:, :, 12:15] &= ~lesions["A"][:, :, 12:15]
    audit = score_case("c", label, prob, SPACING)
    top = audit.issues[0]
    assert top.kind == "slice-gap"
    assert top.slices == (12, 14)
    assert top.component in {_component_of(label, lesions["A"] & (np.arange(32) < 12)),
                             _component_of(label, lesions["A"] & (np.arange(32) > 14))}
    # the two halves are judged as one lesion: the gap is not also a too-small boundary
    assert not any(issue.kind == "too-small" for issue in audit.issues)
    assert top.volume_mm3 == pytest.approx((lesions["A"][:, :, 12:15] & (prob[:, :, 12:15] > 0.5)).sum() * 2.0,
                                           rel=0.05)


def test_lesion_dilated_by_2mm_outranks_genuine_lesions(case):
    lesions, truth, prob = case
    label = truth | _grow_mm(lesions["B"], 2.0, SPACING)
    clean = score_case("clean", truth, prob, SPACING)
    audit = score_case("dilated", label, prob, SPACING)
    top = rank_issues([clean, audit])[0]
    assert (top.case_id, top.kind) == ("dilated", "too-large")
    assert top.component == _component_of(label, lesions["B"])
    assert top.slices == _z_extent(_grow_mm(lesions["B"], 2.0, SPACING))
    # a 2 mm Euclidean dilation on a (1, 1, 2) mm grid moves oblique faces by less than
    # 2 mm (no voxel offset of length <= 2 mm points diagonally up), so the mean is ~1.7
    assert 1.4 < top.magnitude_mm < 2.2
    genuine = [r for r in audit.boundaries if r.component != top.component]
    assert len(genuine) == 2 and all(abs(r.ssd_mm) < 1.0 for r in genuine)
    assert not any(i.component in {r.component for r in genuine} for i in audit.issues if i.score > 0.1)


def test_lesion_eroded_by_2mm_is_too_small(case):
    lesions, truth, prob = case
    label = (truth & ~lesions["A"]) | _shrink_mm(lesions["A"], 2.0, SPACING)
    audit = score_case("c", label, prob, SPACING)
    top = audit.issues[0]
    assert top.kind == "too-small"
    assert top.component == _component_of(label, lesions["A"])
    assert -2.2 < top.magnitude_mm < -1.4
    first, last = _z_extent(lesions["A"])
    assert top.slices[0] >= first - 1 and top.slices[1] <= last + 1


def test_spurious_component_is_the_top_issue_and_its_region_covers_it(case):
    _, truth, prob = case
    blob = _ellipsoid(SHAPE, (12, 50, 24), (4, 4, 4), SPACING)
    label = truth | blob
    audit = score_case("c", label, prob, SPACING)
    top = audit.issues[0]
    assert top.kind == "spurious"
    assert top.slices == _z_extent(blob)
    assert top.component == _component_of(label, blob)
    assert top.volume_mm3 == pytest.approx(blob.sum() * 2.0)
    assert top.score > 0.9  # mean probability ~0.01 over 250 mm³
    shown = region_mask(top, SHAPE)
    assert shown[blob].all()
    lo, hi = np.array([b[0] for b in top.bbox]), np.array([b[1] for b in top.bbox])
    assert shown.sum() == np.prod(hi - lo + 1)


def test_model_disagreement_lowers_the_score_by_the_documented_factor(case):
    lesions, truth, prob = case
    label = truth & ~lesions["C"]
    confident = score_case("c", label, prob, SPACING).issues[0]
    spread = np.where(lesions["C"], 0.2, 0.0).astype(np.float32)
    unsure = score_case("c", label, prob, SPACING, prob_std=spread).issues[0]
    assert unsure.kind == "missed"
    # certainty = 1 - uncertainty_weight * mean std = 1 - 2 * 0.2 over the missed region
    assert unsure.score == pytest.approx(confident.score * 0.6, rel=1e-6)


def test_two_lesions_seen_as_one_blob_are_each_judged_against_their_own_part():
    spacing = (1.0, 1.0, 1.0)
    shape = (48, 32, 32)
    left = _ellipsoid(shape, (16, 16, 16), (7, 7, 7), spacing)
    right = _ellipsoid(shape, (29, 16, 16), (7, 7, 7), spacing)
    prob = _probability(left | right, spacing, seed=3)
    assert ndi.label(prob > 0.5, structure=np.ones((3, 3, 3)))[1] == 1  # one blob
    label = np.zeros(shape, np.uint8)
    label[left] = 1
    label[right & ~left] = 1
    label[:, :, :] *= ~(ndi.binary_dilation(left) & ndi.binary_dilation(right))  # keep two components
    audit = score_case("c", label, prob, spacing)
    assert len(audit.boundaries) == 2
    assert all(abs(r.ssd_mm) < 1.0 for r in audit.boundaries)
    assert all(issue.score < 0.1 for issue in audit.issues)


def test_empty_case_and_json_report():
    empty = np.zeros((8, 8, 8), np.uint8)
    audit = score_case("none", empty, np.zeros((8, 8, 8), np.float32), (1, 1, 1))
    assert audit.issues == () and audit.boundary_bias_mm is None
    assert dataset_bias([audit])["n_cases"] == 0
    text = json.dumps(audit.as_dict())
    assert '"case_id": "none"' in text


# --------------------------------------------------------------------------- surface distance


def test_signed_surface_distance_of_concentric_balls():
    grid = np.indices((40, 40, 40)) - 20.0
    radius = np.sqrt((grid ** 2).sum(axis=0))
    inner, outer = radius <= 8, radius <= 10
    # both digital spheres carry up to about half a voxel of staircase; over ~1000 surface
    # voxels the mean keeps a small negative bias (~0.1 mm): tolerance 0.25 mm
    assert signed_surface_distance(outer, inner, (1, 1, 1)) == pytest.approx(2.0, abs=0.25)
    assert signed_surface_distance(inner, outer, (1, 1, 1)) == pytest.approx(-2.0, abs=0.25)
    assert signed_surface_distance(inner, inner, (1, 1, 1)) == 0.0
    assert signed_surface_distance(inner, np.zeros_like(inner), (1, 1, 1)) is None


def test_signed_surface_distance_of_one_moved_face_by_hand():
    reference = np.zeros((20, 20, 20), bool)
    reference[5:15, 5:15, 5:15] = True
    annotation = reference.copy()
    annotation[5:15, 5:15, 15] = True  # one more axial slice on top, 2 mm thick
    # the 100 top voxels lie 2 mm above the reference's top face, every other surface voxel
    # of the 10x10x11 box is on the reference's surface; surface = 1100 - 8*8*9 = 524 voxels
    assert signed_surface_distance(annotation, reference, (1.0, 1.0, 2.0)) == pytest.approx(200 / 524)
    # reversed, the reference's top face (100 voxels) lies inside the annotation: its rim of
    # 36 is on the annotation's side walls (0 mm), the next ring of 28 is 1 mm from a wall,
    # the inner 36 are 2 mm from a wall or the top; the other 388 of the 10x10x10 box's
    # 488 surface voxels are on the annotation's surface (0 mm)
    assert signed_surface_distance(reference, annotation, (1.0, 1.0, 2.0)) == pytest.approx(
        -(28 * 1.0 + 36 * 2.0) / 488)


# --------------------------------------------------------------------------- dataset level


def _bias_dataset(extra_mm_on_first=0.0):
    spacing = (1.0, 1.0, 1.0)
    shape = (48, 48, 48)
    audits = []
    for i in range(4):
        first = _ellipsoid(shape, (16 + i, 18, 20), (7 + i, 6, 8), spacing)
        second = _ellipsoid(shape, (34, 32, 30 - i), (5, 6, 5 + i), spacing)
        prob = _probability(first | second, spacing, seed=10 + i)
        label = ndi.binary_dilation(first | second)  # the annotator's style: 1 voxel larger
        if i == 0 and extra_mm_on_first:
            label |= _grow_mm(first, 1.0 + extra_mm_on_first, spacing)
        audits.append(score_case(f"case{i}", label, prob, spacing))
    return audits


def test_systematic_dilation_is_a_dataset_bias_not_an_issue_per_lesion():
    audits = _bias_dataset()
    # before the dataset bias is known, every lesion sits ~1 mm out, so each is flagged weakly
    assert sum(i.kind == "too-large" for a in audits for i in a.issues) == 8
    bias = dataset_bias(audits)
    # a 6-connected 1-voxel dilation moves faces by 1 mm and oblique ones a little less
    # than a Euclidean 1 mm, so the measured offset is ~1.05 mm: tolerance 0.2 mm
    assert bias["median_mm"] == pytest.approx(1.0, abs=0.2)
    assert bias["n_cases"] == 4 and bias["systematic"]
    assert f"{bias['median_mm']:+.1f} mm larger than the models' boundary" in bias["sentence"]
    adjusted = apply_dataset_bias(audits)
    assert [i for a in adjusted for i in a.issues] == []
    assert all(a.settings.boundary_bias_mm == bias["median_mm"] for a in adjusted)


def test_a_lesion_2mm_beyond_the_style_still_stands_out():
    adjusted = apply_dataset_bias(_bias_dataset(extra_mm_on_first=2.0))
    issues = rank_issues(adjusted)
    assert issues[0].case_id == "case0" and issues[0].kind == "too-large"
    assert "more than this dataset's usual +1.1 mm" in issues[0].detail
    assert sum(i.score > 0.1 for i in issues) == 1


# --------------------------------------------------------------------------- evaluation


def _issue(case_id, kind, score, slices, centre, half=3):
    bbox = tuple((c - half, c + half) for c in centre[:2]) + (slices,)
    return AuditIssue(case_id=case_id, kind=kind, score=score, slices=slices, volume_mm3=100.0,
                      centre_vox=centre, centre_mm=centre, component=None, magnitude_mm=None,
                      detail="", bbox=bbox)


def test_match_injected_precision_and_recall_by_hand():
    injected = [
        {"case_id": "a", "kind": "missed", "slices": [4, 8], "centre_vox": [10, 10, 6], "voxels": 120},
        {"case_id": "a", "kind": "erased-slices", "slices": [12, 13], "centre_vox": [30, 30, 12], "voxels": 300},
        {"case_id": "b", "kind": "dilate", "slices": [2, 9], "centre_vox": [20, 20, 5], "voxels": 500},
        {"case_id": "b", "kind": "spurious", "slices": [20, 22], "centre_vox": [40, 40, 21], "voxels": 60},
        {"case_id": "all", "kind": "systematic-dilate", "slices": [0, 0], "centre_vox": [0, 0, 0], "voxels": 0},
    ]
    issues = [
        _issue("a", "slice-gap", 0.9, (12, 13), (31, 29, 12)),   # finds erased-slices
        _issue("a", "missed", 0.8, (5, 7), (11, 10, 6)),         # finds missed
        _issue("a", "missed", 0.7, (5, 7), (11, 10, 6)),         # duplicate: false positive
        _issue("b", "too-small", 0.6, (2, 9), (20, 20, 5)),      # wrong kind for a dilation
        _issue("b", "spurious", 0.5, (20, 22), (41, 40, 21)),    # beyond k = 4
    ]
    result = match_injected(reversed(issues), injected)  # order does not matter, score does
    assert result["k"] == 4 and result["n_injected"] == 4 and result["not_evaluated"] == 1
    assert result["true_positives"] == 2
    assert result["precision"] == pytest.approx(2 / 4) and result["recall"] == pytest.approx(2 / 4)
    assert result["per_injected_kind"]["erased-slices"]["recall"] == 1.0
    assert result["per_injected_kind"]["dilate"]["recall"] == 0.0
    assert result["per_issue_kind"]["missed"] == {"n": 2, "matched": 1, "precision": 0.5}
    everything = match_injected(issues, injected, k=5)
    assert everything["true_positives"] == 3 and everything["recall"] == pytest.approx(3 / 4)
    far = [_issue("b", "spurious", 0.9, (20, 22), (5, 5, 21), half=1)]  # right slices, wrong place
    assert match_injected(far, injected, k=1)["true_positives"] == 0


def test_match_injected_rejects_records_it_cannot_read():
    with pytest.raises(CalfInputError, match="unknown kind 'blur'"):
        match_injected([], [{"case_id": "a", "kind": "blur", "slices": [0, 1], "centre_vox": [0, 0, 0]}])
    with pytest.raises(CalfInputError, match="lacks centre_vox"):
        match_injected([], [{"case_id": "a", "kind": "missed", "slices": [0, 1]}])


def test_rank_issues_keeps_ties_in_order(case):
    _, truth, prob = case
    a = _issue("a", "missed", 0.5, (1, 2), (1, 1, 1))
    b = _issue("b", "spurious", 0.5, (1, 2), (1, 1, 1))
    c = _issue("c", "too-large", 0.9, (1, 2), (1, 1, 1))
    audit = score_case("x", truth, prob, SPACING)
    ranked = rank_issues([replace(audit, issues=(a, b)), replace(audit, issues=(c,))])
    assert [i.case_id for i in ranked] == ["c", "a", "b"]
    assert set(ISSUE_KINDS) >= {i.kind for i in ranked}


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_problem():
    label = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(CalfInputError, match="same shape"):
        score_case("x", label, np.zeros((8, 8, 7), np.float32), (1, 1, 1))
    with pytest.raises(CalfInputError, match=r"outside \[0, 1\]"):
        score_case("x", label, np.full((8, 8, 8), 3.0, np.float32), (1, 1, 1))
    with pytest.raises(CalfInputError, match="spacing"):
        score_case("x", label, np.zeros((8, 8, 8), np.float32), (1, 1))
    with pytest.raises(CalfConfigError, match="AuditSettings.confident"):
        AuditSettings(confident=1.5)
    with pytest.raises(CalfConfigError, match="AuditSettings.volume_scale_mm3"):
        AuditSettings(volume_scale_mm3=0.0)

"""Lesion-wise (BraTS 2023) metrics: hand-worked cases and the two HD95 conventions.

Geometry used throughout: a "cube [a:b]" is the voxels a..b-1 on every axis;
at 1 mm spacing its volume in mm³ is its voxel count.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_calf.calf.lesions import LesionWiseResult, lesion_wise
from napari_calf.calf.surface_distance import BRATS_MISSED_HD95_MM, surface_distance_hd95
from napari_calf.errors import CalfConfigError, CalfInputError

SHAPE = (40, 40, 40)


def cube(lo: int, hi: int, mask: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(SHAPE, dtype=bool) if mask is None else mask.copy()
    out[lo:hi, lo:hi, lo:hi] = True
    return out


def block(x: tuple[int, int], y: tuple[int, int], z: tuple[int, int],
          mask: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(SHAPE, dtype=bool) if mask is None else mask.copy()
    out[x[0]:x[1], y[0]:y[1], z[0]:z[1]] = True
    return out


# --------------------------------------------------------------------------- FN / FP / TP
def test_missed_lesion_is_a_false_negative_scored_dice_0_and_hd_374():
    # GT: A = cube [5:10] (125 mm³), B = cube [25:29] (64 mm³ > 50, kept).
    # Prediction = A exactly. Rows: A tp (Dice 1, HD 0), B fn (Dice 0, HD 374).
    # Lesion-wise Dice (1 + 0) / 2 = 0.5, HD95 (0 + 374) / 2 = 187.
    # F1 = 2·1 / (2·1 + 0 + 1) = 2/3; legacy Dice = 2·125 / (125 + 189) = 250/314.
    gt = cube(25, 29, cube(5, 10))
    pred = cube(5, 10)
    res = lesion_wise(pred, gt)
    assert [r.kind for r in res.lesions] == ["tp", "fn"]
    assert (res.tp, res.fp, res.fn) == (1, 0, 1)
    assert res.dice == pytest.approx(0.5)
    assert res.hd95_mm == pytest.approx(187.0)
    assert res.f1 == pytest.approx(2 / 3)
    assert res.legacy_dice == pytest.approx(250 / 314)
    missed = res.lesions[1]
    assert missed.gt_volume_mm3 == 64.0 and missed.pred_volume_mm3 == 0.0
    assert (missed.dice, missed.hd95_mm) == (0.0, BRATS_MISSED_HD95_MM)
    assert missed.pred_labels == ()
    assert missed.bbox == ((25, 29),) * 3
    assert gt[missed.centre_vox] and all(25 <= c < 29 for c in missed.centre_vox)


def test_false_blob_is_a_false_positive_even_when_tiny():
    # GT: cube [5:10]. Prediction: the same cube + a 2x2x2 blob [30:32] (8 mm³;
    # the volume threshold applies to GT lesions only). Components are numbered
    # in scan order: the cube is 1, the blob 2.
    # Dice (1 + 0) / 2 = 0.5, HD95 (0 + 374) / 2 = 187, F1 = 2 / (2 + 1 + 0) = 2/3.
    gt = cube(5, 10)
    pred = cube(30, 32, cube(5, 10))
    res = lesion_wise(pred, gt)
    assert (res.tp, res.fp, res.fn) == (1, 1, 0)
    fp = res.lesions[-1]
    assert fp.kind == "fp" and fp.gt_label is None and fp.pred_labels == (2,)
    assert fp.pred_volume_mm3 == 8.0 and fp.gt_volume_mm3 == 0.0
    assert fp.bbox == ((30, 32),) * 3 and pred[fp.centre_vox]
    assert res.dice == pytest.approx(0.5)
    assert res.hd95_mm == pytest.approx(187.0)
    assert res.f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("convention", ["brats", "monai"])
def test_shifted_lesion_has_the_overlap_dice_and_the_shift_as_hd95(convention):
    # GT cube [10:16] (216 voxels); prediction shifted by 2 voxels along axis 0:
    # x 12..17. Overlap 4·6·6 = 144 -> Dice 2·144 / (216 + 216) = 2/3.
    # Every surface point of one lies within 2 voxels of the other's surface and
    # the far faces (x=10 vs x=12, x=15 vs x=17) are exactly 2 apart and carry more
    # than 5 % of either surface -> HD95 = 2 mm in both conventions. At spacing
    # (3, 1, 1) those faces are 6 mm apart and stay the farthest -> 6 mm.
    gt = cube(10, 16)
    pred = block((12, 18), (10, 16), (10, 16))
    res = lesion_wise(pred, gt, hd95_convention=convention)
    (row,) = res.lesions
    assert row.kind == "tp" and row.pred_labels == (1,)
    assert row.dice == pytest.approx(2 / 3)
    assert res.dice == pytest.approx(2 / 3) == res.legacy_dice
    assert row.hd95_mm == pytest.approx(2.0)
    assert row.bbox == ((10, 18), (10, 16), (10, 16))
    stretched = lesion_wise(pred, gt, (3.0, 1.0, 1.0), hd95_convention=convention)
    assert stretched.hd95_mm == pytest.approx(6.0)


def test_prediction_within_the_dilation_counts_as_a_detection_with_dice_0():
    # GT cube [5:10] (x 5..9). A 2x2x2 prediction at x 11..12 never overlaps it,
    # but lies inside the GT's 3-voxel dilation (x up to 12): BraTS counts it as
    # the lesion's match (TP, not FP) with Dice 0 and a finite HD95.
    gt = cube(5, 10)
    pred = block((11, 13), (6, 8), (6, 8))
    res = lesion_wise(pred, gt)
    assert (res.tp, res.fp, res.fn) == (1, 0, 0)
    assert res.dice == 0.0
    assert 0 < res.hd95_mm < BRATS_MISSED_HD95_MM
    # with no dilation the same prediction is a miss plus a false positive
    strict = lesion_wise(pred, gt, dilation_voxels=0)
    assert (strict.tp, strict.fp, strict.fn) == (0, 1, 1)
    assert strict.hd95_mm == pytest.approx(374.0)


# --------------------------------------------------------------------------- empty cases
def test_empty_masks_follow_the_documented_conventions():
    empty = np.zeros(SHAPE, dtype=bool)
    blob = cube(5, 9)  # 64 mm³
    both = lesion_wise(empty, empty)
    assert both.lesions == ()
    assert (both.dice, both.hd95_mm, both.f1, both.legacy_dice) == (1.0, 0.0, 1.0, 1.0)
    assert (both.tp, both.fp, both.fn, both.ignored_gt_lesions) == (0, 0, 0, 0)
    # GT empty, one predicted blob: a single FP -> 0 / 1 = 0, 374 / 1 = 374.
    only_pred = lesion_wise(blob, empty)
    assert (only_pred.dice, only_pred.hd95_mm, only_pred.f1) == (0.0, 374.0, 0.0)
    assert (only_pred.tp, only_pred.fp, only_pred.fn) == (0, 1, 0)
    # Prediction empty, one kept GT lesion: a single FN.
    only_gt = lesion_wise(empty, blob)
    assert (only_gt.dice, only_gt.hd95_mm, only_gt.f1, only_gt.legacy_dice) == (0.0, 374.0, 0.0, 0.0)
    assert (only_gt.tp, only_gt.fp, only_gt.fn) == (0, 0, 1)


def test_surface_distance_hd95_empty_conventions():
    empty = np.zeros((10, 10, 10), dtype=bool)
    full = empty.copy()
    full[3:6, 3:6, 3:6] = True
    spacing = (1.0, 2.0, 2.0)
    for convention in ("monai", "brats"):
        assert surface_distance_hd95(empty, empty, spacing, convention=convention) == 0.0
        assert surface_distance_hd95(full, full, spacing, convention=convention) == 0.0
    assert surface_distance_hd95(full, empty, spacing, convention="brats") == 374.0
    # monai: image diagonal sqrt(10² + 20² + 20²) = 30 mm
    assert surface_distance_hd95(empty, full, spacing, convention="monai") == pytest.approx(30.0)


# --------------------------------------------------------------------------- merging, threshold
@pytest.mark.parametrize(("gap", "n_lesions"), [(6, 1), (7, 2)])
def test_nearby_gt_lesions_merge_when_their_dilations_touch(gap, n_lesions):
    # Two 4x4x4 GT cubes side by side along axis 0 with `gap` empty voxels between.
    # Three 18-connected dilations reach 3 voxels along an axis: A (x 5..8) grows
    # to x 11; B starting at 9 + gap grows down to 6 + gap. Gap 6: B reaches x 12,
    # 26-adjacent to 11 -> one lesion; gap 7: x 12 stays empty -> two lesions.
    # The prediction is the GT itself, so each row has Dice 1.
    start = 9 + gap
    gt = block((start, start + 4), (5, 9), (5, 9), block((5, 9), (5, 9), (5, 9)))
    for spacing in (None, (1.0, 1.0, 3.0)):  # dilation counts voxels, not mm
        res = lesion_wise(gt, gt, spacing)
        assert res.tp == n_lesions and res.fp == res.fn == 0
        assert res.dice == pytest.approx(1.0)
    rows = lesion_wise(gt, gt).lesions
    if n_lesions == 1:
        assert rows[0].gt_label == 1 and rows[0].pred_labels == (1, 2)
        assert rows[0].gt_volume_mm3 == 128.0
    else:
        assert [r.pred_labels for r in rows] == [(1,), (2,)]


def test_dilation_is_18_connected_so_diagonal_neighbours_stay_apart():
    # A = cube [5:9], B = cube [15:19]: 6 empty voxels between them on every axis,
    # i.e. only diagonally apart. The 18-connected structure moves at most 2 axes
    # per step, so 3 steps reach offsets with |dx|+|dy|+|dz| <= 6. Touching needs
    # a + b >= 6 on each axis for the reaches a of A and b of B: 18 in total, more
    # than the 12 available -> two lesions (a 26-connected dilation would merge them).
    gt = cube(15, 19, cube(5, 9))
    res = lesion_wise(gt, gt)
    assert res.tp == 2 and [r.gt_label for r in res.lesions] == [1, 2]


def test_brats_cell_areas_match_hand_worked_surfaces():
    # The area weights behind the brats HD95; in a 2x2x2 cell, bit 4a+2b+c is the
    # corner (a, b, c).
    # - one corner set: a triangle with sides √2/2 cuts it off, area √3/8 = 0.2165;
    # - the four corners with a = 0: a flat cross-section, area sy·sz = 6 at
    #   spacing (1, 2, 3);
    # - corners (0,0,1), (0,1,0), (1,0,0) (bits 1, 2, 4 = 0b10110), no two on a
    #   common edge: three separate corner triangles, 3√3/8; the complement (five
    #   corners set) has the same surface, so the same area. (Plain Lorensen
    #   marching cubes joins the complement's pieces, area 1.52: DeepMind does not.)
    from napari_calf.calf.surface_distance import _surfel_area_table

    unit = _surfel_area_table((1.0, 1.0, 1.0))
    assert unit[0] == unit[255] == 0.0
    assert unit[1] == pytest.approx(math.sqrt(3) / 8)
    assert unit[0b00010110] == pytest.approx(3 * math.sqrt(3) / 8)
    assert unit[255 - 0b00010110] == pytest.approx(3 * math.sqrt(3) / 8)
    assert np.allclose(unit, unit[::-1])  # a cell and its complement weigh the same
    assert _surfel_area_table((1.0, 2.0, 3.0))[0b00001111] == pytest.approx(6.0)


def test_gt_lesions_at_or_under_the_volume_threshold_are_ignored():
    # A = cube [5:10] (125 mm³, kept); S = cube [25:28] (27 mm³ <= 50, ignored).
    big, small = cube(5, 10), cube(25, 28)
    gt = big | small
    missed_small = lesion_wise(big, gt)
    assert missed_small.ignored_gt_lesions == 1
    assert (missed_small.tp, missed_small.fn, missed_small.fp) == (1, 0, 0)
    assert (missed_small.dice, missed_small.hd95_mm) == (1.0, 0.0)
    # predicting the ignored lesion is not a false positive either
    found_small = lesion_wise(gt, gt)
    assert (found_small.tp, found_small.fn, found_small.fp) == (1, 0, 0)
    # boundary: 5x5x2 = 50 mm³ is ignored (<= 50), one voxel more (51) is kept
    fifty = block((5, 10), (5, 10), (5, 7))
    assert lesion_wise(np.zeros(SHAPE), fifty).ignored_gt_lesions == 1
    fifty_one = fifty.copy()
    fifty_one[5, 5, 7] = True
    assert lesion_wise(np.zeros(SHAPE), fifty_one).fn == 1


def test_all_gt_lesions_under_the_threshold():
    # Nothing is scored: 0/0 -> Dice 1, HD95 0. One FP elsewhere -> 0 / 1, 374 / 1.
    small = cube(25, 28)
    alone = lesion_wise(np.zeros(SHAPE), small)
    assert (alone.dice, alone.hd95_mm, alone.f1, alone.ignored_gt_lesions) == (1.0, 0.0, 1.0, 1)
    with_fp = lesion_wise(cube(2, 4), small)
    assert (with_fp.dice, with_fp.hd95_mm, with_fp.fp) == (0.0, 374.0, 1)


def test_anisotropic_spacing_scales_volumes_and_the_threshold():
    # cube [25:28] = 27 voxels: 27 mm³ at 1 mm (ignored), 54 mm³ at (1, 1, 2) (kept,
    # and missed here -> FN). The predicted 2x2x2 blob weighs 8 vs 16 mm³.
    gt, pred = cube(25, 28), cube(2, 4)
    iso = lesion_wise(pred, gt)
    assert (iso.ignored_gt_lesions, iso.fn) == (1, 0)
    assert iso.lesions[0].pred_volume_mm3 == 8.0
    aniso = lesion_wise(pred, gt, (1.0, 1.0, 2.0))
    assert (aniso.ignored_gt_lesions, aniso.fn, aniso.fp) == (0, 1, 1)
    fn_row = next(r for r in aniso.lesions if r.kind == "fn")
    assert fn_row.gt_volume_mm3 == 54.0
    assert next(r for r in aniso.lesions if r.kind == "fp").pred_volume_mm3 == 16.0
    # a threshold of 60 mm³ ignores it again
    assert lesion_wise(pred, gt, (1.0, 1.0, 2.0), min_volume_mm3=60).ignored_gt_lesions == 1


def test_detection_f1_and_lesion_wise_averages_from_the_counts():
    # 3 GT lesions (64 mm³ each, 8 voxels apart: not merged): two predicted
    # exactly, one missed; 3 FP blobs of 8 voxels far from all of them.
    # TP 2, FN 1, FP 3 -> F1 = 4 / (4 + 3 + 1) = 0.5.
    # Dice (1 + 1 + 0 + 0 + 0 + 0) / 6 = 1/3; HD95 (0 + 0 + 4·374) / 6 = 249.33.
    gt = cube(2, 6) | cube(14, 18) | cube(26, 30)
    pred = cube(2, 6) | cube(14, 18)
    for lo in (30, 34):
        pred = block((lo, lo + 2), (2, 4), (30, 32), pred)
    pred = block((2, 4), (34, 36), (2, 4), pred)
    res = lesion_wise(pred, gt)
    assert (res.tp, res.fn, res.fp) == (2, 1, 3)
    assert res.f1 == pytest.approx(0.5)
    assert res.dice == pytest.approx(1 / 3)
    assert res.hd95_mm == pytest.approx(4 * 374 / 6)
    assert [r.kind for r in res.lesions] == ["tp", "tp", "fn", "fp", "fp", "fp"]


# --------------------------------------------------------------------------- HD95 conventions
def test_one_voxel_erosion_of_a_cube_brats_2_mm_monai_2_83_mm():
    # GT: 32-voxel cube, prediction: its 1-voxel erosion (30-voxel cube), 2 mm voxels.
    # brats: GT surfels (2x2x2 cells) = 6·31² face cells of area 1 (unit voxel)
    # at distance 1 voxel, 12·31 edge cells of area √2/2 at √2 voxels, 8 corners of
    # area √3/8 at √3. Faces hold 5766 / (5766 + 263.04 + 1.73) = 95.6 % >= 95 %
    # of the area -> 1 voxel = 2.0 mm; the eroded cube's surfels are all 1 voxel
    # from the GT surface -> 2.0 mm.
    # monai: GT surface voxels = 32³ − 30³ = 5768, of which 6·30² = 5400 faces at 1,
    # 12·30 = 360 edges at √2 and 8 corners at √3; the 95th percentile (rank
    # 0.95·5767 = 5478.65) falls among the edges -> √2 voxels = 2√2 mm = 2.83 mm.
    gt = np.zeros((36, 36, 36), dtype=bool)
    gt[2:34, 2:34, 2:34] = True
    pred = np.zeros_like(gt)
    pred[3:33, 3:33, 3:33] = True
    spacing = (2.0, 2.0, 2.0)
    assert surface_distance_hd95(pred, gt, spacing, convention="brats") == pytest.approx(2.0)
    assert surface_distance_hd95(pred, gt, spacing, convention="monai") == pytest.approx(2 * math.sqrt(2))
    assert lesion_wise(pred, gt, spacing).hd95_mm == pytest.approx(2.0)
    assert lesion_wise(pred, gt, spacing, hd95_convention="monai").hd95_mm == pytest.approx(2 * math.sqrt(2))


def test_monai_convention_equals_the_project_hd95_on_random_masks():
    from scipy import ndimage

    from napari_calf.calf.metrics import hd95

    rng = np.random.default_rng(7)
    for seed_spacing in [(1.0, 1.0, 1.0), (0.9, 1.2, 3.0), (2.0, 0.5, 0.5), (1.0, 1.0, 5.0)]:
        noise_p = ndimage.gaussian_filter(rng.random((18, 20, 22)), 1.5)
        noise_g = ndimage.gaussian_filter(rng.random((18, 20, 22)), 1.5)
        pred = noise_p > np.quantile(noise_p, 0.8)
        gt = noise_g > np.quantile(noise_g, 0.75)
        expected = hd95(pred, gt, seed_spacing)
        got = surface_distance_hd95(pred, gt, seed_spacing, convention="monai")
        assert got == pytest.approx(expected, rel=1e-12)
    speckle_p, speckle_g = rng.random((12, 12, 12)) > 0.9, rng.random((12, 12, 12)) > 0.9
    assert surface_distance_hd95(speckle_p, speckle_g, (1, 2, 3)) == pytest.approx(
        hd95(speckle_p, speckle_g, (1, 2, 3)), rel=1e-12
    )


def test_brats_hd95_of_a_single_voxel_against_its_neighbour():
    # One voxel vs the voxel next to it along axis 1 at spacing (1, 2, 1): each
    # voxel's 8 corner cells all lie 2 mm from the other's (the shift), except the
    # 4 cells shared by both, at 0. Half the area at 0, half at 2 -> 95 %: 2 mm.
    a = np.zeros((5, 5, 5), dtype=bool)
    b = a.copy()
    a[2, 2, 2] = b[2, 3, 2] = True
    assert surface_distance_hd95(a, b, (1.0, 2.0, 1.0), convention="brats") == pytest.approx(2.0)


# --------------------------------------------------------------------------- output, errors
def test_as_dict_is_json_ready():
    res = lesion_wise(cube(30, 32, cube(5, 10)), cube(5, 10))
    assert isinstance(res, LesionWiseResult)
    data = json.loads(json.dumps(res.as_dict()))
    assert data["fp"] == 1 and data["dice"] == pytest.approx(0.5)
    assert data["lesions"][1]["kind"] == "fp" and data["lesions"][1]["gt_label"] is None
    assert data["lesions"][0]["bbox"] == [[5, 10]] * 3


def test_bad_inputs_raise_errors_that_name_the_problem():
    a3, b3 = np.zeros((4, 4, 4)), np.zeros((4, 4, 5))
    with pytest.raises(CalfInputError, match="differs"):
        lesion_wise(a3, b3)
    with pytest.raises(CalfInputError, match="3D"):
        lesion_wise(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(CalfInputError, match="spacing"):
        surface_distance_hd95(a3, a3, (1.0, 1.0))
    with pytest.raises(CalfInputError, match="spacing"):
        lesion_wise(a3, a3, (1.0, 0.0, 1.0))
    with pytest.raises(CalfConfigError, match="monai, brats"):
        surface_distance_hd95(a3, a3, convention="medpy")
    with pytest.raises(CalfConfigError, match="convention"):
        lesion_wise(a3, a3, hd95_convention="deepmind")
    with pytest.raises(CalfConfigError, match="min_volume_mm3"):
        lesion_wise(a3, a3, min_volume_mm3=-1)
    with pytest.raises(CalfConfigError, match="dilation_voxels"):
        lesion_wise(a3, a3, dilation_voxels=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cropping is exact
def _whole_volume_reference(pred, gt, spacing, min_volume, dilation):
    """The BraTS rules written out on whole volumes, one full-size mask per lesion."""
    from scipy import ndimage

    full = np.ones((3, 3, 3), dtype=bool)
    grow = ndimage.generate_binary_structure(3, 2)
    voxel = float(np.prod(spacing))
    pred_ids, n_pred = ndimage.label(pred, structure=full)
    gt_ids, _ = ndimage.label(gt, structure=full)
    dilated_ids, n_merged = ndimage.label(
        ndimage.binary_dilation(gt, structure=grow, iterations=dilation), structure=full)
    merged = np.where(gt_ids > 0, dilated_ids, 0)
    scores, claimed, tp, fn = [], set(), 0, 0
    for k in range(1, n_merged + 1):
        lesion = merged == k
        reach = ndimage.binary_dilation(lesion, structure=grow, iterations=dilation)
        labels = set(np.unique(pred_ids[reach])) - {0}
        claimed |= labels
        if lesion.sum() * voxel <= min_volume:
            continue
        matched = np.isin(pred_ids, list(labels))
        dice = 2 * (matched & lesion).sum() / (matched.sum() + lesion.sum())
        hd = surface_distance_hd95(matched, lesion, spacing, convention="brats")
        scores.append((dice, hd))
        tp, fn = tp + bool(labels), fn + (not labels)
    fp = n_pred - len(claimed)
    n = len(scores) + fp
    return (tp, fp, fn, sum(d for d, _ in scores) / n, (sum(h for _, h in scores) + 374 * fp) / n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropped_scoring_equals_the_rules_on_whole_volumes(seed):
    # Random blobs (some touching the image edge); a third of them missed, the rest
    # shifted by a voxel, plus extra predicted blobs; anisotropic spacing.
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (30, 34, 26)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5, mode="wrap")
    gt = smooth > np.quantile(smooth, 0.96)
    ids, n = ndimage.label(gt, structure=np.ones((3, 3, 3)))
    kept = np.isin(ids, rng.choice(np.arange(1, n + 1), size=n - n // 3, replace=False))
    other = ndimage.gaussian_filter(rng.random(shape), 1.5, mode="wrap")
    pred = np.roll(kept, 1, axis=0) | (other > np.quantile(other, 0.994))
    spacing = (1.0, 0.8, 1.5)
    res = lesion_wise(pred, gt, spacing, min_volume_mm3=20, dilation_voxels=2)
    tp, fp, fn, dice, hd = _whole_volume_reference(pred, gt, spacing, 20, 2)
    assert (res.tp, res.fp, res.fn) == (tp, fp, fn)
    assert res.tp > 0 and res.fp > 0 and res.ignored_gt_lesions > 0  # a non-trivial case
    assert res.dice == pytest.approx(dice, rel=1e-12)
    assert res.hd95_mm == pytest.approx(hd, rel=1e-12)

"""Injected annotation errors: each kind is where its record says, by the amount it says.

References are independent of the module: scipy's labelling, scipy's binary dilation and
erosion with a ball built here from the spacing, distance transforms, and hand-worked
voxel counts on small synthetic arrays.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_calf.errors import CalfConfigError, CalfInputError
from napari_calf.phantom import make_labels
from napari_calf.phantom.label_errors import (
    APPLY_ORDER,
    LABEL_ERROR_KINDS,
    InjectedError,
    LabelErrorSpec,
    inject_label_errors,
    lesion_components,
    parse_label_error_spec,
)

N_CASES = 5
SPACING = (2.0, 2.0, 2.0)  # the phantom's grid
EXAMPLE = ("missed=0.15,erased-slices=0.05,dilate=0.1:2mm,erode=0.1:2mm,spurious=0.05,"
           "systematic-dilate=1mm")
EVERYTHING = ("missed=0.3,erased-slices=0.4,dilate=0.4:4mm,erode=0.4:2mm,spurious=0.6,"
              "systematic-dilate=2mm")
CONN26 = np.ones((3, 3, 3), dtype=bool)


@pytest.fixture(scope="module")
def truth() -> dict[str, np.ndarray]:
    labels = {f"case{i}": make_labels(0, skew="right", case_index=i, n_cases=N_CASES)
              for i in range(N_CASES)}
    for label in labels.values():
        label.flags.writeable = False  # any write into the truth raises
    return labels


def _ball(mm: float, spacing: tuple[float, ...]) -> np.ndarray:
    """Structuring element: grid offsets whose physical length is at most ``mm``."""
    reach = [int(mm // s) for s in spacing]
    grids = np.meshgrid(*[np.arange(-r, r + 1) * s for r, s in zip(reach, spacing)],
                        indexing="ij")
    return sum(g ** 2 for g in grids) <= mm ** 2 + 1e-9


def _component(label: np.ndarray, number: int) -> np.ndarray:
    return lesion_components(label)[0] == number


def _outer_layer(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face on its outline (a face neighbour outside it)."""
    return mask & ~ndi.binary_erosion(mask, border_value=0)


# --------------------------------------------------------------------------- components


def test_components_are_scipy_26_components_numbered_by_size(truth) -> None:
    for label in truth.values():
        comps, sizes = lesion_components(label)
        ref, n = ndi.label(label > 0, structure=CONN26)
        assert comps.max() == n == sizes.size
        assert list(sizes) == sorted(sizes, reverse=True)
        for number in range(1, n + 1):
            mask = comps == number
            assert mask.sum() == sizes[number - 1]
            # one scipy component exactly, no more, no less
            owners = np.unique(ref[mask])
            assert owners.size == 1 and np.array_equal(ref == owners[0], mask)


# --------------------------------------------------------------------------- each kind


def test_missed_lesions_are_small_truth_components_erased_entirely(truth) -> None:
    noisy, records = inject_label_errors(truth, SPACING, "missed=0.3", seed=2)
    pooled = sorted(s for label in truth.values() for s in lesion_components(label)[1])
    assert len(records) == int(np.floor(0.3 * len(pooled) + 0.5))
    smaller_half = pooled[(len(pooled) + 1) // 2 - 1]
    for rec in records:
        assert rec.kind == "missed" and rec.magnitude_mm is None
        lesion = _component(truth[rec.case_id], rec.component)
        assert np.all(truth[rec.case_id][lesion] > 0)
        assert np.all(noisy[rec.case_id][lesion] == 0)
        assert rec.voxels == lesion.sum() <= smaller_half
    for case_id, label in truth.items():  # nothing else touched
        gone = np.zeros(label.shape, dtype=bool)
        for rec in records:
            if rec.case_id == case_id:
                gone |= _component(label, rec.component)
        assert np.array_equal(noisy[case_id], np.where(gone, 0, label))


def test_erased_slices_are_empty_inside_the_lesion_and_interior(truth) -> None:
    noisy, records = inject_label_errors(truth, SPACING, "erased-slices=0.6", seed=1)
    assert len(records) == 3
    for rec in records:
        first, last = rec.slices
        assert 1 <= last - first + 1 <= 3
        lesion = _component(truth[rec.case_id], rec.component)
        zs = np.flatnonzero(lesion.any(axis=(0, 1)))
        assert zs[0] < first and last < zs[-1], "the lesion's end slices must remain"
        inside = lesion.copy()
        inside[:, :, :first] = False
        inside[:, :, last + 1:] = False
        assert inside.any() and np.all(noisy[rec.case_id][inside] == 0)
        for z in (first - 1, last + 1):  # the neighbouring slices are still drawn
            assert np.all(noisy[rec.case_id][:, :, z][lesion[:, :, z]] > 0)
        assert rec.voxels == inside.sum() == np.count_nonzero(
            noisy[rec.case_id] != truth[rec.case_id])


@pytest.mark.parametrize("mm", [2.0, 4.0])
def test_dilated_lesion_grows_by_k_mm(truth, mm: float) -> None:
    noisy, records = inject_label_errors(truth, SPACING, f"dilate=0.6:{mm}mm", seed=0)
    assert len(records) == 3
    for rec in records:
        label, out = truth[rec.case_id], noisy[rec.case_id]
        lesion = _component(label, rec.component)
        expected = ndi.binary_dilation(lesion, structure=_ball(mm, SPACING))
        grown = (out > 0) & (label == 0)
        assert np.array_equal(grown, expected & ~lesion)
        assert np.all(out[grown] == 2) and np.array_equal(out[label > 0], label[label > 0])
        # Signed distance of the grown outline to the truth's, outlines on voxel faces:
        # the distance from an outline voxel to the nearest truth voxel. +K within a voxel.
        dist = ndi.distance_transform_edt(~lesion, sampling=SPACING)
        offsets = dist[_outer_layer(grown | lesion)]
        assert np.all(offsets > mm - SPACING[0]) and np.all(offsets <= mm + 1e-9)
        assert rec.voxels == grown.sum() and rec.magnitude_mm == mm
        # still its own component: an audit can find it
        assert ndi.label(out > 0, structure=CONN26)[1] == ndi.label(label > 0, structure=CONN26)[1]


@pytest.mark.parametrize("mm", [2.0, 4.0])
def test_eroded_lesion_shrinks_by_k_mm_keeping_inner_labels(truth, mm: float) -> None:
    noisy, records = inject_label_errors(truth, SPACING, f"erode=0.6:{mm}mm", seed=0)
    assert records
    for rec in records:
        label, out = truth[rec.case_id], noisy[rec.case_id]
        lesion = _component(label, rec.component)
        kept = ndi.binary_erosion(lesion, structure=_ball(mm, SPACING), border_value=0)
        assert kept.any()
        assert np.array_equal(out, np.where(lesion & ~kept, 0, label))
        # Signed distance of the eroded outline to the truth's, outlines on voxel faces:
        # an outline voxel's depth counts to the nearest background voxel centre, which
        # lies one voxel beyond the truth's outline. -K within a voxel.
        remaining = (out > 0) & lesion
        depth = ndi.distance_transform_edt(lesion, sampling=SPACING)[_outer_layer(remaining)]
        offsets = -(depth - SPACING[0])
        assert np.all(offsets >= -mm - 1e-9) and np.all(offsets < -mm + SPACING[0])
        assert rec.voxels == (lesion & ~kept).sum()


def test_spurious_blob_is_a_new_oedema_component_away_from_the_lesions(truth) -> None:
    noisy, records = inject_label_errors(truth, SPACING, "spurious=1", seed=3)
    assert len(records) == N_CASES
    for rec in records:
        label, out = truth[rec.case_id], noisy[rec.case_id]
        blob = out != label
        assert np.all(label[blob] == 0) and np.all(out[blob] == 2)
        assert ndi.label(blob, structure=CONN26)[1] == 1
        assert 100 <= blob.sum() * 8 <= 700  # a few hundred mm^3, up to the grid's rounding
        gap = ndi.distance_transform_edt(label == 0, sampling=SPACING)[blob].min()
        assert gap >= 10.0
        # outside the label's bounding box, off the image edge
        box = ndi.find_objects((label > 0).astype(np.uint8))[0]
        assert not blob[box].any()
        idx = np.argwhere(blob)
        assert idx.min() >= 1 and np.all(idx.max(0) < np.array(label.shape) - 1)
        assert rec.voxels == blob.sum() and rec.component is None


def test_spurious_blob_and_growth_stay_inside_a_given_brain_mask(truth) -> None:
    shape = next(iter(truth.values())).shape
    brain = np.zeros(shape, dtype=bool)
    brain[10:-10, 10:-10, 10:-10] = True
    brain[:, : shape[1] // 3] = False  # a mask the label's bounding box rule would not give
    masks = dict.fromkeys(truth, brain)
    noisy, records = inject_label_errors(
        truth, SPACING, "spurious=1,systematic-dilate=4mm", seed=0, brain_masks=masks)
    assert {r.kind for r in records} == {"spurious", "systematic-dilate"}
    for case_id, label in truth.items():
        added = noisy[case_id] != label
        assert added.any() and not np.any(added & ~brain)


def test_spurious_blob_keeps_its_distance_when_the_brain_leaves_little_room() -> None:
    # 1 mm grid: a 5 mm lesion at the centre of a 30 mm brain ball. Blobs fit only in
    # the outer shell; eight copies of the case draw eight places.
    grid = np.indices((64, 64, 64)) - 32
    radius = np.sqrt((grid ** 2).sum(axis=0))
    label = (radius <= 5).astype(np.uint8) * 2
    cases = {f"copy{i}": label for i in range(8)}
    noisy, records = inject_label_errors(cases, (1.0, 1.0, 1.0), "spurious=1", seed=0,
                                         brain_masks=dict.fromkeys(cases, radius <= 30))
    assert len(records) == 8
    lesion_gap = ndi.distance_transform_edt(label == 0)
    for case_id, out in noisy.items():
        blob = out != label
        assert lesion_gap[blob].min() >= 10.0 and np.all(radius[blob] <= 30)
    assert len({r.centre_vox for r in records}) == 8


def test_systematic_dilation_grows_every_case_by_k_mm(truth) -> None:
    noisy, records = inject_label_errors(truth, SPACING, "systematic-dilate=2mm", seed=0)
    assert [r.case_id for r in records] == list(truth)
    ball = _ball(2.0, SPACING)
    for rec in records:
        label, out = truth[rec.case_id], noisy[rec.case_id]
        expected = ndi.binary_dilation(label > 0, structure=ball) & (label == 0)
        assert np.array_equal(out != label, expected)
        assert np.all(out[expected] == 2)
        assert np.count_nonzero(out) > np.count_nonzero(label)
        assert rec.voxels == expected.sum() and rec.magnitude_mm == 2.0


def test_systematic_growth_keeps_erased_slices_and_eroded_outline(truth) -> None:
    noisy, records = inject_label_errors(
        truth, SPACING, "erased-slices=0.6,erode=0.6:2mm,systematic-dilate=4mm", seed=1)
    kinds = {r.kind for r in records}
    assert kinds == {"erased-slices", "erode", "systematic-dilate"}
    for rec in records:
        label, out = truth[rec.case_id], noisy[rec.case_id]
        if rec.kind == "erased-slices":
            lesion = _component(label, rec.component)
            first, last = rec.slices
            assert not out[:, :, first:last + 1][lesion[:, :, first:last + 1]].any()
        elif rec.kind == "erode":
            lesion = _component(label, rec.component)
            kept = ndi.binary_erosion(lesion, structure=_ball(2.0, SPACING), border_value=0)
            near = ndi.binary_dilation(lesion, structure=_ball(4.0, SPACING))
            assert np.array_equal(out[near] > 0, kept[near])


# --------------------------------------------------------------------------- all together


def test_records_match_the_arrays_and_the_truth_is_untouched(truth) -> None:
    before = {k: v.copy() for k, v in truth.items()}
    noisy, records = inject_label_errors(truth, SPACING, EVERYTHING, seed=4)
    assert {r.kind for r in records} == set(LABEL_ERROR_KINDS)
    for case_id, label in truth.items():
        assert np.array_equal(label, before[case_id])
        out = noisy[case_id]
        assert out.dtype == label.dtype and out.shape == label.shape
        mine = [r for r in records if r.case_id == case_id]
        assert sum(r.voxels for r in mine) == np.count_nonzero(out != label)
        # one error per lesion
        comps = [r.component for r in mine if r.component is not None]
        assert len(comps) == len(set(comps))
    order = [(list(truth).index(r.case_id), APPLY_ORDER.index(r.kind)) for r in records]
    assert order == sorted(order)
    for rec in records:
        assert rec.volume_mm3 == pytest.approx(rec.voxels * 8.0)
        assert rec.slices[0] <= rec.centre_vox[2] <= rec.slices[1]
        as_dict = rec.as_dict()
        assert InjectedError(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in as_dict.items()}) == rec


def test_same_seed_same_errors_other_seeds_differ(truth) -> None:
    first = inject_label_errors(truth, SPACING, EVERYTHING, seed=7)
    again = inject_label_errors(truth, SPACING, parse_label_error_spec(EVERYTHING), seed=7)
    assert first[1] == again[1]
    assert all(np.array_equal(first[0][k], again[0][k]) for k in truth)
    others = [inject_label_errors(truth, SPACING, EVERYTHING, seed=s)[1] for s in (8, 9)]
    assert all(o != first[1] for o in others)


def test_changing_one_fraction_does_not_reshuffle_the_others(truth) -> None:
    few = inject_label_errors(truth, SPACING, "missed=0.2,dilate=0.4:2mm,spurious=0.2", seed=5)[1]
    many = inject_label_errors(truth, SPACING, "missed=0.2,dilate=0.4:2mm,spurious=1", seed=5)[1]
    assert [r for r in few if r.kind != "spurious"] == [r for r in many if r.kind != "spurious"]


@pytest.mark.parametrize(("fraction", "expected"), [(0.3, 2), (0.5, 3), (0.01, 1), (0.0, 0)])
def test_case_counts_round_half_up_with_at_least_one(truth, fraction: float,
                                                     expected: int) -> None:
    # 5 cases: 0.3 -> 1.5 -> 2, 0.5 -> 2.5 -> 3, 0.01 -> 0.05 -> at least 1
    records = inject_label_errors(truth, SPACING, f"spurious={fraction}", seed=0)[1]
    assert len(records) == expected


# --------------------------------------------------------------------------- hand-worked


def test_anisotropic_spacing_is_respected_on_hand_worked_shapes() -> None:
    dot = np.zeros((11, 11, 7), dtype=np.uint8)
    dot[5, 5, 3] = 4
    cube = np.zeros((11, 11, 11), dtype=np.int16)
    cube[2:9, 2:9, 2:9] = 1
    noisy, records = inject_label_errors({"dot": dot}, (1.0, 1.0, 3.0), "dilate=1:3mm")
    # within 3 mm: the 29 voxels of a radius-3 disk in-plane, one slice above and below
    assert records[0].voxels == 28 + 2 and np.count_nonzero(noisy["dot"]) == 31
    assert noisy["dot"][5, 5, 3] == 4 and set(np.unique(noisy["dot"])) == {0, 2, 4}
    noisy, records = inject_label_errors({"cube": cube}, (1.0, 1.0, 3.0), "erode=1:2mm")
    # a voxel stays when it is more than 2 mm from the outside: 3 of 7 in x and y, 7 in z
    assert np.count_nonzero(noisy["cube"]) == 3 * 3 * 7 and records[0].voxels == 343 - 63
    assert noisy["cube"].dtype == np.int16


def test_magnitude_below_the_grid_changes_nothing_and_says_so(truth, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="napari_calf.phantom.label_errors"):
        noisy, records = inject_label_errors(truth, SPACING, "systematic-dilate=1mm")
    assert records == [] and all(np.array_equal(noisy[k], truth[k]) for k in truth)
    assert "below the voxel spacing" in caplog.text


def test_single_small_lesions_can_be_missed_without_breaking_other_kinds() -> None:
    tiny = np.zeros((20, 20, 20), dtype=np.uint8)
    tiny[9:11, 9:11, 9:11] = 2
    noisy, records = inject_label_errors({"a": tiny}, SPACING, "missed=1,erode=1:2mm,dilate=1:2mm")
    assert [r.kind for r in records] == ["missed"]  # nothing left to erode or dilate
    assert not noisy["a"].any()


# --------------------------------------------------------------------------- spec


@pytest.mark.parametrize("text", [
    EXAMPLE, EVERYTHING, "none", "dilate=0:2mm", "erode=1:0.5mm", "missed=1e-05",
    "systematic-dilate=1.25mm", " spurious = 0.2 , missed=0.1 ",
])
def test_spec_round_trips_through_describe(text: str) -> None:
    spec = parse_label_error_spec(text)
    assert parse_label_error_spec(spec.describe()) == spec
    assert parse_label_error_spec(EXAMPLE).describe() == EXAMPLE


def test_spec_fields_are_what_the_string_says() -> None:
    spec = parse_label_error_spec(EXAMPLE)
    assert spec == LabelErrorSpec(missed=0.15, erased_slices=0.05, dilate=0.1, dilate_mm=2,
                                  erode=0.1, erode_mm=2, spurious=0.05, systematic_dilate_mm=1)
    assert parse_label_error_spec("none") == LabelErrorSpec()


@pytest.mark.parametrize(("text", "named", "problem"), [
    ("missed=0.1,blur=0.2", "blur=0.2", "unknown kind"),
    ("missed=1.5", "missed=1.5", "outside 0 to 1"),
    ("missed=-0.1", "missed=-0.1", "outside 0 to 1"),
    ("spurious=lots", "spurious=lots", "fraction"),
    ("missed", "missed", "no value"),
    ("dilate=0.1", "dilate=0.1", "no distance"),
    ("dilate=0.1:0mm", "dilate=0.1:0mm", "no distance"),
    ("erode=0.1:-2mm", "erode=0.1:-2mm", "negative"),
    ("erode=0.1:2cm", "erode=0.1:2cm", "unit mm"),
    ("systematic-dilate=1", "systematic-dilate=1", "unit mm"),
    ("systematic-dilate=0.5:1mm", "systematic-dilate=0.5:1mm", "every case"),
    ("missed=0.1:2mm", "missed=0.1:2mm", "fraction only"),
    ("missed=0.1,missed=0.2", "missed=0.2", "repeats"),
    ("", "", "empty"),
])
def test_bad_specs_are_refused_naming_the_part(text: str, named: str, problem: str) -> None:
    with pytest.raises(CalfConfigError) as err:
        parse_label_error_spec(text)
    message = str(err.value)
    assert repr(named) in message and problem in message
    assert "kind=fraction[:Kmm]" in message and "Fix:" in message


def test_spec_object_refuses_values_the_parser_would_refuse() -> None:
    with pytest.raises(CalfConfigError, match="fraction from 0 to 1"):
        LabelErrorSpec(missed=2)
    with pytest.raises(CalfConfigError, match="needs a distance"):
        LabelErrorSpec(erode=0.5)
    with pytest.raises(CalfConfigError, match="distance >= 0"):
        LabelErrorSpec(systematic_dilate_mm=float("nan"))


def test_unusable_inputs_are_refused(truth) -> None:
    label = next(iter(truth.values()))
    with pytest.raises(CalfInputError, match="3-D integer"):
        inject_label_errors({"flat": label[:, :, 0]}, SPACING, "missed=0.1")
    with pytest.raises(CalfInputError, match="3-D integer"):
        inject_label_errors({"float": label.astype(float)}, SPACING, "missed=0.1")
    with pytest.raises(CalfInputError, match="spacing"):
        inject_label_errors({"a": label}, (2.0, 0.0, 2.0), "missed=0.1")
    with pytest.raises(CalfInputError, match="brain mask shape"):
        inject_label_errors({"a": label}, SPACING, "spurious=1",
                            brain_masks={"a": np.ones((3, 3, 3), bool)})
    with pytest.raises(CalfInputError, match="unknown cases"):
        inject_label_errors({"a": label}, SPACING, "spurious=1",
                            brain_masks={"b": np.ones(label.shape, bool)})
    with pytest.raises(CalfConfigError, match="seed"):
        inject_label_errors({"a": label}, SPACING, "spurious=1", seed=-1)

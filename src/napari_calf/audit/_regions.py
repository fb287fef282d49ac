"""Where an annotation and out-of-sample predictions disagree: the regions behind the audit.

Private helpers of :mod:`napari_calf.audit.scoring`, which documents every formula and
threshold. Everything here works on a crop of the case (the bounding box of label and
consensus plus one voxel) and reports positions as full-volume voxel indices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import math

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

#: 26-connectivity: voxels touching by a face, an edge or a corner belong together.
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
#: A voxel is on a mask's surface when one of its 6 face neighbours is outside the mask.
_FACE_6 = ndi.generate_binary_structure(3, 1)

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class RegionSummary:
    """A set of voxels and what the models say there (full-volume voxel indices).

    ``bbox`` and ``slices`` are inclusive (first, last) index pairs; ``centre_vox`` is the
    rounded centroid of the voxels (it can lie outside a ring-shaped region).
    """

    n_voxels: int
    volume_mm3: float
    slices: tuple[int, int]
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    centre_vox: tuple[int, int, int]
    mean_prob: float
    mean_std: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BoundaryRecord:
    """One labelled lesion compared with the models' consensus around it.

    ``ssd_mm`` is the signed mean surface distance of the lesion's label to the consensus
    (positive: label larger); ``excess`` is the label outside the consensus, ``deficit``
    the consensus outside the label (``None`` when empty).
    """

    component: int
    ssd_mm: float
    n_surface: int
    lesion: RegionSummary
    excess: RegionSummary | None
    deficit: RegionSummary | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Crop:
    """The part of a case the audit looks at, with its offset in the full volume."""

    label: np.ndarray        # bool, non-zero label
    consensus: np.ndarray    # bool, prob > settings.confident
    prob: np.ndarray
    std: np.ndarray | None
    offset: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def voxel_mm3(self) -> float:
        return float(np.prod(self.spacing))


def crop_case(label: np.ndarray, consensus: np.ndarray, prob: np.ndarray,
              std: np.ndarray | None, spacing: tuple[float, float, float]) -> Crop | None:
    """Crop every array to the bounding box of ``label | consensus`` grown by one voxel.

    One voxel of background all round keeps surfaces and connectivity exactly as in the
    full volume. Component numbering is unchanged too: ``ndi.label`` numbers components in
    C order of their first voxel, and a crop holding all of them keeps that order.
    Returns ``None`` when both masks are empty.
    """
    boxes = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(label.any(axis=other) | consensus.any(axis=other))
        if hit.size == 0:
            return None
        boxes.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, label.shape[axis])))
    box = tuple(boxes)
    return Crop(label[box], consensus[box], prob[box], None if std is None else std[box],
                (box[0].start, box[1].start, box[2].start), spacing)


def summarise(mask: np.ndarray, box: Box, crop: Crop) -> RegionSummary | None:
    """Summarise the voxels ``mask`` (an array over ``crop[box]``); ``None`` if empty."""
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        return None
    origin = [crop.offset[a] + box[a].start for a in range(3)]
    coords = [idx[a] + origin[a] for a in range(3)]
    bbox = tuple((int(c.min()), int(c.max())) for c in coords)
    std = None if crop.std is None else float(crop.std[box][mask].mean())
    n = int(idx[0].size)
    return RegionSummary(
        n_voxels=n,
        volume_mm3=float(n * crop.voxel_mm3),
        slices=bbox[2],
        bbox=bbox,  # type: ignore[arg-type]
        centre_vox=tuple(int(round(float(c.mean()))) for c in coords),  # type: ignore[arg-type]
        mean_prob=float(crop.prob[box][mask].mean()),
        mean_std=std,
    )


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (array edges count as outside)."""
    return mask & ~ndi.binary_erosion(mask, _FACE_6, border_value=0)


def surface_distances(annotation: np.ndarray, reference: np.ndarray,
                      spacing: tuple[float, float, float]) -> np.ndarray:
    """Signed distance (mm) of each surface voxel of ``annotation`` to ``reference``'s surface.

    The distance is Euclidean, between voxel centres, to the nearest surface voxel of the
    reference; it is negative for voxels inside the reference. Comparing surface voxels
    with surface voxels (not with the reference's outside) makes identical masks give
    exactly 0 and a face moved by k voxels give exactly k voxel sizes. A k-d tree over the
    surface voxels costs far less than a distance transform of the whole block. Both masks
    must be non-empty.
    """
    on_surface = np.argwhere(surface(annotation))
    ref_points = np.argwhere(surface(reference)) * np.asarray(spacing)
    distance, _ = cKDTree(ref_points).query(on_surface * np.asarray(spacing))
    return np.where(reference[tuple(on_surface.T)], -distance, distance)


def union_box(a: Box, b: Box) -> Box:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))  # type: ignore[return-value]


def pad_box(box: Box, shape: tuple[int, ...], pad: int | tuple[int, ...] = 1) -> Box:
    pads = (pad,) * len(box) if isinstance(pad, int) else pad
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n))  # type: ignore[return-value]
                 for s, n, p in zip(box, shape, pads))


def pair_counts(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> dict[tuple[int, int], int]:
    """How many voxels of ``where`` carry each (component of a, component of b) pair."""
    first, second = a[where].astype(np.int64), b[where].astype(np.int64)
    keep = (first > 0) & (second > 0)
    if not keep.any():
        return {}
    width = int(second.max()) + 1
    codes, counts = np.unique(first[keep] * width + second[keep], return_counts=True)
    return {(int(c // width), int(c % width)): int(n) for c, n in zip(codes, counts)}


def slice_gaps(component: np.ndarray, label: np.ndarray, max_coverage: float) -> list[tuple[int, int]]:
    """Runs of axial slices of a model lesion that are unlabelled between labelled slices.

    A slice of ``component`` (the models' lesion, a bool block) is unlabelled when
    ``label`` covers less than ``max_coverage`` of its area there. A run of such slices is
    a gap when the slices just below and just above it show both the lesion and some label.
    Returns inclusive (first, last) slice indices within the block.
    """
    lesion_area = component.sum(axis=(0, 1))
    label_area = (component & label).sum(axis=(0, 1))
    unlabelled = (lesion_area > 0) & (label_area < max_coverage * lesion_area)
    labelled = (lesion_area > 0) & (label_area > 0)
    gaps = []
    z, depth = 0, unlabelled.size
    while z < depth:
        if not unlabelled[z]:
            z += 1
            continue
        end = z
        while end + 1 < depth and unlabelled[end + 1]:
            end += 1
        if z > 0 and end + 1 < depth and labelled[z - 1] and labelled[end + 1]:
            gaps.append((z, end))
        z = end + 1
    return gaps


def assign_reference(units: np.ndarray, consensus_ids: np.ndarray, owners: dict[int, set[int]],
                     spacing: tuple[float, float, float], pad: tuple[int, ...]) -> np.ndarray:
    """Give each consensus voxel to the labelled lesion ("unit") it belongs to.

    A consensus component touching one unit goes to it whole. One touching several (two
    labelled lesions that the models see as one blob) is split by nearest unit in mm, so
    each lesion is compared with its own part of the blob; only the blob's voxels within
    ``pad`` voxels of those lesions' boxes are split (farther ones are out of every lesion's
    neighbourhood anyway). Components in no unit (missed lesions) go to none: they are
    audited as missed, not as someone's boundary.
    """
    reference = np.zeros(units.shape, dtype=np.int32)
    objects = ndi.find_objects(consensus_ids)
    unit_objects = ndi.find_objects(units)
    for q, members in owners.items():
        box = objects[q - 1]
        if len(members) == 1:
            block = consensus_ids[box] == q
            reference[box][block] = next(iter(members))
            continue
        near = None
        for u in members:
            grown = pad_box(unit_objects[u - 1], units.shape, pad)
            near = grown if near is None else union_box(near, grown)
        box = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(box, near))
        candidates = np.isin(units[box], list(members))
        _, nearest = ndi.distance_transform_edt(~candidates, sampling=spacing, return_indices=True)
        owner = units[box][tuple(nearest)]
        block = consensus_ids[box] == q
        reference[box][block] = owner[block]
    return reference


def boundary_records(crop: Crop, lab: np.ndarray, con: np.ndarray, lesions: np.ndarray,
                     labelled_lesions: set[int], neighbourhood_mm: float) -> tuple[BoundaryRecord, ...]:
    """Compare each labelled lesion with its part of the consensus in its neighbourhood.

    ``lab`` and ``con`` number the label and consensus components of the crop; ``lesions``
    is the label without spurious components plus the slice gaps, so a lesion split by a
    gap is one lesion; ``labelled_lesions`` are the consensus components that are not
    missed lesions. The neighbourhood is the lesion's bounding box grown by
    ``neighbourhood_mm``.
    """
    units, _ = ndi.label(lesions, structure=CONNECTIVITY_26)
    owners: dict[int, set[int]] = {}
    for u, q in pair_counts(units, con, lesions & crop.consensus):
        if q in labelled_lesions:
            owners.setdefault(q, set()).add(u)
    pad = tuple(int(math.ceil(neighbourhood_mm / size)) for size in crop.spacing)
    reference = assign_reference(units, con, owners, crop.spacing, pad)
    main_component: dict[int, tuple[int, int]] = {}
    for (u, k), count in pair_counts(units, lab, lesions & crop.label).items():
        if count > main_component.get(u, (0, 0))[1]:
            main_component[u] = (k, count)
    records = []
    for u, unit_box in enumerate(ndi.find_objects(units), start=1):
        if u not in main_component:
            continue
        box = pad_box(unit_box, units.shape, pad)
        drawn, seen = units[box] == u, reference[box] == u
        if not seen.any():
            continue  # no consensus touches this lesion: nothing to compare its boundary with
        distances = surface_distances(drawn, seen, crop.spacing)
        lesion = summarise(drawn, box, crop)
        records.append(BoundaryRecord(
            component=main_component[u][0], ssd_mm=float(distances.mean()),
            n_surface=int(distances.size), lesion=lesion,  # type: ignore[arg-type]
            excess=summarise(drawn & ~seen, box, crop),
            deficit=summarise(seen & ~drawn, box, crop)))
    return tuple(records)

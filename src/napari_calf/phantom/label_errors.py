"""Known annotation errors, injected into clean label maps so an annotation audit can be scored.

The truth stays the clean label map a model should learn; the *noisy* copy is what a
hurried annotator would have delivered, and every change is recorded as an
:class:`InjectedError`, so an audit's findings can be matched against what was done.

Kinds (spec string, e.g. ``missed=0.15,erased-slices=0.05,dilate=0.1:2mm,erode=0.1:2mm,
spurious=0.05,systematic-dilate=1mm``):

- ``missed=F``: lesions erased entirely. A lesion is a 26-connected component of
  ``label > 0``. ``round(F x all components)`` of them are drawn from the smaller half of
  all components pooled over the dataset (sorted by voxel count, ``ceil(n / 2)``), as
  small lesions are the plausible misses. Nothing is added to the truth: with
  single-lesion cases (phantom presets ``symmetric``, ``left``) that half holds the
  smaller cases' only lesions; the ``right`` preset has 0-3 satellites per case.
- ``erased-slices=F``: in ``round(F x cases)`` cases, 1-3 consecutive axial slices of one
  lesion are erased, never its first or last slice (the lesion must span >= 3 slices).
- ``dilate=F:Kmm`` / ``erode=F:Kmm``: in ``round(F x cases)`` cases one lesion is grown
  (new voxels oedema, 2) / shrunk (outer voxels removed, inner sub-labels kept) by a ball
  of radius K mm in physical units: a voxel is added when its centre lies within K mm of
  the lesion, kept when every voxel within K mm belongs to it. A dilated lesion must lie
  more than ``K + 2 x systematic + one voxel diagonal`` from every other lesion, so that
  it stays a component of its own; an eroded one must keep at least one voxel.
- ``spurious=F``: in ``round(F x cases)`` cases an ellipsoidal oedema blob of 150-500 mm^3,
  10 mm (plus any dilation margins) away from every lesion: inside the brain mask when
  one is given, else outside the label's bounding box and away from the image edge.
- ``systematic-dilate=Kmm``: the annotator's style bias, applied last to every case:
  the noisy label grows by K mm into unlabelled voxels.

Rules shared by all kinds:

- Counts round half up, and a kind with ``F > 0`` is injected at least once (a small
  dataset still gets the error it asked for). When fewer cases or components qualify
  than the count asks for, fewer are injected and a warning is logged; the records say
  what was done.
- Order of application: missed, erased-slices, erode, dilate, spurious,
  systematic-dilate. Each lesion carries at most one error. The systematic growth never
  relabels a voxel that the truth labels (so it never refills what an earlier error
  removed), never grows into the erased slices near their lesion, and leaves an eroded
  lesion at its eroded outline. Every voxel is changed by at most one error, so the
  records' voxel counts add up to the voxels where noisy and truth differ.
- Draws use ``numpy.random.default_rng([seed, kind])`` for choosing cases and
  ``[seed, kind, crc32(case_id)]`` within a case: same seed, same errors, and changing
  one kind's fraction does not reshuffle another's.
- Magnitudes smaller than the voxel spacing change nothing on that grid (a 1 mm ball on
  a 2 mm grid holds one voxel); a warning is logged and no record is made.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import CalfConfigError, CalfInputError

# relative: the two modules move together
from .label_error_spec import (
    LABEL_ERROR_KINDS,
    SPEC_EXAMPLE,
    InjectedError,
    LabelErrorSpec,
    parse_label_error_spec,
)

__all__ = [
    "APPLY_ORDER", "LABEL_ERROR_KINDS", "SPEC_EXAMPLE", "InjectedError", "LabelErrorSpec",
    "inject_label_errors", "lesion_components", "parse_label_error_spec",
]

log = logging.getLogger(__name__)

#: The order in which the kinds are applied to a case (see the module docstring).
APPLY_ORDER: tuple[str, ...] = (
    "missed", "erased-slices", "erode", "dilate", "spurious", "systematic-dilate")
OEDEMA = 2
SPURIOUS_MM3 = (150.0, 500.0)
SPURIOUS_CLEARANCE_MM = 10.0
_EPS = 1e-6  # distances on a grid land exactly on K; float round-off must not drop them


def lesion_components(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected components of ``label > 0``, numbered by size (1 = largest).

    Ties keep scipy's raster order. Returns the int32 component map (0 = background),
    shape of ``label``, and the voxel count of components 1..n.
    """
    comps, n = ndi.label(np.asarray(label) > 0, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[order + 1] = np.arange(1, n + 1, dtype=np.int32)
    return remap[comps], sizes[order]


# --------------------------------------------------------------------------- injection


@dataclass(eq=False)
class _Case:
    """Working state of one case while errors are injected."""

    case_id: str
    index: int
    truth: np.ndarray
    noisy: np.ndarray
    spacing: np.ndarray
    brain: np.ndarray | None
    comps: np.ndarray
    sizes: np.ndarray
    boxes: list[tuple[slice, ...]]
    claimed: set[int] = field(default_factory=set)
    keep_out: np.ndarray | None = None  # voxels the systematic growth must not fill

    def unclaimed(self) -> list[int]:
        return [c for c in range(1, len(self.boxes) + 1) if c not in self.claimed]

    def box(self, comp: int, pad_mm: float = 0.0) -> tuple[slice, ...]:
        pad = np.ceil(pad_mm / self.spacing).astype(int) + (1 if pad_mm else 0)
        return tuple(slice(max(s.start - p, 0), min(s.stop + p, n))
                     for s, p, n in zip(self.boxes[comp - 1], pad, self.truth.shape))

    def block(self, box: tuple[slice, ...], mask: np.ndarray) -> None:
        if self.keep_out is not None:
            self.keep_out[box] |= mask


def _within(mask: np.ndarray, spacing: np.ndarray, mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``mm`` of a voxel of ``mask`` (``mask`` included)."""
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask, sampling=spacing) <= mm + _EPS


def _record(c: _Case, kind: str, box: tuple[slice, ...], mask: np.ndarray,
            component: int | None, magnitude: float | None) -> InjectedError:
    coords = [i + s.start for i, s in zip(np.nonzero(mask), box)]
    voxels = int(coords[0].size)
    return InjectedError(
        c.case_id, kind, (int(coords[2].min()), int(coords[2].max())), component, voxels,
        float(voxels * np.prod(c.spacing)), magnitude,
        tuple(int(round(float(a.mean()))) for a in coords))  # type: ignore[arg-type]


def _count(fraction: float, n: int) -> int:
    """Round half up, at least one when asked for; ``1e-9`` absorbs 0.35 * 10 = 3.4999..."""
    if fraction <= 0 or n == 0:
        return 0
    return min(n, max(1, math.floor(fraction * n + 0.5 + 1e-9)))


def _missed(cases: list[_Case], fraction: float, rng: np.random.Generator,
            out: list[InjectedError]) -> None:
    pool = sorted((int(size), c.index, k) for c in cases for k, size in enumerate(c.sizes, 1))
    candidates = pool[: math.ceil(len(pool) / 2)]
    want = _count(fraction, len(pool))
    if want > len(candidates):
        log.warning("missed=%s asks for %d lesions; only the %d of the smaller half are "
                    "plausible misses", fraction, want, len(candidates))
    for pick in rng.choice(len(candidates), size=min(want, len(candidates)), replace=False):
        _, index, comp = candidates[int(pick)]
        c = cases[index]
        box = c.box(comp)
        mask = c.comps[box] == comp
        c.noisy[box][mask] = 0
        c.claimed.add(comp)
        out.append(_record(c, "missed", box, mask, comp, None))


def _erase_slices(c: _Case, spec: LabelErrorSpec, rng: np.random.Generator) -> InjectedError | None:
    spans = {k: (c.boxes[k - 1][2].start, c.boxes[k - 1][2].stop - 1) for k in c.unclaimed()}
    eligible = [k for k, (lo, hi) in spans.items() if hi - lo + 1 >= 3]
    if not eligible:
        return None
    comp = eligible[int(rng.integers(len(eligible)))]
    lo, hi = spans[comp]
    n = int(rng.integers(1, min(3, hi - lo - 1) + 1))
    z0 = int(rng.integers(lo + 1, hi - n + 1))  # first and last slice of the lesion stay
    box = c.box(comp, spec.systematic_dilate_mm)
    lesion = c.comps[box] == comp
    slab = np.zeros_like(lesion)
    slab[:, :, z0 - box[2].start: z0 + n - box[2].start] = True
    c.noisy[box][lesion & slab] = 0
    c.claimed.add(comp)
    c.block(box, slab & _within(lesion, c.spacing, spec.systematic_dilate_mm))
    return _record(c, "erased-slices", box, lesion & slab, comp, None)


def _erode(c: _Case, spec: LabelErrorSpec, rng: np.random.Generator) -> InjectedError | None:
    for comp in rng.permutation(c.unclaimed()).tolist():
        box = c.box(comp, spec.systematic_dilate_mm)
        lesion = c.comps[box] == comp
        # padding with background: a lesion cut by the image edge erodes there too
        depth = ndi.distance_transform_edt(np.pad(lesion, 1), sampling=c.spacing)[1:-1, 1:-1, 1:-1]
        removed = lesion & (depth <= spec.erode_mm + _EPS)
        if not removed.any() or not (lesion & ~removed).any():
            continue
        c.noisy[box][removed] = 0
        c.claimed.add(comp)
        c.block(box, _within(lesion, c.spacing, spec.systematic_dilate_mm))
        return _record(c, "erode", box, removed, comp, spec.erode_mm)
    return None


def _dilate(c: _Case, spec: LabelErrorSpec, rng: np.random.Generator) -> InjectedError | None:
    gap = spec.dilate_mm + 2 * spec.systematic_dilate_mm + float(np.linalg.norm(c.spacing))
    for comp in rng.permutation(c.unclaimed()).tolist():
        box = c.box(comp, gap)
        lesion = c.comps[box] == comp
        others = (c.truth[box] > 0) & ~lesion
        if others.any() and ndi.distance_transform_edt(
                ~others, sampling=c.spacing)[lesion].min() <= gap:
            continue
        grown = _within(lesion, c.spacing, spec.dilate_mm) & (c.noisy[box] == 0) & ~others
        if c.brain is not None:
            grown &= c.brain[box]
        if not grown.any():
            continue
        c.noisy[box][grown] = OEDEMA
        c.claimed.add(comp)
        return _record(c, "dilate", box, grown, comp, spec.dilate_mm)
    return None


def _spurious(c: _Case, spec: LabelErrorSpec, rng: np.random.Generator) -> InjectedError | None:
    radius = np.cbrt(3 * rng.uniform(*SPURIOUS_MM3) / (4 * np.pi))
    axes = np.exp(rng.normal(0.0, 0.2, 3))
    axes = radius * axes / np.cbrt(axes.prod())  # same volume, less round
    clearance = (SPURIOUS_CLEARANCE_MM + spec.dilate_mm + 2 * spec.systematic_dilate_mm
                 + float(np.linalg.norm(c.spacing)) + axes.max())
    lesion = c.truth > 0
    allowed = (ndi.distance_transform_edt(~lesion, sampling=c.spacing) >= clearance
               if lesion.any() else np.ones(lesion.shape, dtype=bool))
    if c.brain is not None:
        allowed &= ndi.distance_transform_edt(c.brain, sampling=c.spacing) > (
            axes.max() + c.spacing.max())
    else:
        reach = np.ceil(axes.max() / c.spacing).astype(int)
        if lesion.any():  # the whole blob outside the label's bounding box
            allowed[tuple(slice(max(s.start - r, 0), s.stop + r) for s, r in zip(
                ndi.find_objects(lesion.astype(np.uint8))[0], reach))] = False
        for axis, margin in enumerate(reach + 2):
            faces = np.moveaxis(allowed, axis, 0)  # a view: clears the two faces of allowed
            faces[:margin] = False
            faces[max(faces.shape[0] - margin, 0):] = False
    where = np.flatnonzero(allowed)
    if where.size == 0:
        return None
    centre = np.unravel_index(where[int(rng.integers(where.size))], allowed.shape)
    reach = np.ceil(axes / c.spacing).astype(int) + 1
    box = tuple(slice(max(p - r, 0), min(p + r + 1, n))
                for p, r, n in zip(centre, reach, allowed.shape))
    grid = np.ogrid[box]
    blob = sum(((g - p) * s / a) ** 2 for g, p, s, a in zip(grid, centre, c.spacing, axes)) <= 1
    blob &= (c.noisy[box] == 0) & (c.truth[box] == 0)
    if c.brain is not None:
        blob &= c.brain[box]
    if not blob.any():
        return None
    c.noisy[box][blob] = OEDEMA
    return _record(c, "spurious", box, blob, None, None)


def _systematic(c: _Case, spec: LabelErrorSpec) -> InjectedError | None:
    drawn = c.noisy > 0
    if not drawn.any():
        return None
    pad = np.ceil(spec.systematic_dilate_mm / c.spacing).astype(int) + 1
    lo, hi = np.argwhere(drawn).min(0) - pad, np.argwhere(drawn).max(0) + pad + 1
    box = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, drawn.shape))
    grown = (_within(drawn[box], c.spacing, spec.systematic_dilate_mm) & ~drawn[box]
             & (c.truth[box] == 0))
    if c.keep_out is not None:
        grown &= ~c.keep_out[box]
    if c.brain is not None:
        grown &= c.brain[box]
    if not grown.any():
        return None
    c.noisy[box][grown] = OEDEMA
    return _record(c, "systematic-dilate", box, grown, None, spec.systematic_dilate_mm)


_PER_CASE: dict[str, Callable[[_Case, LabelErrorSpec, np.random.Generator],
                              InjectedError | None]] = {
    "erased-slices": _erase_slices, "erode": _erode, "dilate": _dilate, "spurious": _spurious}


def _check_inputs(truth: Mapping[str, np.ndarray],
                  spacing: Sequence[float] | Mapping[str, Sequence[float]],
                  brain_masks: Mapping[str, np.ndarray] | None,
                  seed: int) -> list[_Case]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CalfConfigError(f"Label errors: seed={seed!r} is not usable. "
                              "Fix: give a whole number >= 0.")
    extra = sorted(set(brain_masks or {}) - set(truth))
    if extra:
        raise CalfInputError(None, f"brain masks were given for unknown cases {extra}.",
                             "key brain_masks by the case ids of the labels.")
    cases = []
    for index, (case_id, label) in enumerate(truth.items()):
        label = np.asarray(label)
        if label.ndim != 3 or not np.issubdtype(label.dtype, np.integer):
            raise CalfInputError(None, f"case {case_id}: the label is {label.dtype} of shape "
                                 f"{label.shape}, not a 3-D integer label map.",
                                 "pass label maps (x, y, z) of integer labels.")
        raw = spacing[case_id] if isinstance(spacing, Mapping) else spacing
        sp = np.asarray(raw, dtype=float).ravel()
        if sp.size != 3 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise CalfInputError(None, f"case {case_id}: voxel spacing {raw!r} is not three "
                                 "positive sizes in mm.", "pass e.g. (2.0, 2.0, 2.0).")
        brain = None if brain_masks is None else brain_masks.get(case_id)
        if brain is not None:
            brain = np.asarray(brain, dtype=bool)
            if brain.shape != label.shape:
                raise CalfInputError(None, f"case {case_id}: brain mask shape {brain.shape} "
                                     f"differs from the label's {label.shape}.",
                                     "pass the brain mask of the same case and grid.")
        comps, sizes = lesion_components(label)
        cases.append(_Case(str(case_id), index, label, label.copy(), sp, brain, comps, sizes,
                           list(ndi.find_objects(comps))))
    return cases


def inject_label_errors(
    truth: Mapping[str, np.ndarray],
    spacing: Sequence[float] | Mapping[str, Sequence[float]],
    spec: LabelErrorSpec | str,
    *,
    seed: int = 0,
    brain_masks: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], list[InjectedError]]:
    """Copies of the ``truth`` label maps with the errors of ``spec`` injected.

    Parameters
    ----------
    truth : mapping of case id -> ndarray of int, shape (X, Y, Z)
        Clean label maps, axial axis last; never modified.
    spacing : (sx, sy, sz) in mm, or a mapping of case id -> that
    spec : LabelErrorSpec or str
        The errors; a string is parsed with :func:`parse_label_error_spec`.
    seed : int
        Same seed (and inputs), same errors.
    brain_masks : mapping of case id -> bool ndarray (X, Y, Z), optional
        Where grown voxels and spurious blobs may lie; cases without one use the rules
        of the module docstring.

    Returns
    -------
    noisy : dict of case id -> ndarray
        Same keys, order, dtype and shape as ``truth``.
    records : list of InjectedError
        Sorted by case (in ``truth`` order), then :data:`APPLY_ORDER`.

    Raises
    ------
    CalfConfigError
        A bad spec string or seed.
    CalfInputError
        A label that is not a 3-D integer array, a bad spacing, a mismatched brain mask.
    """
    if isinstance(spec, str):
        spec = parse_label_error_spec(spec)
    cases = _check_inputs(truth, spacing, brain_masks, seed)
    for name in ("dilate", "erode", "systematic_dilate"):
        mm = getattr(spec, f"{name}_mm")
        if 0 < mm and any(mm < c.spacing.min() for c in cases):
            log.warning("%s=%gmm is below the voxel spacing: it changes nothing on that grid",
                        name.replace("_", "-"), mm)
    if spec.systematic_dilate_mm > 0:
        for c in cases:
            c.keep_out = np.zeros(c.truth.shape, dtype=bool)
    records: list[InjectedError] = []
    _missed(cases, spec.missed, np.random.default_rng([seed, 0]), records)
    for kind, inject in _PER_CASE.items():
        number = LABEL_ERROR_KINDS.index(kind)
        want = _count(getattr(spec, kind.replace("-", "_")), len(cases))
        done = 0
        # a seeded permutation, taking the first cases that qualify: a uniform draw
        # among the qualifying cases without testing all of them
        for index in np.random.default_rng([seed, number]).permutation(len(cases)):
            if done == want:
                break
            c = cases[int(index)]
            rng = np.random.default_rng([seed, number, zlib.crc32(c.case_id.encode())])
            made = inject(c, spec, rng)
            if made is not None:
                records.append(made)
                done += 1
        if done < want:
            log.warning("%s: only %d of the %d cases asked for qualify", kind, done, want)
    if spec.systematic_dilate_mm > 0:
        made_all = [_systematic(c, spec) for c in cases]
        records.extend(r for r in made_all if r is not None)
    order = {c.case_id: c.index for c in cases}
    records.sort(key=lambda r: (order[r.case_id], APPLY_ORDER.index(r.kind), r.component or 0))
    return {key: c.noisy for key, c in zip(truth, cases)}, records

"""Simulated brain tumours for the phantom: lesion sizes, shapes and BraTS sub-regions.

The phantom's job for CALF is to make the *per-slice tumour-area distribution* of a
dataset steerable (right-skewed, symmetric, left-skewed), while each tumour still looks
like one: an irregular oedema envelope around a core with an enhancing rim and, in
larger lesions, a necrotic centre.

How the skew is steered. A lesion is built slice by slice along z: its in-plane radius
follows the profile ``r(t) = R (1 - |t|^p)^(1/p)`` over ``t in [-1, 1]`` (``p = 2`` is
an ellipsoid, larger ``p`` a rounded cylinder), times a smooth radial perturbation (a
few angular harmonics whose phases drift with z) so the outline is irregular. The
cross-sections of one lesion are already shaped: an ellipsoid's areas are left-skewed
(S = -0.64), a flatter profile more so. The size of the main lesion is then drawn per
case from a preset distribution, and small lesions add many small slices. The presets
and what they gave over seeds 0-6 on datasets of 8-20 cases (scipy, population moments):

- ``right``: main-lesion envelope radius log-normal (median 8 mm, sigma 0.7, clipped to
  3-32 mm), ellipsoidal profile (p = 2), plus 0-3 satellites of 3-7 mm.
  Measured S 1.3 to 2.5 (default rules: ln or log10).
- ``symmetric``: radius normal (mean 20 mm, sd 15 %, 2-98 % quantiles), p = 3.
  Measured S -0.3 to 0.2, K -0.6 to -0.1 (bce-dice).
- ``left``: radius 24 mm * (1 - 0.15 (1 - q)^2) with q uniform, flat-topped (p = 4).
  Measured S -1.5 to -1.2 (fisher).

Sizes are drawn by stratified quantiles: in a dataset of ``n`` cases, case ``i`` takes
its quantile from stratum ``perm[i]`` of ``n`` equal strata (``perm`` a seeded
permutation), so even a small dataset covers its preset's distribution instead of
depending on luck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy import stats as sps

#: BraTS 2017-2021 label values.
NECROSIS, OEDEMA, ENHANCING = 1, 2, 4


@dataclass(frozen=True)
class SizePreset:
    """How lesion sizes are drawn for one ``skew`` preset (plain data, shown in docs)."""

    name: str
    profile_p: float          # exponent of the z profile of the cross-section radius
    satellites: tuple[int, int]  # min, max number of small extra lesions per case
    description: str

    def main_radius_mm(self, q: float) -> float:
        """Envelope radius of the main lesion for quantile ``q`` in (0, 1)."""
        if self.name == "right":
            return float(np.clip(8.0 * np.exp(0.7 * sps.norm.ppf(q)), 3.0, 32.0))
        if self.name == "symmetric":
            return float(20.0 * (1.0 + 0.15 * sps.norm.ppf(0.02 + 0.96 * q)))
        return float(24.0 * (1.0 - 0.15 * (1.0 - q) ** 2))  # "left"


SIZE_PRESETS: dict[str, SizePreset] = {
    "right": SizePreset(
        "right", 2.0, (0, 3),
        "mostly small lesions, a few large ones, small satellites: many small slice areas",
    ),
    "symmetric": SizePreset(
        "symmetric", 3.0, (0, 0),
        "one medium lesion per case with moderate size spread: areas close to normal",
    ),
    "left": SizePreset(
        "left", 4.0, (0, 0),
        "one large flat-topped lesion per case, sizes bunched near the maximum",
    ),
}


@dataclass(frozen=True)
class Lesion:
    """One lesion's geometry in voxel units (isotropic voxels assumed by the caller)."""

    centre: tuple[float, float, float]
    radius: float        # in-plane radius of the envelope at its widest (voxels)
    half_height: float   # half extent along z (voxels)
    profile_p: float
    amplitudes: tuple[float, ...]  # angular harmonics k = 2, 3, ... (relative radius)
    phases: tuple[float, ...]
    twist: float         # phase drift per unit t, so the outline changes along z
    drift: tuple[float, float]  # in-plane centre shift (voxels) from t = -1 to t = +1
    core_fraction: float  # core size relative to the envelope (0 = oedema only)
    rim_voxels: int       # enhancing rim thickness
    roughness: float      # amplitude of the small-scale boundary noise (relative radius)
    noise_seed: int       # seed of that noise, so rasterising is deterministic


def _draw_shape(rng: np.random.Generator, radius: float, half_height: float, p: float,
                centre: tuple[float, float, float], core_fraction: float,
                rim_voxels: int) -> Lesion:
    n_harm = 6
    # Low orders dominate (overall lobulation), higher orders add smaller bumps.
    decay = np.arange(1, n_harm + 1, dtype=float) ** -0.7
    return Lesion(
        centre=centre,
        radius=radius,
        half_height=half_height,
        profile_p=p,
        amplitudes=tuple(float(a) for a in rng.uniform(0.0, 0.14, n_harm) * decay),
        phases=tuple(float(p) for p in rng.uniform(0.0, 2 * np.pi, n_harm)),
        twist=float(rng.uniform(-1.5, 1.5)),
        drift=(float(rng.uniform(-0.2, 0.2) * radius), float(rng.uniform(-0.2, 0.2) * radius)),
        core_fraction=core_fraction,
        rim_voxels=rim_voxels,
        roughness=float(rng.uniform(0.06, 0.14)),
        noise_seed=int(rng.integers(2**31)),
    )


def _pick_centre(rng: np.random.Generator, depth: np.ndarray, wm: np.ndarray,
                 needed: float) -> tuple[float, float, float]:
    """A voxel deep enough in the brain for a lesion of extent ``needed`` (voxels).

    Gliomas arise in white matter, so white-matter voxels are preferred. When no voxel
    is deep enough (a very large lesion), the deepest fifth of the brain is used and
    the brain mask clips the lesion later.
    """
    ok = (depth >= needed) & (wm > 0.5)
    if not ok.any():
        ok = depth >= min(needed, 0.8 * float(depth.max()))
    idx = np.flatnonzero(ok)
    flat = idx[rng.integers(idx.size)]
    ijk = np.unravel_index(flat, depth.shape)
    jitter = rng.uniform(-0.5, 0.5, 3)
    return tuple(float(c + j) for c, j in zip(ijk, jitter))  # type: ignore[return-value]


def draw_lesions(rng: np.random.Generator, preset: SizePreset, quantile: float,
                 depth: np.ndarray, wm: np.ndarray, voxel_mm: float) -> list[Lesion]:
    """Main lesion (size from ``quantile``) plus the preset's satellites.

    Parameters
    ----------
    depth : ndarray, shape (X, Y, Z)
        Distance (voxels) from each brain voxel to the outside of the brain.
    wm : ndarray, shape (X, Y, Z)
        White-matter probability in [0, 1].
    """
    radius = preset.main_radius_mm(quantile) / voxel_mm
    half_height = radius * rng.uniform(0.85, 1.15)
    centre = _pick_centre(rng, depth, wm, 0.9 * max(radius * 1.2, half_height))
    # Large lesions get a necrotic centre inside an enhancing rim (GBM-like); small
    # ones a solid enhancing or non-enhancing core.
    core = rng.uniform(0.45, 0.7) if radius * voxel_mm >= 6 else rng.uniform(0.0, 0.6)
    rim = int(rng.integers(1, 3))
    lesions = [_draw_shape(rng, radius, half_height, preset.profile_p, centre, core, rim)]
    lo, hi = preset.satellites
    for _ in range(int(rng.integers(lo, hi + 1))):
        r_sat = rng.uniform(3.0, 7.0) / voxel_mm
        # within a few radii of the main lesion: multifocal disease
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * (radius + r_sat) * rng.uniform(1.3, 2.5)
        near = np.array(centre) + offset
        near = np.clip(near, 0, np.array(depth.shape) - 1)
        if depth[tuple(np.round(near).astype(int))] < r_sat:
            near_c = _pick_centre(rng, depth, wm, r_sat * 1.2)
        else:
            near_c = tuple(float(v) for v in near)
        lesions.append(_draw_shape(rng, r_sat, r_sat * rng.uniform(0.8, 1.2), 2.0,
                                   near_c, rng.uniform(0.0, 0.6), 1))  # type: ignore[arg-type]
    return lesions


def _rasterize(lesion: Lesion, shape: tuple[int, int, int], scale: float,
               ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Boolean mask of ``lesion`` scaled by ``scale``, in its bounding box."""
    radius = lesion.radius * scale
    half_height = lesion.half_height * scale
    if radius < 0.5 or half_height < 0.5:
        return None
    cx, cy, cz = lesion.centre
    reach = radius * (1 + sum(lesion.amplitudes) + 3 * lesion.roughness) + max(
        abs(d) for d in lesion.drift) + 1
    lo = np.floor([cx - reach, cy - reach, cz - half_height - 1]).astype(int)
    hi = np.ceil([cx + reach, cy + reach, cz + half_height + 1]).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    x = np.arange(lo[0], hi[0], dtype=np.float32)[:, None, None]
    y = np.arange(lo[1], hi[1], dtype=np.float32)[None, :, None]
    z = np.arange(lo[2], hi[2], dtype=np.float32)[None, None, :]
    t = (z - cz) / half_height
    inside_z = np.abs(t) < 1
    tz = np.clip(np.abs(t), 0, 1)
    r_z = radius * (1 - tz ** lesion.profile_p) ** (1 / lesion.profile_p)
    dx = x - (cx + lesion.drift[0] * t / 2)
    dy = y - (cy + lesion.drift[1] * t / 2)
    theta = np.arctan2(dy, dx)
    rho = np.hypot(dx, dy)
    wobble = np.ones_like(theta)
    for k, (a, ph) in enumerate(zip(lesion.amplitudes, lesion.phases), start=2):
        wobble = wobble + a * np.cos(k * theta + ph + lesion.twist * t)
    # Small-scale bumps from smooth 3D noise: outlines stop looking like polygons.
    noise = np.random.default_rng([lesion.noise_seed, int(scale * 1000)]).standard_normal(
        (len(x.ravel()), len(y.ravel()), len(z.ravel())), dtype=np.float32)
    noise = ndi.gaussian_filter(noise, 1.5)
    noise /= max(float(noise.std()), 1e-6)
    wobble = wobble * (1 + lesion.roughness * noise)
    mask = (rho < r_z * wobble) & inside_z
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])), mask


def render_labels(lesions: list[Lesion], brain: np.ndarray) -> np.ndarray:
    """BraTS-2021 labels (0, 1, 2, 4) of ``lesions``, confined to ``brain``.

    The envelope is oedema (2); the core (a scaled copy of the envelope) is enhancing
    (4) in a rim of ``rim_voxels`` and necrotic (1) inside it.
    """
    labels = np.zeros(brain.shape, dtype=np.uint8)
    core_all = np.zeros(brain.shape, dtype=bool)
    for lesion in lesions:
        env = _rasterize(lesion, brain.shape, 1.0)
        if env is None:
            continue
        box, mask = env
        labels[box][mask] = OEDEMA
        core = _rasterize(lesion, brain.shape, lesion.core_fraction)
        if core is not None:
            cbox, cmask = core
            core_all[cbox] |= cmask
    labels[~brain] = 0
    core_all &= brain & (labels > 0)
    if core_all.any():
        # Distance to the core's outside: the outermost ``rim`` voxels enhance.
        idx = np.argwhere(core_all)
        lo = np.maximum(idx.min(0) - 1, 0)
        hi = np.minimum(idx.max(0) + 2, brain.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        depth = ndi.distance_transform_edt(core_all[box])
        rim = max(lesion.rim_voxels for lesion in lesions)
        sub = labels[box]
        sub[(depth > 0) & (depth <= rim)] = ENHANCING
        sub[depth > rim] = NECROSIS
    return labels


def nonzero_slice_areas(label: np.ndarray) -> np.ndarray:
    """Whole-tumour (label > 0) areas of the non-empty axial slices, in voxels."""
    areas = np.count_nonzero(label > 0, axis=(0, 1))
    return areas[areas > 0].astype(float)

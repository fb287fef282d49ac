"""MR contrasts for the phantom: tissue and tumour signal per modality, bias, noise.

Signals are relative to normal white matter on T1 (= 1.0) and describe what a reader
sees, not MR physics: T1 WM > GM > CSF; T2 CSF > GM > WM; FLAIR CSF dark and GM a
little brighter than WM; T1ce like T1 plus bright vessels and an enhancing tumour rim.
Tumour sub-regions follow the usual glioma appearance: the enhancing rim (4) is bright
on T1ce, oedema (2) bright on T2 and FLAIR, necrosis (1) dark on T1/T1ce and bright on
T2.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .tumours import ENHANCING, NECROSIS, OEDEMA

MODALITIES = ("t1", "t1ce", "t2", "flair")

#: Relative signal of pure tissue classes (rows) per modality (columns).
TISSUE_SIGNAL: dict[str, dict[str, float]] = {
    #          wm     gm     csf
    "t1":    {"wm": 1.00, "gm": 0.72, "csf": 0.22},
    "t1ce":  {"wm": 1.00, "gm": 0.74, "csf": 0.24},
    "t2":    {"wm": 0.42, "gm": 0.60, "csf": 1.00},
    "flair": {"wm": 0.55, "gm": 0.68, "csf": 0.10},
}

#: Relative signal of tumour sub-regions per modality.
TUMOUR_SIGNAL: dict[str, dict[int, float]] = {
    "t1":    {NECROSIS: 0.30, OEDEMA: 0.62, ENHANCING: 0.70},
    "t1ce":  {NECROSIS: 0.30, OEDEMA: 0.64, ENHANCING: 1.90},
    "t2":    {NECROSIS: 0.95, OEDEMA: 0.85, ENHANCING: 0.62},
    "flair": {NECROSIS: 0.45, OEDEMA: 1.00, ENHANCING: 0.80},
}

#: Typical scanner units per modality before the per-case gain (integers are stored).
BASE_GAIN = {"t1": 600.0, "t1ce": 700.0, "t2": 900.0, "flair": 500.0}

#: How much of the underlying tissue shows through oedema (it infiltrates, it does not replace).
OEDEMA_TISSUE_SHARE = 0.3


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation (float32)."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def bias_field(rng: np.random.Generator, coords: np.ndarray, strength: float) -> np.ndarray:
    """A smooth multiplicative field exp(quadratic polynomial), about +-``strength``.

    ``coords`` (N, 3) are voxel positions scaled to [-1, 1]; the field is evaluated there.
    """
    x, y, z = coords[:, 0], coords[:, 1], coords[:, 2]
    terms = (x, y, z, x * y, y * z, x * z, x * x - 1 / 3, y * y - 1 / 3, z * z - 1 / 3)
    coef = rng.normal(0.0, strength / 2, len(terms)).astype(np.float32)
    log_field = sum(c * t for c, t in zip(coef, terms))
    return np.exp(log_field)


def vessel_field(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Thin curvilinear structures in [0, 1]: where two smooth noise fields both cross zero.

    The zero sets of two independent smooth fields are surfaces; where they meet is a
    set of random curves, which after a soft threshold look like small vessels.
    """
    a = smooth_noise(rng, shape, 2.5)
    b = smooth_noise(rng, shape, 2.5)
    return np.exp(-(a * a + b * b) / (2 * 0.12 ** 2)).astype(np.float32)


def synthesise(
    rng: np.random.Generator,
    t1_template: np.ndarray,
    gm: np.ndarray,
    wm: np.ndarray,
    brain: np.ndarray,
    labels: np.ndarray,
) -> dict[str, np.ndarray]:
    """Four modalities for one case, as float32 arrays of integer scanner values.

    Parameters
    ----------
    t1_template : ndarray, shape (X, Y, Z)
        Real T1 anatomy scaled so normal white matter is about 1.0.
    gm, wm : ndarray, shape (X, Y, Z)
        Tissue probabilities in [0, 1].
    brain : ndarray of bool, shape (X, Y, Z)
        Voxels inside the (skull-stripped) brain; everything else is stored as 0.
    labels : ndarray of uint8, shape (X, Y, Z)
        BraTS-2021 tumour labels.
    """
    shape = brain.shape
    inside = np.flatnonzero(brain)  # all work happens on brain voxels only
    coords = np.stack(np.unravel_index(inside, shape), axis=1).astype(np.float32)
    coords = coords / np.array([(n - 1) / 2 for n in shape], dtype=np.float32) - 1.0
    wm_b, gm_b, t1_b = wm.ravel()[inside], gm.ravel()[inside], t1_template.ravel()[inside]
    csf_b = np.clip(1.0 - gm_b - wm_b, 0.0, 1.0)
    vessels = vessel_field(rng, shape).ravel()[inside] * np.clip(csf_b + 0.5 * gm_b, 0, 1)
    weights, texture = _tumour_weights(rng, labels, inside)
    total = np.clip(sum(weights.values()), 0.0, 1.0)
    norm = np.maximum(sum(weights.values()), 1e-6)

    images: dict[str, np.ndarray] = {}
    for name in MODALITIES:
        tissue = TISSUE_SIGNAL[name]
        mix = tissue["wm"] * wm_b + tissue["gm"] * gm_b + tissue["csf"] * csf_b
        if name in ("t1", "t1ce"):
            # The template's own T1 carries real anatomical detail; keep most of it.
            mix = 0.7 * t1_b * tissue["wm"] + 0.3 * mix
        if name == "t1ce":
            mix = mix + 0.9 * vessels
        tum = TUMOUR_SIGNAL[name]
        tumour = (
            weights[NECROSIS] * tum[NECROSIS]
            + weights[OEDEMA] * ((1 - OEDEMA_TISSUE_SHARE) * tum[OEDEMA] + OEDEMA_TISSUE_SHARE * mix)
            + weights[ENHANCING] * tum[ENHANCING]
        ) / norm
        tumour = tumour * (1.0 + 0.06 * texture)
        signal = (1.0 - total) * mix + total * tumour
        gain = BASE_GAIN[name] * rng.uniform(0.8, 1.25)
        signal = signal * bias_field(rng, coords, 0.15) * gain
        # Rician noise: magnitude of a complex signal with Gaussian noise on both parts.
        sigma = np.float32(0.018 * gain)
        real = signal + sigma * rng.standard_normal(inside.size, dtype=np.float32)
        imag = sigma * rng.standard_normal(inside.size, dtype=np.float32)
        magnitude = np.sqrt(real * real + imag * imag)
        # Skull-stripped like BraTS: exactly 0 outside the brain, >= 1 inside, so a
        # "non-zero voxels" brain mask downstream is the brain.
        out = np.zeros(brain.size, dtype=np.float32)
        out[inside] = np.maximum(np.rint(magnitude), 1.0)
        images[name] = out.reshape(shape)
    return images


def _tumour_weights(rng: np.random.Generator, labels: np.ndarray, inside: np.ndarray,
                    ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Soft per-region weights (partial volume at the tumour border) and a texture field.

    Computed in the tumour's bounding box only, returned at the ``inside`` voxels.
    """
    zeros = np.zeros(inside.size, dtype=np.float32)
    texture_noise = rng.standard_normal(labels.shape, dtype=np.float32)
    if not labels.any():
        return {v: zeros for v in (NECROSIS, OEDEMA, ENHANCING)}, zeros
    idx = np.argwhere(labels > 0)
    lo = np.maximum(idx.min(0) - 3, 0)
    hi = np.minimum(idx.max(0) + 4, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    full = np.zeros(labels.shape, dtype=np.float32)

    def spread(field_in_box: np.ndarray) -> np.ndarray:
        full[...] = 0.0
        full[box] = field_in_box
        return full.ravel()[inside].copy()

    weights = {
        value: spread(ndi.gaussian_filter((labels[box] == value).astype(np.float32), 0.5))
        for value in (NECROSIS, OEDEMA, ENHANCING)
    }
    texture = ndi.gaussian_filter(texture_noise[box], 1.2)
    texture /= max(float(texture.std()), 1e-6)
    return weights, spread(texture)

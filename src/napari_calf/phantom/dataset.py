"""A synthetic brain-tumour dataset on real anatomy: the napari sample and a test bed for CALF.

Each case starts from the MNI ICBM152 2009a template (T1 and grey/white-matter
probabilities at 2 mm, shipped as package data), mildly warped per case, with four MR
modalities (t1, t1ce, t2, flair) synthesised from its tissue classes, a simulated
glioma (BraTS 2021 labels: 1 necrotic core, 2 oedema, 4 enhancing rim), a bias field,
a per-case gain and Rician noise. The lesion-size distribution across the cases of a
dataset is steerable with ``skew`` (``"right"``, ``"symmetric"``, ``"left"``), so that
CALF's rule table (which picks the loss from the skewness S and kurtosis K of the
per-slice tumour areas) has something to choose between; see
:mod:`napari_calf.phantom.tumours` for how, and the measured S/K per preset.

Everything is deterministic for a seed (same seed: byte-identical arrays) and takes
about a second per case. ``full_size=True`` builds the cases on BraTS geometry instead
(240 x 240 x 155 voxels of 1 mm, the template resampled), about ten times the voxels
and the time, for measuring memory and speed at the size of real data. The data is synthetic: it is for trying the tools, not for
drawing clinical conclusions.

No torch here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .anatomy import template, template_notice, warp, warp_params
from ..io.files import write_text_atomic
from ..errors import CalfConfigError, CalfFileExistsError, CalfInputError
from ..events import Progress

if TYPE_CHECKING:  # pragma: no cover
    from ..io.discovery import Case
    from .label_error_spec import LabelErrorSpec

log = logging.getLogger(__name__)

SKEW_PRESETS: tuple[str, ...] = ("right", "symmetric", "left")
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
CASE_ID_FORMAT = "CALF-Phantom-{:05d}"
#: The case :func:`sample_case` returns: a large lesion with necrosis, rim and oedema.
SAMPLE_SEED, SAMPLE_SKEW = 4, "left"


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """One synthetic case, in canonical RAS (axes x, y, z; axial = last axis).

    Attributes
    ----------
    case_id : str
        E.g. ``"CALF-Phantom-00000"``.
    images : dict
        ``t1``, ``t1ce``, ``t2``, ``flair`` -> float32 array (X, Y, Z) of integer-valued
        scanner units, 0 outside the brain (skull-stripped, like BraTS).
    label : ndarray of uint8, shape (X, Y, Z)
        BraTS-2021 labels: 0 background, 1 necrotic core, 2 oedema, 4 enhancing tumour.
    affine : ndarray, shape (4, 4)
        Voxel-to-world (mm) affine, RAS.
    spacing : tuple of float
        Voxel size in mm: (2, 2, 2), or (1, 1, 1) for full-size cases.
    brain : ndarray of bool, shape (X, Y, Z)
        The brain mask the images are non-zero on.
    tissue : dict
        ``wm``, ``gm``, ``csf`` -> float32 tissue fraction (X, Y, Z) in [0, 1] of this
        case's anatomy (the ground truth behind the contrasts; tumour not included).
    info : dict
        How the case was drawn (seed, preset, size quantile, lesion radii in mm).
    """

    case_id: str
    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    brain: np.ndarray
    tissue: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- cases


def _check_skew(skew: str) -> str:
    if skew not in SKEW_PRESETS:
        raise CalfConfigError(
            f"skew={skew!r} is not a phantom preset. Fix: use one of {', '.join(SKEW_PRESETS)}."
        )
    return skew


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CalfConfigError(
            f"{name}={value!r} is not usable. Fix: give a whole number >= {minimum}."
        )
    return int(value)


def _size_quantile(seed: int, case_index: int, n_cases: int, rng: np.random.Generator) -> float:
    """Stratified quantile: case ``i`` of ``n`` draws from stratum ``perm[i]`` of ``n``."""
    perm = np.random.default_rng([seed, n_cases, 0x51CE]).permutation(n_cases)
    return float((perm[case_index] + rng.uniform(0.02, 0.98)) / n_cases)


@dataclass(frozen=True, eq=False)
class _Draw:
    """The anatomy and tumour of one case, before any image is synthesised."""

    rng: np.random.Generator
    warp: tuple[np.ndarray, np.ndarray]
    brain: np.ndarray
    wm: np.ndarray
    label: np.ndarray
    info: dict[str, Any]


def _draw(seed: int, skew: str, case_index: int, n_cases: int, full_size: bool = False) -> _Draw:
    from scipy import ndimage as ndi

    from . import tumours as _tumour_shapes

    _check_skew(skew)
    seed = _check_int("seed", seed, 0)
    n_cases = _check_int("n_cases", n_cases, 1)
    case_index = _check_int("case_index", case_index, 0)
    if case_index >= n_cases:
        raise CalfConfigError(
            f"case_index={case_index} is outside a dataset of n_cases={n_cases}. "
            f"Fix: use 0 <= case_index < n_cases."
        )
    rng = np.random.default_rng([seed, case_index, 0xCA1F])
    channels, affine = template(bool(full_size))
    voxel_mm = float(np.sqrt((affine[:3, 0] ** 2).sum()))
    params = warp_params(rng, channels["brain"].shape, voxel_mm)
    brain = warp(channels["brain"], params) > 0.5
    wm = np.clip(warp(channels["wm"], params), 0, 1) * brain
    preset = _tumour_shapes.SIZE_PRESETS[skew]
    quantile = _size_quantile(seed, case_index, n_cases, rng)
    # Depth in the brain only steers where a lesion may sit: a 4 mm grid is plenty and
    # eight times cheaper than the full-resolution distance transform.
    coarse = ndi.distance_transform_edt(brain[::2, ::2, ::2]) * 2.0
    depth = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: brain.shape[0], : brain.shape[1], : brain.shape[2]]
    depth = depth * brain
    lesions = _tumour_shapes.draw_lesions(rng, preset, quantile, depth, wm, voxel_mm)
    label = _tumour_shapes.render_labels(lesions, brain)
    info = {
        "seed": seed,
        "skew": skew,
        "case_index": case_index,
        "n_cases": n_cases,
        "size_quantile": round(quantile, 4),
        "lesion_radii_mm": [round(les.radius * voxel_mm, 2) for les in lesions],
    }
    if full_size:
        info["full_size"] = True
    return _Draw(rng, params, brain, wm, label, info)


def make_labels(seed: int, *, skew: str = "right", case_index: int = 0, n_cases: int = 1,
                full_size: bool = False) -> np.ndarray:
    """The label map of :func:`make_case` with the same arguments, without the images.

    Several times faster than :func:`make_case`; for size statistics over many cases.
    """
    return _draw(seed, skew, case_index, n_cases, full_size).label


def make_case(seed: int, *, skew: str = "right", case_index: int = 0, n_cases: int = 1,
              full_size: bool = False) -> PhantomCase:
    """Synthesise one case.

    Parameters
    ----------
    seed : int
        The dataset's seed (>= 0). Same arguments -> byte-identical arrays.
    skew : {"right", "symmetric", "left"}
        Lesion-size preset of the dataset this case belongs to.
    case_index, n_cases : int
        Position of the case in its dataset: sizes are spread over the preset's
        distribution by stratified quantiles across the ``n_cases`` cases.
    full_size : bool
        BraTS geometry (240 x 240 x 155, 1 mm) instead of the 2 mm template grid.
        Lesion sizes are drawn in mm, so the size statistics match the 2 mm cases'.

    Returns
    -------
    PhantomCase

    Raises
    ------
    CalfConfigError
        Unknown ``skew``, negative ``seed``, or ``case_index`` not in ``[0, n_cases)``.
    """
    from . import mri as _phantom_mri

    draw = _draw(seed, skew, case_index, n_cases, full_size)
    channels, affine = template(bool(full_size))
    brain = draw.brain
    gm = np.clip(warp(channels["gm"], draw.warp), 0, 1) * brain
    t1 = np.clip(warp(channels["t1"], draw.warp), 0, None) * brain
    images = _phantom_mri.synthesise(draw.rng, t1, gm, draw.wm, brain, draw.label)
    spacing = tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return PhantomCase(
        case_id=CASE_ID_FORMAT.format(draw.info["case_index"]),
        images=images,
        label=draw.label,
        affine=np.array(affine),
        spacing=spacing,  # type: ignore[arg-type]
        brain=brain,
        tissue={"wm": draw.wm, "gm": gm,
                "csf": (np.clip(1.0 - gm - draw.wm, 0.0, 1.0) * brain).astype(np.float32)},
        info=draw.info,
    )


def sample_case() -> PhantomCase:
    """The case napari's *File > Open Sample* shows: one large glioma-like lesion."""
    return make_case(SAMPLE_SEED, skew=SAMPLE_SKEW)


def slice_area_summary(areas: np.ndarray) -> dict[str, Any]:
    """N, mean, S and K of non-zero per-slice areas (scipy, population moments).

    S and K are None when undefined (N < 3 or all areas equal), as in CALF_METHOD §2.
    """
    from scipy import stats as sps

    areas = np.asarray(areas, dtype=float)
    out: dict[str, Any] = {"n_slices": int(areas.size), "mean_px": None,
                           "skewness": None, "kurtosis": None}
    if areas.size:
        out["mean_px"] = round(float(areas.mean()), 2)
    if areas.size >= 3 and float(areas.std()) > 0:
        out["skewness"] = round(float(sps.skew(areas, bias=True)), 4)
        out["kurtosis"] = round(float(sps.kurtosis(areas, fisher=True, bias=True)), 4)
    return out


# --------------------------------------------------------------------------- datasets


def write_dataset(
    out_dir: str | Path,
    n_cases: int,
    *,
    seed: int = 0,
    skew: str = "right",
    overwrite: bool = False,
    label_errors: LabelErrorSpec | str | None = None,
    full_size: bool = False,
) -> Generator[Progress, None, list[Case]]:
    """Write a BraTS-2021-style phantom dataset, one case at a time.

    Layout: ``<out_dir>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (images int16,
    labels uint8), plus ``dataset.json`` (what was generated, the per-slice area
    statistics, the template notice) and ``README.md`` saying the data is synthetic.
    ``full_size=True`` writes BraTS-sized cases (240 x 240 x 155 at 1 mm, about 10 s
    and 15 MB each) instead of the 2 mm ones.

    With ``label_errors`` (a spec such as ``"missed=0.15,dilate=0.1:2mm"``, see
    :mod:`napari_calf.phantom.label_errors`) the label files carry those annotation
    errors (injected with ``seed``, each case's brain mask bounding where voxels are
    added), the clean labels go to ``<out_dir>/truth/`` in the same layout and
    ``<out_dir>/label_errors.json`` lists every injected error (see
    :mod:`napari_calf.phantom.noisy`). The area statistics describe the label files.

    Arguments are checked when this is called; the work happens as the returned
    generator is driven (``events.drain`` or the CLI's tqdm driver).

    Yields
    ------
    Progress
        ``stage="case"``, once before the first case and after every case written.

    Returns
    -------
    list of Case
        The cases written, as :func:`napari_calf.io.discover_cases` would find them.

    Raises
    ------
    CalfFileExistsError
        ``out_dir`` exists and is not empty, and ``overwrite`` is False.
    CalfInputError
        ``out_dir`` is a file.
    CalfConfigError
        Bad ``n_cases``, ``seed``, ``skew`` or ``label_errors`` spec.
    """
    from .noisy import check_spec

    out_dir = Path(out_dir)
    n_cases = _check_int("n_cases", n_cases, 1)
    seed = _check_int("seed", seed, 0)
    _check_skew(skew)
    spec = None if label_errors is None else check_spec(label_errors)
    if out_dir.exists() and not out_dir.is_dir():
        raise CalfInputError(
            out_dir, "is a file, not a folder.", "give a new or empty folder for the dataset."
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        # A non-empty folder may be someone's data: refuse before writing anything.
        raise CalfFileExistsError(out_dir)
    return _write_dataset(out_dir, n_cases, seed, skew, overwrite, spec, bool(full_size))


def _write_dataset(out_dir: Path, n_cases: int, seed: int, skew: str, overwrite: bool,
                   spec: LabelErrorSpec | None,
                   full_size: bool = False) -> Generator[Progress, None, list[Case]]:
    from . import tumours as _tumour_shapes
    from ..io.discovery import Case
    from ..io.volumes import save_volume

    out_dir.mkdir(parents=True, exist_ok=True)
    yield Progress("case", 0, n_cases, "starting")
    cases: list[Case] = []
    areas: list[np.ndarray] = []
    per_case: list[dict[str, Any]] = []
    clean: dict[str, np.ndarray] = {}
    brains: dict[str, np.ndarray] = {}
    for index in range(n_cases):
        case = make_case(seed, skew=skew, case_index=index, n_cases=n_cases, full_size=full_size)
        folder = out_dir / case.case_id
        images = {}
        for name in MODALITIES:
            images[name] = save_volume(case.images[name], folder / f"{case.case_id}_{name}.nii.gz",
                                       case.affine, overwrite=overwrite, dtype=np.int16)
        seg = folder / f"{case.case_id}_seg.nii.gz"
        if spec is None:
            seg = save_volume(case.label, seg, case.affine, overwrite=overwrite, dtype=np.uint8)
            areas.append(_tumour_shapes.nonzero_slice_areas(case.label))
        else:  # labels are written once every case is drawn (errors are drawn dataset-wide)
            clean[case.case_id], brains[case.case_id] = case.label, case.brain
            grid = (case.spacing, case.affine)
        cases.append(Case(case.case_id, images, seg, "brats2021", "brats2021"))
        per_case.append({"case_id": case.case_id, **case.info,
                         "tumour_voxels": int(np.count_nonzero(case.label))})
        case_id = case.case_id
        del case  # one case in memory at a time (a full-size case is ~0.5 GB)
        yield Progress("case", index + 1, n_cases, case_id)
    errors = None
    if spec is not None:
        from .noisy import write_noisy_labels

        noisy, records = write_noisy_labels(out_dir, clean, brains, grid[0], grid[1], spec,
                                            seed=seed, overwrite=overwrite)
        errors = {"spec": spec.describe(), "n_errors": len(records),
                  "record": "label_errors.json", "truth": "truth/"}
        areas = [_tumour_shapes.nonzero_slice_areas(label) for label in noisy.values()]
    summary = slice_area_summary(np.concatenate(areas))
    _write_metadata(out_dir, n_cases, seed, skew, summary, per_case, overwrite, errors,
                    full_size)
    log.debug("wrote %d phantom cases to %s (per-slice area S=%s, K=%s)", n_cases, out_dir,
             summary["skewness"], summary["kurtosis"])
    return cases


def _write_metadata(out_dir: Path, n_cases: int, seed: int, skew: str, summary: dict,
                    per_case: list[dict], overwrite: bool, errors: dict | None = None,
                    full_size: bool = False) -> None:
    from .. import __version__

    notice = template_notice()
    grid, grid_affine = template(bool(full_size))
    meta = {
        "name": "CALF brain-tumour phantom",
        "synthetic": True,
        "description": "Synthetic MRI (t1, t1ce, t2, flair) on MNI152 anatomy with simulated "
                       "gliomas. For trying napari-calf; not patient data, not for clinical use.",
        "generator": f"napari-calf {__version__} (napari_calf.phantom.write_dataset)",
        "n_cases": n_cases,
        "seed": seed,
        "skew": skew,
        "layout": "brats2021",
        "grid": {"shape": list(grid["brain"].shape),
                 "voxel_mm": round(float(np.sqrt((grid_affine[:3, 0] ** 2).sum())), 4),
                 "full_size": bool(full_size)},
        "modalities": list(MODALITIES),
        "labels": {"0": "background", "1": "necrotic tumour core", "2": "peritumoral oedema",
                   "4": "enhancing tumour"},
        "per_slice_area_whole_tumour": {"axis": "axial (z)", "unit": "px", **summary},
        "cases": per_case,
        "label_errors": errors,
        "anatomy_template": "MNI ICBM152 non-linear symmetric 2009a (Fonov et al., NeuroImage 2009)",
        "template_notice": notice,
    }
    write_text_atomic(out_dir / "dataset.json", json.dumps(meta, indent=2) + "\n", overwrite=overwrite)
    readme = (
        "# CALF brain-tumour phantom (synthetic)\n\n"
        f"{n_cases} synthetic cases written by napari-calf {__version__} "
        f"(seed {seed}, lesion-size preset '{skew}'). Every image is simulated: the anatomy "
        "comes from the MNI ICBM152 2009a template, the tumours, contrasts and noise are "
        "generated. Use it to try napari-calf, never for clinical conclusions.\n\n"
        "Layout: BraTS 2021 (`<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`; labels 1 necrotic "
        "core, 2 oedema, 4 enhancing tumour). Details and per-slice tumour-area statistics: "
        "`dataset.json`.\n\n## Template notice\n\n" + notice
    )
    write_text_atomic(out_dir / "README.md", readme, overwrite=overwrite)

"""napari reader: NIfTI files and case folders (BraTS 2017-2021/2023+, nnU-Net raw, generic).

A thin adapter over :mod:`napari_calf.io.volumes`. What it does for the user:

- A case folder opens as one image layer per modality (only the FLAIR-like one visible,
  so the stack does not hide itself) and a labels layer with the case's annotation. All
  of them share ``scale``/``translate``, so they overlay exactly.
- A dataset folder with several cases opens its **first case** (sorted by case id) and
  says in a notification how many cases there are: loading a whole dataset would fill
  memory, and the CALF widgets work on the dataset folder themselves.
- A single ``.nii``/``.nii.gz`` opens as an image, or as labels when it is an integer
  map whose name says so (``seg``, ``label`` or ``mask``); a 4D file opens with its
  4th axis as channels.

Display convention (see :func:`canonical_to_layer`): napari shows the last two axes,
so canonical RAS (x, y, z) becomes (z, y, x), with anterior up and the patient's right
on the left of the screen (radiological convention); the slider walks from inferior
to superior. World coordinates are millimetres along (S, P, L). The canonical and the
file's own affine, the source path and orientation are kept in
``layer.metadata["napari_calf"]`` so the writer (and the widgets) can go back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalfInputError

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]

#: Key of this plugin's entry in ``layer.metadata``.
METADATA_KEY = "napari_calf"
#: Names the transform in :func:`canonical_to_layer`, stored with each layer so a later
#: change of convention cannot silently misplace saved labels.
DISPLAY_CONVENTION = "zyx, y and x reversed (axial, anterior up, radiological)"

#: Shown first when a case has it: tumour extent is clearest on FLAIR.
_PREFERRED_VISIBLE = ("flair", "t2f", "t2", "t2w")

#: BraTS colours used by most viewers: necrosis red, oedema green, enhancing yellow.
_BRATS_COLOURS = {
    "brats2021": {1: "red", 2: "green", 4: "yellow"},
    "brats2023": {1: "red", 2: "green", 3: "yellow"},
}


# --------------------------------------------------------------------------- display transform


def canonical_to_layer(array: np.ndarray) -> np.ndarray:
    """Canonical RAS array -> the array napari shows (a view, no copy).

    Shapes: (X, Y, Z) -> (Z, Y, X); (X, Y, Z, C) -> (C, Z, Y, X) for ``channel_axis=0``.
    Rows run anterior (top) to posterior; columns run from the patient's right to left.
    """
    flipped = np.asanyarray(array)[::-1, ::-1]
    if flipped.ndim == 3:
        return flipped.transpose(2, 1, 0)
    if flipped.ndim == 4:
        return flipped.transpose(3, 2, 1, 0)
    raise CalfInputError(None, f"a {flipped.ndim}D array cannot be shown as a volume.",
                         "pass a 3D array (or 4D with channels last).")


def layer_to_canonical(array: np.ndarray) -> np.ndarray:
    """Inverse of :func:`canonical_to_layer`: napari layer data -> canonical RAS (a view).

    Shapes: (Z, Y, X) -> (X, Y, Z); (C, Z, Y, X) -> (X, Y, Z, C).
    """
    array = np.asanyarray(array)
    if array.ndim == 3:
        return array.transpose(2, 1, 0)[::-1, ::-1]
    if array.ndim == 4:
        return array.transpose(3, 2, 1, 0)[::-1, ::-1]
    raise CalfInputError(None, f"a {array.ndim}D layer cannot be mapped to a volume.",
                         "use a 3D layer (slices along the first axis).")


def layer_scale_translate(
    affine: np.ndarray, canonical_shape: Sequence[int]
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``scale`` and ``translate`` of a layer made by :func:`canonical_to_layer`.

    World coordinates are mm along (S, P, L), i.e. (z, -y, -x) of the canonical affine's
    grid. An oblique (rotated) grid is shown unrotated: every layer of a case shares the
    grid, so they still overlay exactly.
    """
    from ..io.volumes import affine_spacing

    sx, sy, sz = affine_spacing(affine)
    ox, oy, oz = (float(v) for v in np.asarray(affine)[:3, 3])
    nx, ny = int(canonical_shape[0]), int(canonical_shape[1])
    # A reversed axis starts at the far end of the canonical one, negated.
    translate = (oz, -(oy + sy * (ny - 1)), -(ox + sx * (nx - 1)))
    return (sz, sy, sx), translate


def canonical_affine_from_layer(
    scale: Sequence[float], translate: Sequence[float], layer_shape: Sequence[int]
) -> np.ndarray:
    """Canonical RAS affine that :func:`layer_scale_translate` would turn into ``scale`` and
    ``translate`` (the writer's fallback for layers that did not come from a file)."""
    sz, sy, sx = (float(s) for s in scale[-3:])
    tz, ty, tx = (float(t) for t in translate[-3:])
    ny, nx = int(layer_shape[-2]), int(layer_shape[-1])
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = (-tx - sx * (nx - 1), -ty - sy * (ny - 1), tz)
    return affine


def volume_metadata(volume: Any, **extra: Any) -> dict[str, Any]:
    """``layer.metadata`` entry for a :class:`~napari_calf.io.volumes.Volume` (plain lists: JSON-safe)."""
    return {
        METADATA_KEY: {
            "path": None if volume.path is None else str(volume.path),
            "affine": np.asarray(volume.affine).tolist(),
            "source_affine": np.asarray(volume.source_affine).tolist(),
            "source_shape": list(volume.source_shape),
            "shape": list(volume.data.shape),
            "spacing": list(volume.spacing),
            "orientation": list(volume.orientation),
            "display": DISPLAY_CONVENTION,
            **extra,
        }
    }


# --------------------------------------------------------------------------- npe2 entry point


def _handles_file(path: Path) -> bool:
    from ..io._nifti import is_nifti_path

    return is_nifti_path(path)


def _handles_folder(path: Path) -> bool:
    """A folder with NIfTI files in it, one level down, or in nnU-Net's imagesTr/imagesTs.

    Cheap on purpose (names only): napari asks every reader about every folder opened.
    """
    from ..io._nifti import is_nifti_path

    try:
        if (path / "imagesTr").is_dir() or (path / "imagesTs").is_dir():
            return True
        for entry in path.iterdir():
            if entry.is_file() and is_nifti_path(entry):
                return True
            if entry.is_dir() and not entry.name.startswith("."):
                if any(is_nifti_path(p) for p in entry.iterdir() if p.is_file()):
                    return True
    except OSError:
        return False
    return False


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """npe2 ``get_reader``: a reader for NIfTI files and case folders, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        return None
    for item in paths:
        p = Path(item)
        if p.is_dir():
            if not _handles_folder(p):
                return None
        elif not _handles_file(p):
            return None
    return read_paths


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """Read NIfTI files and/or case folders into napari layer data.

    Raises
    ------
    CalfInputError
        With a message naming the file, the problem and the fix; napari shows it as a
        notification.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerData] = []
    for item in paths:
        p = Path(item)
        layers.extend(read_folder(p) if p.is_dir() else read_file(p))
    return layers


# --------------------------------------------------------------------------- files and cases


def _looks_like_label(path: Path) -> bool:
    from ..io.discovery import LABEL_WORDS
    from ..io._nifti import nifti_stem

    stem = nifti_stem(path).lower()
    return any(word in stem for word in LABEL_WORDS)


def _contrast_limits(data: np.ndarray) -> tuple[float, float]:
    """0.5-99.5 percentile window: a few hot voxels must not wash out an MRI."""
    step = max(1, data.size // 1_000_000)  # a strided sample is plenty for a window
    sample = np.asarray(data).reshape(-1)[::step]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    return (lo, hi if hi > lo else lo + 1.0)


def _image_layer(volume: Any, name: str, **kwargs: Any) -> LayerData:
    scale, translate = layer_scale_translate(volume.affine, volume.data.shape)
    meta = volume_metadata(volume, **kwargs.pop("extra", {}))
    data = canonical_to_layer(volume.data)
    attrs: dict[str, Any] = {"name": name, "scale": scale, "translate": translate,
                             "metadata": meta, **kwargs}
    if volume.data.ndim == 4:
        n = volume.data.shape[3]
        attrs.update(
            channel_axis=0,
            name=[f"{name} [{i}]" for i in range(n)],
            # per-channel sequences: napari would read one tuple/dict as "one per channel"
            scale=[scale] * n,
            translate=[translate] * n,
            metadata=[meta] * n,
            contrast_limits=[_contrast_limits(volume.data[..., i]) for i in range(n)],
        )
    else:
        attrs.setdefault("colormap", "gray")
        attrs["contrast_limits"] = _contrast_limits(volume.data)
    return (data, attrs, "image")


def _labels_layer(volume: Any, name: str, convention: str | None = None,
                  **extra: Any) -> LayerData:
    scale, translate = layer_scale_translate(volume.affine, volume.data.shape)
    attrs: dict[str, Any] = {
        "name": name,
        "scale": scale,
        "translate": translate,
        "metadata": volume_metadata(volume, label_convention=convention, **extra),
        "opacity": 0.6,
    }
    colours = _BRATS_COLOURS.get(convention or "")
    present = set(np.unique(volume.data).tolist()) - {0}
    if colours and present <= set(colours):
        from napari.utils.colormaps import DirectLabelColormap

        attrs["colormap"] = DirectLabelColormap(
            color_dict={None: "transparent", 0: "transparent", **colours}
        )
    return (canonical_to_layer(volume.data), attrs, "labels")


def read_file(path: Path) -> list[LayerData]:
    """One NIfTI file -> one image layer (channels split), or one labels layer."""
    from ..io.volumes import load_volume
    from ..io._nifti import nifti_stem

    name = nifti_stem(path)
    if _looks_like_label(path):
        volume = load_volume(path)
        if volume.data.ndim == 3:
            try:
                volume = load_volume(path, label=True) if volume.data.dtype.kind == "f" else volume
            except CalfInputError:
                pass  # fractional values: an image after all (e.g. a probability map)
            if volume.data.dtype.kind in "iu":
                return [_labels_layer(volume, name)]
        return [_image_layer(volume, name)]
    return [_image_layer(load_volume(path, label=False), name)]


def read_folder(path: Path) -> list[LayerData]:
    """A case folder -> its modalities and label; a dataset folder -> its first case."""
    from ..io.discovery import discover_cases

    cases = discover_cases(path)
    if len(cases) > 1:
        _notify(
            f"{path} holds {len(cases)} cases; opened the first, {cases[0].case_id}. "
            "Open a case folder to see another one; the CALF widgets use the whole dataset."
        )
    return read_case(cases[0])


def _first_visible(case: Any, modalities: list[str]) -> str | None:
    """The modality shown on opening: FLAIR-like first (by preference), else the first."""
    for wanted in _PREFERRED_VISIBLE:
        for modality in modalities:
            if wanted in (modality.lower(), case.display_name(modality).lower()):
                return modality
    return modalities[0] if modalities else None


def _modality_label(case: Any, modality: str) -> str:
    """``"FLAIR (0003)"`` for a named nnU-Net channel, else the modality as in the file name."""
    name = case.display_name(modality)
    return modality if name == modality else f"{name} ({modality})"


def read_case(case: Any) -> list[LayerData]:
    """A :class:`~napari_calf.io.discovery.Case` -> image layers (one per modality) + labels."""
    from ..io.discovery import load_case

    loaded = load_case(case)
    visible = _first_visible(case, list(loaded.images))
    common = {"case_id": case.case_id, "layout": case.layout,
              "label_convention": case.label_convention}
    layers = [
        _image_layer(volume, f"{case.case_id} {_modality_label(case, modality)}",
                     visible=modality == visible,
                     extra={**common, "modality": modality})
        for modality, volume in loaded.images.items()
    ]
    if loaded.label is not None:
        layers.append(
            _labels_layer(loaded.label, f"{case.case_id} seg", case.label_convention,
                          case_id=case.case_id, layout=case.layout)
        )
    return layers


def _notify(message: str) -> None:
    log.info(message)
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover - reader used without napari
        return
    show_info(message)

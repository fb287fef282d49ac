"""The annotation-review dock's layers: a case loaded off the GUI thread, found again by file path.

A case is shown as four layers on one grid (the reader's display convention, see
:mod:`napari_calf._napari.reader`): the image (FLAIR or the closest contrast), the
annotation (labels, editable), the models' consensus (a labels contour) and the issue's
region (a Shapes rectangle on each of its slices). Each carries in
``metadata["napari_calf"]`` the file it shows (``path``), its ``review_role`` and the audit
folder, and is found by those, never by name alone: a layer of the same case id opened from
another file is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CalfInputError
from ..reader import METADATA_KEY, LayerData, _image_layer, _labels_layer, canonical_to_layer

#: The contrast shown under the annotation: tumour extent is clearest on FLAIR.
IMAGE_PREFERENCE = ("flair", "t2f", "t2", "t2w", "t1ce", "t1c", "t1", "t1n")
ROLES = ("image", "annotation", "consensus", "region")
REGION_COLOUR = "#ffd400"
CONSENSUS_COLOUR = "#00e5ff"


@dataclass(frozen=True, eq=False)
class CaseData:
    """What the load worker hands to the GUI thread for one case (no layers yet).

    ``label``/``prob`` are canonical; ``layers`` are ready-made layer data for ``add_*``.
    """

    case_id: str
    label_path: Path
    image_path: Path | None
    prediction_path: Path
    reference: Any           # original label Volume: the grid corrections are written on
    prob: np.ndarray         # canonical float32
    original_voxels: int
    convention: str
    corrected: bool
    binary: bool             # the label is a plain 0/1 mask (new tumour is then 1, not 2)
    layers: dict[str, LayerData]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.reference.spacing)  # type: ignore[return-value]

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.reference.data.shape[:3])  # type: ignore[return-value]


def choose_image(images: dict[str, Path]) -> tuple[str, Path] | None:
    """The modality to show: FLAIR first, then the contrast that shows oedema best."""
    lowered = {m.lower(): m for m in images}
    for wanted in IMAGE_PREFERENCE:
        if wanted in lowered:
            return lowered[wanted], images[lowered[wanted]]
    first = next(iter(images), None)
    return None if first is None else (first, images[first])


def load_case(audit_root: Path, case: Any, store: Any, confident: float) -> CaseData:
    """Worker: read a case's files and build its layer data. Never touches the viewer.

    Raises
    ------
    CalfInputError
        A missing or unreadable file, a case without a prediction, or files on other grids.
    """
    from ...io.volumes import load_volume

    if case.prediction is None:
        raise CalfInputError(audit_root / "audit.json", f"case '{case.case_id}' has no "
                             "out-of-sample prediction, so it has no issues to review.",
                             "rerun the audit with this case in a fold.")
    original, current = store.current_label(case.case_id, case.label)
    prob = load_volume(case.prediction, label=False)
    if prob.data.shape != original.data.shape:
        raise CalfInputError(case.prediction, f"is on a grid of {prob.data.shape} voxels, the label "
                             f"{case.label} on {original.data.shape}.", "rerun the audit for this case.")
    tags = {"case_id": case.case_id, "audit": str(audit_root)}
    layers: dict[str, LayerData] = {}
    chosen = choose_image(case.images)
    if chosen is not None:
        modality, path = chosen
        image = load_volume(path, label=False)
        if image.data.shape[:3] != original.data.shape:
            raise CalfInputError(path, f"has a grid of {image.data.shape[:3]} voxels but the label "
                                 f"{case.label} has {original.data.shape}.",
                                 "check that audit.json names the files of one case.")
        layers["image"] = _image_layer(image, f"{case.case_id} {modality}",
                                       extra={**tags, "modality": modality, "review_role": "image"})
    shown = replace(original, data=current.data)  # the original's file, with the corrections so far
    data, attrs, kind = _labels_layer(shown, f"{case.case_id} annotation (review)",
                                      case.label_convention, **tags, review_role="annotation",
                                      corrected=current is not original)
    attrs["opacity"] = 0.55
    layers["annotation"] = (np.ascontiguousarray(data), attrs, kind)
    consensus = replace(original, data=(prob.data > confident).astype(np.uint8), path=case.prediction)
    data, attrs, kind = _labels_layer(consensus, f"{case.case_id} models' consensus", None,
                                      **tags, review_role="consensus")
    attrs.update(opacity=1.0, contour=1, colormap={None: "transparent", 0: "transparent",
                                                   1: CONSENSUS_COLOUR})
    layers["consensus"] = (np.ascontiguousarray(data), attrs, kind)
    return CaseData(case_id=case.case_id, label_path=Path(case.label),
                    image_path=None if chosen is None else chosen[1],
                    prediction_path=Path(case.prediction), reference=original,
                    prob=np.asarray(prob.data, dtype=np.float32),
                    original_voxels=int(np.count_nonzero(original.data)),
                    convention=case.label_convention, corrected=current is not original,
                    binary=bool(current.data.min(initial=0) >= 0 and current.data.max(initial=0) <= 1),
                    layers=layers)


# --------------------------------------------------------------------------- on the GUI thread


def _info(layer: Any) -> dict[str, Any]:
    return dict((getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {})


def _same_path(a: Any, b: Any) -> bool:
    if not a or not b:
        return False
    try:
        return Path(str(a)).resolve() == Path(str(b)).resolve()
    except OSError:
        return str(a) == str(b)


def find_layer(viewer: Any, role: str, path: Path | None, audit: Path | None = None) -> Any | None:
    """The layer showing ``path`` in ``role`` (for an image: any image layer of that file)."""
    for layer in viewer.layers:
        info = _info(layer)
        if role == "region":
            if info.get("review_role") == "region" and _same_path(info.get("audit"), audit):
                return layer
            continue
        if not _same_path(info.get("path"), path):
            continue
        if role == "image" and getattr(layer, "_type_string", "") == "image":
            return layer
        if info.get("review_role") == role and (audit is None or _same_path(info.get("audit"), audit)):
            return layer
    return None


def add_case_layers(viewer: Any, data: CaseData, audit: Path) -> dict[str, bool]:
    """Add the case's layers, reusing an image layer of the same file; ``role -> owned``.

    Owned layers were added here and go when another case is opened; a reused image layer
    belongs to the user and stays.
    """
    owned: dict[str, bool] = {}
    for role in ("image", "annotation", "consensus"):
        if role not in data.layers:
            continue
        array, attrs, kind = data.layers[role]
        path = attrs["metadata"][METADATA_KEY]["path"]
        existing = find_layer(viewer, role, path, audit)
        if existing is not None and role == "image":
            existing.visible = True
            owned[role] = False
            continue
        if existing is not None:
            viewer.layers.remove(existing)
        attrs = dict(attrs)
        contour = attrs.pop("contour", None)  # a property, not an add_labels argument
        layer = getattr(viewer, f"add_{kind}")(array, **attrs)
        if contour is not None:
            layer.contour = contour
        owned[role] = True
    return owned


def region_rectangles(bbox: tuple[tuple[int, int], ...], canonical_shape: tuple[int, int, int]) -> list[np.ndarray]:
    """One rectangle per axial slice of an inclusive canonical box, in layer data coordinates.

    Layer rows are canonical y reversed, columns canonical x reversed (the reader's
    display); corners sit half a voxel outside the box so the frame surrounds its voxels.
    """
    (x0, x1), (y0, y1), (z0, z1) = bbox
    nx, ny = canonical_shape[0], canonical_shape[1]
    r0, r1 = ny - 1 - y1 - 0.5, ny - 1 - y0 + 0.5
    c0, c1 = nx - 1 - x1 - 0.5, nx - 1 - x0 + 0.5
    return [np.array([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]], dtype=float)
            for z in range(z0, z1 + 1)]


def show_region(viewer: Any, issue: Any, data: CaseData, audit: Path, grid_from: Any) -> None:
    """Draw the issue's box on each of its slices (one Shapes layer, reused)."""
    rects = region_rectangles(issue.issue.bbox, data.canonical_shape)
    layer = find_layer(viewer, "region", None, audit)
    grid = {"scale": grid_from.scale, "translate": grid_from.translate}
    if layer is None:
        layer = viewer.add_shapes(ndim=3, name="audit issue", opacity=1.0,
                                  metadata={METADATA_KEY: {"review_role": "region", "audit": str(audit),
                                                           "path": None}}, **grid)
    else:
        layer.scale, layer.translate = grid["scale"], grid["translate"]
    layer.data = []
    layer.add(rects, shape_type="rectangle", edge_color=REGION_COLOUR, face_color="transparent",
              edge_width=0.6)
    layer.metadata = {METADATA_KEY: {**_info(layer), "issue_id": issue.id, "case_id": issue.case_id}}
    layer.mode = "pan_zoom"  # never left in a drawing mode: clicks belong to the annotation


def go_to(viewer: Any, layer: Any, issue: Any, canonical_shape: tuple[int, int, int]) -> None:
    """Show the issue's focus slice and centre the view on its region."""
    x, y, _ = issue.issue.centre_vox
    z = issue.focus_slice
    world = layer.data_to_world((z, canonical_shape[1] - 1 - y, canonical_shape[0] - 1 - x))
    axis = viewer.dims.ndim - 3  # the viewer may hold layers with more axes
    viewer.dims.set_point(axis, float(world[0]))
    if viewer.dims.ndisplay == 2:
        # napari 0.9 moved the camera under viewer.scene; older versions have viewer.camera
        scene = getattr(viewer, "scene", None)
        camera = scene.camera if scene is not None else viewer.camera
        camera.center = (float(world[1]), float(world[2]))


def remove_owned(viewer: Any, paths: dict[str, Path | None], owned: dict[str, bool], audit: Path) -> None:
    """Remove the layers this dock added for a case (not the user's own)."""
    for role, mine in owned.items():
        if mine:
            layer = find_layer(viewer, role, paths.get(role), audit)
            if layer is not None:
                viewer.layers.remove(layer)


def displayed(array: np.ndarray) -> np.ndarray:
    """Canonical label -> a contiguous array in the layers' layout (safe to paint on)."""
    return np.ascontiguousarray(canonical_to_layer(array))

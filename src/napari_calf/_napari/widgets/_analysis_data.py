"""Qt-free helpers of the analysis widget: what to measure, the transform view, exports.

Kept apart from the widget so the numbers can be read (and tested) without a GUI.
No napari or Qt imports here.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CalfInputError
from ...events import Progress
from ...calf.areas import DatasetAreas, iter_dataset_areas
from ...calf.filtering import FilterResult, filter_slices
from ...calf.rules import Rule, Selection, select_transform
from ...calf.stats import ImbalanceStats, imbalance_stats

#: Clip of the normalised sizes in the transform view (T is infinite at 0 or 1 for some T).
TRANSFORM_VIEW_EPS = 1e-3

_TRANSFORM_FORMULAS = {
    "ln": "ln p",
    "log10": "log10 p",
    "fisher": "atanh p",
    "logit": "logit p = ln(p/(1−p))",
    "arcsine": "asin √p",
    "bce-dice": "p (no transform)",
}


def transform_view(areas: np.ndarray, transform: str) -> np.ndarray:
    """The non-zero sizes as the selected transform sees them.

    Definition: ``p = clip(A / max(A), ε, 1 − ε)`` with ε = :data:`TRANSFORM_VIEW_EPS`
    (the sizes scaled into the open interval (0, 1), the range of a probability),
    then ``T(p)``: ``ln p``, ``log10 p``, ``atanh p`` (fisher), ``ln(p/(1−p))``
    (logit), ``asin √p`` (arcsine); for ``bce-dice`` the plain ``p``. It shows how
    T stretches or squeezes small against large sizes; it is an illustration of
    the transform, not what the loss computes (the loss applies T to predicted
    probabilities).

    Parameters
    ----------
    areas : array of float, shape (N,)
        Non-zero sizes.
    transform : str
        One of ``ln, log10, fisher, logit, arcsine, bce-dice``.
    """
    areas = np.asarray(areas, dtype=float)
    if areas.size == 0:
        return areas
    p = np.clip(areas / areas.max(), TRANSFORM_VIEW_EPS, 1 - TRANSFORM_VIEW_EPS)
    if transform == "ln":
        return np.log(p)
    if transform == "log10":
        return np.log10(p)
    if transform == "fisher":
        return np.arctanh(p)
    if transform == "logit":
        return np.log(p / (1 - p))
    if transform == "arcsine":
        return np.arcsin(np.sqrt(p))
    return p


def transform_view_title(transform: str) -> str:
    """Plot title naming the mapping of :func:`transform_view`."""
    formula = _TRANSFORM_FORMULAS.get(transform, transform)
    return f"Sizes under {transform}: T(p) = {formula}, p = A / max A"


def layer_slice(canonical_axis: int, index: int, layer_shape: Sequence[int]) -> tuple[int, int]:
    """Layer axis and index of canonical slice ``index`` along ``canonical_axis``.

    The napari-calf reader shows canonical (x, y, z) as (z, y, x) with y and x
    reversed (:func:`napari_calf._napari.reader.canonical_to_layer`): axial slice
    ``k`` is layer index ``k`` on axis 0; coronal and sagittal indices count from
    the other end. Leading extra layer dims (channels) shift the axis right.

    Shapes: ``layer_shape`` is (..., Z, Y, X).
    """
    lead = len(layer_shape) - 3
    layer_axis = lead + (2 - canonical_axis)
    if canonical_axis == 2:
        return layer_axis, int(index)
    return layer_axis, int(layer_shape[layer_axis]) - 1 - int(index)


def infer_convention(labels: np.ndarray) -> str:
    """``brats2023`` when label 3 occurs without 4, else ``brats2021``."""
    has3 = bool(np.any(labels == 3))
    return "brats2023" if has3 and not bool(np.any(labels == 4)) else "brats2021"


#: A Labels layer as the worker gets it: (layer name, data, scale, label convention or None).
LayerItem = tuple[str, np.ndarray, Sequence[float], "str | None"]


class LayerCases:
    """Labels arrays taken from viewer layers, as ``(case_id, labels, spacing, convention)``.

    Arrays arrive as napari shows them; the reader's inverse display transform
    (a view, no copy) brings them back to canonical (x, y, z), so ``axis`` and
    slice indices mean the same as for files. The case id is the layer name. A
    convention missing from the layer's metadata is inferred lazily, in the worker.
    """

    def __init__(self, items: Sequence[LayerItem]) -> None:
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, tuple[float, ...], str]]:
        from ..reader import layer_to_canonical

        for name, data, scale, convention in self._items:
            if np.ndim(data) != 3:
                raise CalfInputError(None, f"Labels layer {name!r} is {np.ndim(data)}D.",
                                     "analyse 3D label volumes (slices along the first axis).")
            labels = layer_to_canonical(np.asarray(data))
            spacing = tuple(float(s) for s in reversed(tuple(scale)[-3:]))
            yield name, labels, spacing, convention or infer_convention(labels)


def measure_folder(
    folder: str | Path, *, target: str, axis: int, unit: str
) -> Generator[Progress, None, tuple[DatasetAreas, dict[str, Path]]]:
    """Discover the cases of ``folder`` and measure them (runs in a worker).

    Returns the areas and a map case id → case folder (to open a case for review).
    """
    from ...io.discovery import discover_cases

    folder = Path(folder)
    if not folder.is_dir():
        raise CalfInputError(folder, "is not a folder.", "choose the dataset folder that holds the cases.")
    yield Progress("discover", 0, None, f"looking for cases in {folder.name}")
    cases = discover_cases(folder)
    folders = {c.case_id: _case_folder(c) for c in cases}
    areas = yield from iter_dataset_areas(cases, target=target, axis=axis, unit=unit)
    return areas, folders


def _case_folder(case: Any) -> Path:
    folder = getattr(case, "folder", None)
    if folder is not None:
        return Path(folder)
    return Path(case.label).parent if case.label is not None else Path(next(iter(case.images.values()))).parent


def measure_layers(
    items: Sequence[LayerItem], *, target: str, axis: int, unit: str
) -> Generator[Progress, None, tuple[DatasetAreas, dict[str, Path]]]:
    """Measure labels arrays taken from layers (runs in a worker; touches no layer)."""
    areas = yield from iter_dataset_areas(LayerCases(items), target=target, axis=axis, unit=unit)
    return areas, {}


# -- exports --------------------------------------------------------------------------
SLICE_CSV_COLUMNS = ("case_id", "slice", "area", "unit", "kept", "flagged", "action", "reason")


def slice_rows(areas: DatasetAreas, result: FilterResult | None) -> list[dict[str, Any]]:
    """One row per slice: case, index, area, and the filtering decision."""
    notes = {(r["case_id"], r["slice"]): r for r in (result.report if result else [])}
    rows = []
    for i in range(areas.n_slices):
        key = (str(areas.case_ids[i]), int(areas.slices[i]))
        note = notes.get(key, {})
        rows.append({
            "case_id": key[0],
            "slice": key[1],
            "area": float(areas.areas[i]),
            "unit": areas.unit,
            "kept": bool(result.keep[i]) if result is not None else True,
            "flagged": bool(result.flagged[i]) if result is not None else False,
            "action": note.get("action", "kept" if result is None or result.keep[i] else "dropped"),
            # the one unlisted kind of decision: an empty slice outside the sampled share
            "reason": note.get("reason", "" if result is None or result.keep[i] else result.empty_reason),
        })
    return rows


def slices_csv_text(areas: DatasetAreas, result: FilterResult | None) -> str:
    buffer = _stdio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SLICE_CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(slice_rows(areas, result))
    return buffer.getvalue()


def stats_payload(
    *, source: str, settings: dict[str, Any], areas: DatasetAreas, selection: Any,
    result: FilterResult | None, rules_json: str,
) -> dict[str, Any]:
    """The JSON export: where the numbers came from, the statistics, the choice and the table."""
    return {
        "format": "napari-calf analysis",
        "version": 1,
        "source": source,
        "settings": settings,
        "slices": areas.n_slices,
        "cases": areas.n_cases,
        "empty_slices": areas.n_empty,
        "skipped": list(areas.skipped),
        "selection": selection.to_dict(),
        "filtering": None if result is None else {**result.summary(), "settings": result.settings},
        "rules": json.loads(rules_json),
    }


# -- what the widget shows after a setting changed (computed in a worker) ----------------
@dataclass(frozen=True)
class SliceEntry:
    """A row of a slice list: its text and tooltip, and the slice it stands for."""

    case_id: str
    index: int
    text: str
    tip: str = ""


@dataclass(frozen=True, eq=False)
class AnalysisView:
    """Everything the analysis widget shows for one set of areas, filter and rules.

    Attributes
    ----------
    kept_ids, kept_slices, kept_areas : ndarray, shape (N,)
        The kept slices with tumour: the histogram's data.
    transform_values : ndarray, shape (N,)
        ``kept_areas`` as the selected transform sees them (:func:`transform_view`).
    listed : list of SliceEntry
        The slices with tumour the filter dropped or flagged (the review list).
    counts_text, listed_caption, empty_text : str
        The counts, in the words the widget shows.
    """

    filter_result: FilterResult
    stats: ImbalanceStats
    selection: Selection
    kept_ids: np.ndarray
    kept_slices: np.ndarray
    kept_areas: np.ndarray
    transform_values: np.ndarray
    listed: list[SliceEntry]
    counts_text: str
    listed_caption: str
    empty_text: str


def unit_text(areas: DatasetAreas) -> str:
    return "mm²" if areas.unit == "mm2" else "px"


def slice_entry(case_id: str, index: int, area: float, unit: str, suffix: str = "", tip: str = "") -> SliceEntry:
    return SliceEntry(str(case_id), int(index), f"{case_id}   slice {int(index)}   {area:g} {unit}{suffix}", tip)


def filter_counts_text(summary: dict[str, Any]) -> tuple[str, str]:
    """The filter's counts and the caption of its list, in words whose numbers add up.

    "Dropped" counts empty slices left out of the sample as well as tumour slices
    below the minimum area; only the latter (and the flagged ones) are listed, so
    the caption says how many rows the list has and why.
    """
    empty, small = int(summary.get("dropped_empty", 0)), int(summary.get("dropped_small", 0))
    outliers_dropped = int(summary.get("dropped_outliers", 0))
    flagged = int(summary["flagged"])
    parts = [f"{empty} empty"] + ([f"{small} too small"] if small else []) + (
        [f"{outliers_dropped} outliers"] if outliers_dropped else [])
    counts = (f"Kept: {summary['kept']}   Dropped: {summary['dropped']} ({', '.join(parts)})   "
              f"Flagged: {flagged}")
    listed = small + flagged
    caption = (f"The {listed} slice(s) with tumour that were dropped as too small or flagged as "
               "size outliers (empty slices are not listed); click one to show it:")
    return counts, caption


def prepare_view(
    areas: DatasetAreas, settings: dict[str, Any], rules: Sequence[Rule]
) -> AnalysisView:
    """Filter, compute S/K on the kept slices, select the transform, and word the results.

    Runs in a worker: on a BraTS-sized dataset this is a few hundred ms of numpy and
    Python that would otherwise freeze napari at every edit of a threshold.

    Raises
    ------
    CalfError
        A filter setting or a rule the core refuses.
    """
    result = filter_slices(areas, **settings)
    stats = imbalance_stats(result.apply(areas))
    selection = select_transform(stats, rules)
    mask = result.keep & (areas.areas > 0)
    kept_areas = areas.areas[mask]
    unit = unit_text(areas)
    listed = [slice_entry(row["case_id"], row["slice"], row["area"], unit, f"  [{row['action']}]", row["reason"])
              for row in result.report]
    summary = result.summary()
    counts, caption = filter_counts_text(summary)
    return AnalysisView(
        filter_result=result, stats=stats, selection=selection,
        kept_ids=areas.case_ids[mask], kept_slices=areas.slices[mask], kept_areas=kept_areas,
        transform_values=transform_view(kept_areas, selection.transform),
        listed=listed, counts_text=counts, listed_caption=caption,
        empty_text=(f"Empty slices: {areas.n_empty} of {areas.n_slices} "
                    f"({summary.get('kept_empty', 0)} kept)"),
    )

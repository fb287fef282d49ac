"""Which label values a BraTS-style label map may hold, and refusing the others by name.

A value no convention uses (7, 255, a negative number) once passed silently: counted as
tumour by "label > 0", or dropped, changing the statistics and the selected loss. Now it
is refused, with the values, how many voxels hold them and the file. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import CalfInputError

#: Label values of each BraTS convention: 0 background, 1 necrotic core, 2 oedema, and the
#: enhancing tumour as 4 (BraTS 2017-2021) or 3 (BraTS 2023+).
CONVENTION_LABELS: dict[str, tuple[int, ...]] = {
    "brats2021": (0, 1, 2, 4),
    "brats2023": (0, 1, 2, 3),
}
#: Values some BraTS convention uses: what a label file may hold whatever its convention.
ANY_BRATS_LABEL: tuple[int, ...] = (0, 1, 2, 3, 4)


def unexpected_labels(labels: np.ndarray, allowed: Sequence[int]) -> dict[float, int]:
    """Values of ``labels`` outside ``allowed``, with their voxel counts (sorted by value).

    Float arrays are rounded first (label files stored as float). One pass per allowed
    value: cheap on a 9-million-voxel volume, and nothing larger than a bool mask is built.
    """
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):
        labels = np.rint(labels)
    elif labels.dtype == bool:
        return {}
    known = sum(int(np.count_nonzero(labels == v)) for v in allowed)
    if known == labels.size:
        return {}
    odd = labels[~np.isin(labels, np.asarray(allowed))]
    values, counts = np.unique(odd, return_counts=True)
    return {v.item(): int(c) for v, c in zip(values, counts)}


def _format_values(found: dict[float, int], limit: int = 6) -> str:
    items = list(found.items())[:limit]
    values = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v, _ in items)
    total = sum(found.values())
    more = f" and {len(found) - limit} other value(s)" if len(found) > limit else ""
    return f"{values}{more} ({total} voxel{'s' if total != 1 else ''})"


def check_label_values(labels: np.ndarray, allowed: Sequence[int], path: str | Path | None,
                       convention: str) -> None:
    """Raise unless every value of ``labels`` is in ``allowed``.

    Raises
    ------
    CalfInputError
        Naming the odd values, their voxel count, ``path`` and the convention's values.
    """
    found = unexpected_labels(labels, allowed)
    if not found:
        return
    expected = ", ".join(map(str, CONVENTION_LABELS.get(convention, allowed)))
    raise CalfInputError(
        path,
        f"{'holds' if path is not None else 'the label map holds'} label value(s) {_format_values(found)}, which the {convention} convention "
        f"does not use (its labels are {expected}; 0 is background).",
        "relabel those voxels (e.g. to 0 if they are not tumour; a binary mask must be 0/1, "
        "not 0/255), or check that this is the segmentation of this case.",
    )

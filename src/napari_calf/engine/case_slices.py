"""The chosen axial slices of one case, preprocessed for the slice store (part of training).

One volume is in memory at a time: the label, then each modality in turn. Each
modality's z-score moments come from its whole volume (CALF_METHOD §6), but only the
chosen slices are normalised and padded, which gives exactly the values normalising
every volume in full would, in a fraction of the memory and time (a BraTS case is
4 x 240 x 240 x 155 float32 = 143 MB when loaded whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import CalfInputError
from .data import Padding, apply_zscore, brain_moments, case_target


def prepare_case_slices(case: Any, idx: np.ndarray, modalities: Sequence[str], pad: Padding,
                  target: str, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """The chosen slices of one case: images (k, C, H, W) float16, targets (k, H, W) uint8.

    Parameters
    ----------
    case : io.Case
        A labelled case; its ``images`` hold every name in ``modalities``.
    idx : ndarray of int, shape (k,)
        Axial slice indices.
    modalities : sequence of str
        Channel order.
    pad : Padding
        In-plane padding to the store's (H, W).
    target : {"wt", "tc", "et"}
    clip : float

    Raises
    ------
    CalfInputError
        A missing label, unreadable files, volumes on different grids, or a slice index
        beyond the case's depth.
    """
    from ..io.volumes import check_same_grid, load_volume

    if case.label is None:
        raise CalfInputError(
            case.folder, f"case '{case.case_id}' has no label file; training needs one.",
            "add its label file (seg, label or mask in the name), or leave the case out.")
    label = load_volume(case.label, label=True)
    depth = label.data.shape[-1]
    if idx.min() < 0 or idx.max() >= depth:
        raise CalfInputError(
            case.folder,
            f"case {case.case_id}: slice {int(idx.max())} asked for, but the case has "
            f"{depth} axial slices.",
            "the files changed while preparing; run again.",
        )
    mask = case_target(label.data, target, case.label_convention)
    # (X, Y, Z) -> (k, X, Y), padded to (k, H, W)
    targets = pad.pad(np.moveaxis(mask[..., idx], -1, 0)).astype(np.uint8)
    del mask
    images = np.empty((idx.size, len(modalities), *pad.padded), dtype=np.float16)
    for c, modality in enumerate(modalities):
        volume = load_volume(case.images[modality], label=False)
        check_same_grid(label, volume)
        mean, std = brain_moments(volume.data)
        chosen = np.moveaxis(volume.data[..., idx], -1, 0)
        del volume
        images[:, c] = pad.pad(apply_zscore(chosen, mean, std, clip))
    return images, targets


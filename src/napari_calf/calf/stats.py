"""Skewness and kurtosis of the foreground sizes (CALF_METHOD §1–2).

:class:`ImbalanceStats` and :func:`imbalance_stats`: N, empty slices, mean, median, S and
K, computed by scipy exactly as the paper defines them; undefined (with the reason, never
NaN) for degenerate samples. The areas come from :mod:`.areas`, the rule table that turns
S and K into a transform lives in :mod:`.rules`.

No torch, napari or Qt here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import CalfInputError
from .areas import DatasetAreas

__all__ = ["MIN_SAMPLES", "ImbalanceStats", "imbalance_stats"]

#: Fewest non-empty slices for which skewness and kurtosis are reported.
MIN_SAMPLES = 3


@dataclass(frozen=True)
class ImbalanceStats:
    """Shape of the foreground-size distribution (CALF_METHOD §1–2).

    Attributes
    ----------
    n : int
        Number of non-empty slices (the sample the moments are taken over).
    n_empty : int
        Number of empty slices, counted apart.
    mean, median : float | None
        Of the non-zero areas; ``None`` when ``n == 0``.
    skewness, kurtosis : float | None
        ``scipy.stats.skew(A, bias=True)`` and ``scipy.stats.kurtosis(A, fisher=True,
        bias=True)`` (excess kurtosis); ``None`` when undefined.
    undefined_reason : str | None
        Why S and K are undefined (N = 0, N < 3, σ = 0), else ``None``.
    """

    n: int
    n_empty: int
    mean: float | None
    median: float | None
    skewness: float | None
    kurtosis: float | None
    undefined_reason: str | None = None

    @property
    def defined(self) -> bool:
        """True when S and K could be computed."""
        return self.skewness is not None and self.kurtosis is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields (plain ``int``/``float``/``None``/``str``)."""
        return asdict(self)


def imbalance_stats(areas: Any, n_empty: int = 0) -> ImbalanceStats:
    """N, empty count, mean, median, skewness and excess kurtosis of foreground sizes.

    Parameters
    ----------
    areas : array-like of float, or DatasetAreas
        Foreground areas, one per slice. Zeros are counted as empty slices and
        left out of the moments (CALF_METHOD §2). A :class:`DatasetAreas` is taken
        as is (its empty slices are counted).
    n_empty : int
        Empty slices counted elsewhere (added to the zeros found in ``areas``).

    Returns
    -------
    ImbalanceStats
        With ``skewness``/``kurtosis`` ``None`` and ``undefined_reason`` set when
        N = 0, N < 3 or σ = 0. Never NaN.

    Raises
    ------
    CalfInputError
        Negative, NaN or infinite areas, or a negative ``n_empty``.
    """
    from scipy import stats as sps

    if isinstance(areas, DatasetAreas):
        values = areas.areas
    else:
        values = np.asarray(areas, dtype=np.float64)
    values = np.ravel(values).astype(np.float64, copy=False)
    if isinstance(n_empty, bool) or not isinstance(n_empty, (int, np.integer)) or n_empty < 0:
        raise CalfInputError(
            None, f"n_empty must be a count >= 0, got {n_empty!r}.", "pass the number of empty slices."
        )
    if values.size and not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise CalfInputError(
            None, f"{bad} foreground area(s) are NaN or infinite.",
            "compute areas from label arrays without NaN voxels.",
        )
    if values.size and values.min() < 0:
        raise CalfInputError(
            None, f"{int(np.count_nonzero(values < 0))} foreground area(s) are negative.",
            "areas are voxel counts or mm²; check how they were computed.",
        )
    nonzero = values[values > 0]
    n = int(nonzero.size)
    n_empty = int(n_empty) + int(values.size - n)
    if n == 0:
        return ImbalanceStats(
            0, n_empty, None, None, None, None,
            "no slice has foreground (N = 0), so skewness and kurtosis are undefined",
        )
    mean = float(nonzero.mean())
    median = float(np.median(nonzero))
    if n < MIN_SAMPLES:
        return ImbalanceStats(
            n, n_empty, mean, median, None, None,
            f"only N = {n} slice(s) with foreground; skewness and kurtosis need at least "
            f"{MIN_SAMPLES}",
        )
    if nonzero.min() == nonzero.max():
        return ImbalanceStats(
            n, n_empty, mean, median, None, None,
            f"all N = {n} foreground areas are equal (σ = 0), so skewness and kurtosis "
            "are undefined",
        )
    with warnings.catch_warnings(record=True) as caught:
        # scipy warns when nearly equal areas make the moments unreliable (catastrophic
        # cancellation); that is the σ ≈ 0 case, reported as undefined below.
        warnings.simplefilter("always", RuntimeWarning)
        skewness = float(sps.skew(nonzero, bias=True))
        kurtosis = float(sps.kurtosis(nonzero, fisher=True, bias=True))
    lost = any(issubclass(w.category, RuntimeWarning) for w in caught)
    if lost or not (math.isfinite(skewness) and math.isfinite(kurtosis)):
        return ImbalanceStats(
            n, n_empty, mean, median, None, None,
            f"the N = {n} foreground areas are equal to within rounding (σ ≈ 0), so "
            "skewness and kurtosis are undefined",
        )
    return ImbalanceStats(n, n_empty, mean, median, skewness, kurtosis, None)

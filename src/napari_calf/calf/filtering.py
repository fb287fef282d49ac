"""Dataset filtering before the statistics (CALF_METHOD §5).

Import the public names from :mod:`napari_calf.calf.stats`. Every decision is
reported slice by slice, so the user can open the dropped or flagged slices in
the viewer and judge them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .areas import DatasetAreas
from ..errors import CalfConfigError

#: Values of the ``action`` column of :attr:`FilterResult.report`.
ACTIONS: tuple[str, ...] = ("dropped", "flagged")


# eq=False: == on numpy fields would be ambiguous; compare the arrays instead.
@dataclass(frozen=True, eq=False)
class FilterResult:
    """Which slices of a :class:`~napari_calf.calf.stats.DatasetAreas` to train on, and why.

    Attributes
    ----------
    keep : ndarray of bool, shape (n_slices,)
        Slices used for training (and for the statistics after filtering).
    flagged : ndarray of bool, shape (n_slices,)
        Size outliers listed for review (kept unless ``drop_outliers``).
    report : list of dict
        One row per tumour slice dropped or flagged: ``case_id``, ``slice``, ``area``,
        ``action`` (``"dropped"``/``"flagged"``) and ``reason``. Empty slices left out
        of the sample are not listed one by one (a BraTS-size dataset has ~150,000): they
        are ``~keep & (areas == 0)``, counted in :meth:`summary`, with :attr:`empty_reason`.
    outlier_threshold : float | None
        Q3 + k·IQR of the non-zero areas, when outlier flagging was asked for.
    settings : dict
        The arguments of :func:`filter_slices`, for the run card.
    empty_reason : str
        Why an empty slice outside the sampled share was dropped.
    """

    keep: np.ndarray
    flagged: np.ndarray
    report: list[dict[str, Any]]
    outlier_threshold: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    empty_reason: str = ""

    def summary(self) -> dict[str, Any]:
        """Counts: slices, kept, dropped, flagged, and the reasons in detail (JSON-safe)."""
        return {
            "slices": int(self.keep.size),
            "kept": int(np.count_nonzero(self.keep)),
            "dropped": int(self.keep.size - np.count_nonzero(self.keep)),
            "flagged": int(np.count_nonzero(self.flagged)),
            **self._counts,
            "outlier_threshold": self.outlier_threshold,
        }

    def apply(self, areas: DatasetAreas) -> DatasetAreas:
        """The kept slices of ``areas`` (to compute the statistics after filtering)."""
        return areas.subset(self.keep)


def _number(name: str, value: Any, *, low: float, low_ok: bool, high: float | None = None) -> float:
    """Validate a numeric setting; ``low_ok`` says whether ``low`` itself is allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CalfConfigError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    too_low = value < low or (value == low and not low_ok)
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        rng = f"{'[' if low_ok else '('}{low:g}, {high:g}]" if high is not None else (
            f"{'>=' if low_ok else '>'} {low:g}"
        )
        raise CalfConfigError(f"{name} = {value!r} is out of range. Fix: use a value {rng}.")
    return value


def filter_slices(
    areas: DatasetAreas,
    *,
    empty_fraction: float = 0.1,
    min_area: float | None = None,
    outlier_iqr: float | None = None,
    drop_outliers: bool = False,
    seed: int = 0,
) -> FilterResult:
    """Choose the training slices: all with foreground, a seeded share of the empty ones.

    Parameters
    ----------
    areas : DatasetAreas
        Per-slice areas of the dataset.
    empty_fraction : float in [0, 1]
        Share of empty slices kept (rounded to the nearest count), sampled with ``seed``.
    min_area : float, optional
        Non-empty slices with a smaller area (same unit as ``areas``) are dropped and
        listed as possible annotation noise.
    outlier_iqr : float > 0, optional
        k: non-empty slices above Q3 + k·IQR of the non-zero areas (after
        ``min_area``) are flagged for review.
    drop_outliers : bool
        Drop the flagged outliers instead of keeping them; needs ``outlier_iqr``.
    seed : int
        Seed for the empty-slice sample (the run's seed): same seed, same slices.

    Returns
    -------
    FilterResult

    Raises
    ------
    CalfConfigError
        A setting out of range, or ``drop_outliers`` without ``outlier_iqr``.
    """
    if not isinstance(areas, DatasetAreas):
        raise CalfConfigError(
            f"filter_slices needs a DatasetAreas, got {type(areas).__name__}. "
            "Fix: measure the dataset with napari_calf.calf.stats.dataset_areas first."
        )
    empty_fraction = _number("empty_fraction", empty_fraction, low=0.0, low_ok=True, high=1.0)
    if min_area is not None:
        min_area = _number("min_area", min_area, low=0.0, low_ok=True)
    if outlier_iqr is not None:
        outlier_iqr = _number("outlier_iqr", outlier_iqr, low=0.0, low_ok=False)
    if not isinstance(drop_outliers, bool):
        raise CalfConfigError(f"drop_outliers must be True or False, got {drop_outliers!r}.")
    if drop_outliers and outlier_iqr is None:
        raise CalfConfigError(
            "drop_outliers=True needs outlier_iqr (e.g. 3 for Q3 + 3·IQR). "
            "Fix: set outlier_iqr, or leave drop_outliers off."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CalfConfigError(f"seed must be an integer >= 0, got {seed!r}.")

    values = areas.areas
    unit = "mm²" if areas.unit == "mm2" else "px"
    keep = values > 0
    flagged = np.zeros(values.shape, dtype=bool)
    reasons: dict[int, tuple[str, str]] = {}

    empty = np.flatnonzero(values == 0)
    n_keep_empty = int(math.floor(empty_fraction * empty.size + 0.5))
    rng = np.random.default_rng(int(seed))
    chosen = rng.choice(empty, size=n_keep_empty, replace=False) if n_keep_empty else empty[:0]
    keep[chosen] = True
    empty_reason = (
        f"empty slice not in the sampled {empty_fraction:g} share of empty slices "
        f"(seed {int(seed)})"
    )

    n_small = 0
    if min_area is not None:
        small = np.flatnonzero((values > 0) & (values < min_area))
        n_small = int(small.size)
        keep[small] = False
        for i in small:
            reasons[int(i)] = (
                "dropped",
                f"foreground {values[i]:g} {unit} < min_area {min_area:g} {unit}: "
                "possible annotation noise, review it",
            )

    threshold = None
    n_outliers = 0
    if outlier_iqr is not None:
        sizes = values[(values > 0) & ((values >= min_area) if min_area is not None else True)]
        if sizes.size:
            q1, q3 = np.percentile(sizes, [25, 75])
            threshold = float(q3 + outlier_iqr * (q3 - q1))
            big = np.flatnonzero((values > threshold) & keep)
            n_outliers = int(big.size)
            flagged[big] = True
            action = "dropped" if drop_outliers else "flagged"
            if drop_outliers:
                keep[big] = False
            for i in big:
                reasons[int(i)] = (
                    action,
                    f"foreground {values[i]:g} {unit} > Q3 + {outlier_iqr:g}·IQR = "
                    f"{threshold:.6g} {unit}: size outlier, review it",
                )

    report = [
        {
            "case_id": str(areas.case_ids[i]),
            "slice": int(areas.slices[i]),
            "area": float(values[i]),
            "action": action,
            "reason": reason,
        }
        for i, (action, reason) in sorted(reasons.items())
    ]
    counts = {
        "kept_foreground": int(np.count_nonzero(keep & (values > 0))),
        "kept_empty": int(n_keep_empty),
        "dropped_empty": int(empty.size - n_keep_empty),
        "dropped_small": n_small,
        "flagged_outliers": n_outliers,
        "dropped_outliers": n_outliers if drop_outliers else 0,
    }
    settings = {
        "empty_fraction": empty_fraction,
        "min_area": min_area,
        "outlier_iqr": outlier_iqr,
        "drop_outliers": drop_outliers,
        "seed": int(seed),
        "unit": areas.unit,
    }
    return FilterResult(keep, flagged, report, threshold, settings, counts, empty_reason)
